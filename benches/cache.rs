//! Per-request cost of the response cache on MemoryStore: a hit
//! (`tower_kv_hit`), a miss that stores (`tower_kv_miss`, a new URL each
//! time) and the same inner service without the layer (`no_cache`), for
//! 1 KiB and 64 KiB bodies. The inner service does no work, so a hit's
//! saving is whatever real work the origin would do.
//!
//! `cargo bench --bench cache`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::cache::CacheLayer;
use tower_kv::store::MemoryStore;

fn origin(
    size: usize,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    let body = Bytes::from(vec![b'x'; size]);
    tower::service_fn(move |_: Request<()>| {
        let body = body.clone();
        async move {
            let res = Response::builder()
                .header("cache-control", "max-age=3600")
                .header("content-length", body.len())
                .header("content-type", "application/json");
            Ok::<_, Infallible>(res.body(Full::new(body)).unwrap())
        }
    })
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("cache");
    for (param, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let bare = origin(size);
        group.bench_function(BenchmarkId::new("no_cache", param), |b| {
            b.to_async(&rt).iter(|| {
                let svc = bare.clone();
                async move {
                    let res = svc
                        .oneshot(Request::get("http://example.test/users").body(()).unwrap())
                        .await
                        .unwrap();
                    res.into_body().collect().await.unwrap().to_bytes()
                }
            })
        });

        let cached = ServiceBuilder::new()
            .layer(CacheLayer::new(MemoryStore::new()))
            .service(origin(size));
        rt.block_on(
            cached
                .clone()
                .oneshot(Request::get("http://example.test/users").body(()).unwrap()),
        )
        .unwrap();
        group.bench_function(BenchmarkId::new("tower_kv_hit", param), |b| {
            b.to_async(&rt).iter(|| {
                let svc = cached.clone();
                async move {
                    let res = svc
                        .oneshot(Request::get("http://example.test/users").body(()).unwrap())
                        .await
                        .unwrap();
                    assert!(res.headers()["cache-status"]
                        .to_str()
                        .unwrap()
                        .contains("hit"));
                    res.into_body().collect().await.unwrap().to_bytes()
                }
            })
        });

        let next = AtomicU64::new(0);
        group.bench_function(BenchmarkId::new("tower_kv_miss", param), |b| {
            b.to_async(&rt).iter(|| {
                let svc = cached.clone();
                let uri = format!(
                    "http://example.test/users?page={}",
                    next.fetch_add(1, Ordering::Relaxed)
                );
                async move {
                    let res = svc
                        .oneshot(Request::get(uri).body(()).unwrap())
                        .await
                        .unwrap();
                    res.into_body().collect().await.unwrap().to_bytes()
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = cache
}
criterion_main!(benches);
