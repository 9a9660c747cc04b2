//! Store outages: a killed or frozen Redis gives errors within the configured
//! timeout (never a hang, never a panic), and the store recovers when Redis returns.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use tower_kv::store::{
    Expiration, GcraRate, KvStore, ListOptions, NearCache, PutOptions, RateRequest, ReadOptions,
    RedisStore, StoreError,
};
use tower_kv::Clock;

const TIMEOUT: Duration = Duration::from_millis(300);
/// Far above TIMEOUT: reaching it means an operation hung.
const HANG: Duration = Duration::from_secs(10);

async fn connect(server: &support::RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .prefix(support::unique_prefix())
        .timeout(TIMEOUT)
        .connect()
        .await
        .expect("connect")
}

/// Runs every kind of operation once; each must fail as "unavailable".
async fn assert_every_operation_fails<S: KvStore>(store: &S) {
    let rate = GcraRate::per(10, Duration::from_secs(1));
    let results: Vec<Result<(), StoreError>> = vec![
        store.get("k").await.map(drop),
        store
            .put("k", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .map(drop),
        store.delete("k").await.map(drop),
        store.list(ListOptions::prefix("")).await.map(drop),
        store
            .insert_if_absent("k", Bytes::new(), PutOptions::new())
            .await
            .map(drop),
        store
            .compare_and_swap("k", None, Bytes::new(), PutOptions::new())
            .await
            .map(drop),
        store.increment("n", 1, Expiration::Never).await.map(drop),
        store
            .rate_limit(&[RateRequest::new("rl", rate, 1)])
            .await
            .map(drop),
    ];
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Err(e) => assert!(e.is_unavailable(), "operation {i}: {e}"),
            Ok(()) => panic!("operation {i} succeeded against a dead store"),
        }
    }
}

/// Retries until the store answers again, bounded.
async fn wait_until_recovered<S: KvStore>(store: &S) {
    for _ in 0..100 {
        if store
            .put("k", Bytes::from_static(b"back"), PutOptions::new())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("store did not recover after the server came back");
}

/// Kill mid-run: errors within the timeout, then success after restart.
async fn outage_and_recovery<S: KvStore>(wrap: impl Fn(RedisStore) -> S) {
    let Some(mut server) = support::RedisServer::start() else {
        return;
    };
    let store = wrap(connect(&server).await);
    store
        .put("k", Bytes::from_static(b"v"), PutOptions::new())
        .await
        .unwrap();

    server.stop();
    tokio::time::timeout(HANG, assert_every_operation_fails(&store))
        .await
        .expect("operations hung on a dead server");

    server.restart();
    wait_until_recovered(&store).await;
    assert_eq!(store.get("k").await.unwrap().unwrap().value, "back");
    assert_eq!(store.increment("n", 2, Expiration::Never).await.unwrap(), 2);
}

#[tokio::test]
async fn redis_killed_server_errors_fast_and_recovers_after_restart() {
    outage_and_recovery(|s| s).await;
}

#[tokio::test]
async fn near_cache_redis_killed_server_errors_fast_and_recovers_after_restart() {
    outage_and_recovery(|s| {
        NearCache::builder(s)
            .default_ttl(Duration::from_secs(60))
            .build()
    })
    .await;
}

#[tokio::test]
async fn frozen_server_hits_the_timeout_instead_of_hanging() {
    let Some(server) = support::RedisServer::start() else {
        return;
    };
    let store = connect(&server).await;
    store
        .put("k", Bytes::from_static(b"v"), PutOptions::new())
        .await
        .unwrap();

    server.pause();
    let result = tokio::time::timeout(HANG, store.get("k"))
        .await
        .expect("get hung");
    assert!(
        matches!(result, Err(StoreError::Timeout(t)) if t == TIMEOUT),
        "{result:?}"
    );
    tokio::time::timeout(HANG, assert_every_operation_fails(&store))
        .await
        .expect("operations hung on a frozen server");

    server.resume();
    wait_until_recovered(&store).await;
    assert_eq!(store.get("k").await.unwrap().unwrap().value, "back");
}

#[tokio::test]
async fn near_cache_serves_last_known_value_only_when_allowed() {
    let Some(mut server) = support::RedisServer::start() else {
        return;
    };
    let clock = Clock::manual();
    // Not watching: a watcher's first subscription announces `Missed`
    // whenever it lands, which would drop the copy this test relies on.
    let cache = NearCache::builder(connect(&server).await)
        .clock(clock.clone())
        .watch_prefix(None)
        .build();
    cache
        .put(
            "features:flags",
            Bytes::from_static(b"{\"beta\":true}"),
            PutOptions::new(),
        )
        .await
        .unwrap();
    let read = ReadOptions::cache_ttl(Duration::from_secs(600));
    assert!(cache
        .get_with("features:flags", read)
        .await
        .unwrap()
        .is_some());

    server.stop();
    assert!(
        cache
            .get_with("features:flags", read)
            .await
            .unwrap()
            .is_some(),
        "fresh local copy needs no store"
    );
    clock.advance(Duration::from_secs(601));
    let strict = cache.get_with("features:flags", read).await;
    assert!(
        strict.is_err_and(|e| e.is_unavailable()),
        "stale value served without permission"
    );
    let lenient = cache
        .get_with("features:flags", read.stale_on_error())
        .await
        .unwrap();
    assert_eq!(lenient.unwrap().value, "{\"beta\":true}");
    assert_every_operation_fails(&cache).await;
}

mod rate_limit_outage {
    use super::*;
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http::{Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_kv::identity::Identity;
    use tower_kv::ratelimit::{OnStoreError, Quota, RateLimitBypassed, RateLimitLayer};

    async fn call(layer: &RateLimitLayer<RedisStore>) -> Response<tower_kv::ResponseBody<String>> {
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert("198.51.100.9:1".parse::<SocketAddr>().unwrap());
        tokio::time::timeout(HANG, svc.oneshot(req))
            .await
            .expect("a request hung on a dead store")
            .unwrap()
    }

    #[tokio::test]
    async fn every_policy_holds_while_redis_is_down_and_recovers() {
        let Some(mut server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let layer = |policy| {
            RateLimitLayer::new(store.clone(), Identity::PeerIp)
                .default_limit(Quota::per_minute(2))
                .on_store_error(policy)
        };
        let local = layer(OnStoreError::LocalFallback);
        let allow = layer(OnStoreError::Allow);
        let reject = layer(OnStoreError::Reject {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(call(&local).await.status(), StatusCode::OK);

        server.stop();
        assert_eq!(call(&local).await.status(), StatusCode::OK);
        assert_eq!(call(&local).await.status(), StatusCode::OK);
        assert_eq!(
            call(&local).await.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "the local limiter limits"
        );
        let res = call(&allow).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.extensions().get::<RateLimitBypassed>().is_some(),
            "bypass is marked"
        );
        let res = call(&reject).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "2");

        server.restart();
        wait_until_recovered(&store).await;
        // The fallback refused this client a moment ago; that refusal was
        // this instance's own and is not remembered: the store decides.
        assert_eq!(call(&local).await.status(), StatusCode::OK);
        for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
            let res = call(&reject).await;
            assert_eq!(
                res.status(),
                expected,
                "store decisions again after restart"
            );
            assert!(res.headers().contains_key("ratelimit"));
        }
    }
}

mod rate_limit_round_trips {
    use super::*;
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http::{Method, Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_kv::identity::Identity;
    use tower_kv::ratelimit::{Limit, Quota, RateLimitLayer};

    /// Script calls the server has received (every tower-kv operation is
    /// one), from `INFO commandstats`.
    async fn script_calls(server: &support::RedisServer) -> u64 {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    #[tokio::test]
    async fn one_round_trip_per_request_even_with_several_quotas() {
        let Some(server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let limit = Limit::new(Quota::per_second(10)).and(Quota::per_hour(1000));
        let layer =
            RateLimitLayer::new(store, Identity::PeerIp).route(Method::GET, "/search", limit);
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        let request = || {
            let mut req = Request::get("/search").body(()).unwrap();
            req.extensions_mut()
                .insert("198.51.100.10:1".parse::<SocketAddr>().unwrap());
            req
        };
        // Warm up: loads the script (NOSCRIPT + SCRIPT LOAD happen once).
        svc.clone().oneshot(request()).await.unwrap();
        let before = script_calls(&server).await;
        for _ in 0..5 {
            let res = svc.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        assert_eq!(
            script_calls(&server).await - before,
            5,
            "one script call per request"
        );
    }
}

mod session_outage {
    use super::*;
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_kv::session::{Session, SessionLayer};

    /// Loads the session, waits, then changes it: a store that dies in
    /// between fails the save.
    async fn handler(req: Request<()>) -> Result<Response<String>, Infallible> {
        let session = req.extensions().get::<Session>().unwrap().clone();
        if session.get::<String>("k").await.is_err() {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(res);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        session.insert("k", "v").await.unwrap();
        Ok(Response::new(String::new()))
    }

    #[tokio::test]
    async fn a_change_that_cannot_be_saved_is_a_503_and_sessions_recover() {
        let Some(mut server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let svc = ServiceBuilder::new()
            .layer(SessionLayer::new(store.clone()))
            .service_fn(handler);
        let call = || {
            let svc = svc.clone();
            async move {
                tokio::time::timeout(HANG, svc.oneshot(Request::post("/").body(()).unwrap()))
                    .await
                    .expect("hung")
            }
        };
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);

        let in_flight = tokio::spawn(call());
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop();
        let res = in_flight.await.unwrap().unwrap();
        assert_eq!(
            res.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "a lost change is not reported as saved"
        );
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(
            call().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "load fails: 503"
        );

        server.restart();
        wait_until_recovered(&store).await;
        let res = call().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers().contains_key("set-cookie"),
            "a new session after recovery"
        );
    }
}

mod flags_outage {
    use super::*;
    use tower_kv::flags::{FeatureFlags, Flag, FlagWriteError};

    #[tokio::test]
    async fn flags_keep_the_last_good_document_while_redis_is_down() {
        let Some(mut server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let clock = Clock::manual();
        let flags = FeatureFlags::new(store.clone()).clock(clock.clone());
        flags
            .set_flag("beta_feature", Flag::Bool(true))
            .await
            .unwrap();
        assert!(flags.document().await.flags.contains_key("beta_feature"));
        let cold = FeatureFlags::new(store.clone());

        server.stop();
        clock.advance(Duration::from_secs(601));
        let doc = tokio::time::timeout(HANG, flags.document())
            .await
            .expect("hung");
        assert_eq!(
            doc.flags.get("beta_feature"),
            Some(&Flag::Bool(true)),
            "last good document kept"
        );
        let doc = tokio::time::timeout(HANG, cold.document())
            .await
            .expect("hung");
        assert!(doc.flags.is_empty(), "never loaded: every flag off");
        assert!(flags.set_flag("x", Flag::Bool(true)).await.is_err());

        server.restart();
        wait_until_recovered(&store).await;
        flags.set_flag("after", Flag::Bool(true)).await.unwrap();
        assert!(flags.document().await.flags.contains_key("after"));
    }

    /// A write that times out on a frozen Redis is "outcome unknown" (it
    /// lands when Redis resumes), and this process does not keep serving
    /// its stale copy until the cache TTL runs out.
    #[tokio::test]
    async fn a_timed_out_write_is_outcome_unknown_and_read_again() {
        let Some(server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let flags = FeatureFlags::new(store.clone()).clock(Clock::manual());
        flags.set_flag("kill", Flag::Bool(false)).await.unwrap();
        assert_eq!(flags.document().await.flags["kill"], Flag::Bool(false));

        server.pause();
        let written = tokio::time::timeout(HANG, flags.replace_json(br#"{"kill": true}"#))
            .await
            .expect("hung");
        assert!(
            matches!(written, Err(FlagWriteError::OutcomeUnknown(_))),
            "{written:?}"
        );
        server.resume();
        wait_until_recovered(&store).await;
        // The manual clock never moved: only the dropped local copy makes
        // this read go to the store, where the write landed.
        assert_eq!(flags.document().await.flags["kill"], Flag::Bool(true));
    }
}

mod abtest_outage {
    use super::*;
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};
    use tower_kv::abtest::AbTestLayer;
    use tower_kv::identity::Identity;

    #[tokio::test]
    async fn a_store_outage_means_control_and_the_request_is_served() {
        let Some(mut server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let config = br#"{"variants": ["control", "treatment"], "weights": [0, 1]}"#;
        store
            .put(
                "test:checkout:config",
                Bytes::from_static(config),
                PutOptions::new(),
            )
            .await
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(AbTestLayer::new(store.clone(), Identity::header("x-user")).test("checkout"))
            .service_fn(|req: Request<()>| async move {
                let v = req.headers()["x-variant-checkout"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                Ok::<_, Infallible>(Response::new(v))
            });
        let call = |user: &'static str| {
            let svc = svc.clone();
            async move {
                let req = Request::get("/").header("x-user", user).body(()).unwrap();
                let res = tokio::time::timeout(HANG, svc.oneshot(req))
                    .await
                    .expect("hung")
                    .unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(call("u1").await.1, "treatment");
        server.stop();
        let res = call("u2").await;
        assert_eq!(res.0, StatusCode::OK);
        assert_eq!(res.1, "control", "store down: control, request served");
        server.restart();
        wait_until_recovered(&store).await;
        store
            .put(
                "test:checkout:config",
                Bytes::from_static(config),
                PutOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(call("u3").await.1, "treatment", "recovered");
    }
    /// A config write that times out on a frozen Redis is "outcome
    /// unknown", and this process reads the config again next request.
    #[tokio::test]
    async fn a_timed_out_config_write_is_outcome_unknown_and_read_again() {
        let Some(server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let layer = AbTestLayer::new(store.clone(), Identity::header("x-user"))
            .test("checkout")
            .clock(Clock::manual());
        let svc =
            ServiceBuilder::new()
                .layer(layer.clone())
                .service_fn(|req: Request<()>| async move {
                    let variant = req.headers()["x-variant-checkout"].clone();
                    Ok::<_, Infallible>(Response::new(variant.to_str().unwrap().to_owned()))
                });
        let variant = |user: &'static str| {
            let svc = svc.clone();
            async move {
                let req = Request::get("/").header("x-user", user).body(()).unwrap();
                let res = svc.oneshot(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8(body.to_vec()).unwrap()
            }
        };
        let only = |v: &str| format!(r#"{{"variants": ["{v}"], "weights": [1]}}"#);
        layer
            .set_config("checkout", only("a").as_bytes())
            .await
            .unwrap();
        assert_eq!(variant("u1").await, "a");

        server.pause();
        let written =
            tokio::time::timeout(HANG, layer.set_config("checkout", only("b").as_bytes()))
                .await
                .expect("hung");
        assert!(
            matches!(
                written,
                Err(tower_kv::abtest::SetConfigError::OutcomeUnknown(_))
            ),
            "{written:?}"
        );
        server.resume();
        wait_until_recovered(&store).await;
        // The layer's clock never moved: only the dropped local copy makes
        // this request read the config the write left in the store.
        assert_eq!(variant("u2").await, "b");
    }
}

mod cache_outage {
    use super::*;
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_kv::cache::CacheLayer;

    #[tokio::test]
    async fn a_store_outage_bypasses_the_cache_and_requests_are_served() {
        let Some(mut server) = support::RedisServer::start() else {
            return;
        };
        let store = connect(&server).await;
        let svc = ServiceBuilder::new()
            .layer(CacheLayer::new(store.clone()))
            .service_fn(|_: Request<()>| async {
                let res = Response::builder()
                    .header("cache-control", "max-age=60")
                    .header("content-length", "2");
                Ok::<_, Infallible>(
                    res.body(http_body_util::Full::new(Bytes::from_static(b"ok")))
                        .unwrap(),
                )
            });
        let call = || {
            let svc = svc.clone();
            async move {
                let req = Request::get("http://example.test/").body(()).unwrap();
                let res = tokio::time::timeout(HANG, svc.oneshot(req))
                    .await
                    .expect("hung")
                    .unwrap();
                (
                    res.status(),
                    res.headers()["cache-status"].to_str().unwrap().to_owned(),
                )
            }
        };
        call().await;
        assert!(call().await.1.contains("hit"));
        server.stop();
        let (status, cache_status) = call().await;
        assert_eq!(status, StatusCode::OK, "served by the origin");
        assert!(cache_status.contains("fwd=bypass"), "{cache_status}");
        server.restart();
        wait_until_recovered(&store).await;
        call().await;
        assert!(
            call().await.1.contains("hit"),
            "caching again after recovery"
        );
    }
}

/// Change notices survive a Redis restart: while the subscription is down
/// the TTL holds, and once it is back — resubscribed, told to refetch —
/// changes propagate again, including the one made while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_changes_resume_after_a_restart() {
    use tower_kv::flags::{FeatureFlags, Flag};

    let Some(mut server) = support::RedisServer::start() else {
        return;
    };
    let prefix = support::unique_prefix();
    let instance = || {
        RedisStore::builder(server.url())
            .prefix(&prefix)
            .timeout(TIMEOUT)
            .connect()
    };
    let (a, b) = (
        FeatureFlags::new(instance().await.unwrap()),
        FeatureFlags::new(instance().await.unwrap()),
    );
    let on = |flags: FeatureFlags<RedisStore>| async move {
        let document = flags.document().await;
        document
            .flags
            .get("kill")
            .is_some_and(|flag| flag.evaluate("kill", None).enabled)
    };
    b.document().await;
    let seen_within = |want: bool, limit: Duration| {
        let b = b.clone();
        async move {
            let started = std::time::Instant::now();
            while on(b.clone()).await != want {
                assert!(
                    started.elapsed() < limit,
                    "{want} not seen within {limit:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started.elapsed()
        }
    };
    a.set_flag("kill", Flag::Bool(true)).await.unwrap();
    seen_within(true, Duration::from_secs(1)).await;

    server.restart();
    // The restarted server is empty; the first write that lands turns the
    // flag off again, before B has resubscribed.
    let restarted = std::time::Instant::now();
    while a.set_flag("kill", Flag::Bool(false)).await.is_err() {
        assert!(restarted.elapsed() < HANG, "writes never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = seen_within(false, Duration::from_secs(5)).await;
    eprintln!("after a restart, the first change was seen in {resumed:?}");
    for i in 0..10 {
        a.set_flag("kill", Flag::Bool(i % 2 == 0)).await.unwrap();
        seen_within(i % 2 == 0, Duration::from_secs(1)).await;
    }
}
