//! Heap allocations per request, each layer's hot path beside the peer crate
//! doing the same job, counted by `dhat`'s allocator over 1,000 requests
//! after a warm-up. Unlike timings, the counts do not depend on the machine
//! or its load: a change that adds an allocation shows here on any machine.
//!
//! Requests are built before counting (both contestants get the same ones);
//! the handler's own response is in every row (see `bare`). Before counting,
//! each contestant is checked to do the work: status, headers, stored state.
//!
//! `cargo run --release --example allocations`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::abtest::AbTestLayer;
use tower_kv::cache::CacheLayer;
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer};
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::store::{KvStore, MemoryStore, PutOptions};
use tower_sessions::SessionManagerLayer;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUESTS: u64 = 1_000;

type Reply = Result<Response<Body>, Infallible>;

async fn empty(_: Request<Body>) -> Reply {
    Ok(Response::new(Body::empty()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    println!("| path | contestant | allocations / request | bytes / request |");
    println!("|---|---|---|---|");
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

    let bare = ServiceBuilder::new().service_fn(empty);
    count("bare handler", "—", bare, || get("/"), |_| {}).await;

    rate_limits().await;
    sessions().await;

    let flags = FeatureFlags::new(MemoryStore::new());
    flags.replace_json(br#"{"on": true}"#).await.unwrap();
    flags.refresh().await.unwrap();
    let layer = FeatureFlagsLayer::new(flags, Identity::header("x-user"));
    let user = || {
        let mut req = get("/beta");
        req.headers_mut()
            .insert("x-user", "user-42".parse().unwrap());
        req
    };
    for (gate, status) in [("on", StatusCode::OK), ("off", StatusCode::NOT_FOUND)] {
        let svc = ServiceBuilder::new()
            .layer(layer.gate(gate))
            .service_fn(empty);
        let path = format!("flag gate, flag {gate}");
        count(&path, "tower_kv", svc, user, |res| {
            assert_eq!(res.status(), status)
        })
        .await;
    }

    let store = MemoryStore::new();
    let config = br#"{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}"#;
    let options = PutOptions::new();
    store
        .put("test:checkout:config", Bytes::from_static(config), options)
        .await
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(AbTestLayer::new(store, Identity::header("x-user")).test("checkout"))
        .service_fn({
            let seen = seen.clone();
            move |req: Request<Body>| {
                if req.headers().contains_key("x-variant-checkout") {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                empty(req)
            }
        });
    count("A/B, assigned user", "tower_kv", svc, user, |_| {
        assert!(
            seen.swap(0, Ordering::Relaxed) > 0,
            "a variant header arrived"
        )
    })
    .await;

    let origin = ServiceBuilder::new().service_fn(|_: Request<Body>| async {
        let res = Response::builder().header("cache-control", "max-age=3600");
        Ok::<_, Infallible>(res.body(Body::from(vec![b'x'; 1024])).unwrap())
    });
    let svc = ServiceBuilder::new()
        .layer(CacheLayer::new(MemoryStore::new()))
        .service(origin);
    let hit = || get("http://example.test/users");
    svc.clone().oneshot(hit()).await.unwrap(); // stored: what follows hits
    count("cache hit, 1 KiB", "tower_kv", svc, hit, |res| {
        let status = res.headers()["cache-status"].to_str().unwrap();
        assert!(status.contains("hit"), "{status}");
    })
    .await;
}

/// One key, the same GCRA quota, headers on both sides.
async fn rate_limits() {
    let peer = SocketAddr::from(([10, 0, 0, 1], 40_000));
    let from_peer = || {
        let mut req = Request::get("/api/users").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    };
    let quota = Quota::per_second(1_000_000).burst(u32::MAX);
    let kv = ServiceBuilder::new()
        .layer(RateLimitLayer::new(MemoryStore::new(), Identity::PeerIp).default_limit(quota))
        .service_fn(empty);
    count("rate limit, one client", "tower_kv", kv, from_peer, |res| {
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key("ratelimit"));
    })
    .await;
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1000)
        .burst_size(u32::MAX)
        .use_headers()
        .finish()
        .unwrap();
    let governor = ServiceBuilder::new()
        .layer(tower_governor::GovernorLayer::new(config))
        .service_fn(empty);
    count(
        "rate limit, one client",
        "tower_governor",
        governor,
        from_peer,
        |res| {
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.headers().contains_key("x-ratelimit-remaining"));
        },
    )
    .await;
}

/// A handler for sessions of type `$session` that changes the session on a
/// first request (`x-first`) and in `write` mode, reads it in `read` mode.
macro_rules! session_handler {
    ($session:ty, $mode:expr, $written:expr) => {{
        let (mode, written) = ($mode, $written.clone());
        move |req: Request<Body>| {
            let session = req.extensions().get::<$session>().cloned();
            let written = written.clone();
            let first = req.headers().contains_key("x-first");
            async move {
                let session = session.expect("the session layer is outside");
                match (first, mode) {
                    (true, _) | (_, "write") => {
                        let n = written.fetch_add(1, Ordering::Relaxed);
                        session.insert("n", n).await.unwrap();
                    }
                    (_, "read") => assert!(session.get::<u64>("n").await.unwrap().is_some()),
                    _ => {}
                }
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        }
    }};
}

/// A handler that ignores, reads or changes the session a first request created.
async fn sessions() {
    for mode in ["untouched", "read", "write"] {
        let path = format!("session, {mode}");
        let written = Arc::new(AtomicU64::new(0));
        let layer = tower_kv::session::SessionLayer::new(MemoryStore::new());
        let handler = session_handler!(tower_kv::session::Session, mode, written);
        let svc = ServiceBuilder::new().layer(layer).service_fn(handler);
        let cookie = first_cookie(svc.clone()).await;
        count(&path, "tower_kv", svc, with_cookie(&cookie), answered_ok).await;

        let layer = SessionManagerLayer::new(tower_sessions::MemoryStore::default());
        let handler = session_handler!(tower_sessions::Session, mode, written);
        let svc = ServiceBuilder::new().layer(layer).service_fn(handler);
        let cookie = first_cookie(svc.clone()).await;
        count(
            &path,
            "tower_sessions",
            svc,
            with_cookie(&cookie),
            answered_ok,
        )
        .await;
    }
}

fn answered_ok<B>(res: &Response<B>) {
    assert_eq!(res.status(), StatusCode::OK);
}

/// The session cookie a first request (which writes the session) gets.
async fn first_cookie<S, B>(svc: S) -> String
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    // The first request of every mode writes, so "read" finds a value.
    req.headers_mut().insert("x-first", "1".parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn with_cookie(cookie: &str) -> impl Fn() -> Request<Body> + '_ {
    move || {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req
    }
}

/// Prints the allocations `svc` makes per request over [`REQUESTS`]
/// requests from `request`, after a warm-up whose responses `check` checks.
async fn count<S, B>(
    path: &str,
    contestant: &str,
    mut svc: S,
    request: impl Fn() -> Request<Body>,
    check: impl Fn(&Response<B>),
) where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    for _ in 0..10 {
        let res = svc.ready().await.unwrap().call(request()).await.unwrap();
        check(&res);
    }
    let requests: Vec<_> = (0..REQUESTS).map(|_| request()).collect();
    let before = dhat::HeapStats::get();
    for req in requests {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        drop(res);
    }
    let after = dhat::HeapStats::get();
    let per = |a: u64, b: u64| (a - b) as f64 / REQUESTS as f64;
    println!(
        "| {path} | {contestant} | {:.1} | {:.0} |",
        per(after.total_blocks, before.total_blocks),
        per(after.total_bytes, before.total_bytes),
    );
}
