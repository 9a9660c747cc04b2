//! Cost of a flag check with a warm flag cache (MemoryStore): a request
//! through a gate whose flag is on (`gate_on`) or off (`gate_off`, answered
//! 404 by the gate), the same service without a gate (`bare`), and one
//! evaluation of a 50 % rollout flag for a targeting key (`evaluate_rollout`);
//! then the same gate where the README puts it, as a route layer behind
//! axum's router (`routed_gate_on`), beside the router without it
//! (`routed_bare`), and both again with the flags layer on the whole
//! router (`routed_layer_gate_on`, `routed_layer`).
//!
//! `cargo bench --bench flags`
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod common;

use common::ready;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{Service, ServiceBuilder};
use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flags};
use tower_kv::identity::Identity;
use tower_kv::store::MemoryStore;

async fn inner(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

fn request() -> Request<Body> {
    Request::get("/beta")
        .header("x-user", "user-42")
        .body(Body::empty())
        .unwrap()
}

fn flags(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let flags = FeatureFlags::new(MemoryStore::new());
    rt.block_on(async {
        flags
            .replace_json(br#"{"on": true, "off": false, "half": {"rollout": 50}}"#)
            .await
            .unwrap();
        flags.refresh().await.unwrap();
    });
    let layer = FeatureFlagsLayer::new(flags, Identity::header("x-user"));
    let mut group = c.benchmark_group("flags");

    let mut bare = ServiceBuilder::new().service_fn(inner);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(ready(bare.call(request())).unwrap()))
    });

    let mut on = ServiceBuilder::new()
        .layer(layer.gate("on"))
        .service_fn(inner);
    assert_eq!(ready(on.call(request())).unwrap().status(), 200);
    group.bench_function("gate_on", |b| {
        b.iter(|| black_box(ready(on.call(request())).unwrap()))
    });

    let mut off = ServiceBuilder::new()
        .layer(layer.gate("off"))
        .service_fn(inner);
    assert_eq!(ready(off.call(request())).unwrap().status(), 404);
    group.bench_function("gate_off", |b| {
        b.iter(|| black_box(ready(off.call(request())).unwrap()))
    });

    // Where the README puts a gate: a route layer behind axum's router
    // (which has already given the request its extensions map), with or
    // without the flags layer on the whole router.
    let routed = |layered: bool, gated: bool| {
        let route = axum::routing::get(|flags: Option<axum::Extension<Flags>>| async move {
            [("x-flags", if flags.is_some() { "yes" } else { "no" })]
        });
        let route = match gated {
            true => route.route_layer(layer.gate("on")),
            false => route,
        };
        let app = axum::Router::new().route("/beta", route);
        let app = match layered {
            true => app.layer(layer.clone()),
            false => app,
        };
        // `with_state` turns handlers into services once, as `axum::serve` does.
        app.with_state(())
    };
    for (name, layered, gated) in [
        ("routed_bare", false, false),
        ("routed_gate_on", false, true),
        ("routed_layer", true, false),
        ("routed_layer_gate_on", true, true),
    ] {
        let mut app = routed(layered, gated);
        let res = ready(app.call(request())).unwrap();
        assert_eq!(res.status(), 200);
        let expected = if layered || gated { "yes" } else { "no" };
        assert_eq!(res.headers()["x-flags"], expected, "the flags are in");
        group.bench_function(name, |b| {
            b.iter(|| black_box(ready(app.call(request())).unwrap()))
        });
    }

    let captured = std::sync::Arc::new(std::sync::Mutex::new(None::<Flags>));
    let slot = captured.clone();
    let mut capture = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<Body>| {
            *slot.lock().unwrap() = req.extensions().get::<Flags>().cloned();
            async { Ok::<_, Infallible>(Response::new(Body::empty())) }
        });
    ready(capture.call(request())).unwrap();
    let evaluator = captured
        .lock()
        .unwrap()
        .take()
        .expect("the layer put flags in the request");
    group.bench_function("evaluate_rollout", |b| {
        b.iter(|| black_box(evaluator.evaluate("half")))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = flags
}
criterion_main!(benches);
