//! An axum app with a route table of rate limits, printing the headers a
//! client sees.
//!
//! `cargo run --example per_route_limits`

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt;
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Limit, Quota, RateLimitLayer};
use tower_kv::store::MemoryStore;

#[tokio::main]
async fn main() {
    let limits = RateLimitLayer::new(MemoryStore::new(), Identity::PeerIp)
        .default_limit(Quota::per_minute(1000))
        .route(
            Method::GET,
            "/search",
            Limit::new(Quota::per_second(2))
                .and(Quota::per_hour(100))
                .cost(1),
        )
        .route(Method::POST, "/login", Quota::per_minute(3).named("login"))
        .route_any("/api/{*rest}", Quota::per_minute(100).burst(10))
        .exempt("/health")
        .legacy_headers(true);
    let app = Router::new()
        .route("/search", get(|| async { "results" }))
        .route("/login", post(|| async { "welcome" }))
        .route("/api/{*rest}", get(|| async { "api" }))
        .route("/health", get(|| async { "ok" }))
        .layer(limits);

    let client: SocketAddr = "203.0.113.7:50000".parse().unwrap();
    for (method, path, times) in [
        ("GET", "/search", 3),
        ("POST", "/login", 4),
        ("GET", "/api/v1/users", 1),
        ("GET", "/health", 1),
    ] {
        for _ in 0..times {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            req.extensions_mut().insert(client); // what axum's ConnectInfo provides in a real server
            let res = app.clone().oneshot(req).await.unwrap();
            println!("{method} {path} -> {}", res.status());
            for name in [
                "ratelimit-policy",
                "ratelimit",
                "retry-after",
                "x-ratelimit-remaining",
            ] {
                if let Some(value) = res.headers().get(name) {
                    println!("    {name}: {}", value.to_str().unwrap());
                }
            }
        }
    }
}
