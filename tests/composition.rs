//! The five layers wrapped around one axum app, in several orders, on every
//! backend: no user ever receives another user's data, and a layer missing
//! what it needs from an outer layer says so once.

#[macro_use]
mod support;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use support::warnings::Captured;
use support::Harness;
use tower::ServiceExt;
use tower_kv::abtest::AbTestLayer;
use tower_kv::cache::CacheLayer;
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flags};
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::session::{Session, SessionLayer};
use tower_kv::store::KvStore;

/// The layers, named so a test can list an order.
#[derive(Clone, Copy, Debug)]
enum Kind {
    RateLimit,
    Session,
    Flags,
    AbTest,
    Cache,
}

use Kind::*;

/// The orders tried, outermost first: the documented one, the cache
/// outermost, the cache outside the session, and everything reversed.
const ORDERS: [[Kind; 5]; 4] = [
    [Session, RateLimit, Flags, AbTest, Cache],
    [Cache, Session, RateLimit, Flags, AbTest],
    [RateLimit, Cache, Session, AbTest, Flags],
    [Cache, AbTest, Flags, RateLimit, Session],
];

#[derive(serde::Deserialize)]
struct Login {
    user: String,
}

/// Handlers that answer with the session's user — none sets any
/// `Cache-Control`, so a careless shared cache would keep them 300 s.
fn app() -> Router {
    async fn me(
        session: Session,
        flags: Option<axum::Extension<Flags>>,
        exposed: Option<tower_kv::UserId>,
    ) -> String {
        let user = session.user_id().await.unwrap();
        if let Some(exposed) = exposed {
            assert_eq!(
                Some(&exposed.0),
                user.as_ref(),
                "the exposed user is the session's"
            );
        }
        let beta = flags.is_some_and(|f| f.is_enabled("beta"));
        format!(
            "user={} beta={beta}",
            user.as_deref().unwrap_or("anonymous")
        )
    }
    async fn checkout(session: Session, headers: HeaderMap) -> String {
        let user = session.user_id().await.unwrap();
        let variant = headers
            .get("x-variant-checkout")
            .map_or("none", |v| v.to_str().unwrap());
        format!(
            "user={} variant={variant}",
            user.as_deref().unwrap_or("anonymous")
        )
    }
    async fn login(session: Session, Query(login): Query<Login>) -> StatusCode {
        session.login(login.user).await.unwrap();
        StatusCode::NO_CONTENT
    }
    Router::new()
        .route("/me", get(me))
        .route("/checkout", get(checkout))
        .route("/login", post(login))
}

/// `app()` wrapped in the five layers, `order[0]` outermost.
async fn stack<St: KvStore>(store: &St, order: &[Kind], cache: CacheLayer<St>) -> Router {
    let flags = FeatureFlags::new(store.clone());
    flags
        .set_flag("beta", tower_kv::flags::Flag::Bool(true))
        .await
        .unwrap();
    let abtest = AbTestLayer::new(store.clone(), Identity::User).test("checkout");
    abtest
        .set_config(
            "checkout",
            br#"{"variants": ["control", "treatment"], "weights": [1, 1]}"#,
        )
        .await
        .unwrap();
    let mut router = app();
    for kind in order.iter().rev() {
        router = match kind {
            RateLimit => router.layer(
                RateLimitLayer::new(store.clone(), Identity::User.or(Identity::PeerIp))
                    .default_limit(Quota::per_minute(10_000)),
            ),
            Session => router.layer(SessionLayer::new(store.clone()).expose_user()),
            Flags => router.layer(FeatureFlagsLayer::new(flags.clone(), Identity::User)),
            AbTest => router.layer(abtest.clone()),
            Cache => router.layer(cache.clone()),
        };
    }
    router
}

/// One client: its cookies, kept as a browser would.
#[derive(Default)]
struct Client {
    cookies: Vec<String>,
}

impl Client {
    async fn send(&mut self, app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://app.test{uri}"))
            .body(axum::body::Body::empty())
            .unwrap();
        if !self.cookies.is_empty() {
            let cookie = self.cookies.join("; ").parse().unwrap();
            req.headers_mut().insert(header::COOKIE, cookie);
        }
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let res = app.clone().oneshot(req).await.unwrap();
        for set in res.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

/// Alice, Bob and an anonymous visitor take turns on `/me` and
/// `/checkout`; each only ever sees themself.
async fn users_never_see_each_other(app: &Router) {
    let mut alice = Client::default();
    let mut bob = Client::default();
    let mut anonymous = Client::default();
    // Visit once before logging in, so the cache has a chance to keep an
    // anonymous page for everyone.
    for client in [&mut alice, &mut bob] {
        client.send(app, "GET", "/me").await;
    }
    assert_eq!(
        alice.send(app, "POST", "/login?user=alice").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        bob.send(app, "POST", "/login?user=bob").await.0,
        StatusCode::NO_CONTENT
    );
    for round in 0..3 {
        for path in ["/me", "/checkout"] {
            let (status, body) = alice.send(app, "GET", path).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                body.starts_with("user=alice "),
                "round {round} {path}: alice got {body:?}"
            );
            let (_, body) = bob.send(app, "GET", path).await;
            assert!(
                body.starts_with("user=bob "),
                "round {round} {path}: bob got {body:?}"
            );
            let (_, body) = anonymous.send(app, "GET", path).await;
            assert!(
                body.starts_with("user=anonymous "),
                "round {round} {path}: the anonymous visitor got {body:?}"
            );
        }
    }
}

mod cases {
    use super::*;

    /// `Session` extracts in handlers (500 naming the layer when it is
    /// missing); `Option<Session>` is `None` without the layer.
    pub async fn axum_extractors<S: KvStore>(h: Harness<S>) {
        let handler = |session: Session| async move {
            let n: u32 = session.get("n").await?.unwrap_or(0);
            session.insert("n", n + 1).await?;
            Ok::<_, tower_kv::session::SessionError>((n + 1).to_string())
        };
        let with_layer = axum::Router::new()
            .route("/", get(handler))
            .layer(SessionLayer::new(h.store.clone()));
        let res = with_layer
            .clone()
            .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let optional = axum::Router::new().route(
            "/",
            get(|session: Option<Session>| async move { session.is_some().to_string() }),
        );
        let res = optional
            .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "false");
        let missing = axum::Router::new().route("/", get(handler));
        let res = missing
            .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("SessionLayer"));
    }

    /// The default cache leaves requests with cookies alone.
    pub async fn no_cross_user_data_in_any_order<S: KvStore>(h: Harness<S>) {
        for order in ORDERS {
            let app = stack(&h.store, &order, CacheLayer::new(h.store.clone())).await;
            users_never_see_each_other(&app).await;
        }
    }

    /// A cache told to key on an unrelated cookie does serve requests with
    /// cookies; the session layer's private marking keeps user pages out.
    pub async fn no_cross_user_data_with_cookie_keyed_cache<S: KvStore>(h: Harness<S>) {
        for order in ORDERS {
            let cache = CacheLayer::new(h.store.clone())
                .key_cookies(["lang"])
                .key_prefix(format!("cache:{order:?}:"));
            let app = stack(&h.store, &order, cache).await;
            users_never_see_each_other(&app).await;
        }
    }

    /// `Identity::User` with no session layer outside: one warning per
    /// layer instance, naming the fix.
    pub async fn user_identity_without_a_session_warns_once<S: KvStore>(h: Harness<S>) {
        let (captured, _guard) = Captured::start();
        // The session layer inside the identity users: they never see a user.
        let order = [RateLimit, Flags, AbTest, Session, Cache];
        let app = stack(&h.store, &order, CacheLayer::new(h.store.clone())).await;
        let mut client = Client::default();
        client.send(&app, "POST", "/login?user=carol").await;
        for _ in 0..3 {
            client.send(&app, "GET", "/me").await;
        }
        for layer in ["RateLimitLayer", "FeatureFlagsLayer", "AbTestLayer"] {
            let warnings = captured.mentioning(layer);
            assert_eq!(warnings.len(), 1, "{layer}: {:?}", captured.all());
            assert!(warnings[0].contains("SessionLayer::new(store).expose_user()"));
        }
    }

    /// A session layer outside that does not expose its user: the warning
    /// says to call `expose_user`.
    pub async fn session_without_expose_user_warns<S: KvStore>(h: Harness<S>) {
        let (captured, _guard) = Captured::start();
        let flags = FeatureFlags::new(h.store.clone());
        let app = app()
            .layer(FeatureFlagsLayer::new(flags, Identity::User))
            .layer(SessionLayer::new(h.store.clone()));
        Client::default().send(&app, "GET", "/me").await;
        let warnings = captured.mentioning("FeatureFlagsLayer");
        assert_eq!(warnings.len(), 1, "{:?}", captured.all());
        assert!(warnings[0].contains("expose_user()"));
    }

    /// A gate on a flag the document does not have: off, said once.
    pub async fn gate_on_a_missing_flag_warns_once<S: KvStore>(h: Harness<S>) {
        let (captured, _guard) = Captured::start();
        let flags = FeatureFlags::new(h.store.clone());
        flags
            .set_flag("other", tower_kv::flags::Flag::Bool(true))
            .await
            .unwrap();
        let gate = FeatureFlagsLayer::new(flags, Identity::Global).gate("typo");
        let app = Router::new()
            .route("/gated", get(|| async { "on" }))
            .layer(gate);
        for _ in 0..3 {
            let (status, _) = Client::default().send(&app, "GET", "/gated").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let warnings = captured.mentioning("typo");
        assert_eq!(warnings.len(), 1, "{:?}", captured.all());
        assert!(warnings[0].contains("set_flag"));
    }

    /// The documented order says nothing.
    pub async fn documented_order_is_silent<S: KvStore>(h: Harness<S>) {
        let (captured, _guard) = Captured::start();
        let app = stack(&h.store, &ORDERS[0], CacheLayer::new(h.store.clone())).await;
        let mut client = Client::default();
        client.send(&app, "POST", "/login?user=dave").await;
        client.send(&app, "GET", "/checkout").await;
        assert!(
            captured.mentioning("Identity::User").is_empty(),
            "{:?}",
            captured.all()
        );
    }
}

both_backends!(
    axum_extractors,
    no_cross_user_data_in_any_order,
    no_cross_user_data_with_cookie_keyed_cache,
    user_identity_without_a_session_warns_once,
    session_without_expose_user_warns,
    documented_order_is_silent,
    gate_on_a_missing_flag_warns_once,
);
