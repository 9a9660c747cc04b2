//! The A/B layer against every backend: `memory::*` and `redis::*`.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use support::Harness;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::abtest::{AbTestLayer, Variants};
use tower_kv::identity::Identity;
use tower_kv::store::{KvStore, PutOptions};
use tower_kv::Clock;

type Reply = Response<tower_kv::ResponseBody<String>>;

/// The body of a reply, as text.
async fn text(res: Reply) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The inner service answers with the variant header it received.
fn app(
    layer: AbTestLayer<impl KvStore>,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<()>| async move {
            let copies = req.headers().get_all("x-variant-checkout").iter().count();
            assert!(copies <= 1, "one variant header, not the client's too");
            assert!(
                req.headers().get("x-ab-override").is_none(),
                "the QA override never reaches the handler"
            );
            let seen = req
                .headers()
                .get("x-variant-checkout")
                .map(|v| v.to_str().unwrap().to_owned());
            let from_ext = req
                .extensions()
                .get::<Variants>()
                .and_then(|v| v.get("checkout").map(str::to_owned));
            assert_eq!(seen, from_ext, "header and extension agree");
            Ok::<_, Infallible>(Response::new(seen.unwrap_or_default()))
        })
}

async fn configure<S: KvStore>(store: &S, json: &'static str) {
    store
        .put(
            "test:checkout:config",
            Bytes::from_static(json.as_bytes()),
            PutOptions::new(),
        )
        .await
        .unwrap();
}

fn layer<S: KvStore>(store: S, clock: &Clock) -> AbTestLayer<S> {
    AbTestLayer::new(store, Identity::header("x-user"))
        .clock(clock.clone())
        .test("checkout")
}

async fn variant_of<S>(svc: &S, user: &str) -> String
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    let req = Request::get("/").header("x-user", user).body(()).unwrap();
    text(svc.clone().oneshot(req).await.unwrap()).await
}

async fn owned_variant_of<S>(svc: S, user: String) -> String
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone + Send,
{
    let req = Request::get("/").header("x-user", user).body(()).unwrap();
    text(svc.oneshot(req).await.unwrap()).await
}

async fn variants_of<S>(svc: &S, users: impl Iterator<Item = String>) -> Vec<String>
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let handles: Vec<_> = users
        .map(|u| {
            let svc = svc.clone();
            tokio::spawn(owned_variant_of(svc, u))
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

mod cases {
    use super::*;

    /// Two instances: 100 config changes on one, each seen by the other
    /// within a second — not when its 3,600 s config cache runs out.
    pub async fn config_changes_reach_the_other_instance<S: KvStore>(h: Harness<S>) {
        let a = AbTestLayer::new(h.store.clone(), Identity::header("x-user")).test("checkout");
        let b = app(AbTestLayer::new(h.twin.clone(), Identity::header("x-user")).test("checkout"));
        configure(&h.store, r#"{"variants": ["b"], "weights": [1]}"#).await;
        variant_of(&b, "warm-up").await;
        let config = |i: usize| match i % 2 {
            0 => r#"{"variants": ["a"], "weights": [1]}"#,
            _ => r#"{"variants": ["b"], "weights": [1]}"#,
        };
        let delays = support::propagation(
            100,
            Duration::from_secs(1),
            |i| {
                let a = a.clone();
                async move {
                    a.set_config("checkout", config(i).as_bytes())
                        .await
                        .unwrap()
                }
            },
            |i| {
                let b = b.clone();
                let want = if i % 2 == 0 { "a" } else { "b" };
                // A new user each time: assignments are sticky.
                async move { variant_of(&b, &format!("u{i}-{}", rand_suffix())).await == want }
            },
        )
        .await;
        eprintln!("A/B config propagation over 100 changes: {delays:?}");
    }

    pub async fn setters_after_tests_apply<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        configure(&h.store, r#"{"variants": ["a"], "weights": [1]}"#).await;
        // A store that announces no changes: only the TTL ends the cache.
        let silent = support::Counting::new(h.store.clone());
        let layer = AbTestLayer::new(silent, Identity::header("x-user"))
            .test("checkout")
            .config_ttl(Duration::from_secs(60))
            .clock(clock.clone());
        let svc = app(layer);
        assert_eq!(variant_of(&svc, "u1").await, "a");
        configure(&h.store, r#"{"variants": ["b"], "weights": [1]}"#).await;
        assert_eq!(variant_of(&svc, "u2").await, "a", "config cached");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            variant_of(&svc, "u3").await,
            "b",
            "the TTL and clock set after .test()"
        );
    }

    pub async fn weights_split_ten_thousand_users<S: KvStore>(h: Harness<S>) {
        configure(
            &h.store,
            r#"{"variants": ["a", "b", "c"], "weights": [0.5, 0.3, 0.2]}"#,
        )
        .await;
        let svc = app(layer(h.store.clone(), &Clock::manual()));
        let mut counts: HashMap<String, usize> = HashMap::new();
        for chunk in 0..20 {
            for v in variants_of(&svc, (0..500).map(move |i| format!("user-{chunk}-{i}"))).await {
                *counts.entry(v).or_default() += 1;
            }
        }
        for (variant, expected) in [("a", 5000), ("b", 3000), ("c", 2000)] {
            let n = counts[variant] as i64;
            assert!(
                (n - expected).abs() <= 200,
                "{variant}: {n} of 10,000 ({counts:?})"
            );
        }
    }

    pub async fn assignments_are_sticky_and_survive_weight_changes<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        configure(
            &h.store,
            r#"{"variants": ["a", "b"], "weights": [0.5, 0.5]}"#,
        )
        .await;
        let svc = app(layer(h.store.clone(), &clock));
        let users: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
        let first = variants_of(&svc, users.clone().into_iter()).await;
        assert_eq!(
            first,
            variants_of(&svc, users.clone().into_iter()).await,
            "same user, same variant"
        );
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [0, 1]}"#).await;
        clock.advance(Duration::from_secs(3601));
        assert_eq!(
            first,
            variants_of(&svc, users.into_iter()).await,
            "weight changes keep assigned users"
        );
        let newcomers = variants_of(&svc, (0..50).map(|i| format!("new{i}"))).await;
        assert!(
            newcomers.iter().all(|v| v == "b"),
            "new users follow the new weights"
        );
    }

    pub async fn concurrent_first_requests_agree<S: KvStore>(h: Harness<S>) {
        configure(
            &h.store,
            r#"{"variants": ["a", "b", "c", "d"], "weights": [1, 1, 1, 1]}"#,
        )
        .await;
        let (a, b) = (
            app(layer(h.store.clone(), &Clock::manual())),
            app(layer(h.twin.clone(), &Clock::manual())),
        );
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(owned_variant_of(svc, "same-user".to_owned()))
            })
            .collect();
        let mut seen = Vec::new();
        for h in handles {
            seen.push(h.await.unwrap());
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "one variant stored: {seen:?}");
    }

    pub async fn clients_cannot_choose_their_variant<S: KvStore>(h: Harness<S>) {
        configure(
            &h.store,
            r#"{"variants": ["control", "treatment"], "weights": [1, 0]}"#,
        )
        .await;
        let layer = layer(h.store.clone(), &Clock::manual()).qa_override(b"qa-secret".to_vec());
        let token = layer.override_token("checkout", "treatment").unwrap();
        let svc = app(layer);
        let send = |name: &'static str, value: String| {
            let svc = svc.clone();
            async move {
                // Sent twice: every copy must go.
                let req = Request::get("/")
                    .header("x-user", "mallory")
                    .header(name, value.clone())
                    .header(name, value)
                    .body(())
                    .unwrap();
                text(svc.oneshot(req).await.unwrap()).await
            }
        };
        assert_eq!(
            send("x-variant-checkout", "treatment".into()).await,
            "control",
            "spoofed header dropped"
        );
        assert_eq!(
            send("x-ab-override", "checkout=treatment".into()).await,
            "control",
            "unsigned override ignored"
        );
        let forged = format!("{}0", &token[..token.len() - 1]);
        assert_eq!(
            send("x-ab-override", forged).await,
            "control",
            "bad signature ignored"
        );
        assert_eq!(
            send("x-ab-override", token).await,
            "treatment",
            "signed QA override works"
        );
    }

    pub async fn no_or_bad_config_means_control<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(h.store.clone(), &Clock::manual()));
        assert_eq!(variant_of(&svc, "u1").await, "control", "no config");
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [1]}"#).await;
        let svc = app(layer(h.store.clone(), &Clock::manual()));
        assert_eq!(variant_of(&svc, "u1").await, "control", "invalid config");
    }

    pub async fn anonymous_visitors_get_one_secure_cookie<S: KvStore>(h: Harness<S>) {
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [1, 1]}"#).await;
        let layer = AbTestLayer::new(h.store.clone(), Identity::User)
            .test("checkout")
            .echo_response(true);
        let svc = app(layer);
        let res = svc
            .clone()
            .oneshot(Request::get("/").body(()).unwrap())
            .await
            .unwrap();
        let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in [
            "ab_visitor=",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
        assert_eq!(res.headers()["cache-control"], "private, no-store");
        assert_eq!(res.headers()["vary"], "x-variant-checkout");
        let variant = res.headers()["x-variant-checkout"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            text(res).await,
            variant,
            "echoed variant is the injected one"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        for _ in 0..5 {
            let req = Request::get("/")
                .header("cookie", &cookie)
                .body(())
                .unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            assert!(
                res.headers().get("set-cookie").is_none(),
                "the cookie is set once"
            );
            assert_eq!(text(res).await, variant, "sticky before login");
        }
    }

    pub async fn visitors_are_bucketed_without_storing<S: KvStore>(h: Harness<S>) {
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [1, 1]}"#).await;
        let store = support::Counting::new(h.store.clone());
        let svc = app(AbTestLayer::new(store.clone(), Identity::User).test("checkout"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            let cookie = format!("ab_visitor=visitor-{i}");
            let mut first = None;
            for _ in 0..3 {
                let req = Request::get("/")
                    .header("cookie", &cookie)
                    .body(())
                    .unwrap();
                let variant = text(svc.clone().oneshot(req).await.unwrap()).await;
                assert_eq!(
                    *first.get_or_insert(variant.clone()),
                    variant,
                    "stable per visitor"
                );
            }
            seen.insert(first.unwrap());
        }
        // 50 cookieless requests: a cookie each, nothing stored.
        for _ in 0..50 {
            svc.clone()
                .oneshot(Request::get("/").body(()).unwrap())
                .await
                .unwrap();
        }
        assert_eq!(store.writes(), 0, "no per-visitor state");
        assert_eq!(seen.len(), 2, "both variants in use");

        let sticky = AbTestLayer::new(store.clone(), Identity::User)
            .test("checkout")
            .store_visitor_assignments(true);
        let req = Request::get("/")
            .header("cookie", "ab_visitor=v")
            .body(())
            .unwrap();
        app(sticky).oneshot(req).await.unwrap();
        assert_eq!(store.writes(), 1, "stored when asked");
    }

    pub async fn corrupt_or_retired_assignments_are_replaced<S: KvStore>(h: Harness<S>) {
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [0, 1]}"#).await;
        let clock = Clock::manual();
        let svc = app(layer(h.store.clone(), &clock));
        assert_eq!(variant_of(&svc, "u1").await, "b");
        let keys = h
            .store
            .list(tower_kv::store::ListOptions::prefix("test:checkout:user:"))
            .await
            .unwrap()
            .keys;
        assert_eq!(keys.len(), 1);
        let key = keys[0].name.clone();
        let stored =
            |store: S, key: String| async move { store.get(&key).await.unwrap().unwrap().value };
        for corrupt in [&b"bad\x01variant"[..], b"", b"\xff\xfe", b"zzz"] {
            h.store
                .put(&key, Bytes::copy_from_slice(corrupt), PutOptions::new())
                .await
                .unwrap();
            assert_eq!(variant_of(&svc, "u1").await, "b", "{corrupt:?}");
            assert_eq!(stored(h.store.clone(), key.clone()).await, "b", "replaced");
        }
        // `b` retired: its users move to a current variant, stored.
        configure(&h.store, r#"{"variants": ["a"], "weights": [1]}"#).await;
        clock.advance(Duration::from_secs(3601));
        assert_eq!(variant_of(&svc, "u1").await, "a");
        assert_eq!(stored(h.store.clone(), key.clone()).await, "a");
    }

    pub async fn exposure_is_reported_once_per_assignment<S: KvStore>(h: Harness<S>) {
        configure(&h.store, r#"{"variants": ["a", "b"], "weights": [1, 1]}"#).await;
        let exposures = Arc::new(AtomicUsize::new(0));
        let counter = exposures.clone();
        let layer = layer(h.store.clone(), &Clock::manual()).on_exposure(move |e| {
            assert_eq!(e.test, "checkout");
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        });
        let svc = app(layer);
        for _ in 0..3 {
            variant_of(&svc, "first").await;
        }
        assert_eq!(exposures.load(Ordering::SeqCst), 1);
        variant_of(&svc, "second").await;
        assert_eq!(exposures.load(Ordering::SeqCst), 2);
    }
}

/// A user id never seen before (each poll is a first visit).
fn rand_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

both_backends!(
    config_changes_reach_the_other_instance,
    setters_after_tests_apply,
    weights_split_ten_thousand_users,
    assignments_are_sticky_and_survive_weight_changes,
    concurrent_first_requests_agree,
    clients_cannot_choose_their_variant,
    no_or_bad_config_means_control,
    anonymous_visitors_get_one_secure_cookie,
    exposure_is_reported_once_per_assignment,
    visitors_are_bucketed_without_storing,
    corrupt_or_retired_assignments_are_replaced,
);
