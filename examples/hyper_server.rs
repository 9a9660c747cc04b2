//! The tower-kv layers on a plain hyper 1 server — no framework: rate
//! limiting, sessions, feature flags, an A/B test and the response cache
//! around one `service_fn`.
//!
//! `cargo run --example hyper_server` then `curl -i http://127.0.0.1:3001/`

use std::convert::Infallible;
#[path = "common/serve.rs"]
mod serve;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{ServiceBuilder, ServiceExt};
use tower_kv::abtest::{AbTestLayer, Variants};
use tower_kv::cache::CacheLayer;
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flag, Flags};
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::session::{Session, SessionLayer};
use tower_kv::store::MemoryStore;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let flags = req.extensions().get::<Flags>().cloned();
    let session = req.extensions().get::<Session>().cloned();
    let variant = req
        .extensions()
        .get::<Variants>()
        .and_then(|v| v.get("layout").map(str::to_owned));
    let (status, cache_control, body) = match req.uri().path() {
        "/" => {
            let beta = flags.is_some_and(|f| f.is_enabled("beta_feature"));
            (
                StatusCode::OK,
                "no-store",
                if beta {
                    "beta".to_owned()
                } else {
                    "standard".to_owned()
                },
            )
        }
        "/api/users" => (
            StatusCode::OK,
            "public, max-age=300",
            r#"{"users":["ada","grace"]}"#.to_owned(),
        ),
        "/visits" => {
            let session = session.expect("SessionLayer");
            let visits: u64 = session.get("visits").await.ok().flatten().unwrap_or(0) + 1;
            let _ = session.insert("visits", visits).await;
            (
                StatusCode::OK,
                "no-store",
                format!("visits={visits} layout={}", variant.unwrap_or_default()),
            )
        }
        _ => (StatusCode::NOT_FOUND, "no-store", String::new()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert("cache-control", cache_control.parse().unwrap());
    Ok(res)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let flags = FeatureFlags::new(store.clone());
    flags.set_flag("beta_feature", Flag::Bool(false)).await?;
    let abtest = AbTestLayer::new(store.clone(), Identity::User).test("layout");
    abtest
        .set_config(
            "layout",
            br#"{"variants": ["grid", "list"], "weights": [1, 1]}"#,
        )
        .await?;
    let service = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(store.clone(), Identity::PeerIp)
                .default_limit(Quota::per_minute(600)),
        )
        .layer(SessionLayer::new(store.clone()).expose_user())
        .layer(FeatureFlagsLayer::new(flags, Identity::User))
        .layer(abtest)
        .layer(CacheLayer::new(store))
        .service_fn(handle);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("hyper + tower-kv on http://{}", listener.local_addr()?);
    // Plain hyper has no ConnectInfo: give every request its peer address.
    serve::serve(listener, serve::Limits::default(), |peer: SocketAddr| {
        service
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                req
            })
    })
    .await?;
    Ok(())
}
