//! The rate-limit layer against every backend: `memory::*` and `redis::*`.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use support::Harness;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::identity::{Identity, TrustedProxies};
use tower_kv::ratelimit::{Limit, MissingIdentity, Quota, RateLimitLayer, RATELIMIT};
use tower_kv::store::KvStore;
use tower_kv::ResponseBody;

type Reply = Response<ResponseBody<Full<Bytes>>>;

/// A trivial inner service: 200, or 401 when `x-password` is not `right`
/// on `/login`.
fn app(
    layer: RateLimitLayer<impl KvStore>,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<()>| async move {
            let denied = req.uri().path() == "/login"
                && req.headers().get("x-password").is_none_or(|p| p != "right");
            let status = if denied {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        })
}

/// A bucket key as the layer writes it: `route|quota|` and the identity,
/// after the default prefix and the identity's FNV-1a hash tag.
fn bucket_key(route_and_quota: &str, identity: &str) -> String {
    let fnv = identity.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("ratelimit:{{{fnv:08x}}}{route_and_quota}{identity}")
}

fn get(path: &str, peer: &str) -> Request<()> {
    let mut req = Request::get(path).body(()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

async fn send<S>(svc: &S, req: Request<()>) -> Reply
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

fn header(res: &Reply, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

mod cases {
    use super::*;

    pub async fn exactly_the_quota_passes_under_contention<S: KvStore>(h: Harness<S>) {
        // Two service stacks ("instances") on one store.
        let layer = |store| {
            RateLimitLayer::new(store, Identity::PeerIp).default_limit(Quota::per_minute(100))
        };
        let (a, b) = (app(layer(h.store.clone())), app(layer(h.twin.clone())));
        let started = Instant::now();
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { send(&svc, get("/", "203.0.113.7:1000")).await.status() })
            })
            .collect();
        let mut ok = 0u32;
        for handle in handles {
            match handle.await.unwrap() {
                StatusCode::OK => ok += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("unexpected {other}"),
            }
        }
        // GCRA: the burst, plus one per 600 ms that passed on a real clock.
        let replenished = match h.clock {
            Some(_) => 0,
            None => (started.elapsed().as_millis() / 600) as u32 + 1,
        };
        assert!((100..=100 + replenished).contains(&ok), "{ok} passed");
    }

    /// Bucket keys keep one layout across versions (instances of a fleet
    /// upgraded one by one share their buckets): prefix, the identity's
    /// FNV-1a hash tag, route, quota, identity.
    pub async fn bucket_keys_keep_their_layout(h: Harness<impl KvStore>) {
        let layer = |identity| {
            RateLimitLayer::new(h.store.clone(), identity)
                .default_limit(Quota::per_minute(5).named("minute"))
                .route_any(
                    "/api/{*rest}",
                    Limit::new(Quota::per_minute(5).named("a")).and(Quota::per_hour(9).named("b")),
                )
        };
        let peer = app(layer(Identity::PeerIp));
        send(&peer, get("/", "203.0.113.9:1")).await;
        send(&peer, get("/api/x", "[2001:db8:1:2::7]:1")).await;
        send(&app(layer(Identity::Global)), get("/", "203.0.113.9:1")).await;
        let mut keys: Vec<String> = h
            .store
            .list(tower_kv::store::ListOptions::prefix("ratelimit:"))
            .await
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.name)
            .collect();
        keys.sort();
        let mut expected = vec![
            bucket_key("default|minute|", "ip:203.0.113.9"),
            bucket_key("* /api/{*rest}|a|", "ip:2001:db8:1:2::/64"),
            bucket_key("* /api/{*rest}|b|", "ip:2001:db8:1:2::/64"),
            bucket_key("default|minute|", "global"),
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }

    pub async fn key_prefix_after_the_limits_applies(h: Harness<impl KvStore>) {
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .default_limit(Quota::per_minute(1).fixed_window())
            .route_any("/api/{*rest}", Quota::per_minute(1).fixed_window())
            .key_prefix("late-rl:");
        let svc = app(layer);
        for path in ["/", "/api/x"] {
            assert_eq!(
                send(&svc, get(path, "203.0.113.9:1")).await.status(),
                StatusCode::OK
            );
            assert_eq!(
                send(&svc, get(path, "203.0.113.9:1")).await.status(),
                StatusCode::TOO_MANY_REQUESTS
            );
        }
        let keys = h
            .store
            .list(tower_kv::store::ListOptions::prefix("late-rl:"))
            .await
            .unwrap()
            .keys;
        assert_eq!(
            keys.len(),
            2,
            "both limits keyed under the late prefix: {keys:?}"
        );
    }

    pub async fn windows_are_exact_under_contention<S: KvStore>(h: Harness<S>) {
        for quota in [
            Quota::per_day(100).fixed_window(),
            Quota::per_day(100).sliding_window(),
        ] {
            let layer =
                |store| RateLimitLayer::new(store, Identity::Global).default_limit(quota.clone());
            let (a, b) = (app(layer(h.store.clone())), app(layer(h.twin.clone())));
            let handles: Vec<_> = (0..1000)
                .map(|i| {
                    let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
                    tokio::spawn(
                        async move { send(&svc, get("/", "203.0.113.7:1000")).await.status() },
                    )
                })
                .collect();
            let mut ok = 0;
            for handle in handles {
                ok += usize::from(handle.await.unwrap() == StatusCode::OK);
            }
            assert_eq!(ok, 100, "{quota:?}");
            assert!(h
                .store
                .delete(&bucket_key("default|day|", "global"))
                .await
                .unwrap());
        }
    }

    pub async fn tighter_quota_wins_and_denials_consume_nothing<S: KvStore>(h: Harness<S>) {
        let limit =
            Limit::new(Quota::per_minute(3).named("short")).and(Quota::per_hour(10).named("long"));
        let svc = app(RateLimitLayer::new(h.store.clone(), Identity::PeerIp).default_limit(limit));
        for _ in 0..3 {
            assert_eq!(
                send(&svc, get("/", "198.51.100.1:1")).await.status(),
                StatusCode::OK
            );
        }
        for _ in 0..5 {
            let res = send(&svc, get("/", "198.51.100.1:1")).await;
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            let current = header(&res, "ratelimit");
            assert!(current.starts_with(r#""short";r=0;t="#), "{current}");
            assert!(
                current.contains(r#""long";r=7;"#),
                "a 429 consumed the long quota: {current}"
            );
            assert_eq!(
                header(&res, "ratelimit-policy"),
                r#""short";q=3;w=60, "long";q=10;w=3600"#
            );
        }
    }

    pub async fn headers_count_down_and_retry_after_rounds_up<S: KvStore>(h: Harness<S>) {
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .default_limit(Quota::per_second(2))
            .legacy_headers(true);
        let svc = app(layer);
        let first = send(&svc, get("/", "198.51.100.2:1")).await;
        assert_eq!(header(&first, "ratelimit"), r#""second";r=1;t=1"#);
        assert_eq!(header(&first, "x-ratelimit-remaining"), "1");
        let second = send(&svc, get("/", "198.51.100.2:1")).await;
        assert_eq!(header(&second, "ratelimit"), r#""second";r=0;t=1"#);
        let denied = send(&svc, get("/", "198.51.100.2:1")).await;
        assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            header(&denied, "retry-after"),
            "1",
            "500 ms rounds up to 1, never 0"
        );
        assert_eq!(header(&denied, "content-type"), "text/plain; charset=utf-8");
        h.advance(Duration::from_millis(550)).await;
        let again = send(&svc, get("/", "198.51.100.2:1")).await;
        assert_eq!(again.status(), StatusCode::OK, "one unit back after 500 ms");
        assert_eq!(header(&again, "ratelimit"), r#""second";r=0;t=1"#);
    }

    pub async fn spoofed_forwarded_for_does_not_change_the_key<S: KvStore>(h: Harness<S>) {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let layer = RateLimitLayer::new(h.store.clone(), Identity::client_ip(proxies))
            .default_limit(Quota::per_minute(1));
        let svc = app(layer);
        let spoofed = |xff: &str, peer: &str| {
            let mut req = get("/", peer);
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
            req
        };
        assert_eq!(
            send(&svc, spoofed("1.1.1.1", "198.51.100.3:1"))
                .await
                .status(),
            StatusCode::OK
        );
        let res = send(&svc, spoofed("2.2.2.2", "198.51.100.3:1")).await;
        assert_eq!(
            res.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "an untrusted peer chose its key"
        );
        // Behind the trusted proxy, the forwarded clients are told apart.
        assert_eq!(
            send(&svc, spoofed("3.3.3.3", "10.0.0.1:1")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(&svc, spoofed("4.4.4.4", "10.0.0.1:1")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            send(&svc, spoofed("9.9.9.9, 3.3.3.3", "10.0.0.1:1"))
                .await
                .status(),
            StatusCode::TOO_MANY_REQUESTS,
            "entries left of the client are the client's own claims"
        );
    }

    pub async fn route_table_matches_as_documented<S: KvStore>(h: Harness<S>) {
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .default_limit(Quota::per_minute(2))
            .route(Method::GET, "/users/{id}", Quota::per_minute(1))
            .route_any("/api/{*rest}", Limit::new(Quota::per_minute(10)).cost(5))
            .exempt("/health");
        let svc = app(layer);
        let peer = "198.51.100.4:1";
        let status = |res: Reply| res.status();
        // A parameter route: one bucket for every id.
        assert_eq!(
            status(send(&svc, get("/users/1", peer)).await),
            StatusCode::OK
        );
        assert_eq!(
            status(send(&svc, get("/users/2", peer)).await),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Another method on that path falls to the default limit.
        let post = |path: &str| {
            let mut req = get(path, peer);
            *req.method_mut() = Method::POST;
            req
        };
        assert_eq!(status(send(&svc, post("/users/1")).await), StatusCode::OK);
        // A wildcard with cost 5: two requests spend 10.
        assert_eq!(
            status(send(&svc, get("/api/a/b", peer)).await),
            StatusCode::OK
        );
        assert_eq!(status(send(&svc, post("/api/c")).await), StatusCode::OK);
        let res = send(&svc, get("/api/d", peer)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(header(&res, "ratelimit").contains("r=0"));
        // Exempt: never limited, no headers.
        for _ in 0..5 {
            let res = send(&svc, get("/health", peer)).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.headers().get(RATELIMIT).is_none());
        }
        // Unlisted paths share the default limit (one used by POST /users/1).
        assert_eq!(
            status(send(&svc, get("/other", peer)).await),
            StatusCode::OK
        );
        assert_eq!(
            status(send(&svc, get("/other", peer)).await),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    pub async fn only_counted_responses_consume_quota<S: KvStore>(h: Harness<S>) {
        let login = Limit::new(Quota::per_minute(3))
            .count_when(|res| res.status == StatusCode::UNAUTHORIZED);
        let svc = app(
            RateLimitLayer::new(h.store.clone(), Identity::PeerIp).route(
                Method::GET,
                "/login",
                login,
            ),
        );
        let attempt = |password: &str| {
            let mut req = get("/login", "198.51.100.5:1");
            req.headers_mut()
                .insert("x-password", password.parse().unwrap());
            req
        };
        for _ in 0..10 {
            assert_eq!(
                send(&svc, attempt("right")).await.status(),
                StatusCode::OK,
                "successes are free"
            );
        }
        for _ in 0..3 {
            assert_eq!(
                send(&svc, attempt("wrong")).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let res = send(&svc, attempt("right")).await;
        assert_eq!(
            res.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "three failures lock the door"
        );
        assert!(header(&res, "retry-after").parse::<u64>().unwrap() >= 1);
    }

    /// Concurrent guesses, all in the handler at once on two instances,
    /// pass only as many as the quota allows (each reserves before the
    /// handler); correct answers give their reservation back.
    pub async fn counted_responses_cannot_overshoot_in_flight<S: KvStore>(h: Harness<S>) {
        let slow_login = |store| {
            let login = Limit::new(Quota::per_minute(3))
                .count_when(|res| res.status == StatusCode::UNAUTHORIZED);
            ServiceBuilder::new()
                .layer(RateLimitLayer::new(store, Identity::PeerIp).default_limit(login))
                .service_fn(|req: Request<()>| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let right = req.headers().contains_key("x-right");
                    let mut res = Response::new(Full::new(Bytes::new()));
                    if !right {
                        *res.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, Infallible>(res)
                })
        };
        let instances = [slow_login(h.store.clone()), slow_login(h.twin.clone())];
        let attempt = |i: usize, right: bool| {
            let svc = instances[i % 2].clone();
            let mut req = get("/login", "198.51.100.9:1");
            if right {
                req.headers_mut().insert("x-right", "1".parse().unwrap());
            }
            tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
        };
        let right: Vec<_> = (0..3).map(|i| attempt(i, true)).collect();
        for r in right {
            assert_eq!(r.await.unwrap(), StatusCode::OK);
        }
        let guesses: Vec<_> = (0..40).map(|i| attempt(i, false)).collect();
        let mut statuses = Vec::new();
        for g in guesses {
            statuses.push(g.await.unwrap());
        }
        let failed = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!((failed, refused), (3, 37));
    }

    /// A client rotating through the addresses of its IPv6 /64 is one
    /// client; its neighbour network is another.
    pub async fn an_ipv6_network_is_one_client<S: KvStore>(h: Harness<S>) {
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .default_limit(Quota::per_minute(2));
        let svc = app(layer.clone());
        for peer in ["[2001:db8:7:1::1]:1", "[2001:db8:7:1::2]:1"] {
            assert_eq!(send(&svc, get("/", peer)).await.status(), StatusCode::OK);
        }
        let rotated = get("/", "[2001:db8:7:1:ffff:ffff:ffff:ffff]:9");
        assert_eq!(
            send(&svc, rotated).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let neighbour = get("/", "[2001:db8:7:2::1]:1");
        assert_eq!(send(&svc, neighbour).await.status(), StatusCode::OK);

        // Per address, on request; and a wider grouping takes in the neighbour.
        let per_address = app(layer.clone().key_prefix("rl128:").ipv6_prefix(128));
        for n in 1..=4 {
            let peer = format!("[2001:db8:7:1::{n}]:1");
            assert_eq!(
                send(&per_address, get("/", &peer)).await.status(),
                StatusCode::OK
            );
        }
        let site = app(layer.key_prefix("rl48:").ipv6_prefix(48));
        for (peer, status) in [
            ("[2001:db8:7:1::1]:1", StatusCode::OK),
            ("[2001:db8:7:2::1]:1", StatusCode::OK),
            ("[2001:db8:7:3::1]:1", StatusCode::TOO_MANY_REQUESTS),
        ] {
            assert_eq!(send(&site, get("/", peer)).await.status(), status, "{peer}");
        }
    }

    pub async fn missing_identity_has_a_configured_answer<S: KvStore>(h: Harness<S>) {
        let no_peer = || Request::get("/").body(()).unwrap();
        let layer = |policy| {
            RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
                .default_limit(Quota::per_minute(1))
                .on_missing_identity(policy)
        };
        let reject = app(layer(MissingIdentity::default()));
        assert_eq!(
            send(&reject, no_peer()).await.status(),
            StatusCode::BAD_REQUEST
        );
        let allow = app(layer(MissingIdentity::Allow));
        for _ in 0..3 {
            assert_eq!(send(&allow, no_peer()).await.status(), StatusCode::OK);
        }
        let shared = app(layer(MissingIdentity::SharedBucket));
        assert_eq!(send(&shared, no_peer()).await.status(), StatusCode::OK);
        assert_eq!(
            send(&shared, no_peer()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Identified clients are not in the anonymous bucket.
        assert_eq!(
            send(&shared, get("/", "198.51.100.6:1")).await.status(),
            StatusCode::OK
        );
    }

    pub async fn works_as_an_axum_route_layer<S: KvStore>(h: Harness<S>) {
        use axum::routing::get as axum_get;
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .key_prefix("ratelimit:login:")
            .default_limit(Quota::per_minute(1));
        let router = axum::Router::new()
            .route("/limited", axum_get(|| async { "ok" }))
            .route_layer(layer)
            .route("/free", axum_get(|| async { "ok" }));
        let call = |path: &str| {
            let mut req = Request::get(path).body(axum::body::Body::empty()).unwrap();
            req.extensions_mut()
                .insert("198.51.100.7:1".parse::<SocketAddr>().unwrap());
            router.clone().oneshot(req)
        };
        assert_eq!(call("/limited").await.unwrap().status(), StatusCode::OK);
        assert_eq!(
            call("/limited").await.unwrap().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(call("/free").await.unwrap().status(), StatusCode::OK);
        assert_eq!(call("/free").await.unwrap().status(), StatusCode::OK);
    }
}

both_backends!(
    bucket_keys_keep_their_layout,
    key_prefix_after_the_limits_applies,
    exactly_the_quota_passes_under_contention,
    windows_are_exact_under_contention,
    tighter_quota_wins_and_denials_consume_nothing,
    headers_count_down_and_retry_after_rounds_up,
    spoofed_forwarded_for_does_not_change_the_key,
    route_table_matches_as_documented,
    only_counted_responses_consume_quota,
    counted_responses_cannot_overshoot_in_flight,
    an_ipv6_network_is_one_client,
    missing_identity_has_a_configured_answer,
    works_as_an_axum_route_layer,
);
