//! Per-request cost of rate limiting through a ready service stack with a
//! trivial inner service: tower-kv (MemoryStore) vs tower_governor, same
//! quota (GCRA, keyed by peer IP, never exhausted), same run.
//!
//! With `--all-features`, also `tower_kv_redis`: the same stack on a
//! RedisStore (private `redis-server` on a unix socket), one request at a
//! time, i.e. the decision latency (one `EVALSHA` round trip per request).
//!
//! `cargo bench --bench ratelimit --all-features`
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod common;

use common::ready;
use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use tower::{Service, ServiceBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::store::MemoryStore;

async fn inner(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

fn peers(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i as u32);
            SocketAddr::new(IpAddr::V4(ip), 40_000)
        })
        .collect()
}

/// A request from `peer`, as axum serves it: tower_governor's
/// `PeerIpKeyExtractor` reads only `ConnectInfo` (without it every governor
/// request failed key extraction and measured its error path).
fn request(peer: SocketAddr) -> Request<Body> {
    let mut req = Request::get("/api/users").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn run<S, B>(svc: &mut S, peers: &[SocketAddr], i: &mut usize) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    *i = (*i + 1) % peers.len();
    let res = ready(svc.call(request(peers[*i]))).unwrap();
    black_box(res)
}

fn ratelimit(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit");
    for (param, keys) in [("one_key", 1), ("10k_keys", 10_000)] {
        let peers = peers(keys);

        let mut kv = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(MemoryStore::new(), Identity::PeerIp)
                    .default_limit(Quota::per_second(1_000_000).burst(u32::MAX)),
            )
            .service_fn(inner);
        let mut i = 0;
        // Measure the real decision path: allowed, by the store, with headers.
        let res = run(&mut kv, &peers, &mut i);
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("ratelimit"), "the store decided");
        group.bench_function(BenchmarkId::new("tower_kv", param), |b| {
            b.iter(|| run(&mut kv, &peers, &mut i))
        });

        // Same GCRA quota in governor terms: one cell per microsecond, a huge
        // burst; with its headers on, as tower-kv always sends its own.
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1000)
            .burst_size(u32::MAX)
            .use_headers()
            .finish()
            .unwrap();
        let mut governor = ServiceBuilder::new()
            .layer(GovernorLayer::new(config))
            .service_fn(inner);
        let res = run(&mut governor, &peers, &mut i);
        assert_eq!(res.status(), 200, "governor decided (not its error path)");
        assert!(res.headers().contains_key("x-ratelimit-remaining"));
        group.bench_function(BenchmarkId::new("tower_governor", param), |b| {
            b.iter(|| run(&mut governor, &peers, &mut i))
        });

        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1000)
            .burst_size(u32::MAX)
            .finish()
            .unwrap();
        let mut governor = ServiceBuilder::new()
            .layer(GovernorLayer::new(config))
            .service_fn(inner);
        let res = run(&mut governor, &peers, &mut i);
        assert_eq!(res.status(), 200, "governor decided (not its error path)");
        group.bench_function(BenchmarkId::new("tower_governor_no_headers", param), |b| {
            b.iter(|| run(&mut governor, &peers, &mut i))
        });
    }
    redis(&mut group);
    group.finish();
}

#[cfg(feature = "redis")]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
fn redis(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use tower::ServiceExt;
    use tower_kv::store::RedisStore;

    let Some(server) = support::RedisServer::start() else {
        eprintln!("redis-server not found: skipping tower_kv_redis");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async {
        RedisStore::builder(server.url())
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(store, Identity::PeerIp)
                .default_limit(Quota::per_second(1_000_000).burst(u32::MAX)),
        )
        .service_fn(inner);
    for (param, keys) in [("one_key", 1), ("10k_keys", 10_000)] {
        let peers = peers(keys);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("tower_kv_redis", param), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % peers.len();
                let req = request(peers[i]);
                let svc = svc.clone();
                async move {
                    let res = svc.oneshot(req).await.unwrap();
                    assert!(res.headers().contains_key("ratelimit"));
                }
            })
        });
    }
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = ratelimit
}
criterion_main!(benches);
