//! A bounded load test of the demo over loopback: many concurrent clients
//! for a few seconds, then requests/s and p50/p99 latency per backend.
//!
//! `cargo run --release --example load [-- --clients 64 --seconds 5]`
//! `cargo run --release --example load --features redis -- --redis redis://127.0.0.1:6379/`
//!
//! The demo is started in this process on a free loopback port. Each client
//! connects from its own loopback address (127.0.0.2, 127.0.0.3, …), so the
//! demo's per-IP rate limits apply per client, as they would to real users;
//! 429s are counted apart. Traffic never leaves 127.0.0.0/8.

#[allow(dead_code)] // only `app` is used here
#[path = "demo.rs"]
mod demo;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_kv::store::{KvStore, MemoryStore};

const PATHS: [&str; 3] = ["/api/users", "/", "/checkout"];

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clients: u32 = arg("--clients").map_or(Ok(64), |v| v.parse())?;
    let seconds: u64 = arg("--seconds").map_or(Ok(5), |v| v.parse())?;
    let duration = Duration::from_secs(seconds.clamp(1, 60));
    println!("{clients} clients for {duration:?}, paths {PATHS:?}");
    run("MemoryStore", MemoryStore::new(), clients, duration).await?;
    if let Some(url) = arg("--redis") {
        redis(&url, clients, duration).await?;
    }
    Ok(())
}

#[cfg(feature = "redis")]
async fn redis(
    url: &str,
    clients: u32,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!("tower-kv-load-{}:", rand::random::<u32>());
    let store = tower_kv::store::RedisStore::builder(url)
        .prefix(prefix)
        .connect()
        .await?;
    run("RedisStore", store, clients, duration).await
}

#[cfg(not(feature = "redis"))]
async fn redis(_: &str, _: u32, _: Duration) -> Result<(), Box<dyn std::error::Error>> {
    Err("--redis needs `--features redis`".into())
}

async fn run<St: KvStore>(
    backend: &str,
    store: St,
    clients: u32,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let router = demo::app(store, "load-test".into()).await;
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
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let mut connector = HttpConnector::new();
            let source = Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8);
            connector.set_local_address(Some(IpAddr::V4(source)));
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build(connector);
            tokio::spawn(async move {
                let (mut latencies, mut ok, mut limited, mut other) =
                    (Vec::new(), 0u64, 0u64, 0u64);
                let mut n = i as usize;
                while Instant::now() < deadline {
                    let uri = format!("http://{addr}{}", PATHS[n % PATHS.len()]);
                    n += 1;
                    let started = Instant::now();
                    let Ok(res) = client
                        .request(Request::get(uri).body(Empty::new()).unwrap())
                        .await
                    else {
                        other += 1;
                        continue;
                    };
                    let status = res.status();
                    let _ = res.into_body().collect().await;
                    latencies.push(started.elapsed());
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => limited += 1,
                        s if s.is_success() => ok += 1,
                        _ => other += 1,
                    }
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
    let total = latencies.len() as f64;
    println!(
        "{backend}: {:.0} requests/s, p50 {:?}, p99 {:?} ({ok} ok, {limited} rate-limited, {other} other)",
        total / duration.as_secs_f64(),
        at(0.50),
        at(0.99),
   );
    Ok(())
}
