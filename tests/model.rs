//! Model-based store tests: random sequences of operations applied to every
//! backend and to a plain reference model must agree step by step
//! (`memory::*`, `near_cache_memory::*`, `redis::*`, `near_cache_redis::*`, `redis_cluster::*`). proptest shrinks a
//! failure to its shortest sequence, printed with the panic.
//!
//! Time moves only on the in-memory backends (a manual clock), so TTL
//! expiry is modelled there; on Redis every entry outlives the test.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::Harness;
use tower_kv::store::{
    CasOutcome, Expiration, KvStore, ListOptions, PutOptions, Rate, RateRequest, StoreError,
    Version,
};
use tower_kv::Clock;

/// Keys that collide and nest, so `list` prefixes and overwrites matter.
const KEYS: [&str; 6] = ["a", "a:1", "a:2", "ab", "b", "b:1"];
const PREFIXES: [&str; 4] = ["", "a", "a:", "b"];

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: usize,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        meta: Option<u8>,
    },
    Get(usize),
    Delete(usize),
    InsertIfAbsent {
        key: usize,
        value: Vec<u8>,
    },
    /// Compare-and-swap against the version a `get` just read.
    CasCurrent {
        key: usize,
        value: Vec<u8>,
    },
    /// Compare-and-swap expecting no entry.
    CasAbsent {
        key: usize,
        value: Vec<u8>,
    },
    /// Compare-and-swap against a version no entry has.
    CasStale {
        key: usize,
        value: Vec<u8>,
    },
    Increment {
        key: usize,
        delta: i64,
        ttl_ms: Option<u64>,
    },
    List {
        prefix: usize,
        limit: usize,
    },
    /// A charge, or (`refund`) giving the cost back.
    RateLimit {
        key: usize,
        cost: u32,
        refund: bool,
    },
    Advance(u64),
}

fn op(clocked: bool) -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let value = prop::collection::vec(any::<u8>(), 0..6);
    let ttl = if clocked {
        prop::option::of(prop_oneof![Just(1_000u64), Just(5_000), Just(60_000)]).boxed()
    } else {
        Just(None).boxed()
    };
    let advance = if clocked { 1..70_000u64 } else { 0..1u64 };
    prop_oneof![
        (
            key.clone(),
            value.clone(),
            ttl.clone(),
            prop::option::of(0..3u8)
        )
            .prop_map(|(key, value, ttl_ms, meta)| Op::Put {
                key,
                value,
                ttl_ms,
                meta
            }),
        key.clone().prop_map(Op::Get),
        key.clone().prop_map(Op::Delete),
        (key.clone(), value.clone()).prop_map(|(key, value)| Op::InsertIfAbsent { key, value }),
        (key.clone(), value.clone()).prop_map(|(key, value)| Op::CasCurrent { key, value }),
        (key.clone(), value.clone()).prop_map(|(key, value)| Op::CasAbsent { key, value }),
        (key.clone(), value).prop_map(|(key, value)| Op::CasStale { key, value }),
        (key.clone(), -3..4i64, ttl).prop_map(|(key, delta, ttl_ms)| Op::Increment {
            key,
            delta,
            ttl_ms
        }),
        (0..PREFIXES.len(), 1..4usize).prop_map(|(prefix, limit)| Op::List { prefix, limit }),
        (key, 1..3u32, any::<bool>()).prop_map(|(key, cost, refund)| Op::RateLimit {
            key,
            cost,
            refund
        }),
        advance.prop_map(Op::Advance),
    ]
}

/// What the model knows of one key.
#[derive(Clone, Debug)]
struct Modelled {
    value: Vec<u8>,
    meta: Option<serde_json::Value>,
    /// Absolute expiry, ms since the epoch.
    expires_at: Option<u64>,
}

/// The reference: a map, a clock and fixed-window counters.
struct Model {
    entries: BTreeMap<String, Modelled>,
    windows: BTreeMap<String, (u64, u32)>,
    now: u64,
}

/// A bucket of at most 5 units per day-long aligned window.
const RATE: Rate = Rate::FixedWindow {
    limit: 5,
    window: Duration::from_secs(86_400),
};

impl Model {
    fn live(&mut self, key: &str) -> Option<&Modelled> {
        let now = self.now;
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.expires_at.is_some_and(|at| at <= now))
        {
            self.entries.remove(key);
        }
        self.entries.get(key)
    }

    fn write(&mut self, key: &str, value: &[u8], ttl_ms: Option<u64>, meta: Option<u8>) {
        let entry = Modelled {
            value: value.to_vec(),
            meta: meta.map(|m| serde_json::json!({ "m": m })),
            expires_at: ttl_ms.map(|t| self.now + t),
        };
        self.entries.insert(key.to_owned(), entry);
    }
}

fn options(ttl_ms: Option<u64>, meta: Option<u8>) -> PutOptions {
    let mut options = PutOptions::new();
    if let Some(ttl) = ttl_ms {
        options = options.ttl(Duration::from_millis(ttl));
    }
    if let Some(m) = meta {
        options = options.metadata(serde_json::json!({ "m": m }));
    }
    options
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Applies `ops` to the store (keys under `ns`) and the model, comparing
/// every answer.
async fn check<S: KvStore>(
    store: &S,
    clock: Option<&Clock>,
    ns: &str,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let now = || clock.map_or_else(|| ms(SystemTime::now()), Clock::now_ms);
    let mut model = Model {
        entries: BTreeMap::new(),
        windows: BTreeMap::new(),
        now: now(),
    };
    let k = |i: usize| format!("{ns}{}", KEYS[i]);
    for (step, op) in ops.iter().enumerate() {
        model.now = now();
        let at = format!("step {step}: {op:?}");
        match op {
            Op::Put {
                key,
                value,
                ttl_ms,
                meta,
            } => {
                store
                    .put(
                        &k(*key),
                        Bytes::copy_from_slice(value),
                        options(*ttl_ms, *meta),
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
                model.write(&k(*key), value, *ttl_ms, *meta);
            }
            Op::Get(key) => {
                let got = store.get(&k(*key)).await.unwrap();
                let expected = model.live(&k(*key)).cloned();
                match (got, expected) {
                    (None, None) => {}
                    (Some(got), Some(expected)) => {
                        prop_assert_eq!(&got.value[..], &expected.value[..], "{}", at);
                        prop_assert_eq!(&got.metadata, &expected.meta, "{}", at);
                        let got_at = got.expires_at.map(ms);
                        if clock.is_some() {
                            prop_assert_eq!(got_at, expected.expires_at, "{}", at);
                        } else {
                            prop_assert_eq!(
                                got_at.is_some(),
                                expected.expires_at.is_some(),
                                "{}",
                                at
                            );
                        }
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "{at}: store {got:?}, model {expected:?}"
                        )))
                    }
                }
            }
            Op::Delete(key) => {
                let existed = store.delete(&k(*key)).await.unwrap();
                let expected = model.live(&k(*key)).is_some();
                model.entries.remove(&k(*key));
                prop_assert_eq!(existed, expected, "{}", at);
            }
            Op::InsertIfAbsent { key, value } => {
                let won = store
                    .insert_if_absent(&k(*key), Bytes::copy_from_slice(value), PutOptions::new())
                    .await
                    .unwrap()
                    .is_some();
                let expected = model.live(&k(*key)).is_none();
                prop_assert_eq!(won, expected, "{}", at);
                if won {
                    model.write(&k(*key), value, None, None);
                }
            }
            Op::CasCurrent { key, value }
            | Op::CasAbsent { key, value }
            | Op::CasStale { key, value } => {
                let exists = model.live(&k(*key)).is_some();
                let (expected_version, should_swap) = match op {
                    Op::CasCurrent { .. } => {
                        let current = store.get(&k(*key)).await.unwrap().map(|e| e.version);
                        prop_assert_eq!(current.is_some(), exists, "{}", at);
                        (current, true)
                    }
                    Op::CasAbsent { .. } => (None, !exists),
                    _ => (Some(stale_version(store, &k(*key)).await), false),
                };
                let outcome = store
                    .compare_and_swap(
                        &k(*key),
                        expected_version,
                        Bytes::copy_from_slice(value),
                        PutOptions::new(),
                    )
                    .await
                    .unwrap();
                let swapped = matches!(outcome, CasOutcome::Swapped(_));
                prop_assert_eq!(swapped, should_swap, "{}", at);
                if swapped {
                    model.write(&k(*key), value, None, None);
                }
            }
            Op::Increment { key, delta, ttl_ms } => {
                let expiration = ttl_ms.map_or(Expiration::Never, |t| {
                    Expiration::Ttl(Duration::from_millis(t))
                });
                let result = store.increment(&k(*key), *delta, expiration).await;
                let current = model.live(&k(*key)).cloned();
                match current {
                    None => {
                        prop_assert_eq!(result.as_ref().ok(), Some(delta), "{}", at);
                        model.write(&k(*key), delta.to_string().as_bytes(), *ttl_ms, None);
                    }
                    Some(entry) => {
                        let parsed = std::str::from_utf8(&entry.value)
                            .ok()
                            .and_then(|v| v.parse::<i64>().ok());
                        match parsed {
                            Some(n) => {
                                prop_assert_eq!(result.as_ref().ok(), Some(&(n + delta)), "{}", at);
                                let kept = Modelled {
                                    value: (n + delta).to_string().into_bytes(),
                                    ..entry
                                };
                                model.entries.insert(k(*key), kept);
                            }
                            None => prop_assert!(
                                matches!(result, Err(StoreError::NotACounter { .. })),
                                "{}: {:?}",
                                at,
                                result
                            ),
                        }
                    }
                }
            }
            Op::List { prefix, limit } => {
                let prefix = format!("{ns}{}", PREFIXES[*prefix]);
                let mut listed = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store
                        .list(ListOptions::prefix(&prefix).limit(*limit).cursor(cursor))
                        .await
                        .unwrap();
                    prop_assert!(page.keys.len() <= *limit, "{}", at);
                    listed.extend(page.keys.into_iter().map(|k| k.name));
                    cursor = page.cursor;
                    if cursor.is_none() {
                        break;
                    }
                }
                let names: Vec<String> = model.entries.keys().cloned().collect();
                let mut expected = Vec::new();
                for name in names.iter().filter(|n| n.starts_with(&prefix)) {
                    if model.live(name).is_some() {
                        expected.push(name.clone());
                    }
                }
                prop_assert_eq!(listed, expected, "{}", at);
            }
            Op::RateLimit { key, cost, refund } => {
                // Buckets live under their own names, apart from the entries.
                let bucket = format!("rate-{ns}{}", KEYS[*key]);
                let request = RateRequest::new(&bucket, RATE, *cost);
                let request = if *refund { request.refund() } else { request };
                let decision = store.rate_limit(&[request]).await.unwrap();
                let window = model.now / 86_400_000;
                let used = model.windows.entry(bucket).or_insert((window, 0));
                if used.0 != window {
                    *used = (window, 0);
                }
                let allowed = *refund || used.1 + cost <= 5;
                if *refund {
                    used.1 = used.1.saturating_sub(*cost);
                } else if allowed {
                    used.1 += cost;
                }
                prop_assert_eq!(decision.allowed, allowed, "{}", at);
                prop_assert_eq!(decision.states[0].remaining, 5 - used.1, "{}", at);
            }
            Op::Advance(ms) => {
                if let Some(clock) = clock {
                    clock.advance(Duration::from_millis(*ms));
                }
            }
        }
    }
    Ok(())
}

/// A version the entry at `key` does not have.
async fn stale_version<S: KvStore>(store: &S, key: &str) -> Version {
    let current = store.get(key).await.unwrap().map(|e| e.version);
    loop {
        // Versions are opaque; one written elsewhere and then deleted is stale.
        let scratch = format!("{key}~stale");
        let version = store
            .put(&scratch, Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        store.delete(&scratch).await.unwrap();
        if Some(version) != current {
            return version;
        }
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

mod cases {
    use super::*;

    pub async fn store_agrees_with_the_model<S: KvStore>(h: Harness<S>) {
        static CASE: AtomicUsize = AtomicUsize::new(0);
        let clock = h.clock.clone();
        let strategy = prop::collection::vec(op(clock.is_some()), 1..40);
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::block_in_place(|| {
            // Fewer cases where each costs network round trips.
            let cases = if clock.is_some() { 256 } else { 64 };
            runner(cases).run(&strategy, |ops| {
                // Each case gets its own keys, so cases never see each other.
                let ns = format!("m{}:", CASE.fetch_add(1, Ordering::Relaxed));
                handle.block_on(check(&h.store, clock.as_ref(), &ns, &ops))
            })
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}

run_cases!(memory = support::memory; store_agrees_with_the_model);
run_cases!(near_cache_memory = support::near_cache_memory; store_agrees_with_the_model);
#[cfg(feature = "redis")]
run_cases!(redis = support::redis; store_agrees_with_the_model);
#[cfg(feature = "redis")]
run_cases!(near_cache_redis = support::near_cache_redis; store_agrees_with_the_model);
#[cfg(feature = "redis")]
run_cases!(redis_cluster = support::redis_cluster; store_agrees_with_the_model);
