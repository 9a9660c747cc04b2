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
use axum::routing::get;
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_kv::store::MemoryStore;

/// A request from a rotating client address, so the demo's per-IP rate
/// limits never turn the measurement into one of 429s.
fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (1 << 20);
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let peer = SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 50_000));
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn bare() -> Router {
    Router::new()
        .route(
            "/api/users",
            get(|| async {
                Json(serde_json::json!({"users": ["ada", "grace", "linus"], "generation": 1}))
            }),
        )
        .route(
            "/me",
            get(|| async { Json(serde_json::json!({"user_id": "ada"})) }),
        )
        .route(
            "/checkout",
            get(|| async { Json(serde_json::json!({"variant": "control"})) }),
        )
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(demo::app(MemoryStore::new(), "secret".into()));
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
    let bare = bare();
    let mut group = c.benchmark_group("stack");
    for (param, path, cookie) in [
        ("cache_hit", "/api/users", None),
        ("session_read", "/me", Some(session.as_str())),
        ("ab_assigned", "/checkout", Some(session.as_str())),
    ] {
        // Warm: the cache entry, the assignment.
        let warm = rt
            .block_on(app.clone().oneshot(request(path, cookie)))
            .unwrap();
        assert_eq!(warm.status(), StatusCode::OK, "{path}");
        group.bench_function(BenchmarkId::new("full_stack", param), |b| {
            b.to_async(&rt)
                .iter(|| app.clone().oneshot(request(path, cookie)))
        });
        group.bench_function(BenchmarkId::new("bare", param), |b| {
            b.to_async(&rt)
                .iter(|| bare.clone().oneshot(request(path, cookie)))
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
