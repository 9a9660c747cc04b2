//! Drives `examples/demo.rs` over real HTTP on a free port, on both
//! backends: `memory` and `redis`.

#[allow(dead_code)] // the test uses the app, not the example's main
#[path = "../examples/demo.rs"]
mod demo;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_kv::store::MemoryStore;

struct Demo {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Demo {
    async fn start<St: tower_kv::store::KvStore>(store: St) -> Self {
        let router = demo::app(store, "secret".into()).await;
        #[cfg(feature = "metrics")]
        let router = {
            static PROMETHEUS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
                std::sync::OnceLock::new();
            demo::with_metrics(
                router,
                PROMETHEUS.get_or_init(demo::install_prometheus).clone(),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Short limits, so the timeout tests finish quickly.
        let limits = demo::Limits {
            header_read: Duration::from_millis(300),
            request: Duration::from_secs(5),
            max_connections: 64,
        };
        tokio::spawn(demo::serve(listener, router, limits));
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Self { addr, client }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (parts.status, parts.headers, body)
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    the_demo_serves_its_contract(Demo::start(MemoryStore::new()).await).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let Some(harness) = support::redis().await else {
        return;
    };
    the_demo_serves_its_contract(Demo::start(harness.store).await).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let Some(harness) = support::redis_cluster().await else {
        return;
    };
    the_demo_serves_its_contract(Demo::start(harness.store).await).await;
}

/// Two demo instances on one store: an admin flag change on one is served
/// by the other within moments (a change notice), not after its 600 s
/// flag cache.
async fn a_flag_change_reaches_the_other_instance<St: tower_kv::store::KvStore>(a: St, b: St) {
    let (a, b) = (Demo::start(a).await, Demo::start(b).await);
    assert_eq!(
        b.send(Method::GET, "/beta", &[], "").await.0,
        StatusCode::NOT_FOUND
    );
    let admin = [("authorization", "Bearer secret")];
    let flags = r#"{"beta_feature": true}"#;
    let status = a.send(Method::PUT, "/admin/flags", &admin, flags).await.0;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let changed = std::time::Instant::now();
    while b.send(Method::GET, "/beta", &[], "").await.0 != StatusCode::OK {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "not served within 1 s"
        );
    }
    eprintln!(
        "the other instance served the flag after {:?}",
        changed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_memory() {
    let store = MemoryStore::new();
    a_flag_change_reaches_the_other_instance(store.clone(), store).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_redis() {
    let Some(h) = support::redis().await else {
        return;
    };
    a_flag_change_reaches_the_other_instance(h.store, h.twin).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_redis_cluster() {
    let Some(h) = support::redis_cluster().await else {
        return;
    };
    a_flag_change_reaches_the_other_instance(h.store, h.twin).await;
}

/// A half-sent request, and an idle keep-alive connection, are closed by
/// the header-read timeout instead of holding a connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let demo = Demo::start(MemoryStore::new()).await;
    let closed = |mut tcp: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 4096];
        // Liveness, not speed: the 300 ms timeout must close it at all.
        tokio::time::timeout(Duration::from_secs(20), async {
            while tcp.read(&mut buf).await.unwrap_or(0) > 0 {}
        })
        .await
        .is_ok()
    };
    let mut half_sent = tokio::net::TcpStream::connect(demo.addr).await.unwrap();
    half_sent
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed(half_sent).await,
        "a half-sent request was not cut off"
    );

    let mut idle = tokio::net::TcpStream::connect(demo.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed(idle).await,
        "an idle keep-alive connection stayed open"
    );
}

async fn the_demo_serves_its_contract(demo: Demo) {
    let get = |path: &'static str| demo.send(Method::GET, path, &[], "");

    let (status, headers, body) = get("/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "standard"));
    assert!(headers.contains_key("ratelimit") && headers.contains_key("ratelimit-policy"));

    let (_, first, body1) = get("/api/users").await;
    let (_, second, body2) = get("/api/users").await;
    assert!(
        body1.contains("\"generation\":1") && body1 == body2,
        "{body1} / {body2}"
    );
    assert!(first["cache-status"].to_str().unwrap().contains("stored"));
    assert!(second["cache-status"].to_str().unwrap().contains("hit"));
    assert_eq!(second["ratelimit-policy"], "\"minute\";q=100;w=60");

    assert_eq!(get("/me").await.0, StatusCode::UNAUTHORIZED);
    let json = [("content-type", "application/json")];
    assert_eq!(
        demo.send(Method::POST, "/login", &json, "{oops").await.0,
        StatusCode::BAD_REQUEST
    );
    // Login CSRF: a cross-site form or text/plain post is refused.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let headers = [
            ("content-type", content_type),
            ("origin", "https://evil.example"),
        ];
        let (status, headers, _) = demo
            .send(Method::POST, "/login", &headers, r#"{"user_id":"mallory"}"#)
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(headers.get("set-cookie").is_none());
    }
    let (status, headers, body) = demo
        .send(Method::POST, "/login", &json, r#"{"user_id":"ada"}"#)
        .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"user_id":"ada"}"#)
    );
    let session = cookie(&headers, "id").expect("session cookie");
    let with_session = [("cookie", session.as_str())];
    let (status, _, body) = demo.send(Method::GET, "/me", &with_session, "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"user_id":"ada"}"#)
    );

    let (_, headers, body) = demo.send(Method::GET, "/checkout", &with_session, "").await;
    let variant = headers["x-variant-checkout"].to_str().unwrap().to_owned();
    assert_eq!(body, format!(r#"{{"variant":"{variant}"}}"#));
    assert!(variant == "control" || variant == "treatment");

    assert_eq!(get("/beta").await.0, StatusCode::NOT_FOUND);
    let flags = r#"{"beta_feature": true}"#;
    assert_eq!(
        demo.send(Method::PUT, "/admin/flags", &[], flags).await.0,
        StatusCode::UNAUTHORIZED
    );
    let admin = [("authorization", "Bearer secret")];
    assert_eq!(
        demo.send(Method::PUT, "/admin/flags", &admin, flags)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get("/beta").await.0, StatusCode::OK);
    assert_eq!(get("/").await.2, "beta");

    let all_treatment = r#"{"variants": ["control", "treatment"], "weights": [0, 1]}"#;
    assert_eq!(
        demo.send(Method::PUT, "/admin/tests/checkout", &admin, all_treatment)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, headers, _) = get("/checkout").await;
    assert_eq!(
        headers["x-variant-checkout"], "treatment",
        "a new visitor follows the new weights"
    );
    assert!(
        cookie(&headers, "ab_visitor").is_some(),
        "anonymous visitors get a cookie"
    );

    assert_eq!(
        demo.send(Method::POST, "/admin/cache/purge?prefix=/api/", &admin, "")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(
        get("/api/users").await.2.contains("\"generation\":2"),
        "purged"
    );

    let (status, headers, _) = demo.send(Method::POST, "/logout", &with_session, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        cookie(&headers, "id").is_some_and(|c| c == "id="),
        "cookie removed"
    );
    assert_eq!(
        demo.send(Method::GET, "/me", &with_session, "").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Logins: 5 per minute per client IP (one 400 and one 200 above).
    let mut last = StatusCode::OK;
    for _ in 0..4 {
        last = demo
            .send(Method::POST, "/login", &json, r#"{"user_id":"eve"}"#)
            .await
            .0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let (_, headers, _) = demo
        .send(Method::POST, "/login", &json, r#"{"user_id":"eve"}"#)
        .await;
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    // What the layers counted, as Prometheus text (outside the layers).
    #[cfg(feature = "metrics")]
    {
        let (status, headers, text) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !headers.contains_key("ratelimit"),
            "a scrape is not rate-limited"
        );
        for series in [
            "tower_kv_ratelimit_decisions_total{route=\"POST /login\",quota=\"minute\",outcome=\"limited\"}",
            "tower_kv_cache_requests_total{cache=\"tower-kv\",outcome=\"hit\"}",
            "tower_kv_session_events_total{event=\"create\"}",
            "tower_kv_flag_evaluations_total{flag=\"(undefined)\",reason=\"missing\",value=\"off\"}",
        ] {
            assert!(text.contains(series), "no {series} in\n{text}");
        }
    }
}
