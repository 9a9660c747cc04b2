//! Per-request cost of sessions through a ready service with a trivial
//! handler: tower-kv (MemoryStore) vs tower-sessions (its MemoryStore), same
//! run. `untouched`: the request has a session cookie, the handler ignores
//! the session; `read`: the handler reads one value; `write`: it changes one.
//! `bare`: the same request through the same harness to a handler with no
//! session layer, the floor both contestants pay.
//!
//! `cargo bench --bench session`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Clone, Copy)]
enum Mode {
    Untouched,
    Read,
    Write,
}

const MODES: [(Mode, &str); 3] = [
    (Mode::Untouched, "untouched"),
    (Mode::Read, "read"),
    (Mode::Write, "write"),
];

fn request(cookie: &str) -> Request<Body> {
    Request::get("/")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

/// The `name=value` pair of a response's session cookie.
fn cookie_of<B>(res: &Response<B>) -> String {
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn tower_kv_handler(
    mode: Mode,
    n: Arc<AtomicU64>,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let session = req
        .extensions()
        .get::<tower_kv::session::Session>()
        .unwrap();
    match mode {
        Mode::Untouched => {}
        Mode::Read => drop(session.get::<u64>("n").await.unwrap()),
        Mode::Write => session
            .insert("n", n.fetch_add(1, Ordering::Relaxed))
            .await
            .unwrap(),
    }
    Ok(Response::new(Body::empty()))
}

async fn tower_sessions_handler(
    mode: Mode,
    n: Arc<AtomicU64>,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let session = req.extensions().get::<tower_sessions::Session>().unwrap();
    match mode {
        Mode::Untouched => {}
        Mode::Read => drop(session.get::<u64>("n").await.unwrap()),
        Mode::Write => session
            .insert("n", n.fetch_add(1, Ordering::Relaxed))
            .await
            .unwrap(),
    }
    Ok(Response::new(Body::empty()))
}

/// Benchmarks `$handler` in `$mode` behind `$layer`, with a session that a
/// first request (through the same layer, so the same store) created.
macro_rules! bench_stack {
    ($group:expr, $rt:expr, $id:expr, $layer:expr, $mode:expr, $handler:path) => {{
        let layer = $layer;
        let mode = $mode;
        let setup = ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|req| $handler(Mode::Write, Arc::default(), req));
        let res = $rt
            .block_on(setup.oneshot(Request::get("/").body(Body::empty()).unwrap()))
            .unwrap();
        let cookie = cookie_of(&res);
        let counter = Arc::new(AtomicU64::new(0));
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |req| $handler(mode, counter.clone(), req));
        $group.bench_function($id, |b| {
            b.to_async(&$rt).iter(|| {
                let mut svc = svc.clone();
                let req = request(&cookie);
                async move { svc.call(req).await.unwrap() }
            })
        });
    }};
}

fn session(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("session");
    let bare = ServiceBuilder::new()
        .service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let cookie = "id=abc";
    let res = rt.block_on(bare.oneshot(request(cookie))).unwrap();
    assert_eq!(res.status(), 200);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = bare;
            let req = request(cookie);
            async move { svc.call(req).await.unwrap() }
        })
    });
    for (mode, param) in MODES {
        let kv = tower_kv::session::SessionLayer::new(tower_kv::store::MemoryStore::new());
        bench_stack!(
            group,
            rt,
            BenchmarkId::new("tower_kv", param),
            kv,
            mode,
            tower_kv_handler
        );
        let ts = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default());
        bench_stack!(
            group,
            rt,
            BenchmarkId::new("tower_sessions", param),
            ts,
            mode,
            tower_sessions_handler
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = session
}
criterion_main!(benches);
