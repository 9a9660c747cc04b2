//! `examples/caching_proxy.rs` over real HTTP, in front of a small origin
//! this test starts, on every backend (`memory::*`, `redis::*`).

#[macro_use]
mod support;
#[allow(dead_code)] // the test uses `run`, not the example's main
#[path = "../examples/caching_proxy.rs"]
mod proxy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_kv::cache::SetCookieResponses;
use tower_kv::store::KvStore;

/// The origin: answers by path, counting its calls.
async fn origin_answer(req: Request<Incoming>, calls: Arc<AtomicUsize>) -> Response<Full<Bytes>> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let host = req
        .headers()
        .get("host")
        .map_or("none", |v| v.to_str().unwrap())
        .to_owned();
    let mut res = Response::builder();
    let body = match req.uri().path() {
        "/plain" => format!("call {n}"),
        "/fresh503" => {
            res = res.status(503).header("cache-control", "max-age=60");
            format!("down {n}")
        }
        "/cdn" => {
            res = res
                .header("cache-control", "no-store")
                .header("cdn-cache-control", "max-age=60");
            format!("cdn {n}")
        }
        "/digits" => {
            res = res.header("cache-control", "max-age=60");
            "0123456789".to_owned()
        }
        "/host" => {
            res = res.header("cache-control", "max-age=60");
            format!("host={host}")
        }
        "/aged" => {
            res = res
                .header("cache-control", "max-age=600")
                .header("age", "30, 5");
            format!("aged {n}")
        }
        "/modified" => {
            res = res.header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT");
            format!("modified {n}")
        }
        "/cookie" => {
            res = res
                .header("cache-control", "max-age=60")
                .header("set-cookie", "id=1");
            format!("cookie {n}")
        }
        "/grouped" => {
            res = res
                .header("cache-control", "max-age=60")
                .header("cache-groups", "\"news\"");
            format!("grouped {n}")
        }
        "/publish" => {
            res = res.header("cache-group-invalidation", "\"news\"");
            String::new()
        }
        "/forwarded" => {
            let forwarded = req.headers().get("x-forwarded-host");
            res = res.header("cache-control", "max-age=60");
            format!("x-forwarded-host={forwarded:?}")
        }
        "/etag" => {
            res = res
                .header("cache-control", "max-age=60")
                .header("etag", "\"v1\"");
            if req
                .headers()
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"")
            {
                res = res.status(304);
                String::new()
            } else {
                format!("etag {n}")
            }
        }
        "/tagged" => {
            res = res
                .header("cache-control", "max-age=60")
                .header("surrogate-key", "news sports");
            format!("tagged {n}")
        }
        path if path.starts_with("/long/") => {
            res = res.header("cache-control", "max-age=60");
            format!("long {n}")
        }
        "/stale" => {
            res = res.header("cache-control", "max-age=0");
            format!("stale {n}")
        }
        _ => String::new(),
    };
    res.body(Full::new(Bytes::from(body))).unwrap()
}

/// An origin on a free loopback port, until `stop` says otherwise: then it
/// closes every connection and accepts no more.
async fn start_origin(
    calls: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut stopped = stop.clone();
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = stopped.changed() => return,
            };
            let (calls, mut stop) = (calls.clone(), stop.clone());
            let open = open.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let calls = calls.clone();
                    async move { Ok::<_, Infallible>(origin_answer(req, calls).await) }
                });
                let connection = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    _ = connection => {}
                    _ = stop.changed() => {}
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

struct Setup {
    proxy: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    calls: Arc<AtomicUsize>,
    stop_origin: watch::Sender<bool>,
    open_connections: Arc<AtomicUsize>,
}

async fn start<S: KvStore>(store: S) -> Setup {
    start_with(store, SetCookieResponses::Refuse).await
}

async fn start_with<S: KvStore>(store: S, set_cookie: SetCookieResponses) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let (stop_origin, stop) = watch::channel(false);
    let open_connections = Arc::new(AtomicUsize::new(0));
    let origin_addr = start_origin(calls.clone(), open_connections.clone(), stop).await;
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    Setup {
        proxy: start_proxy(store, origin_addr, set_cookie).await,
        client,
        calls,
        stop_origin,
        open_connections,
    }
}

/// The caching proxy in front of `origin`, on a free loopback port.
async fn start_proxy<S: KvStore>(
    store: S,
    origin: SocketAddr,
    set_cookie: SetCookieResponses,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let options = proxy::Options {
        upstream: format!("http://{origin}").parse().unwrap(),
        max_body: 1 << 20,
        set_cookie,
    };
    tokio::spawn(proxy::run(store, listener, options));
    proxy_addr
}

/// Reads from `tcp` into `seen` until it holds `needle`.
async fn read_until(tcp: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut chunk = [0; 1024];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// An origin that writes raw HTTP/1.1: for each request, `103 Early Hints`,
/// then — for paths under `/wait`, once `go` says so — a cacheable `200`
/// naming the path.
async fn start_hinting_origin(go: Arc<tokio::sync::Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let go = go.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0];
                        if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let hint =
                        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
                    tcp.write_all(hint.as_bytes()).await.unwrap();
                    if path.starts_with("/wait") {
                        go.notified().await;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: {}\r\n\r\n{path}",
                        path.len()
                    );
                    tcp.write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    addr
}

impl Setup {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::default()).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// `PURGE path` with `headers`: the status and the body.
    async fn purge(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let method = Method::from_bytes(b"PURGE").unwrap();
        let (status, _, body) = self.send(method, path, headers).await;
        (status, body)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn cache_status(headers: &HeaderMap) -> &str {
    headers
        .get("cache-status")
        .map_or("", |v| v.to_str().unwrap())
}

mod cases {
    use super::*;

    /// In front of someone else's origin, nothing without freshness
    /// information is stored (no default TTL); explicit freshness stores a
    /// 503; `CDN-Cache-Control` wins over `Cache-Control`.
    pub async fn freshness_through_the_proxy<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        proxy.send(Method::GET, "/plain", &[]).await;
        let (_, _, body) = proxy.send(Method::GET, "/plain", &[]).await;
        assert_eq!(body, "call 2", "no freshness: never stored");
        let (status, _, first) = proxy.send(Method::GET, "/fresh503", &[]).await;
        let (_, headers, again) = proxy.send(Method::GET, "/fresh503", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(first, again, "{}", cache_status(&headers));
        proxy.send(Method::GET, "/cdn", &[]).await;
        let (_, headers, _) = proxy.send(Method::GET, "/cdn", &[]).await;
        assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    }

    /// Ranges and `HEAD` from storage, over the wire.
    pub async fn ranges_and_head_through_the_proxy<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        proxy.send(Method::GET, "/digits", &[]).await;
        let (status, headers, body) = proxy
            .send(Method::GET, "/digits", &[("range", "bytes=2-4")])
            .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::PARTIAL_CONTENT, "234")
        );
        assert_eq!(headers["content-range"], "bytes 2-4/10");
        let (status, _, _) = proxy
            .send(Method::GET, "/digits", &[("range", "bytes=20-")])
            .await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        let (_, headers, _) = proxy.send(Method::HEAD, "/digits", &[]).await;
        assert_eq!(headers["content-length"], "10");
        assert_eq!(proxy.calls(), 1, "one origin call for all of it");
    }

    /// An absolute-form target naming another host than `Host`: the origin
    /// answers for the target's host, and that is the key.
    pub async fn absolute_form_cannot_poison_the_cache<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        let mut tcp = tokio::net::TcpStream::connect(proxy.proxy).await.unwrap();
        let request = "GET http://victim.example/host HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("host=victim.example"), "{answer}");
        let (_, _, body) = proxy
            .send(Method::GET, "/host", &[("host", "evil.example")])
            .await;
        assert_eq!(
            body, "host=evil.example",
            "evil.example's own entry, not the victim's"
        );
    }

    /// `Age` (first member), heuristic freshness from `Last-Modified`,
    /// `Set-Cookie` never stored, Cache Groups invalidated by a `POST`.
    pub async fn rfc_rules_through_the_proxy<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        proxy.send(Method::GET, "/aged", &[]).await;
        let (_, headers, _) = proxy.send(Method::GET, "/aged", &[]).await;
        let age: u64 = headers["age"].to_str().unwrap().parse().unwrap();
        assert!(
            age >= 30,
            "the first member of a list-valued Age counts: {age}"
        );
        proxy.send(Method::GET, "/modified", &[]).await;
        let (_, headers, _) = proxy.send(Method::GET, "/modified", &[]).await;
        assert!(
            cache_status(&headers).contains("hit"),
            "heuristic: {headers:?}"
        );
        proxy.send(Method::GET, "/cookie", &[]).await;
        let (_, headers, _) = proxy.send(Method::GET, "/cookie", &[]).await;
        assert!(
            !cache_status(&headers).contains("hit"),
            "Set-Cookie: {headers:?}"
        );
        proxy.send(Method::GET, "/grouped", &[]).await;
        proxy.send(Method::POST, "/publish", &[]).await;
        let (_, headers, _) = proxy.send(Method::GET, "/grouped", &[]).await;
        assert!(
            cache_status(&headers).contains("miss"),
            "group invalidated: {headers:?}"
        );
    }

    /// Unkeyed input never reaches the origin: `X-Forwarded-Host` is
    /// stripped, two `Host` fields are refused, `Connection: Host` keeps
    /// `Host`, and a `GET` with a body bypasses the cache.
    pub async fn unkeyed_input_never_reaches_the_origin<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        let (_, _, body) = proxy
            .send(
                Method::GET,
                "/forwarded",
                &[("x-forwarded-host", "evil.example")],
            )
            .await;
        assert_eq!(body, "x-forwarded-host=None");
        let raw = |request: &'static str| async move {
            let mut tcp = tokio::net::TcpStream::connect(proxy.proxy).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let two_hosts = raw(
            "GET /host HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
        let dropped =
            raw("GET /host HTTP/1.1\r\nHost: kept.example\r\nConnection: close, Host\r\n\r\n")
                .await;
        assert!(dropped.ends_with("host=kept.example"), "{dropped}");
        let with_body = raw("GET /host HTTP/1.1\r\nHost: body.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").await;
        assert!(with_body.contains("fwd=bypass"), "{with_body}");
    }

    /// `103 Early Hints` reach an HTTP/1.1 client before the origin has
    /// answered, on a kept-alive connection too; they are never stored,
    /// and an HTTP/1.0 client never gets one (RFC 9110 §15.2).
    pub async fn early_hints_go_ahead_of_the_response<S: KvStore>(h: Harness<S>) {
        let go = Arc::new(tokio::sync::Notify::new());
        let proxy = start_proxy(
            h.store.clone(),
            start_hinting_origin(go.clone()).await,
            SetCookieResponses::Refuse,
        )
        .await;
        let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
        for path in ["/wait/one", "/wait/two"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: hints.example\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            read_until(&mut tcp, &mut seen, "\r\n\r\n").await;
            let hint = String::from_utf8_lossy(&seen).into_owned();
            assert!(
                hint.starts_with("HTTP/1.1 103 Early Hints\r\n"),
                "the hint comes first, while the origin still waits: {hint}"
            );
            assert!(hint.contains("link: </style.css>; rel=preload"), "{hint}");
            go.notify_one();
            read_until(&mut tcp, &mut seen, path).await;
            let answer = String::from_utf8_lossy(&seen).into_owned();
            let final_part = &answer[hint.len()..];
            assert!(final_part.starts_with("HTTP/1.1 200 OK"), "{answer}");
            assert_eq!(answer.matches("HTTP/1.1 103").count(), 1, "{answer}");
        }
        let raw = |request: &'static str| async move {
            let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let stored =
            raw("GET /wait/one HTTP/1.1\r\nHost: hints.example\r\nConnection: close\r\n\r\n").await;
        assert!(
            stored.starts_with("HTTP/1.1 200 OK"),
            "never stored: {stored}"
        );
        assert!(stored.contains("hit"), "{stored}");
        let old_client = raw("GET /old HTTP/1.0\r\nHost: hints.example\r\n\r\n").await;
        assert!(old_client.starts_with("HTTP/1.0 200 OK"), "{old_client}");
        assert!(!old_client.contains("103"), "{old_client}");
    }

    /// `PURGE` over HTTP: a soft purge makes the next request revalidate
    /// (the origin answers 304); prefix purges find hosts in any case and
    /// URLs over 400 bytes; tag purges find every tagged response.
    pub async fn purge_through_the_proxy<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        proxy.send(Method::GET, "/etag", &[]).await;
        let (status, body) = proxy.purge("/etag", &[("purge-soft", "?1")]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "purged 1\n"));
        let (status, headers, body) = proxy.send(Method::GET, "/etag", &[]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "etag 1"));
        assert!(
            cache_status(&headers).contains("fwd=stale;fwd-status=304"),
            "revalidated: {headers:?}"
        );
        assert_eq!(proxy.calls(), 2);

        let long = format!("/long/{}", "a".repeat(500));
        proxy
            .send(Method::GET, &long, &[("host", "Mixed.Example")])
            .await;
        let (status, body) = proxy
            .purge(
                "/long/",
                &[("host", "mixed.example"), ("purge-match", "prefix")],
            )
            .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "purged 1\n"));
        let (_, headers, _) = proxy
            .send(Method::GET, &long, &[("host", "mixed.example")])
            .await;
        assert!(cache_status(&headers).contains("miss"), "{headers:?}");

        proxy.send(Method::GET, "/tagged", &[]).await;
        let (status, body) = proxy.purge("/", &[("purge-tag", "sports")]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "purged 1\n"));
        let (_, headers, _) = proxy.send(Method::GET, "/tagged", &[]).await;
        assert!(cache_status(&headers).contains("miss"), "{headers:?}");
    }

    /// `--set-cookie strip` stores the response without its cookie; `keep`
    /// with it.
    pub async fn set_cookie_responses_on_request<S: KvStore>(h: Harness<S>) {
        let strip = start_with(h.store.clone(), SetCookieResponses::StoreWithoutCookie).await;
        let (_, first, _) = strip.send(Method::GET, "/cookie", &[]).await;
        assert_eq!(
            first["set-cookie"], "id=1",
            "the client that caused the fetch"
        );
        let (_, again, _) = strip.send(Method::GET, "/cookie", &[]).await;
        assert!(cache_status(&again).contains("hit"), "{again:?}");
        assert!(!again.contains_key("set-cookie"), "{again:?}");
        let keep = start_with(h.store.clone(), SetCookieResponses::StoreWithCookie).await;
        keep.send(Method::GET, "/cookie", &[("host", "keep.example")])
            .await;
        let (_, again, _) = keep
            .send(Method::GET, "/cookie", &[("host", "keep.example")])
            .await;
        assert!(cache_status(&again).contains("hit"), "{again:?}");
        assert_eq!(again["set-cookie"], "id=1");
    }

    /// The origin gone: a stored response answers, stale, and says so.
    pub async fn stale_when_the_origin_is_down<S: KvStore>(h: Harness<S>) {
        let proxy = start(h.store.clone()).await;
        let (_, _, first) = proxy.send(Method::GET, "/stale", &[]).await;
        proxy.stop_origin.send(true).unwrap();
        // Liveness, not speed: wait (bounded) until every origin connection closed.
        for _ in 0..500 {
            if proxy.open_connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
        let (status, headers, body) = proxy.send(Method::GET, "/stale", &[]).await;
        assert_eq!((status, body), (StatusCode::OK, first));
        assert!(
            cache_status(&headers).contains("detail=origin-unreachable"),
            "{headers:?}"
        );
    }
}

both_backends!(
    freshness_through_the_proxy,
    ranges_and_head_through_the_proxy,
    absolute_form_cannot_poison_the_cache,
    stale_when_the_origin_is_down,
    early_hints_go_ahead_of_the_response,
    purge_through_the_proxy,
    set_cookie_responses_on_request,
    rfc_rules_through_the_proxy,
    unkeyed_input_never_reaches_the_origin,
);

/// A purge while the store is down answers 503 — it never claims a purge
/// that did not happen — and works again when the store is back.
#[cfg(feature = "redis")]
#[tokio::test]
async fn purge_reports_a_store_outage() {
    let Some(server) = support::RedisServer::start() else {
        return;
    };
    let store = tower_kv::store::RedisStore::builder(server.url())
        .timeout(std::time::Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let proxy = start(store).await;
    proxy.send(Method::GET, "/etag", &[]).await;
    server.pause();
    let (status, body) = proxy.purge("/etag", &[]).await;
    server.resume();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = proxy.purge("/etag", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "purged 1\n"));
}
