//! Memory per rate-limited client: sends one request from each of N distinct
//! peer addresses (default 1,000,000) through tower-kv's `RateLimitLayer` on
//! `MemoryStore` and through tower_governor's keyed limiter, each in its own
//! child process, and prints the resident-set growth per key and the time
//! to create the keys.
//!
//! `cargo run --release --example rate_memory [-- --keys N]` (Linux: reads
//! `/proc/self/statm`).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::store::MemoryStore;

const CONTESTANTS: [&str; 2] = ["tower_kv", "tower_governor"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let keys: u32 = value_of("--keys").map_or(1_000_000, |k| k.parse().expect("--keys N"));
    if let Some(contestant) = value_of("--contestant") {
        measure(&contestant, keys);
        return;
    }
    println!("{keys} distinct rate-limit keys, one request each:");
    let me = std::env::current_exe().expect("own path");
    for contestant in CONTESTANTS {
        let status = Command::new(&me)
            .args(["--contestant", contestant, "--keys", &keys.to_string()])
            .status()
            .expect("child runs");
        assert!(status.success(), "{contestant} failed");
    }
}

/// Runs `keys` first requests through `contestant` and prints its growth.
fn measure(contestant: &str, keys: u32) {
    let before = resident_bytes();
    let start = Instant::now();
    match contestant {
        "tower_kv" => {
            let layer = RateLimitLayer::new(MemoryStore::new(), Identity::PeerIp)
                .default_limit(Quota::per_minute(100));
            let svc = ServiceBuilder::new().layer(layer).service_fn(ok);
            admit_all(svc, keys, "ratelimit");
        }
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .per_millisecond(600)
                .burst_size(100)
                .use_headers()
                .finish()
                .expect("valid quota");
            let svc = ServiceBuilder::new()
                .layer(GovernorLayer::new(config))
                .service_fn(ok);
            admit_all(svc, keys, "x-ratelimit-remaining");
        }
        other => panic!("unknown contestant {other}"),
    }
    let elapsed = start.elapsed();
    let grown = resident_bytes().saturating_sub(before);
    println!(
        "  {contestant:<15} {:>6.1} bytes/key (RSS +{:.1} MiB), {:.2} s to create",
        grown as f64 / f64::from(keys),
        grown as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64()
    );
}

/// One request from each of `keys` addresses, each asserted admitted with
/// the limiter's `header`: a contestant that failed would measure nothing.
/// The service stays alive (holding every key) until the caller measures.
fn admit_all<S, B>(mut svc: S, keys: u32, header: &str)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..keys {
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40_000);
        let mut req = Request::get("/api/users").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let res = ready(svc.call(req)).expect("service answers");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key(header), "{header} missing");
    }
    // Keep the limiter (and its keys) resident while the caller reads RSS.
    std::mem::forget(svc);
}

async fn ok(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

/// Completes a future that never waits (both limiters decide in memory).
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected to complete without waiting"),
    }
}

/// This process's resident set in bytes (Linux `/proc/self/statm`, 4 KiB pages).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident field");
    pages * 4096
}
