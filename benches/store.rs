//! Benchmarks of the store operations: MemoryStore on 1 and 2 threads, RedisStore
//! (one node, and a three-master Redis Cluster) sequential and with 64
//! operations in flight.
//!
//! `cargo bench --bench store --all-features`
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod common;

use common::ready;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower_kv::store::{Expiration, GcraRate, KvStore, MemoryStore, PutOptions, RateRequest};

#[cfg(feature = "redis")]
#[path = "../tests/support/mod.rs"]
mod support;

const KEYS: usize = 10_000;

#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
    Increment,
    Gcra,
}

impl Op {
    const ALL: [(Op, &'static str); 4] = [
        (Op::Get, "get"),
        (Op::Put, "put"),
        (Op::Increment, "increment"),
        (Op::Gcra, "gcra"),
    ];

    async fn run<S: KvStore>(self, store: &S, key: &str, value: &Bytes) {
        match self {
            Op::Get => drop(black_box(store.get(key).await.unwrap())),
            Op::Put => drop(
                store
                    .put(key, value.clone(), PutOptions::new())
                    .await
                    .unwrap(),
            ),
            Op::Increment => drop(store.increment(key, 1, Expiration::Never).await.unwrap()),
            Op::Gcra => {
                // Generous enough that no bucket is denied or expires during a run.
                let rate = GcraRate::per(1000, Duration::from_secs(3600));
                let req = [RateRequest::new(key, rate, 1)];
                drop(black_box(store.rate_limit(&req).await.unwrap()));
            }
        }
    }
}

fn keys(prefix: &str) -> Vec<String> {
    (0..KEYS).map(|i| format!("{prefix}:{i}")).collect()
}

async fn seed<S: KvStore>(store: &S, keys: &[String]) {
    for k in keys {
        store
            .put(
                &format!("{k}:get"),
                Bytes::from_static(b"v"),
                PutOptions::new(),
            )
            .await
            .unwrap();
    }
}

fn key_for(op: Op, keys: &[String], i: usize) -> String {
    let base = &keys[i % keys.len()];
    match op {
        Op::Get => format!("{base}:get"),
        _ => base.clone(),
    }
}

fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_memory");
    let value = Bytes::from(vec![7u8; 128]);
    for (op, name) in Op::ALL {
        for threads in [1usize, 2] {
            let store = MemoryStore::new();
            let keys = keys(name);
            ready(seed(&store, &keys));
            let keys: Vec<Vec<String>> = (0..threads)
                // Threads walk the keys from different offsets, as unrelated clients would.
                .map(|t| {
                    (0..KEYS)
                        .map(|i| key_for(op, &keys, i + t * KEYS / 2))
                        .collect()
                })
                .collect();
            let id = BenchmarkId::new(name, format!("{threads}_thread"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for keys in &keys {
                            let (store, value) = (&store, &value);
                            s.spawn(move || {
                                for i in 0..per_thread as usize {
                                    ready(op.run(store, &keys[i % KEYS], value));
                                }
                            });
                        }
                    });
                    // Wall time per operation: with 2 threads, inverse throughput.
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use tower_kv::store::RedisStore;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = |builder: tower_kv::store::RedisStoreBuilder| {
        rt.block_on(async {
            let store = builder
                .prefix("bench:")
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .unwrap();
            seed(&store, &keys("get")).await;
            store
        })
    };
    // One node on a unix socket; a three-master cluster on loopback TCP.
    match support::RedisServer::start() {
        Some(server) => {
            let store = connect(RedisStore::builder(server.url()));
            redis_group(c, "store_redis", &rt, store);
            plain_get(c, &rt, &server.url());
        }
        None => eprintln!("redis-server not found: skipping the RedisStore benchmarks"),
    }
    match support::RedisCluster::start(false) {
        Some(cluster) => {
            let store = connect(RedisStore::cluster_builder(cluster.urls()));
            redis_group(c, "store_redis_cluster", &rt, store);
        }
        None => eprintln!("no Redis Cluster: skipping its benchmarks"),
    }
}

/// Runs operations `0..iters` with 64 in flight; the wall time.
#[cfg(feature = "redis")]
async fn in_flight<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let workers: Vec<_> = (0..64u64)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i < iters {
                    op(i).await;
                    i += 64;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    start.elapsed()
}

/// The baseline: a plain `GET` on one multiplexed connection to the same
/// server — one round trip and no script, the floor for every operation.
#[cfg(feature = "redis")]
fn plain_get(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    let conn = rt.block_on(async {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg("plain")
            .arg(vec![7u8; 128])
            .query_async(&mut conn)
            .await
            .unwrap();
        conn
    });
    let get = |mut conn: redis::aio::MultiplexedConnection| async move {
        let value: Vec<u8> = redis::cmd("GET")
            .arg("plain")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value.len(), 128, "the baseline read the value");
    };
    let mut group = c.benchmark_group("store_redis");
    group.bench_function(BenchmarkId::new("plain_get", "sequential"), |b| {
        b.to_async(rt).iter(|| get(conn.clone()))
    });
    group.bench_function(BenchmarkId::new("plain_get", "64_in_flight"), |b| {
        b.to_async(rt).iter_custom(|iters| {
            let conn = conn.clone();
            in_flight(iters, move |_| get(conn.clone()))
        })
    });
    group.finish();
}

#[cfg(feature = "redis")]
fn redis_group(
    c: &mut Criterion,
    group_name: &str,
    rt: &tokio::runtime::Runtime,
    store: tower_kv::store::RedisStore,
) {
    let value = Bytes::from(vec![7u8; 128]);
    let mut group = c.benchmark_group(group_name);
    for (op, name) in Op::ALL {
        let names = keys(name);
        let keys: std::sync::Arc<[String]> = (0..KEYS).map(|i| key_for(op, &names, i)).collect();
        group.bench_function(BenchmarkId::new(name, "sequential"), |b| {
            let mut i = 0;
            b.to_async(rt).iter(|| {
                i += 1;
                let key = &keys[i % KEYS];
                op.run(&store, key, &value)
            })
        });
        group.bench_function(BenchmarkId::new(name, "64_in_flight"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                in_flight(iters, move |i| {
                    let (store, keys, value) = (store.clone(), keys.clone(), value.clone());
                    async move { op.run(&store, &keys[i as usize % KEYS], &value).await }
                })
            })
        });
    }
    group.finish();
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    eprintln!("built without feature `redis`: skipping the RedisStore benchmarks");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = memory, redis
}
criterion_main!(benches);
