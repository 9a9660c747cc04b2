//! Serving an app the way a production server must (shared by the
//! examples): a slow or silent client cannot hold a connection open, a slow
//! handler cannot hold a request forever, and connections are bounded.
//! Each request carries the connection's [`interim::Interim`] handle, for
//! handlers that send `1xx` responses ahead of their final one.

#[allow(dead_code)] // only caching_proxy sends interim responses
#[path = "interim.rs"]
pub mod interim;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder};
use tower_http::add_extension::AddExtensionLayer;
use tower_http::timeout::TimeoutLayer;

/// The limits every connection is served with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request's head must arrive within this, and an idle keep-alive
    /// connection is closed after it (hyper's header-read timeout).
    pub header_read: Duration,
    /// A request must be answered within this (`408` otherwise).
    pub request: Duration,
    /// Connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves HTTP/1 on `listener`, each connection with the service
/// `per_connection(peer)` builds, within `limits`.
pub async fn serve<S, B>(
    listener: TcpListener,
    limits: Limits,
    per_connection: impl Fn(SocketAddr) -> S,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Default + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, …: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (io, interim) = interim::connection(tcp);
        let service = ServiceBuilder::new()
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.request,
            ))
            .layer(AddExtensionLayer::new(interim))
            .service(per_connection(peer));
        tokio::spawn(async move {
            let _slot = slot;
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
