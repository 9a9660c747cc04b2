//! Per-request time of the demo's whole middleware stack (MemoryStore) vs
//! the same responses from bare handlers: `full_stack` and `bare`, for a
//! cache hit (`GET /api/users`), a session read (`GET /me` signed in) and an
//! assigned A/B visitor (`GET /checkout` signed in).
//!
//! `cargo bench --bench stack`
#![allow(missing_docs)] // criterion_group! generates undocumented items

#[allow(dead_code)] // the benchmark uses the app, not the example's main
#[path = "../examples/demo.rs"]
mod demo;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_kv::ratelimit::Quota;
use tower_kv::store::MemoryStore;

/// A request from one of 10,000 client addresses in turn: a steady
/// population of clients whose rate-limit buckets exist (the limits admit
/// every request of a run, however fast the machine; each iteration
/// asserts a 200, so a refused request fails the run instead of timing it).
/// The cost of a first request from a new client is `benches/ratelimit.rs`
/// and `examples/rate_memory.rs`.
fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let peer = SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 50_000));
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// Awaits a response and checks it is the handler's 200 (not a 429 or an
/// error): a run that stopped doing the work would fail, not time it.
async fn ok(
    response: impl std::future::Future<Output = Result<http::Response<Body>, std::convert::Infallible>>,
) -> http::Response<Body> {
    let res = response.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The demo's layers and routes, with quotas no run reaches (the demo's
    // own, 100 a minute per client on `/api`, refuse a fast machine's run).
    let admit = || Quota::per_second(1_000_000);
    let limits = demo::RateLimits {
        default: admit(),
        api: admit(),
        login: admit(),
    };
    let app = rt.block_on(demo::app_with(MemoryStore::new(), "secret".into(), limits));
    // Sign in once; the session cookie is reused.
    let session = rt.block_on(async {
        let mut login = Request::post("/login")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"user_id":"ada"}"#))
            .unwrap();
        login
            .extensions_mut()
            .insert(ConnectInfo("203.0.113.8:1".parse::<SocketAddr>().unwrap()));
        let res = app.clone().oneshot(login).await.unwrap();
        let set = res.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    });
    let bare = demo::bare_app();
    let mut group = c.benchmark_group("stack");
    for (param, path, cookie) in [
        ("cache_hit", "/api/users", None),
        ("session_read", "/me", Some(session.as_str())),
        ("ab_assigned", "/checkout", Some(session.as_str())),
        // A first visit: a new visitor id and cookie on every request.
        ("ab_new_visitor", "/checkout", None),
    ] {
        // Warm: the cache entry, the assignment.
        let warm = rt
            .block_on(app.clone().oneshot(request(path, cookie)))
            .unwrap();
        assert_eq!(warm.status(), StatusCode::OK, "{path}");
        // Each path does its layer's work: served from the cache, signed
        // in (else 401), assigned a variant.
        let again = rt.block_on(ok(app.clone().oneshot(request(path, cookie))));
        let header = |name: &str| {
            again
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        match param {
            "cache_hit" => assert!(header("cache-status").unwrap().contains("hit")),
            "ab_assigned" => assert!(header("x-variant-checkout").is_some()),
            "ab_new_visitor" => {
                assert!(header("x-variant-checkout").is_some());
                assert!(header("set-cookie").is_some(), "a visitor cookie");
            }
            _ => {}
        }
        group.bench_function(BenchmarkId::new("full_stack", param), |b| {
            b.to_async(&rt)
                .iter(|| ok(app.clone().oneshot(request(path, cookie))))
        });
        group.bench_function(BenchmarkId::new("bare", param), |b| {
            b.to_async(&rt)
                .iter(|| ok(bare.clone().oneshot(request(path, cookie))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = stack
}
criterion_main!(benches);
