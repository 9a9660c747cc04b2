//! The five tower-kv layers composed on one backend, as an axum server.
//!
//! `cargo run --example demo [-- --listen ADDR] [--redis URL | --redis-cluster HOST:PORT,…] [--admin-token TOKEN]`
//!
//! Defaults: `127.0.0.1:3000`, the in-memory store (`--redis` needs
//! `--features redis`), an admin token from `--admin-token`, else
//! `DEMO_ADMIN_TOKEN`, else a random one printed at start. The client IP is
//! the peer address (no proxy trust here).

#[path = "common/redis_target.rs"]
pub mod redis_target;
#[path = "common/serve.rs"]
mod serve;
pub use serve::Limits;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use redis_target::RedisTarget;
use serde::Deserialize;
use sha2::Digest;
use tower::{ServiceBuilder, ServiceExt};
use tower_kv::abtest::{AbTestLayer, SetConfigError};
use tower_kv::cache::{CacheLayer, CachePurger};
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, FlagWriteError, Flags};
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::session::{Session, SessionLayer};
use tower_kv::store::{KvStore, MemoryStore};

/// What the handlers share.
#[derive(Clone)]
struct App<St: KvStore> {
    generation: Arc<AtomicU64>,
    admin_token: Arc<str>,
    flags: FeatureFlags<St>,
    abtest: AbTestLayer<St>,
    purger: CachePurger<St>,
}

/// The demo's per-client-IP rate limits.
pub struct RateLimits {
    /// Every route without its own quota.
    pub default: Quota,
    /// `/api/…`.
    pub api: Quota,
    /// `POST /login`.
    pub login: Quota,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            default: Quota::per_minute(1000),
            api: Quota::per_minute(100),
            login: Quota::per_minute(5),
        }
    }
}

/// Builds the demo's router on `store`.
pub async fn app<St: KvStore>(store: St, admin_token: String) -> Router {
    app_with(store, admin_token, RateLimits::default()).await
}

/// The demo's read paths answered as the demo answers them, without any
/// tower-kv layer: the baseline of `benches/stack.rs` and `load --bare`.
pub fn bare_app() -> Router {
    let generation = Arc::new(AtomicU64::new(0));
    Router::new()
        .route("/", get(|| async { "standard" }))
        .route(
            "/api/users",
            get(move || {
                let generation = generation.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    Json(serde_json::json!({"users": ["ada", "grace", "linus"], "generation": generation}))
                }
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

/// [`app`] with other rate limits.
pub async fn app_with<St: KvStore>(store: St, admin_token: String, limits: RateLimits) -> Router {
    let flags = FeatureFlags::new(store.clone());
    let abtest = AbTestLayer::new(store.clone(), Identity::User).test("checkout");
    let checkout_config = br#"{"variants": ["control", "treatment"], "weights": [0.5, 0.5]}"#;
    if matches!(store.get("test:checkout:config").await, Ok(None)) {
        let _ = abtest.set_config("checkout", checkout_config).await;
    }
    let cache = CacheLayer::new(store.clone()).route_ttl("/api/users", Duration::from_secs(300));
    let state = App {
        generation: Arc::default(),
        admin_token: admin_token.into(),
        flags: flags.clone(),
        abtest: abtest.clone(),
        purger: cache.purger(),
    };
    let limits = RateLimitLayer::new(store.clone(), Identity::PeerIp)
        .default_limit(limits.default)
        .route_any("/api/{*rest}", limits.api)
        .route(Method::POST, "/login", limits.login);
    let flags_layer = FeatureFlagsLayer::new(flags, Identity::User);
    Router::new()
        .route("/", get(home))
        .route("/api/users", get(users::<St>).route_layer(cache))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route(
            "/beta",
            get(|| async { "beta" }).route_layer(flags_layer.gate("beta_feature")),
        )
        .route("/checkout", get(checkout).route_layer(abtest))
        .route("/admin/flags", put(admin_flags::<St>))
        .route("/admin/tests/{name}", put(admin_tests::<St>))
        .route("/admin/cache/purge", post(admin_purge::<St>))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(limits)
                .layer(SessionLayer::new(store).expose_user())
                .layer(flags_layer),
        )
}

/// The beta flow when `beta_feature` is on.
async fn home(Extension(flags): Extension<Flags>) -> &'static str {
    if flags.is_enabled("beta_feature") {
        "beta"
    } else {
        "standard"
    }
}

async fn users<St: KvStore>(State(app): State<App<St>>) -> Json<serde_json::Value> {
    let generation = app.generation.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({"users": ["ada", "grace", "linus"], "generation": generation}))
}

#[derive(Deserialize)]
struct Login {
    user_id: String,
}

fn unavailable<E>(_: E) -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

/// `POST /login` takes JSON only: a cross-site form or `text/plain` post
/// (login CSRF) cannot send `application/json` without a CORS preflight.
async fn login(
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let login: Login = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    if login.user_id.is_empty() || login.user_id.len() > 128 {
        return Err(StatusCode::BAD_REQUEST);
    }
    session
        .login(login.user_id.clone())
        .await
        .map_err(unavailable)?;
    Ok(Json(serde_json::json!({"user_id": login.user_id})))
}

async fn me(Extension(session): Extension<Session>) -> Result<Json<serde_json::Value>, StatusCode> {
    match session.user_id().await.map_err(unavailable)? {
        Some(user_id) => Ok(Json(serde_json::json!({"user_id": user_id}))),
        None => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn logout(Extension(session): Extension<Session>) -> Result<StatusCode, StatusCode> {
    session.destroy().await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn checkout(headers: HeaderMap) -> Response {
    let variant = headers.get("x-variant-checkout").cloned();
    let value = variant
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("control");
    let mut res = Json(serde_json::json!({"variant": value})).into_response();
    if let Some(v) = variant {
        res.headers_mut().insert("x-variant-checkout", v);
    }
    res
}

/// Bearer-token check for the admin routes (digests compared, so the time
/// taken does not reveal how much of the token matched).
fn authorized<St: KvStore>(app: &App<St>, headers: &HeaderMap) -> Result<(), StatusCode> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
    if digest(given) == digest(&app.admin_token) {
        Ok(())
    } else {
        Err(StatusCode::UNAUTHORIZED)
    }
}

async fn admin_flags<St: KvStore>(
    State(app): State<App<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    authorized(&app, &headers).map_err(|s| (s, String::new()))?;
    app.flags.replace_json(&body).await.map_err(|e| {
        // A store failure is not a bad request: 503, and the write may
        // have landed (`OutcomeUnknown`).
        let status = match e {
            FlagWriteError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, e.to_string())
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_tests<St: KvStore>(
    State(app): State<App<St>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    authorized(&app, &headers).map_err(|s| (s, String::new()))?;
    app.abtest.set_config(&name, &body).await.map_err(|e| {
        let status = match e {
            SetConfigError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, e.to_string())
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Purge {
    prefix: String,
}

/// Purges cached responses under a URL prefix: `/api/` (on this host) or a
/// full `http://host/api/`.
async fn admin_purge<St: KvStore>(
    State(app): State<App<St>>,
    headers: HeaderMap,
    Query(purge): Query<Purge>,
) -> Result<StatusCode, StatusCode> {
    authorized(&app, &headers)?;
    let prefix = if purge.prefix.starts_with('/') {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}{}", purge.prefix)
    } else {
        purge.prefix
    };
    match app.purger.purge_prefix(&prefix).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Adds `GET /metrics`: what the layers counted (see `tower_kv::metrics`),
/// in Prometheus text format, from `handle`'s recorder. It sits outside the
/// layers: a scrape is not rate-limited, cached or given a session.
#[cfg(feature = "metrics")]
pub fn with_metrics(
    router: Router,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> Router {
    router.route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// Installs the process's Prometheus recorder; histograms are compacted
/// every 5 s.
#[cfg(feature = "metrics")]
pub fn install_prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the first recorder of this process");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    handle
}

/// Serves the demo's router on `listener` within `limits` (the defaults: a
/// 10 s header-read and keep-alive idle timeout, 30 s per request, 1,024
/// connections), giving the layers each request's peer address as axum's
/// `ConnectInfo`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
) -> std::io::Result<()> {
    serve::serve(listener, limits, |peer: SocketAddr| {
        router
            .clone()
            .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            })
    })
    .await
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()?;
    let token = arg("--admin-token")
        .or_else(|| std::env::var("DEMO_ADMIN_TOKEN").ok())
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let (router, backend) = match RedisTarget::from_args() {
        None => (
            app(MemoryStore::new(), token.clone()).await,
            "MemoryStore".to_owned(),
        ),
        Some(target) => (redis_app(&target, token.clone()).await?, target.describe()),
    };
    #[cfg(feature = "metrics")]
    let router = with_metrics(router, install_prometheus());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("tower-kv demo on http://{addr} — backend: {backend}");
    println!("admin token: {token}");
    println!("try:");
    println!("  curl -i http://{addr}/");
    println!("  curl -i http://{addr}/api/users        # twice: Cache-Status hit, same generation");
    println!("  curl -i -c jar -b jar -H 'content-type: application/json' -d '{{\"user_id\":\"ada\"}}' http://{addr}/login");
    println!("  curl -i -c jar -b jar http://{addr}/me");
    println!("  curl -i -c jar -b jar http://{addr}/checkout");
    println!("  curl -i -X PUT -H 'authorization: Bearer {token}' -d '{{\"beta_feature\":true}}' http://{addr}/admin/flags");
    println!("  curl -i http://{addr}/beta");
    #[cfg(feature = "metrics")]
    println!("  curl http://{addr}/metrics          # what the layers counted (Prometheus)");
    serve(listener, router, Limits::default()).await?;
    Ok(())
}

#[cfg(feature = "redis")]
async fn redis_app(
    target: &RedisTarget,
    token: String,
) -> Result<Router, Box<dyn std::error::Error>> {
    let store = target.builder().prefix("tower-kv-demo:").connect().await?;
    Ok(app(store, token).await)
}

#[cfg(not(feature = "redis"))]
async fn redis_app(_: &RedisTarget, _: String) -> Result<Router, Box<dyn std::error::Error>> {
    Err("--redis needs the `redis` feature: cargo run --example demo --features redis -- --redis URL".into())
}
