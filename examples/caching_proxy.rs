//! A caching reverse proxy: tower-kv's RFC 9111 cache in front of an upstream.
//!
//! `cargo run --release --example caching_proxy -- --listen 127.0.0.1:8002 --upstream http://127.0.0.1:8000 [--redis URL | --redis-cluster HOST:PORT,…] [--max-body BYTES] [--set-cookie refuse|strip|keep] [--log debug]`
//!
//! A proxy in front of someone else's origin must not invent freshness: it
//! uses RFC 9111 heuristics only (`default_ttl(None)`), unlike an app
//! caching its own handlers, where the layer's 300 s default TTL is a
//! reasonable choice. `--log debug` prints one line per request.
//!
//! Every method, header and body is forwarded as received, except the
//! hop-by-hop fields (RFC 9110 §7.6.1: `Connection` and the fields it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`), which belong to each connection. The proxy adds only caching:
//! `Age` and `Cache-Status` on responses. The upstream's interim responses
//! (`103 Early Hints`, RFC 9110 §15.2) reach HTTP/1.1 clients ahead of the
//! final response — except `100 Continue`, which hyper answers to the
//! client itself — and are never stored: the cache sees only the final
//! response.
//!
//! `PURGE <url>` from a loopback client purges what is stored for it (the
//! method Squid and Varnish use): every variant of the URL, or with
//! `Purge-Match: prefix` everything under it; with `Purge-Tag: t` every
//! response tagged `t` (`Surrogate-Key`); with `Purge-Soft: ?1` responses are
//! marked stale instead of deleted. The answer is `200 purged N`, or `503`
//! when the store failed (nothing is claimed that did not happen).
//!
//! `--set-cookie strip|keep` stores responses that set cookies — without
//! their `Set-Cookie` fields, or with them — instead of the default refusal.

#[path = "common/redis_target.rs"]
mod redis_target;
#[path = "common/serve.rs"]
mod serve;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, CONNECTION, HOST};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redis_target::RedisTarget;
use tower::{ServiceBuilder, ServiceExt};
use tower_kv::cache::{CacheLayer, CachePurger, OriginUnreachable, SetCookieResponses};
use tower_kv::store::{KvStore, MemoryStore, StoreError};

type Body = BoxBody<Bytes, hyper::Error>;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop fields, including those `Connection` names — but
/// never `Host`, which a client could otherwise drop (`Connection: Host`) to
/// make the origin answer for another host than the one the cache keys on.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != HOST)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:8002".into())
        .parse()?;
    let upstream: Uri = arg("--upstream")
        .unwrap_or_else(|| "http://127.0.0.1:8000".into())
        .parse()?;
    let set_cookie = match arg("--set-cookie").as_deref() {
        None | Some("refuse") => SetCookieResponses::Refuse,
        Some("strip") => SetCookieResponses::StoreWithoutCookie,
        Some("keep") => SetCookieResponses::StoreWithCookie,
        Some(other) => return Err(format!("--set-cookie {other}: refuse, strip or keep").into()),
    };
    let options = Options {
        upstream,
        max_body: arg("--max-body").map_or(Ok(1 << 20), |v| v.parse())?,
        set_cookie,
    };
    let level: tracing::Level = arg("--log").map_or(Ok(tracing::Level::INFO), |v| v.parse())?;
    tracing_subscriber::fmt().with_max_level(level).init();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let target = RedisTarget::from_args();
    let backend = target
        .as_ref()
        .map_or("MemoryStore".into(), RedisTarget::describe);
    println!(
        "caching proxy on http://{listen} -> {} ({backend})",
        options.upstream
    );
    match target {
        None => Ok(run(MemoryStore::new(), listener, options).await?),
        Some(target) => redis(&target, listener, options).await,
    }
}

/// What to proxy, and how much of a response to store.
pub struct Options {
    /// The origin: `http://host:port`.
    pub upstream: Uri,
    /// Largest body stored, in bytes.
    pub max_body: u64,
    /// What to do with responses that set cookies.
    pub set_cookie: SetCookieResponses,
}

#[cfg(feature = "redis")]
async fn redis(
    target: &RedisTarget,
    listener: tokio::net::TcpListener,
    options: Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = target.builder().prefix("caching-proxy:").connect().await?;
    Ok(run(store, listener, options).await?)
}

#[cfg(not(feature = "redis"))]
async fn redis(
    _: &RedisTarget,
    _: tokio::net::TcpListener,
    _: Options,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("--redis needs `--features redis`".into())
}

/// Serves the caching proxy on `listener`, storing in `store`.
pub async fn run<St: KvStore>(
    store: St,
    listener: tokio::net::TcpListener,
    options: Options,
) -> std::io::Result<()> {
    let Options {
        upstream,
        max_body,
        set_cookie,
    } = options;
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    // `X-Forwarded-Host` would change what the origin answers without
    // being part of the key: it never reaches the origin.
    let cache = CacheLayer::new(store)
        .default_ttl(None)
        // An unreachable upstream: stored responses up to a day stale answer.
        .serve_stale_if_unreachable(std::time::Duration::from_secs(86_400))
        .max_body(max_body)
        .set_cookie_responses(set_cookie)
        .strip_request_header(HeaderName::from_static("x-forwarded-host"));
    let purger = cache.purger();
    let proxy = ServiceBuilder::new()
        .layer(cache)
        .service_fn(move |req: Request<Incoming>| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(forward(client, upstream, req).await) }
        });
    let logged = logged(proxy);
    serve::serve(listener, serve::Limits::default(), move |peer| {
        let (logged, purger) = (logged.clone(), purger.clone());
        tower::service_fn(move |req: Request<Incoming>| {
            let (logged, purger) = (logged.clone(), purger.clone());
            async move {
                if req.method().as_str() == "PURGE" {
                    return Ok(purge(&purger, peer, &req).await);
                }
                let res = logged.oneshot(req).await?;
                Ok::<_, Infallible>(res.map(BodyExt::boxed))
            }
        })
    })
    .await
}

/// Answers a `PURGE` request (see the module documentation).
async fn purge<St: KvStore>(
    purger: &CachePurger<St>,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    if !peer.ip().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            "PURGE is for loopback clients\n".into(),
        );
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let purger = match header("purge-soft") {
        Some("?1") => purger.clone().soft(),
        _ => purger.clone(),
    };
    let url = match (req.uri().authority(), header("host")) {
        (Some(_), _) => req.uri().to_string(),
        (None, Some(host)) => format!("http://{host}{}", req.uri()),
        (None, None) => return text(StatusCode::BAD_REQUEST, "PURGE needs a host\n".into()),
    };
    let purged = match (header("purge-tag"), header("purge-match")) {
        (Some(tag), _) => purger.purge_tag(tag).await,
        (None, Some("prefix")) => purger.purge_prefix(&url).await,
        (None, _) => purger.purge_url(&url).await,
    };
    match purged {
        Ok(n) => text(StatusCode::OK, format!("purged {n}\n")),
        Err(StoreError::InvalidArgument(e)) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("purge failed: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Full::from(body).map_err(|never| match never {}).boxed());
    *res.status_mut() = status;
    res
}

/// `service`, with one debug line per request: method, target, status,
/// cache status and time taken.
fn logged<S, B>(
    service: S,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<B>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<B>, Infallible>> + Send,
> + Clone
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    tower::service_fn(move |req: Request<Incoming>| {
        let (method, target) = (req.method().clone(), req.uri().clone());
        let started = Instant::now();
        let response = service.clone().oneshot(req);
        async move {
            let res = response.await?;
            let cache_status = res
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok());
            tracing::debug!(
                %method,
                %target,
                status = res.status().as_u16(),
                cache_status = cache_status.unwrap_or("-"),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request"
            );
            Ok(res)
        }
    })
}

/// Sends the request on to the upstream as received (minus hop-by-hop
/// fields); an empty 502 when the upstream cannot be reached.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut parts = upstream.into_parts();
    parts.path_and_query = target.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    strip_hop_by_hop(req.headers_mut());
    // The HTTP version is per connection: answer in the client's.
    let version = req.version();
    let interim = req.extensions().get::<serve::interim::Interim>().cloned();
    let response = match interim {
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
        Some(interim) if version == Version::HTTP_11 => {
            let to_client = interim.clone();
            hyper::ext::on_informational(&mut req, move |res| {
                if res.status() != StatusCode::CONTINUE {
                    let mut headers = res.headers().clone();
                    strip_hop_by_hop(&mut headers);
                    to_client.send(res.status(), &headers);
                }
            });
            interim.around(client.request(req)).await
        }
        _ => client.request(req).await,
    };
    match response {
        Ok(mut res) => {
            strip_hop_by_hop(res.headers_mut());
            *res.version_mut() = version;
            res.map(BodyExt::boxed)
        }
        Err(e) => {
            eprintln!("upstream error: {e}");
            let mut res = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            res.extensions_mut().insert(OriginUnreachable);
            res
        }
    }
}
