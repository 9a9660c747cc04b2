//! Feature flags and gates against every backend: `memory::*` and `redis::*`.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use support::{Counting, Harness};
use tower::{ServiceBuilder, ServiceExt};
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flag, Flags, Reason, Rule};
use tower_kv::identity::Identity;
use tower_kv::store::{KvStore, PutOptions};
use tower_kv::Clock;

fn flags_for<S: KvStore>(store: S, clock: &Clock) -> FeatureFlags<S> {
    FeatureFlags::new(store).clock(clock.clone())
}

/// Evaluates `name` for a request from user `user` through the layer.
async fn evaluate<S: KvStore>(
    flags: &FeatureFlags<S>,
    name: &str,
    user: Option<&str>,
) -> tower_kv::flags::Evaluation {
    let layer = FeatureFlagsLayer::new(flags.clone(), Identity::header("x-user"));
    let name = name.to_owned();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<()>| {
            let name = name.clone();
            async move {
                let flags = req.extensions().get::<Flags>().unwrap().clone();
                let mut res = Response::new(());
                res.extensions_mut().insert(flags.evaluate(&name));
                Ok::<_, Infallible>(res)
            }
        });
    let mut req = Request::get("/").body(()).unwrap();
    if let Some(user) = user {
        req.headers_mut().insert("x-user", user.parse().unwrap());
    }
    let mut res = svc.oneshot(req).await.unwrap();
    res.extensions_mut()
        .remove::<tower_kv::flags::Evaluation>()
        .expect("the handler ran")
}

mod cases {
    use super::*;

    /// Two instances: 100 flag changes on one, each seen by the other
    /// within a second — not when its 600 s cache runs out.
    pub async fn flag_changes_reach_the_other_instance<S: KvStore>(h: Harness<S>) {
        let (a, b) = (
            FeatureFlags::new(h.store.clone()),
            FeatureFlags::new(h.twin.clone()),
        );
        b.document().await;
        let delays = support::propagation(
            100,
            Duration::from_secs(1),
            |i| {
                let a = a.clone();
                async move { a.set_flag("kill", Flag::Bool(i % 2 == 0)).await.unwrap() }
            },
            |i| {
                let b = b.clone();
                async move { evaluate(&b, "kill", None).await.enabled == (i % 2 == 0) }
            },
        )
        .await;
        eprintln!("flag propagation over 100 changes: {delays:?}");
    }

    pub async fn boolean_and_rule_flags<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let flags = flags_for(h.store.clone(), &clock);
        flags
            .replace_json(br#"{"beta_feature": true, "old": false, "color": {"variant": "blue"}}"#)
            .await
            .unwrap();
        let beta = evaluate(&flags, "beta_feature", None).await;
        assert!(beta.enabled && beta.reason == Reason::Static);
        assert!(!evaluate(&flags, "old", None).await.enabled);
        let color = evaluate(&flags, "color", Some("u1")).await;
        assert_eq!(color.variant, Some("blue".into()));
        let missing = evaluate(&flags, "nope", None).await;
        assert_eq!((missing.enabled, missing.reason), (false, Reason::Missing));
    }

    pub async fn rollout_is_accurate_and_monotonic<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let flags = flags_for(h.store.clone(), &clock);
        let rule = |rollout| {
            Flag::Rule(Rule {
                rollout: Some(rollout),
                ..Rule::default()
            })
        };
        flags.set_flag("new_checkout", rule(10.0)).await.unwrap();
        let doc = flags.document().await;
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let on_at = |doc: &tower_kv::flags::FlagDocument| -> Vec<bool> {
            keys.iter()
                .map(|k| {
                    doc.flags["new_checkout"]
                        .evaluate("new_checkout", Some(k))
                        .enabled
                })
                .collect()
        };
        let ten = on_at(&doc);
        let share = ten.iter().filter(|x| **x).count();
        assert!(
            (800..=1200).contains(&share),
            "10 % rollout gave {share} of 10,000"
        );
        flags.set_flag("new_checkout", rule(20.0)).await.unwrap();
        let twenty = on_at(&*flags.document().await);
        let share = twenty.iter().filter(|x| **x).count();
        assert!((1800..=2200).contains(&share), "20 % rollout gave {share}");
        assert!(
            ten.iter().zip(&twenty).all(|(a, b)| !a || *b),
            "raising the rollout kept everyone in"
        );
        let reason = evaluate(&flags, "new_checkout", None).await;
        assert_eq!(
            (reason.enabled, reason.reason),
            (false, Reason::Rollout),
            "no key: outside"
        );
    }

    pub async fn allow_and_deny_lists_take_precedence<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let flags = flags_for(h.store.clone(), &clock);
        flags
            .replace_json(br#"{"f": {"enabled": false, "rollout": 100, "allow": ["tester", "both"], "deny": ["both"]}}"#)
            .await
            .unwrap();
        assert_eq!(
            evaluate(&flags, "f", Some("tester")).await.reason,
            Reason::AllowList
        );
        assert!(evaluate(&flags, "f", Some("tester")).await.enabled);
        let both = evaluate(&flags, "f", Some("both")).await;
        assert_eq!((both.enabled, both.reason), (false, Reason::DenyList));
        let other = evaluate(&flags, "f", Some("someone")).await;
        assert_eq!(
            (other.enabled, other.reason),
            (false, Reason::Static),
            "kill switch"
        );
    }

    pub async fn gate_off_is_the_routers_404_on_passes_fallback_routes<S: KvStore>(h: Harness<S>) {
        use axum::routing::get;
        let clock = Clock::manual();
        let flags = flags_for(h.store.clone(), &clock);
        flags
            .replace_json(br#"{"beta_feature": false}"#)
            .await
            .unwrap();
        let layer = FeatureFlagsLayer::new(flags.clone(), Identity::Global);
        let router = axum::Router::new()
            .route(
                "/beta",
                get(|| async { "beta" }).route_layer(layer.gate("beta_feature")),
            )
            .route(
                "/",
                get(|| async { "standard" }).route_layer(layer.gate("beta_feature").fallback(
                    // The fallback gets the request's flags, as the gated service would.
                    tower::service_fn(|req: axum::extract::Request| async move {
                        let body = match req.extensions().get::<Flags>() {
                            Some(_) => "standard",
                            None => "no flags",
                        };
                        Ok::<_, Infallible>(axum::response::IntoResponse::into_response(body))
                    }),
                )),
            );
        // Compare what a client sees on the wire (minus the Date header).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let call = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut raw = String::new();
            tcp.read_to_string(&mut raw).await.unwrap();
            raw.lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let gated = call("/beta").await;
        assert!(gated.starts_with("HTTP/1.1 404"), "{gated}");
        assert_eq!(
            gated,
            call("/no-such-route").await,
            "a gated-off route looks exactly like a missing one"
        );
        assert!(call("/").await.ends_with("standard"));

        flags
            .set_flag("beta_feature", Flag::Bool(true))
            .await
            .unwrap();
        let on = call("/beta").await;
        assert!(
            on.starts_with("HTTP/1.1 200") && on.ends_with("beta"),
            "{on}"
        );
        server.abort();
    }

    pub async fn the_store_is_read_once_per_cache_ttl<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let store = Counting::new(h.store.clone());
        let flags = flags_for(store.clone(), &clock).cache_ttl(Duration::from_secs(600));
        flags
            .replace_json(br#"{"beta_feature": true}"#)
            .await
            .unwrap();
        let reads = store.reads();
        for _ in 0..100 {
            assert!(evaluate(&flags, "beta_feature", None).await.enabled);
        }
        assert_eq!(store.reads(), reads + 1, "one read for 100 requests");
        // Another instance changes the flag: visible after the TTL, not before.
        h.store
            .put(
                "features:flags",
                Bytes::from_static(br#"{"beta_feature": false}"#),
                PutOptions::new(),
            )
            .await
            .unwrap();
        clock.advance(Duration::from_secs(599));
        assert!(evaluate(&flags, "beta_feature", None).await.enabled);
        clock.advance(Duration::from_secs(2));
        assert!(!evaluate(&flags, "beta_feature", None).await.enabled);
        assert_eq!(store.reads(), reads + 2);
    }

    pub async fn malformed_documents_keep_the_last_good_flags<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let flags = flags_for(h.store.clone(), &clock);
        h.store
            .put(
                "features:flags",
                Bytes::from_static(b"{broken"),
                PutOptions::new(),
            )
            .await
            .unwrap();
        let first = evaluate(&flags, "beta_feature", None).await;
        assert_eq!(
            (first.enabled, first.reason),
            (false, Reason::Error),
            "never loaded: all off"
        );
        flags
            .replace_json(br#"{"beta_feature": true}"#)
            .await
            .unwrap();
        assert!(evaluate(&flags, "beta_feature", None).await.enabled);
        h.store
            .put(
                "features:flags",
                Bytes::from_static(br#"{"beta_feature": {"rollout": 500}}"#),
                PutOptions::new(),
            )
            .await
            .unwrap();
        clock.advance(Duration::from_secs(601));
        assert!(
            evaluate(&flags, "beta_feature", None).await.enabled,
            "last good flags kept"
        );
        assert!(
            flags.set_flag("x", Flag::Bool(true)).await.is_err(),
            "no merging into a corrupt document"
        );
        assert!(
            flags
                .replace_json(br#"{"x": {"rolout": 5}}"#)
                .await
                .is_err(),
            "unknown fields refused"
        );
    }

    pub async fn concurrent_writers_of_different_flags_all_persist<S: KvStore>(h: Harness<S>) {
        let clock = Clock::manual();
        let a = flags_for(h.store.clone(), &clock);
        let b = flags_for(h.twin.clone(), &clock);
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let flags = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    flags
                        .set_flag(&format!("flag{i}"), Flag::Bool(true))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let doc = a.document().await;
        assert_eq!(doc.flags.len(), 20, "{:?}", doc.flags.keys());
    }

    /// A gate inside a flags layer decides for its own layer's targeting
    /// key, and the service behind it gets that layer's flags: a gate of
    /// the same layer decides on the flags the layer put in the request,
    /// a gate of another layer (another identity) never does.
    pub async fn a_gate_decides_for_its_own_layers_targeting<S: KvStore>(h: Harness<S>) {
        let flags = flags_for(h.store.clone(), &Clock::manual());
        flags
            .replace_json(br#"{"beta": {"enabled": false, "allow": ["alice"]}}"#)
            .await
            .unwrap();
        let by_user = FeatureFlagsLayer::new(flags.clone(), Identity::header("x-user"));
        let by_team = FeatureFlagsLayer::new(flags.clone(), Identity::header("x-team"));
        // Which service answered, and the targeting key of the flags it got.
        let seen = |answer: &'static str| {
            move |req: Request<()>| {
                let flags = req.extensions().get::<Flags>();
                let key = flags.map(|f| f.targeting_key().map(str::to_owned));
                std::future::ready(Ok::<_, Infallible>(Response::new(format!(
                    "{answer} {key:?}"
                ))))
            }
        };
        let call = |gate: FeatureFlagsLayer<S>, user: &'static str, team: &'static str| {
            let svc = ServiceBuilder::new()
                .layer(by_user.clone())
                .layer(gate.gate("beta").fallback(tower::service_fn(seen("off"))))
                .service_fn(seen("on"));
            async move {
                let req = Request::get("/")
                    .header("x-user", user)
                    .header("x-team", team)
                    .body(())
                    .unwrap();
                let body = svc.oneshot(req).await.unwrap().into_body();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .unwrap()
                    .to_bytes();
                String::from_utf8(bytes.to_vec()).unwrap()
            }
        };
        // The outer layer's own gate: on for alice, off for bob.
        let on = call(by_user.clone(), "alice", "red").await;
        assert_eq!(on, r#"on Some(Some("alice"))"#);
        let off = call(by_user.clone(), "bob", "alice").await;
        assert_eq!(off, r#"off Some(Some("bob"))"#);
        // A gate of the team layer behind the user layer: the team decides,
        // and the services behind it get the team's flags.
        let off = call(by_team.clone(), "alice", "red").await;
        assert_eq!(off, r#"off Some(Some("red"))"#);
        let on = call(by_team.clone(), "bob", "alice").await;
        assert_eq!(on, r#"on Some(Some("alice"))"#);
    }
}

both_backends!(
    flag_changes_reach_the_other_instance,
    boolean_and_rule_flags,
    rollout_is_accurate_and_monotonic,
    allow_and_deny_lists_take_precedence,
    gate_off_is_the_routers_404_on_passes_fallback_routes,
    the_store_is_read_once_per_cache_ttl,
    malformed_documents_keep_the_last_good_flags,
    concurrent_writers_of_different_flags_all_persist,
    a_gate_decides_for_its_own_layers_targeting,
);
