//! The cache layer against every backend: `memory::*` and `redis::*`.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::Harness;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::cache::CacheLayer;
use tower_kv::store::KvStore;
use tower_kv::Clock;
use tower_kv::ResponseBody;

type Reply = Response<ResponseBody<Full<Bytes>>>;

/// An origin that counts its calls and answers per path:
/// `/max-age` (60 s), `/vary` (varies on accept-language), `/private`,
/// `/cookie`, `/nothing` (no freshness info), `/big` (large body), `/etag`.
fn origin(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    tower::service_fn(move |req: Request<()>| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            // A stuck origin, for requests that ask for one.
            if req.headers().contains_key("x-hang") {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let path = req.uri().path().to_owned();
            let body = match path.as_str() {
                "/big" => "x".repeat(4096),
                "/vary" => format!(
                    "lang={} call={n}",
                    req.headers()
                        .get("accept-language")
                        .map_or("", |v| v.to_str().unwrap())
                ),
                _ => format!("call={n}"),
            };
            let body = if path == "/unsized-big" {
                "y".repeat(4096)
            } else {
                body
            };
            let mut res = Response::builder();
            if !path.starts_with("/unsized") {
                res = res.header("content-length", body.len());
            } else {
                res = res.header("cache-control", "max-age=60");
            }
            res = match path.as_str() {
                "/max-age" | "/big" => res.header("cache-control", "max-age=60"),
                "/vary" => res
                    .header("cache-control", "max-age=60")
                    .header("vary", "Accept-Language"),
                "/private" => res.header("cache-control", "private, max-age=60"),
                "/cookie" => res
                    .header("cache-control", "max-age=60")
                    .header("set-cookie", "a=b"),
                "/etag" => res
                    .header("cache-control", "max-age=60")
                    .header("etag", "\"v1\""),
                "/lm" => res
                    .header("cache-control", "max-age=60")
                    .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                "/create" => res.header("location", "/max-age"),
                "/swr" => res.header("cache-control", "max-age=1, stale-if-error=60"),
                "/swr2" => res.header("cache-control", "max-age=1, stale-while-revalidate=60"),
                "/grouped/a" | "/grouped/b" => res
                    .header("cache-control", "max-age=60")
                    .header("cache-groups", "\"articles\", \"front\""),
                "/grouped/c" => res
                    .header("cache-control", "max-age=60")
                    .header("cache-groups", "\"other\""),
                "/publish" => res.header("cache-group-invalidation", "\"articles\""),
                "/cdn" => res
                    .header("cache-control", "no-store")
                    .header("cdn-cache-control", "max-age=60"),
                "/down" => res.header("cache-control", "max-age=1"),
                "/down-mr" => res.header("cache-control", "max-age=1, must-revalidate"),
                "/error-fresh" => res.status(503).header("cache-control", "max-age=60"),
                "/error" => res.status(503),
                _ => res,
            };
            if path == "/swr" && n > 1 {
                res = res.status(500);
            }
            match path.as_str() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    res = res.header("cache-control", "max-age=60");
                }
                "/reval" => {
                    res = res
                        .header("cache-control", "max-age=1")
                        .header("etag", "\"r1\"");
                    if req
                        .headers()
                        .get("if-none-match")
                        .is_some_and(|v| v == "\"r1\"")
                    {
                        let res = Response::builder()
                            .status(304)
                            .header("etag", "\"r1\"")
                            .header("cache-control", "max-age=30")
                            .header("x-refreshed", "yes");
                        return Ok(res.body(Full::new(Bytes::new())).unwrap());
                    }
                }
                "/tagged/a" | "/tagged/b" => {
                    res = res
                        .header("cache-control", "max-age=60")
                        .header("surrogate-key", "users all")
                }
                "/poison" | "/host" => {
                    let host = req
                        .headers()
                        .get(if path == "/poison" {
                            "x-forwarded-host"
                        } else {
                            "host"
                        })
                        .map_or("none", |v| v.to_str().unwrap())
                        .to_owned();
                    let body = format!("host={host}");
                    let res = Response::builder()
                        .header("content-length", body.len())
                        .header("cache-control", "max-age=60");
                    return Ok(res.body(Full::new(Bytes::from(body))).unwrap());
                }
                _ => {}
            }
            if req.headers().contains_key("x-origin-down") {
                // What a proxy answers when it cannot reach its upstream.
                let mut res = Response::builder()
                    .status(502)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                res.extensions_mut()
                    .insert(tower_kv::cache::OriginUnreachable);
                return Ok(res);
            }
            let mut res = res.body(Full::new(Bytes::from(body))).unwrap();
            if path == "/handler-ttl" {
                res.extensions_mut()
                    .insert(tower_kv::cache::CacheTtl(Duration::from_secs(5)));
            }
            Ok(res)
        }
    })
}

fn stack<S: KvStore>(
    store: S,
    clock: &Clock,
    calls: &Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    stack_with(
        CacheLayer::new(store).clock(clock.clone()).max_body(1024),
        calls,
    )
}

fn stack_with<S: KvStore>(
    layer: CacheLayer<S>,
    calls: &Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    ServiceBuilder::new()
        .layer(layer)
        .service(origin(calls.clone()))
}

/// 100 concurrent `GET /slow`, spread over `stacks`; how many were
/// answered collapsed.
async fn hundred_misses<S>(stacks: &[S]) -> usize
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let svc = stacks[i % stacks.len()].clone();
            tokio::spawn(async move {
                let req = Request::get("http://example.test/slow").body(()).unwrap();
                let res = svc.oneshot(req).await.unwrap();
                res.headers()["cache-status"].to_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut collapsed = 0;
    for handle in handles {
        collapsed += usize::from(handle.await.unwrap().contains("collapsed"));
    }
    collapsed
}

async fn send<S>(
    svc: &S,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String)
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://example.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = svc.clone().oneshot(req.body(()).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status, parts.headers, body)
}

fn status_of(h: &http::HeaderMap) -> String {
    h.get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

mod cases {
    use super::*;

    /// RFC 9110 §14: a single byte range of a complete stored response is
    /// a 206 (416 past the end); a miss goes to the origin as asked.
    pub async fn single_ranges_are_served_from_storage<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let (status, _, whole) = send(&svc, Method::GET, "/etag", &[("range", "bytes=0-3")]).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a miss: the origin's answer (it ignores Range)"
        );
        let (status, headers, body) =
            send(&svc, Method::GET, "/etag", &[("range", "bytes=0-3")]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::PARTIAL_CONTENT, &whole[..4])
        );
        let total = whole.len();
        assert_eq!(
            headers["content-range"],
            format!("bytes 0-3/{total}").as_str()
        );
        assert_eq!(headers["content-length"], "4");
        let (status, _, body) = send(&svc, Method::GET, "/etag", &[("range", "bytes=-2")]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::PARTIAL_CONTENT, &whole[total - 2..])
        );
        let (status, headers, body) =
            send(&svc, Method::GET, "/etag", &[("range", "bytes=100-")]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::RANGE_NOT_SATISFIABLE, "")
        );
        assert_eq!(
            headers["content-range"],
            format!("bytes */{total}").as_str()
        );
        let (status, _, body) =
            send(&svc, Method::GET, "/etag", &[("range", "bytes=0-1,3-4")]).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, whole.clone()),
            "several ranges: whole"
        );
        let stale_validator = [("range", "bytes=0-3"), ("if-range", "\"v0\"")];
        let (status, _, body) = send(&svc, Method::GET, "/etag", &stale_validator).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, whole),
            "If-Range fails: whole"
        );
    }

    /// RFC 9875: a successful unsafe response's `Cache-Group-Invalidation`
    /// drops the same origin's responses in those groups.
    pub async fn cache_groups_are_invalidated_by_unsafe_responses<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let get = |path: &'static str, host: &'static str| {
            let svc = svc.clone();
            async move {
                let uri = format!("http://{host}{path}");
                let req = Request::get(uri).body(()).unwrap();
                let res = svc.oneshot(req).await.unwrap();
                status_of(res.headers())
            }
        };
        for path in ["/grouped/a", "/grouped/b", "/grouped/c"] {
            get(path, "example.test").await;
        }
        get("/grouped/a", "other.test").await;
        // A safe method's response never invalidates.
        send(&svc, Method::GET, "/publish", &[]).await;
        assert!(get("/grouped/a", "example.test").await.contains("hit"));
        send(&svc, Method::POST, "/publish", &[]).await;
        assert!(get("/grouped/a", "example.test").await.contains("miss"));
        assert!(get("/grouped/b", "example.test").await.contains("miss"));
        assert!(
            get("/grouped/c", "example.test").await.contains("hit"),
            "another group"
        );
        assert!(
            get("/grouped/a", "other.test").await.contains("hit"),
            "another origin"
        );
    }

    /// A soft purge marks responses stale: the next request revalidates
    /// (a 304 from an origin with validators) instead of refetching.
    pub async fn soft_purges_mark_stale_instead_of_deleting<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone()).clock(clock.clone());
        let purger = layer.purger().soft();
        let svc = stack_with(layer, &calls);
        send(&svc, Method::GET, "/reval", &[]).await;
        let (_, headers, _) = send(&svc, Method::GET, "/reval", &[]).await;
        assert!(status_of(&headers).contains("hit"), "{headers:?}");
        let marked = purger.purge_url("http://example.test/reval").await.unwrap();
        assert_eq!(marked, 1, "one response marked, its vary index left alone");
        let (status, headers, _) = send(&svc, Method::GET, "/reval", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            status_of(&headers).contains("fwd=stale;fwd-status=304"),
            "{headers:?}"
        );
        assert_eq!(headers["x-refreshed"], "yes");

        send(&svc, Method::GET, "/tagged/a", &[]).await;
        assert_eq!(purger.purge_tag("users").await.unwrap(), 1);
        let (_, headers, _) = send(&svc, Method::GET, "/tagged/a", &[]).await;
        assert!(status_of(&headers).contains("fwd=stale"), "{headers:?}");
        let (_, headers, _) = send(&svc, Method::GET, "/tagged/a", &[]).await;
        assert!(
            status_of(&headers).contains("hit"),
            "stored again: {headers:?}"
        );
        assert_eq!(
            purger
                .purge_prefix("http://example.test/tagged/")
                .await
                .unwrap(),
            1
        );
    }

    /// RFC 9213: `CDN-Cache-Control` speaks to this cache over
    /// `Cache-Control`, and can be kept from caches further down.
    pub async fn targeted_cache_control_wins_and_can_be_stripped<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let (_, first, _) = send(&svc, Method::GET, "/cdn", &[]).await;
        assert!(status_of(&first).contains("stored"), "{first:?}");
        assert!(first.contains_key("cdn-cache-control"), "kept by default");
        let (_, again, _) = send(&svc, Method::GET, "/cdn", &[]).await;
        assert!(status_of(&again).contains("hit"), "{again:?}");

        let layer = CacheLayer::new(h.store.clone())
            .clock(clock.clone())
            .key_prefix("stripped:")
            .strip_targeted_fields(true);
        let svc = stack_with(layer, &calls);
        for _ in 0..2 {
            let (_, headers, _) = send(&svc, Method::GET, "/cdn", &[]).await;
            assert!(!headers.contains_key("cdn-cache-control"), "{headers:?}");
            assert_eq!(headers["cache-control"], "no-store", "Cache-Control stays");
        }
        let (_, headers, _) = send(&svc, Method::GET, "/cdn", &[("cookie", "a=b")]).await;
        assert!(
            !headers.contains_key("cdn-cache-control"),
            "stripped on bypass too"
        );
    }

    /// RFC 9111 §4.2.4: an unreachable origin lets a stale response answer,
    /// within the configured staleness, unless it must be revalidated.
    pub async fn stale_is_served_when_the_origin_is_unreachable<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone())
            .clock(clock.clone())
            .serve_stale_if_unreachable(Duration::from_secs(60));
        let svc = stack_with(layer, &calls);
        let (_, _, fresh) = send(&svc, Method::GET, "/down", &[]).await;
        send(&svc, Method::GET, "/down-mr", &[]).await;
        clock.advance(Duration::from_secs(5));
        let down = [("x-origin-down", "1")];
        let (status, headers, body) = send(&svc, Method::GET, "/down", &down).await;
        assert_eq!((status, body), (StatusCode::OK, fresh));
        assert!(
            status_of(&headers).contains("detail=origin-unreachable"),
            "{headers:?}"
        );
        let (status, _, _) = send(&svc, Method::GET, "/down-mr", &down).await;
        assert_eq!(
            status,
            StatusCode::BAD_GATEWAY,
            "must-revalidate forbids it"
        );
        clock.advance(Duration::from_secs(120));
        let (status, _, _) = send(&svc, Method::GET, "/down", &down).await;
        assert_eq!(
            status,
            StatusCode::BAD_GATEWAY,
            "past the maximum staleness"
        );
    }

    pub async fn set_cookie_responses_are_stored_only_when_asked<S: KvStore>(h: Harness<S>) {
        use tower_kv::cache::SetCookieResponses;
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/cookie", &[]).await;
        let (_, headers, _) = send(&svc, Method::GET, "/cookie", &[]).await;
        assert!(
            status_of(&headers).contains("fwd=uri-miss"),
            "refused by default"
        );
        for (policy, prefix, cookie_kept) in [
            (SetCookieResponses::StoreWithoutCookie, "strip:", false),
            (SetCookieResponses::StoreWithCookie, "keep:", true),
        ] {
            let layer = CacheLayer::new(h.store.clone())
                .clock(clock.clone())
                .key_prefix(prefix)
                .set_cookie_responses(policy);
            let svc = stack_with(layer, &calls);
            let (_, first, _) = send(&svc, Method::GET, "/cookie", &[]).await;
            assert_eq!(
                first["set-cookie"], "a=b",
                "the fetching client gets its cookie"
            );
            let (_, again, _) = send(&svc, Method::GET, "/cookie", &[]).await;
            assert!(status_of(&again).contains("hit"), "{policy:?}: {again:?}");
            assert_eq!(again.contains_key("set-cookie"), cookie_kept, "{policy:?}");
        }
    }

    pub async fn poisoning_and_purge_holes_are_closed<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        // The key must be what the origin answers for: an absolute-form
        // target's host wins, and the origin is told that host.
        let poisoned = [("host", "evil.example")];
        let (status, _, body) = send(&svc, Method::GET, "/host", &poisoned).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "host=example.test")
        );
        let (_, headers, body) = send(&svc, Method::GET, "/host", &[]).await;
        assert!(status_of(&headers).contains("hit"), "{headers:?}");
        assert_eq!(body, "host=example.test");
        let two_hosts = Request::get("/max-age")
            .header("host", "example.test")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(two_hosts).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "two Host fields");
        // A GET with a body carries input no key covers: it bypasses.
        let (_, headers, _) = send(&svc, Method::GET, "/nothing", &[("content-length", "5")]).await;
        assert_eq!(status_of(&headers), "tower-kv;fwd=bypass");

        // Purges find what they claim: host case, and URLs past 400 bytes.
        let long = format!("/max-age?q={}", "x".repeat(500));
        send(&svc, Method::GET, &long, &[]).await;
        let purger = CacheLayer::new(h.store.clone()).purger();
        let purged = purger
            .purge_prefix("http://EXAMPLE.test/max-age?q=xx")
            .await;
        assert_eq!(purged.unwrap(), 1, "the long URL's response, by prefix");
        let (_, headers, _) = send(&svc, Method::GET, &long, &[]).await;
        assert!(status_of(&headers).contains("fwd=uri-miss"), "{headers:?}");
    }

    /// RFC 9111 §3: a 5xx with explicit freshness is stored and reused; one
    /// without is never stored, whatever the default TTL.
    pub async fn explicit_freshness_stores_any_final_status<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let (status, _, first) = send(&svc, Method::GET, "/error-fresh", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, headers, again) = send(&svc, Method::GET, "/error-fresh", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(status_of(&headers).contains("hit"), "{headers:?}");
        assert_eq!(first, again);
        for _ in 0..2 {
            let (_, headers, _) = send(&svc, Method::GET, "/error", &[]).await;
            assert!(status_of(&headers).contains("fwd=uri-miss"), "{headers:?}");
        }
    }

    /// RFC 9110 §9.3.2: a HEAD answered from storage carries the GET's length.
    pub async fn head_from_storage_keeps_the_length<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let (_, _, body) = send(&svc, Method::GET, "/unsized", &[]).await;
        let (_, headers, head_body) = send(&svc, Method::HEAD, "/unsized", &[]).await;
        assert!(status_of(&headers).contains("hit"), "{headers:?}");
        assert!(head_body.is_empty());
        assert_eq!(headers["content-length"], body.len().to_string().as_str());
    }

    pub async fn credentialed_requests_bypass_unless_keyed_cookies<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/max-age", &[]).await;
        for credential in [("cookie", "id=abc"), ("authorization", "Bearer t")] {
            let (_, headers, body) = send(&svc, Method::GET, "/max-age", &[credential]).await;
            assert_eq!(status_of(&headers), "tower-kv;fwd=bypass", "{credential:?}");
            assert_ne!(body, "call=1", "{credential:?}: not served from storage");
        }
        let before = calls.load(Ordering::SeqCst);
        send(&svc, Method::GET, "/max-age", &[("cookie", "id=abc")]).await;
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "nothing stored");

        // Keyed on `lang`: cached per language, other cookies ignored.
        let layer = CacheLayer::new(h.store.clone())
            .clock(clock.clone())
            .key_prefix("keyed:")
            .key_cookies(["lang"]);
        let svc = stack_with(layer, &calls);
        let fr = [("cookie", "lang=fr; id=alice")];
        let (_, _, first) = send(&svc, Method::GET, "/max-age", &fr).await;
        let (_, headers, again) = send(
            &svc,
            Method::GET,
            "/max-age",
            &[("cookie", "id=bob; lang=fr")],
        )
        .await;
        assert!(status_of(&headers).contains("hit"), "{headers:?}");
        assert_eq!(first, again);
        let (_, headers, _) = send(&svc, Method::GET, "/max-age", &[("cookie", "lang=de")]).await;
        assert!(status_of(&headers).contains("fwd=uri-miss"), "{headers:?}");
        let (_, headers, _) = send(
            &svc,
            Method::GET,
            "/max-age",
            &[("authorization", "Bearer t")],
        )
        .await;
        assert_eq!(status_of(&headers), "tower-kv;fwd=bypass");
    }

    pub async fn purger_follows_a_prefix_set_after_it<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone()).clock(clock.clone());
        let purger = layer.purger();
        // A copy, as app state holds one (axum clones it per request).
        let copy = purger.clone();
        let layer = layer.key_prefix("late:");
        let svc = stack_with(layer, &calls);
        send(&svc, Method::GET, "/max-age", &[]).await;
        let purged = copy.purge_url("http://example.test/max-age").await;
        assert!(
            purged.unwrap() > 0,
            "a copy of the purger uses the prefix set after it"
        );
        send(&svc, Method::GET, "/max-age", &[]).await;
        let purged = purger.purge_url("http://example.test/max-age").await;
        assert!(
            purged.unwrap() > 0,
            "the purger uses the prefix set after it"
        );
        let (_, headers, _) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(status_of(&headers).contains("fwd=uri-miss"), "{headers:?}");
    }

    pub async fn concurrent_misses_make_one_origin_call<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let collapsed = hundred_misses(&[svc]).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one origin call for 100 misses"
        );
        assert_eq!(collapsed, 99);
    }

    /// Two instances × 50 concurrent misses of one URL: one origin call for
    /// the fleet (a lease in the store), the rest collapsed.
    pub async fn fleet_misses_make_one_origin_call<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let a = stack(h.store.clone(), &clock, &calls);
        let b = stack(h.twin.clone(), &clock, &calls);
        let collapsed = hundred_misses(&[a, b]).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one origin call for the fleet"
        );
        assert_eq!(collapsed, 99);
    }

    /// A lease holder that hangs (or died) holds the others back at most
    /// the lease's TTL: then they fetch themselves.
    pub async fn a_stuck_lease_holder_delays_others_at_most_its_ttl<S: KvStore>(h: Harness<S>) {
        const LEASE: Duration = Duration::from_millis(500);
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = |store| {
            CacheLayer::new(store)
                .clock(clock.clone())
                .fleet_single_flight(Some(LEASE))
        };
        let (a, b) = (
            stack_with(layer(h.store.clone()), &calls),
            stack_with(layer(h.twin.clone()), &calls),
        );
        let stuck =
            tokio::spawn(
                async move { send(&a, Method::GET, "/max-age", &[("x-hang", "1")]).await },
            );
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let (status, _, body) = send(&b, Method::GET, "/max-age", &[]).await;
        let waited = started.elapsed();
        stuck.abort();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "call=2"));
        assert!(
            waited >= LEASE - Duration::from_millis(100) && waited < LEASE + Duration::from_secs(2),
            "waited {waited:?} for a {LEASE:?} lease"
        );
    }

    pub async fn stale_entries_are_revalidated_with_304<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        assert_eq!(send(&svc, Method::GET, "/reval", &[]).await.2, "call=1");
        clock.advance(Duration::from_secs(5));
        let (status, headers, body) = send(&svc, Method::GET, "/reval", &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "call=1"),
            "the stored body, revalidated"
        );
        assert_eq!(
            headers["x-refreshed"], "yes",
            "the 304's headers refresh the entry"
        );
        assert_eq!(
            status_of(&headers),
            "tower-kv;fwd=stale;fwd-status=304;stored"
        );
        let (_, headers, _) = send(&svc, Method::GET, "/reval", &[]).await;
        assert!(
            status_of(&headers).contains("hit"),
            "fresh again for the 304's max-age"
        );
    }

    pub async fn purge_by_url_prefix_and_tag<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone()).clock(clock.clone());
        let purger = layer.purger();
        let svc = stack_with(layer, &calls);
        let hit = |path: &'static str| {
            let svc = svc.clone();
            async move { status_of(&send(&svc, Method::GET, path, &[]).await.1).contains("hit") }
        };
        for path in ["/max-age", "/tagged/a", "/tagged/b", "/etag"] {
            send(&svc, Method::GET, path, &[]).await;
            assert!(hit(path).await, "{path} cached");
        }
        assert!(
            purger
                .purge_url("http://example.test/max-age")
                .await
                .unwrap()
                > 0
        );
        assert!(!hit("/max-age").await);
        assert_eq!(purger.purge_tag("users").await.unwrap(), 2);
        assert!(!hit("/tagged/a").await && !hit("/tagged/b").await);
        assert!(hit("/etag").await, "untagged entries stay");
        assert!(purger.purge_prefix("http://example.test/").await.unwrap() > 0);
        assert!(!hit("/etag").await);
        let (_, headers, _) = send(&svc, Method::GET, "/tagged/a", &[]).await;
        assert!(
            headers.get("surrogate-key").is_none(),
            "tags never reach clients"
        );
    }

    pub async fn unsized_bodies_are_stored_only_under_the_limit<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/unsized-small", &[]).await;
        let (_, headers, body) = send(&svc, Method::GET, "/unsized-small", &[]).await;
        assert!(
            status_of(&headers).contains("hit"),
            "a small unsized body is stored"
        );
        assert_eq!(body, "call=1");
        for _ in 0..2 {
            let (_, headers, body) = send(&svc, Method::GET, "/unsized-big", &[]).await;
            assert_eq!(body.len(), 4096, "streamed on whole past the limit");
            assert!(body.bytes().all(|b| b == b'y'));
            assert_eq!(
                status_of(&headers),
                "tower-kv;fwd=uri-miss;fwd-status=200",
                "not stored"
            );
        }
    }

    pub async fn query_normalisation_and_custom_keys<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone())
            .clock(clock.clone())
            .normalize_query(true);
        let svc = stack_with(layer, &calls);
        assert_eq!(
            send(&svc, Method::GET, "/max-age?b=2&a=1", &[]).await.2,
            "call=1"
        );
        assert_eq!(
            send(&svc, Method::GET, "/max-age?a=1&b=2", &[]).await.2,
            "call=1",
            "same parameters, one entry"
        );
        assert_eq!(
            send(&svc, Method::GET, "/max-age?a=2&b=1", &[]).await.2,
            "call=2"
        );
        let layer = CacheLayer::new(h.twin.clone())
            .clock(clock.clone())
            .key_prefix("cache2:")
            .key_fn(|uri, _| uri.path().to_owned());
        let svc = stack_with(layer, &calls);
        let first = send(&svc, Method::GET, "/max-age?utm=1", &[]).await.2;
        assert_eq!(
            send(&svc, Method::GET, "/max-age?utm=2", &[]).await.2,
            first,
            "keyed by path alone"
        );
    }

    pub async fn handler_ttl_and_poisoning_defence<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let layer = CacheLayer::new(h.store.clone())
            .clock(clock.clone())
            .route_ttl("/route-ttl/{*rest}", Duration::from_secs(42))
            .strip_request_header(http::HeaderName::from_static("x-forwarded-host"));
        let svc = stack_with(layer, &calls);
        send(&svc, Method::GET, "/handler-ttl", &[]).await;
        let (_, headers, _) = send(&svc, Method::GET, "/handler-ttl", &[]).await;
        assert_eq!(
            status_of(&headers),
            "tower-kv;hit;ttl=5",
            "the handler's CacheTtl, not the default 300 s"
        );
        let poisoned = send(
            &svc,
            Method::GET,
            "/poison",
            &[("x-forwarded-host", "evil.example")],
        )
        .await;
        assert_eq!(
            poisoned.2, "host=none",
            "unkeyed header stripped before the origin"
        );
        assert_eq!(send(&svc, Method::GET, "/poison", &[]).await.2, "host=none");
    }

    pub async fn miss_store_then_hit_with_age<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let (_, headers, body) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert_eq!(
            status_of(&headers),
            "tower-kv;fwd=uri-miss;fwd-status=200;stored"
        );
        assert_eq!(body, "call=1");
        clock.advance(Duration::from_secs(10));
        let (_, headers, body) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert_eq!(body, "call=1", "served from the cache");
        assert_eq!(headers["age"], "10");
        assert_eq!(status_of(&headers), "tower-kv;hit;ttl=50");
        let (_, headers, body) = send(&svc, Method::HEAD, "/max-age", &[]).await;
        assert!(
            body.is_empty() && status_of(&headers).contains("hit"),
            "HEAD answered from the stored GET"
        );
        clock.advance(Duration::from_secs(60));
        let (_, headers, body) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert_eq!(body, "call=2");
        assert!(status_of(&headers).contains("fwd=stale"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    pub async fn a_hit_is_one_store_read<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let store = support::Counting::new(h.store.clone());
        let svc = stack(store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/max-age", &[]).await;
        // The miss's fetch lease is released in the background.
        loop {
            let writes = store.writes();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if store.writes() == writes {
                break;
            }
        }
        let (reads, writes) = (store.reads(), store.writes());
        let (_, headers, _) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(status_of(&headers).contains("hit"));
        assert_eq!(
            (store.reads() - reads, store.writes() - writes),
            (1, 0),
            "one round trip per hit"
        );
    }

    pub async fn vary_keeps_variants_apart<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        let en = [("accept-language", "en")];
        let fr = [("accept-language", "fr")];
        assert_eq!(
            send(&svc, Method::GET, "/vary", &en).await.2,
            "lang=en call=1"
        );
        let (_, headers, body) = send(&svc, Method::GET, "/vary", &fr).await;
        assert_eq!(body, "lang=fr call=2");
        assert!(status_of(&headers).contains("fwd=vary-miss"));
        assert_eq!(
            send(&svc, Method::GET, "/vary", &en).await.2,
            "lang=en call=1"
        );
        assert_eq!(
            send(&svc, Method::GET, "/vary", &fr).await.2,
            "lang=fr call=2"
        );
    }

    pub async fn never_stores_what_a_shared_cache_must_not<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        for (path, headers) in [
            ("/private", vec![]),
            ("/cookie", vec![]),
            ("/max-age", vec![("authorization", "Bearer t")]),
        ] {
            let first = send(&svc, Method::GET, path, &headers).await;
            let second = send(&svc, Method::GET, path, &headers).await;
            assert_ne!(first.2, second.2, "{path} was served from the cache");
            assert!(!status_of(&second.1).contains("stored"), "{path}");
        }
        let before = calls.load(Ordering::SeqCst);
        for _ in 0..2 {
            let (_, headers, body) = send(&svc, Method::GET, "/big", &[]).await;
            assert_eq!(body.len(), 4096, "a large body streams through whole");
            assert_eq!(
                status_of(&headers),
                "tower-kv;fwd=uri-miss;fwd-status=200",
                "not stored"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), before + 2);
    }

    pub async fn request_directives_and_conditionals<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/etag", &[]).await;
        let (status, headers, body) =
            send(&svc, Method::GET, "/etag", &[("if-none-match", "W/\"v1\"")]).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
        assert_eq!(headers["etag"], "\"v1\"");
        send(&svc, Method::GET, "/lm", &[]).await;
        let since = [("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT")];
        assert_eq!(
            send(&svc, Method::GET, "/lm", &since).await.0,
            StatusCode::NOT_MODIFIED
        );
        let before = [("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT")];
        assert_eq!(
            send(&svc, Method::GET, "/lm", &before).await.0,
            StatusCode::OK
        );
        let (_, headers, _) =
            send(&svc, Method::GET, "/etag", &[("cache-control", "no-cache")]).await;
        assert!(
            status_of(&headers).contains("fwd=request"),
            "{}",
            status_of(&headers)
        );
        let (status, _, _) = send(
            &svc,
            Method::GET,
            "/never-seen",
            &[("cache-control", "only-if-cached")],
        )
        .await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        let (_, headers, _) = send(
            &svc,
            Method::GET,
            "/max-age",
            &[("cache-control", "no-store")],
        )
        .await;
        let (_, headers2, _) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(!status_of(&headers).contains("stored"));
        assert!(
            status_of(&headers2).contains("uri-miss"),
            "no-store requests store nothing"
        );
    }

    pub async fn unsafe_methods_invalidate<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(status_of(&send(&svc, Method::GET, "/max-age", &[]).await.1).contains("hit"));
        let (_, headers, _) = send(&svc, Method::POST, "/max-age", &[]).await;
        assert!(status_of(&headers).contains("fwd=method"));
        let (_, headers, _) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(
            status_of(&headers).contains("uri-miss"),
            "a successful POST invalidated the URI"
        );
        assert!(status_of(&send(&svc, Method::GET, "/max-age", &[]).await.1).contains("hit"));
        send(&svc, Method::PUT, "/create", &[]).await;
        let (_, headers, _) = send(&svc, Method::GET, "/max-age", &[]).await;
        assert!(
            status_of(&headers).contains("uri-miss"),
            "the same-origin Location was invalidated"
        );
    }

    pub async fn stale_while_revalidate_refreshes_in_the_background<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        assert_eq!(send(&svc, Method::GET, "/swr2", &[]).await.2, "call=1");
        clock.advance(Duration::from_secs(5));
        let (_, headers, body) = send(&svc, Method::GET, "/swr2", &[]).await;
        assert_eq!(body, "call=1", "stale copy served at once");
        assert!(
            status_of(&headers).contains("hit;ttl=-4"),
            "{}",
            status_of(&headers)
        );
        for _ in 0..100 {
            if calls.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, headers, body) = send(&svc, Method::GET, "/swr2", &[]).await;
        assert_eq!(body, "call=2", "refreshed in the background");
        assert!(status_of(&headers).contains("hit"));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
    }

    pub async fn stale_if_error_serves_the_stale_copy<S: KvStore>(h: Harness<S>) {
        let (clock, calls) = (Clock::manual(), Arc::new(AtomicUsize::new(0)));
        let svc = stack(h.store.clone(), &clock, &calls);
        assert_eq!(send(&svc, Method::GET, "/swr", &[]).await.2, "call=1");
        clock.advance(Duration::from_secs(5));
        let (status, headers, body) = send(&svc, Method::GET, "/swr", &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "call=1"),
            "origin 500: stale copy served"
        );
        assert!(
            status_of(&headers).contains("hit;ttl=-4"),
            "{}",
            status_of(&headers)
        );
    }
}

both_backends!(
    single_ranges_are_served_from_storage,
    cache_groups_are_invalidated_by_unsafe_responses,
    soft_purges_mark_stale_instead_of_deleting,
    targeted_cache_control_wins_and_can_be_stripped,
    stale_is_served_when_the_origin_is_unreachable,
    set_cookie_responses_are_stored_only_when_asked,
    poisoning_and_purge_holes_are_closed,
    explicit_freshness_stores_any_final_status,
    head_from_storage_keeps_the_length,
    credentialed_requests_bypass_unless_keyed_cookies,
    purger_follows_a_prefix_set_after_it,
    miss_store_then_hit_with_age,
    a_hit_is_one_store_read,
    concurrent_misses_make_one_origin_call,
    fleet_misses_make_one_origin_call,
    a_stuck_lease_holder_delays_others_at_most_its_ttl,
    stale_entries_are_revalidated_with_304,
    purge_by_url_prefix_and_tag,
    handler_ttl_and_poisoning_defence,
    query_normalisation_and_custom_keys,
    unsized_bodies_are_stored_only_under_the_limit,
    vary_keeps_variants_apart,
    never_stores_what_a_shared_cache_must_not,
    request_directives_and_conditionals,
    unsafe_methods_invalidate,
    stale_if_error_serves_the_stale_copy,
    stale_while_revalidate_refreshes_in_the_background,
);
