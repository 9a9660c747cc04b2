//! A bounded load test of the demo over loopback: many concurrent clients
//! for a few seconds, then requests/s and p50/p99 latency per backend.
//!
//! `cargo run --release --example load [-- --clients 64 --seconds 5]`
//! `cargo run --release --example load --features redis -- --redis redis://127.0.0.1:6379/`
//! (or `--redis-cluster 127.0.0.1:7000,127.0.0.1:7001,…`)
//!
//! The demo's own limits (100 requests/min per client on `/api`) would
//! turn most of a run into 429s, so by default the load runs with limits it
//! stays under (one million per second per client): it measures the layers
//! admitting requests. `--demo-limits` keeps the demo's. `--bare` also runs
//! the same paths without any tower-kv layer (`demo::bare_app`) and prints
//! each backend's 2xx requests/s as a share of the bare server's.
//! `--paths /api/users,/` loads only the paths named.
//!
//! A soak: `--redis-only --seconds 600 --rate 50 --report 10` runs only the
//! Redis backend for up to 15 minutes, each client at most `--rate`
//! requests/s, and prints every `--report` seconds the requests answered in
//! that interval by class and this process's resident memory.
//!
//! The demo is started in this process on a free loopback port. Each client
//! connects from its own loopback address (127.0.0.2, 127.0.0.3, …), so the
//! demo's per-IP rate limits apply per client, as they would to real users;
//! 429s are counted apart. Traffic never leaves 127.0.0.0/8.

#[allow(dead_code)] // only `app` is used here
#[path = "demo.rs"]
mod demo;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo::redis_target::RedisTarget;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_kv::ratelimit::Quota;
use tower_kv::store::MemoryStore;

/// The paths each client cycles through, unless `--paths a,b` names others.
const PATHS: [&str; 3] = ["/api/users", "/", "/checkout"];

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clients: u32 = arg("--clients").map_or(Ok(64), |v| v.parse())?;
    let seconds: u64 = arg("--seconds").map_or(Ok(5), |v| v.parse())?;
    let paths: Arc<[String]> = match arg("--paths") {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => PATHS.iter().map(|p| p.to_string()).collect(),
    };
    let plan = Plan {
        paths,
        clients,
        duration: Duration::from_secs(seconds.clamp(1, 900)),
        rate: arg("--rate").map(|v| v.parse()).transpose()?,
        report: arg("--report")
            .map(|v| v.parse().map(Duration::from_secs))
            .transpose()?,
    };
    println!(
        "{clients} clients for {:?}, paths {:?}",
        plan.duration, plan.paths
    );
    let flag = |name: &str| std::env::args().any(|a| a == name);
    let bare = match flag("--bare") {
        true => Some(run("bare (no layers)", demo::bare_app(), &plan).await?),
        false => None,
    };
    let share = |ok_per_s: f64| {
        if let Some(bare) = bare {
            println!(
                "  = {:.0} % of the bare server's 2xx requests/s",
                100.0 * ok_per_s / bare
            );
        }
    };
    if !flag("--redis-only") {
        let app = demo::app_with(MemoryStore::new(), "load-test".into(), limits()).await;
        share(run("MemoryStore", app, &plan).await?);
    }
    if let Some(target) = RedisTarget::from_args() {
        share(redis(&target, &plan).await?);
    }
    Ok(())
}

/// The demo's limits with `--demo-limits`, else ones the load stays under.
fn limits() -> demo::RateLimits {
    if std::env::args().any(|a| a == "--demo-limits") {
        return demo::RateLimits::default();
    }
    let admit = || Quota::per_second(1_000_000);
    demo::RateLimits {
        default: admit(),
        api: admit(),
        login: admit(),
    }
}

/// How hard and how long to load the demo.
struct Plan {
    paths: Arc<[String]>,
    clients: u32,
    duration: Duration,
    /// At most this many requests per second per client.
    rate: Option<u32>,
    /// Print per-interval counts and memory this often.
    report: Option<Duration>,
}

/// Requests answered so far, by class.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
    failed: AtomicU64,
}

/// This process's resident memory in KiB (Linux), or 0.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Prints the counts of each interval until the deadline.
async fn report(counts: Arc<Counts>, every: Duration, deadline: Instant) {
    let started = Instant::now();
    let mut last = [0u64; 4];
    while Instant::now() < deadline {
        tokio::time::sleep(every).await;
        let now = [&counts.ok, &counts.limited, &counts.other, &counts.failed]
            .map(|c| c.load(Ordering::Relaxed));
        let delta: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        println!(
            "t={:>4}s ok={} rate-limited={} other-status={} no-response={} rss={} KiB",
            started.elapsed().as_secs(),
            delta[0],
            delta[1],
            delta[2],
            delta[3],
            rss_kib()
        );
        last = now;
    }
}

#[cfg(feature = "redis")]
async fn redis(target: &RedisTarget, plan: &Plan) -> Result<f64, Box<dyn std::error::Error>> {
    let prefix = format!("tower-kv-load-{}:", rand::random::<u32>());
    let store = target.builder().prefix(prefix).connect().await?;
    let app = demo::app_with(store, "load-test".into(), limits()).await;
    run("RedisStore", app, plan).await
}

#[cfg(not(feature = "redis"))]
async fn redis(_: &RedisTarget, _: &Plan) -> Result<f64, Box<dyn std::error::Error>> {
    Err("--redis needs `--features redis`".into())
}

/// Loads `router` and prints what it answered; returns its 2xx requests/s.
async fn run(
    backend: &str,
    router: axum::Router,
    plan: &Plan,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (clients, duration) = (plan.clients, plan.duration);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let deadline = Instant::now() + duration;
    let counts = Arc::new(Counts::default());
    if let Some(every) = plan.report {
        tokio::spawn(report(counts.clone(), every, deadline));
    }
    let pause = plan.rate.map(|r| Duration::from_secs(1) / r.max(1));
    let soak = plan.report.is_some();
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let mut connector = HttpConnector::new();
            let source = Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8);
            connector.set_local_address(Some(IpAddr::V4(source)));
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build(connector);
            let counts = counts.clone();
            let paths = plan.paths.clone();
            tokio::spawn(async move {
                let (mut latencies, mut ok, mut limited, mut other) =
                    (Vec::new(), 0u64, 0u64, 0u64);
                let mut n = i as usize;
                while Instant::now() < deadline {
                    if let Some(pause) = pause {
                        tokio::time::sleep(pause).await;
                    }
                    let uri = format!("http://{addr}{}", paths[n % paths.len()]);
                    n += 1;
                    let started = Instant::now();
                    let Ok(res) = client
                        .request(Request::get(uri).body(Empty::new()).unwrap())
                        .await
                    else {
                        other += 1;
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let status = res.status();
                    let _ = res.into_body().collect().await;
                    // A soak keeps no per-request state, so its memory
                    // readings are the server's, not this client's.
                    if !soak {
                        latencies.push(started.elapsed());
                    }
                    let class = match status {
                        StatusCode::TOO_MANY_REQUESTS => &mut limited,
                        s if s.is_success() => &mut ok,
                        _ => &mut other,
                    };
                    *class += 1;
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => &counts.limited,
                        s if s.is_success() => &counts.ok,
                        _ => &counts.other,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
                (latencies, ok, limited, other)
            })
        })
        .collect();
    let (mut latencies, mut ok, mut limited, mut other) = (Vec::new(), 0, 0, 0);
    for worker in workers {
        let (l, o, r, e) = worker.await?;
        latencies.extend(l);
        ok += o;
        limited += r;
        other += e;
    }
    server.abort();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let total = (ok + limited + other) as f64;
    let latency = match latencies.is_empty() {
        true => String::new(),
        false => format!(", p50 {:?}, p99 {:?}", at(0.50), at(0.99)),
    };
    println!(
        "{backend}: {:.0} requests/s{latency} ({ok} ok, {limited} rate-limited, {other} other)",
        total / duration.as_secs_f64(),
    );
    Ok(ok as f64 / duration.as_secs_f64())
}
