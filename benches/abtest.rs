//! Per-request cost of the A/B layer on MemoryStore with a warm config:
//! `assigned_user` (the sticky assignment exists: one store read) and
//! `new_user` (a first request: a read and an insert-if-absent), plus the
//! same trivial service without the layer (`bare`).
//!
//! `cargo bench --bench abtest`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::abtest::AbTestLayer;
use tower_kv::identity::Identity;
use tower_kv::store::{KvStore, MemoryStore, PutOptions};

async fn inner(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

fn request(user: &str) -> Request<Body> {
    Request::get("/checkout")
        .header("x-user", user)
        .body(Body::empty())
        .unwrap()
}

fn abtest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let config = br#"{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}"#;
    rt.block_on(store.put(
        "test:checkout:config",
        Bytes::from_static(config),
        PutOptions::new(),
    ))
    .unwrap();
    let layer = AbTestLayer::new(store, Identity::header("x-user")).test("checkout");
    // Before timing: the layer assigns each request a variant header.
    let checked = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|req: Request<Body>| {
            assert!(req.headers().contains_key("x-variant-checkout"));
            inner(req)
        });
    for user in ["user-1", "new-user"] {
        rt.block_on(checked.clone().oneshot(request(user))).unwrap();
    }
    let svc = ServiceBuilder::new().layer(layer).service_fn(inner);
    let mut group = c.benchmark_group("abtest");

    let bare = ServiceBuilder::new().service_fn(inner);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = bare;
            async move { svc.call(request("user-1")).await.unwrap() }
        })
    });

    rt.block_on(svc.clone().call(request("user-1"))).unwrap();
    group.bench_function("assigned_user", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = svc.clone();
            async move { svc.call(request("user-1")).await.unwrap() }
        })
    });

    let next = AtomicU64::new(0);
    group.bench_function("new_user", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = svc.clone();
            let user = format!("new-{}", next.fetch_add(1, Ordering::Relaxed));
            async move { svc.call(request(&user)).await.unwrap() }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = abtest
}
criterion_main!(benches);
