//! Running it in production, on every backend: shadow mode, quotas per
//! tier, allow- and deny-lists, refusals remembered in process, and what the
//! layers report through `metrics` and `tracing`.
//!
//! One recorder is installed for this test binary; the cases take turns
//! (a lock), so each reads only the counts it caused.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::{Counting, Harness};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::identity::{Identity, UserId};
use tower_kv::ratelimit::{AccessList, Limit, Quota, RateLimitLayer, ShadowLimited, Tiers};
use tower_kv::store::KvStore;
use tower_kv::ResponseBody;

type Reply = Response<ResponseBody<Full<Bytes>>>;

/// 200 with `x-shadowed: yes` when the request carries [`ShadowLimited`].
fn app(
    layer: RateLimitLayer<impl KvStore>,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<()>| async move {
            let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
            if req.extensions().get::<ShadowLimited>().is_some() {
                res.headers_mut()
                    .insert("x-shadowed", "yes".parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        })
}

fn from(path: &str, peer: &str, user: Option<&str>) -> Request<()> {
    let mut req = Request::get(path).body(()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    if let Some(user) = user {
        req.extensions_mut().insert(UserId(user.to_owned()));
    }
    req
}

async fn send<S>(svc: &S, req: Request<()>) -> Reply
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

/// The statuses of `n` requests made by `make`.
async fn statuses<S>(svc: &S, n: usize, make: impl Fn() -> Request<()>) -> Vec<u16>
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(svc, make()).await.status().as_u16());
    }
    out
}

/// A name no other case (or backend run) uses, for labels and key prefixes.
fn unique(what: &str) -> String {
    format!("{what}{:08x}", rand::random::<u32>())
}

/// One series: its name, labels and total.
type Series = (String, Vec<(String, String)>, u64);

/// The metrics recorded while a case runs; cases take turns.
struct Recorded {
    snapshotter: &'static Snapshotter,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Recorded {
    async fn start() -> Self {
        static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let snapshotter = SNAPSHOTTER.get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder.install().expect("the only recorder");
            snapshotter
        });
        let turn = TURN.lock().await;
        // A snapshot drains the counters: start from zero.
        drop(snapshotter.snapshot());
        Self {
            snapshotter,
            _turn: turn,
        }
    }

    /// Counter totals (and histogram sample counts) since the start, by name and labels.
    fn counters(&self) -> Vec<Series> {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let n = match value {
                    DebugValue::Counter(n) => n,
                    // A histogram counts its samples.
                    DebugValue::Histogram(samples) => samples.len() as u64,
                    DebugValue::Gauge(_) => return None,
                };
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                Some((key.name().to_owned(), labels, n))
            })
            .collect()
    }
}

/// The total of counter `name` over series carrying every label in `labels`.
fn total(counters: &[Series], name: &str, labels: &[(&str, &str)]) -> u64 {
    counters
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Captures this thread's `tracing` output (spans and events at debug and
/// above) as text while the guard lives.
fn capture_traces() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .finish();
    // Tests run on many threads, and tracing caches per callsite whether
    // any subscriber is interested. A global subscriber that is interested
    // "sometimes" (and records nothing) keeps every callsite asking the
    // current thread's subscriber, so no thread's answer sticks for all.
    static ASK_EVERY_TIME: std::sync::Once = std::sync::Once::new();
    ASK_EVERY_TIME.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let silent = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|_, _| false));
        let _ =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(silent));
    });
    (buffer, tracing::subscriber::set_default(subscriber))
}

mod cases {
    use super::*;

    /// Shadow mode decides and charges as usual but never refuses: the
    /// would-be refusals go through marked, without rate-limit fields, and
    /// count as `shadow_limited`; the same buckets, enforced, then refuse.
    pub async fn shadow_mode_charges_but_never_refuses<S: KvStore>(h: Harness<S>) {
        let recorded = Recorded::start().await;
        let (prefix, quota) = (unique("shadow:"), unique("q"));
        let limits = |store: S, shadow: bool| {
            RateLimitLayer::new(store, Identity::PeerIp)
                .key_prefix(&prefix)
                .route_any(
                    "/try",
                    Limit::new(Quota::per_minute(2).named(&quota)).shadow(shadow),
                )
                .default_limit(Quota::per_minute(2).named(&quota))
                .shadow(true)
        };
        let shadowed = app(limits(h.store.clone(), true));
        let mut marked = 0;
        for _ in 0..5 {
            let res = send(&shadowed, from("/try", "203.0.113.5:1", None)).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert!(
                !res.headers().contains_key("ratelimit"),
                "not in force: not announced"
            );
            marked += usize::from(res.headers().contains_key("x-shadowed"));
        }
        assert_eq!(marked, 3, "the requests past the quota are marked");
        // The layer-wide switch covers the default route too.
        let others = statuses(&shadowed, 3, || from("/other", "203.0.113.5:1", None)).await;
        assert_eq!(others, [200, 200, 200]);
        // Charged as usual: the same route enforced (on the other instance) refuses.
        let enforced = app(limits(h.twin.clone(), false));
        let res = send(&enforced, from("/try", "203.0.113.5:1", None)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

        let counters = recorded.counters();
        let decisions = |route: &str, outcome: &str| {
            total(
                &counters,
                tower_kv::metrics::RATELIMIT_DECISIONS,
                &[("route", route), ("quota", &quota), ("outcome", outcome)],
            )
        };
        assert_eq!(decisions("* /try", "allowed"), 2);
        assert_eq!(decisions("* /try", "shadow_limited"), 3);
        assert_eq!(decisions("* /try", "limited"), 1);
        assert_eq!(decisions("default", "shadow_limited"), 1);
    }

    /// Tiers chosen per request count in buckets of their own, on a route
    /// of a table and with users as identities; an unknown tier gets the first.
    pub async fn each_tier_has_its_own_buckets<S: KvStore>(h: Harness<S>) {
        let recorded = Recorded::start().await;
        let quota = unique("t");
        let by_plan = Tiers::new(
            |headers, _| match headers.get("x-plan").map(|v| v.as_bytes()) {
                Some(b"pro") => "pro",
                Some(b"gold") => "gold-but-not-a-tier",
                _ => "free",
            },
        )
        .tier("free", Quota::per_minute(2).named(&quota))
        .tier("pro", Quota::per_minute(4).named(&quota));
        let layer = RateLimitLayer::new(h.store.clone(), Identity::User)
            .key_prefix(unique("tiers:"))
            .route_any("/api/{*rest}", by_plan)
            .default_limit(Quota::per_minute(100));
        let svc = app(layer);
        let as_plan = |plan: Option<&'static str>| {
            move || {
                let mut req = from("/api/search", "203.0.113.6:1", Some("ada"));
                if let Some(plan) = plan {
                    req.headers_mut().insert("x-plan", plan.parse().unwrap());
                }
                req
            }
        };
        assert_eq!(statuses(&svc, 3, as_plan(None)).await, [200, 200, 429]);
        let pro = statuses(&svc, 5, as_plan(Some("pro"))).await;
        assert_eq!(
            pro,
            [200, 200, 200, 200, 429],
            "the pro tier starts on its own quota"
        );
        assert_eq!(
            statuses(&svc, 1, as_plan(Some("gold"))).await,
            [429],
            "unknown: the first tier"
        );
        // Another user has buckets of their own; the policy field names the tier's quota.
        let mut req = as_plan(Some("pro"))();
        req.extensions_mut().insert(UserId("grace".into()));
        let res = send(&svc, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        let policy = res.headers()["ratelimit-policy"].to_str().unwrap();
        assert!(policy.contains(";q=4;"), "{policy}");

        let counters = recorded.counters();
        let count = |route: &str, outcome: &str| {
            total(
                &counters,
                tower_kv::metrics::RATELIMIT_DECISIONS,
                &[("route", route), ("outcome", outcome)],
            )
        };
        assert_eq!(count("* /api/{*rest} [free]", "allowed"), 2);
        assert_eq!(count("* /api/{*rest} [free]", "limited"), 2);
        assert_eq!(count("* /api/{*rest} [pro]", "allowed"), 5);
    }

    /// Allow-listed clients are never limited, deny-listed ones get 403, per
    /// layer and per route; a deny wins over an allow.
    pub async fn allow_and_deny_lists<S: KvStore>(h: Harness<S>) {
        let recorded = Recorded::start().await;
        let quota = unique("a");
        let layer = RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
            .key_prefix(unique("lists:"))
            .default_limit(Quota::per_minute(1).named(&quota))
            .route_any(
                "/strict",
                Limit::new(Quota::per_minute(1).named(&quota)).deny(
                    AccessList::new()
                        .network("10.9.0.0/16")
                        .unwrap()
                        .user("mallory"),
                ),
            )
            .allow(
                AccessList::new()
                    .network("10.0.0.0/8")
                    .unwrap()
                    .user("ops")
                    // The identity's plain value: here, the peer address.
                    .identity("203.0.113.4"),
            )
            .deny(AccessList::new().network("192.0.2.0/24").unwrap());
        let svc = app(layer);
        let office = statuses(&svc, 4, || from("/", "10.1.2.3:1", None)).await;
        assert_eq!(office, [200; 4]);
        let res = send(&svc, from("/", "10.1.2.3:1", None)).await;
        assert!(
            !res.headers().contains_key("ratelimit"),
            "an allowed client is not counted"
        );
        // IPv4-mapped IPv6 peers are their IPv4 address.
        assert_eq!(
            statuses(&svc, 2, || from("/", "[::ffff:10.1.2.3]:1", None)).await,
            [200, 200]
        );
        assert_eq!(
            statuses(&svc, 2, || from("/", "192.0.2.7:1", None)).await,
            [403, 403]
        );
        assert_eq!(
            statuses(&svc, 2, || from("/", "203.0.113.1:1", None)).await,
            [200, 429]
        );
        assert_eq!(
            statuses(&svc, 2, || from("/", "203.0.113.2:1", Some("ops"))).await,
            [200, 200]
        );
        assert_eq!(
            statuses(&svc, 3, || from("/", "203.0.113.4:1", None)).await,
            [200, 200, 200]
        );
        // The route's deny-list wins over the layer's allow-list.
        assert_eq!(
            statuses(&svc, 1, || from("/strict", "10.9.1.1:1", None)).await,
            [403]
        );
        assert_eq!(
            statuses(&svc, 1, || from(
                "/strict",
                "203.0.113.3:1",
                Some("mallory")
            ))
            .await,
            [403]
        );
        assert_eq!(
            statuses(&svc, 1, || from("/", "203.0.113.3:1", Some("mallory"))).await,
            [200]
        );

        let counters = recorded.counters();
        let count = |route: &str, outcome: &str| {
            total(
                &counters,
                tower_kv::metrics::RATELIMIT_DECISIONS,
                &[("route", route), ("quota", &quota), ("outcome", outcome)],
            )
        };
        assert_eq!(count("default", "allow_listed"), 12);
        assert_eq!(count("default", "deny_listed"), 2);
        assert_eq!(count("* /strict", "deny_listed"), 2);
        assert_eq!(count("default", "limited"), 1);
    }

    /// Once the store refuses a key, repeats on this instance are refused
    /// without a round trip until the store's wait is over; turned off, every
    /// request asks the store.
    pub async fn refused_keys_are_decided_locally<S: KvStore>(h: Harness<S>) {
        let layer = |store, remembered| {
            RateLimitLayer::new(store, Identity::PeerIp)
                .key_prefix(unique("known:"))
                .default_limit(Quota::per(2, Duration::from_millis(600)))
                .known_limited_capacity(remembered)
        };
        let counting = Counting::new(h.store.clone());
        let svc = app(layer(counting.clone(), 10_000));
        let seen = statuses(&svc, 10, || from("/", "203.0.113.8:1", None)).await;
        assert_eq!(seen, [200, 200, 429, 429, 429, 429, 429, 429, 429, 429]);
        assert_eq!(
            counting.writes(),
            3,
            "two admitted, one refusal; the rest decided locally"
        );
        let refused = send(&svc, from("/", "203.0.113.8:1", None)).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains(";r=0;"));
        // Another client is not affected.
        assert_eq!(
            statuses(&svc, 1, || from("/", "203.0.113.9:1", None)).await,
            [200]
        );
        assert_eq!(counting.writes(), 4);
        // Past the wait (300 ms for one unit), the store is asked again.
        tokio::time::sleep(Duration::from_millis(350)).await;
        send(&svc, from("/", "203.0.113.8:1", None)).await;
        assert_eq!(counting.writes(), 5);

        let counting = Counting::new(h.store.clone());
        let svc = app(layer(counting.clone(), 0));
        statuses(&svc, 6, || from("/", "203.0.113.10:1", None)).await;
        assert_eq!(counting.writes(), 6, "off: every request asks the store");
    }

    /// Each layer counts its outcomes and traces one span per decision.
    pub async fn layers_report_metrics_and_spans<S: KvStore>(h: Harness<S>) {
        use tower_kv::cache::CacheLayer;
        use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flag};
        use tower_kv::session::{Session, SessionLayer};

        let recorded = Recorded::start().await;
        let (traces, _guard) = capture_traces();
        let name = unique("c");
        let flag = unique("f");
        let flags = FeatureFlags::new(h.store.clone()).key(unique("flags:"));
        flags.set_flag(&flag, Flag::Bool(true)).await.unwrap();
        let flags_for_gates = flags.clone();
        let quota = unique("m");
        let stack = ServiceBuilder::new()
            .layer(
                RateLimitLayer::new(h.store.clone(), Identity::PeerIp)
                    .key_prefix(unique("m:"))
                    .default_limit(Quota::per_minute(100).named(&quota)),
            )
            .layer(SessionLayer::new(h.store.clone()).key_prefix(unique("s:")))
            .layer(FeatureFlagsLayer::new(flags, Identity::PeerIp))
            .layer(
                CacheLayer::new(h.store.clone())
                    .name(&name)
                    .key_prefix(unique("cache:"))
                    .route_ttl("/cached", Duration::from_secs(60)),
            )
            .service_fn({
                let flag = flag.clone();
                move |req: Request<()>| {
                    let flag = flag.clone();
                    async move {
                        let flags = req.extensions().get::<tower_kv::flags::Flags>().unwrap();
                        assert!(flags.is_enabled(&flag));
                        assert!(!flags.is_enabled("never-defined"));
                        if req.uri().path() == "/visit" {
                            let session = req.extensions().get::<Session>().unwrap();
                            let n: u32 = session.get("n").await.unwrap().unwrap_or(0);
                            session.insert("n", n + 1).await.unwrap();
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                    }
                }
            });
        for _ in 0..3 {
            let res = stack
                .clone()
                .oneshot(from("/cached", "203.0.113.11:1", None))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        let first = stack
            .clone()
            .oneshot(from("/visit", "203.0.113.11:1", None))
            .await
            .unwrap();
        let cookie = first.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut again = from("/visit", "203.0.113.11:1", None);
        again
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        assert_eq!(
            stack.clone().oneshot(again).await.unwrap().status(),
            StatusCode::OK
        );

        // Gates count on counters of their own, for a defined flag and not.
        let layer = FeatureFlagsLayer::new(flags_for_gates, Identity::PeerIp);
        for (gate, status) in [
            (&flag, StatusCode::OK),
            (&unique("gone"), StatusCode::NOT_FOUND),
        ] {
            let gated =
                ServiceBuilder::new()
                    .layer(layer.gate(gate))
                    .service_fn(|_: Request<()>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    });
            for _ in 0..2 {
                let res = gated
                    .clone()
                    .oneshot(from("/", "203.0.113.11:1", None))
                    .await;
                assert_eq!(res.unwrap().status(), status);
            }
        }

        let counters = recorded.counters();
        let count = |metric: &str, labels: &[(&str, &str)]| total(&counters, metric, labels);
        use tower_kv::metrics as m;
        assert_eq!(
            count(
                m::RATELIMIT_DECISIONS,
                &[("quota", &quota), ("outcome", "allowed")]
            ),
            5
        );
        assert_eq!(
            count(m::CACHE_REQUESTS, &[("cache", &name), ("outcome", "miss")]),
            1
        );
        assert_eq!(
            count(m::CACHE_REQUESTS, &[("cache", &name), ("outcome", "hit")]),
            2
        );
        assert_eq!(
            count(
                m::CACHE_REQUESTS,
                &[("cache", &name), ("outcome", "uncacheable")]
            ),
            1,
            "a response that set a session cookie"
        );
        assert_eq!(
            count(
                m::CACHE_REQUESTS,
                &[("cache", &name), ("outcome", "bypass")]
            ),
            1,
            "a request with a session cookie"
        );
        assert_eq!(count(m::CACHE_STORED, &[("cache", &name)]), 1);
        assert_eq!(count(m::CACHE_STORED_BYTES, &[("cache", &name)]), 5);
        assert_eq!(count(m::SESSION_EVENTS, &[("event", "create")]), 1);
        assert_eq!(count(m::SESSION_EVENTS, &[("event", "load")]), 1);
        assert_eq!(count(m::SESSION_EVENTS, &[("event", "save")]), 1);
        assert_eq!(
            count(
                m::FLAG_EVALUATIONS,
                &[("flag", &flag), ("reason", "static"), ("value", "on")]
            ),
            3 + 2,
            "cache hits never reach the handler; the gate's two"
        );
        assert_eq!(
            count(
                m::FLAG_EVALUATIONS,
                &[("flag", "(undefined)"), ("reason", "missing")]
            ),
            3 + 2
        );
        let backend = std::any::type_name::<S>();
        if backend.contains("RedisStore") {
            let timed = count(m::STORE_OPERATION_SECONDS, &[("operation", "rate_limit")]);
            assert!(timed >= 5, "{timed} rate decisions timed");
        }

        let traces = String::from_utf8(traces.lock().unwrap().clone()).unwrap();
        for expected in [
            "ratelimit{route=default outcome=\"allowed\"}",
            "cache{outcome=\"hit\"",
            "session{record=\"found\"}",
        ] {
            assert!(traces.contains(expected), "no {expected:?} in:\n{traces}");
        }
    }

    /// A/B exposures count once per new assignment, by test and variant.
    pub async fn first_exposures_are_counted<S: KvStore>(h: Harness<S>) {
        use tower_kv::abtest::AbTestLayer;

        let recorded = Recorded::start().await;
        let test = unique("x");
        let layer = AbTestLayer::new(h.store.clone(), Identity::header("x-user")).test(&test);
        layer
            .set_config(&test, br#"{"variants": ["a", "b"], "weights": [0.5, 0.5]}"#)
            .await
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            });
        for user in ["u1", "u2", "u3", "u1", "u2"] {
            let req = Request::get("/").header("x-user", user).body(()).unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        let counters = recorded.counters();
        let exposed = total(
            &counters,
            tower_kv::metrics::ABTEST_EXPOSURES,
            &[("test", &test)],
        );
        assert_eq!(exposed, 3, "one per user");
        let by_variant: u64 = ["a", "b"]
            .iter()
            .map(|v| {
                total(
                    &counters,
                    tower_kv::metrics::ABTEST_EXPOSURES,
                    &[("test", &test), ("variant", v)],
                )
            })
            .sum();
        assert_eq!(by_variant, 3);
    }
}

both_backends!(
    shadow_mode_charges_but_never_refuses,
    each_tier_has_its_own_buckets,
    allow_and_deny_lists,
    refused_keys_are_decided_locally,
    layers_report_metrics_and_spans,
    first_exposures_are_counted,
);
