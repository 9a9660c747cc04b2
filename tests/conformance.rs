//! One behaviour suite, written once, run against every backend:
//! `memory::*`, `redis::*`, `near_cache_memory::*`, `near_cache_redis::*`, `redis_cluster::*`,
//! and `redis_tls::*` (feature `tls`).

#[macro_use]
mod support;

use support::Harness;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tower_kv::store::{
    CasOutcome, Change, Expiration, GcraRate, KvStore, KvStoreExt, ListOptions, PutOptions, Rate,
    RateRequest, ReadOptions, StoreError, DEFAULT_MAX_VALUE_LEN, MAX_KEY_LEN,
};
use tower_kv::Clock;

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn ttl(ms: u64) -> PutOptions {
    PutOptions::new().ttl(Duration::from_millis(ms))
}

mod cases {
    use super::*;

    pub async fn get_missing_is_none<S: KvStore>(h: Harness<S>) {
        assert!(h.store.get("nothing:here").await.unwrap().is_none());
        assert!(!h.store.delete("nothing:here").await.unwrap());
    }

    pub async fn put_get_roundtrip_with_metadata<S: KvStore>(h: Harness<S>) {
        let meta = serde_json::json!({"createdAt": 1_700_000_000_000u64, "tags": ["a"]});
        let v1 = h
            .store
            .put(
                "session:abc",
                b("one"),
                PutOptions::new().metadata(meta.clone()),
            )
            .await
            .unwrap();
        let e = h.store.get("session:abc").await.unwrap().unwrap();
        assert_eq!(e.value, "one");
        assert_eq!(e.metadata, Some(meta));
        assert_eq!(e.expires_at, None);
        assert_eq!(e.version, v1);

        let v2 = h
            .store
            .put("session:abc", b("two"), PutOptions::new())
            .await
            .unwrap();
        assert_ne!(v1, v2, "every write changes the version");
        let e = h.store.get("session:abc").await.unwrap().unwrap();
        assert_eq!((e.value, e.metadata, e.version), (b("two"), None, v2));
    }

    pub async fn delete_removes_and_reports<S: KvStore>(h: Harness<S>) {
        h.store.put("k", b("v"), PutOptions::new()).await.unwrap();
        assert!(h.store.delete("k").await.unwrap());
        assert!(h.store.get("k").await.unwrap().is_none());
        assert!(!h.store.delete("k").await.unwrap());
    }

    pub async fn ttl_expiry<S: KvStore>(h: Harness<S>) {
        let before = SystemTime::now();
        h.store.put("short", b("v"), ttl(300)).await.unwrap();
        h.store.put("long", b("v"), ttl(60_000)).await.unwrap();
        let e = h
            .store
            .get("short")
            .await
            .unwrap()
            .expect("visible before expiry");
        assert!(e.expires_at.is_some());
        h.advance(Duration::from_millis(450)).await;
        assert!(
            h.store.get("short").await.unwrap().is_none(),
            "expired entry is invisible"
        );
        assert!(h.store.get("long").await.unwrap().is_some());
        if h.clock.is_none() {
            let at = h
                .store
                .get("long")
                .await
                .unwrap()
                .unwrap()
                .expires_at
                .unwrap();
            let left = at.duration_since(before).unwrap();
            assert!(
                left > Duration::from_secs(55) && left <= Duration::from_secs(61),
                "{left:?}"
            );
        }
        let err = h
            .store
            .put("zero", b("v"), PutOptions::new().ttl(Duration::ZERO))
            .await;
        assert!(matches!(err, Err(StoreError::InvalidArgument(_))));
    }

    pub async fn absolute_expiry<S: KvStore>(h: Harness<S>) {
        let now = h.clock.as_ref().map_or_else(SystemTime::now, Clock::now);
        let at = now + Duration::from_millis(300);
        h.store
            .put("abs", b("v"), PutOptions::new().expires_at(at))
            .await
            .unwrap();
        let e = h.store.get("abs").await.unwrap().unwrap();
        let got = e.expires_at.unwrap();
        let skew = if got > at {
            got.duration_since(at)
        } else {
            at.duration_since(got)
        }
        .unwrap();
        assert!(
            skew < Duration::from_millis(100),
            "expiry reported {skew:?} away"
        );
        h.advance(Duration::from_millis(450)).await;
        assert!(h.store.get("abs").await.unwrap().is_none());

        h.store
            .put("past", b("v"), PutOptions::new())
            .await
            .unwrap();
        let past = now - Duration::from_secs(10);
        h.store
            .put("past", b("v"), PutOptions::new().expires_at(past))
            .await
            .unwrap();
        assert!(
            h.store.get("past").await.unwrap().is_none(),
            "a past expiry deletes"
        );
    }

    pub async fn binary_values<S: KvStore>(h: Harness<S>) {
        let big: Bytes = (0..1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let cases: [(&str, Bytes); 3] = [
            ("bin:empty", Bytes::new()),
            ("bin:1mib", big),
            (
                "bin:invalid-utf8",
                Bytes::from_static(&[0xff, 0xfe, 0x00, 0xc3, 0x28]),
            ),
        ];
        for (key, value) in &cases {
            h.store
                .put(key, value.clone(), PutOptions::new())
                .await
                .unwrap();
        }
        for (key, value) in &cases {
            let got = h.store.get(key).await.unwrap().expect(key);
            assert_eq!(&got.value, value, "{key}");
        }
    }

    pub async fn unicode_keys<S: KvStore>(h: Harness<S>) {
        let key = "ключ:🔑:日本語 with spaces/and*glob?[chars]";
        h.store.put(key, b("v"), PutOptions::new()).await.unwrap();
        assert_eq!(h.store.get(key).await.unwrap().unwrap().value, "v");
        let page = h.store.list(ListOptions::prefix("ключ:🔑")).await.unwrap();
        assert_eq!(page.keys.len(), 1);
        assert_eq!(page.keys[0].name, key);
        assert!(
            h.store.get("ключ:🔑:*").await.unwrap().is_none(),
            "no glob matching"
        );
    }

    pub async fn key_and_value_limits<S: KvStore>(h: Harness<S>) {
        assert!(matches!(h.store.get("").await, Err(StoreError::EmptyKey)));
        assert!(matches!(
            h.store.put("", b("v"), PutOptions::new()).await,
            Err(StoreError::EmptyKey)
        ));
        let longest = "k".repeat(MAX_KEY_LEN);
        h.store
            .put(&longest, b("v"), PutOptions::new())
            .await
            .unwrap();
        assert!(h.store.get(&longest).await.unwrap().is_some());
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(
            h.store.put(&too_long, b("v"), PutOptions::new()).await,
            Err(StoreError::KeyTooLong { len: 513, max: 512 })
        ));
        assert!(matches!(
            h.store.increment(&too_long, 1, Expiration::Never).await,
            Err(StoreError::KeyTooLong { .. })
        ));
        let huge = Bytes::from(vec![0u8; DEFAULT_MAX_VALUE_LEN + 1]);
        assert!(matches!(
            h.store.put("huge", huge, PutOptions::new()).await,
            Err(StoreError::ValueTooLarge { .. })
        ));
        assert!(
            h.store.get("huge").await.unwrap().is_none(),
            "nothing partial written"
        );
    }

    pub async fn list_paginates_every_key_once<S: KvStore>(h: Harness<S>) {
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let store = h.store.clone();
                tokio::spawn(async move {
                    store
                        .put(&format!("user:{i:04}"), b("v"), PutOptions::new())
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for other in ["user", "users:1", "usex:1", "a:1", "zzz"] {
            h.store.put(other, b("v"), PutOptions::new()).await.unwrap();
        }
        let mut seen = BTreeSet::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = h
                .store
                .list(ListOptions::prefix("user:").limit(128).cursor(cursor))
                .await
                .unwrap();
            pages += 1;
            assert!(page.keys.len() <= 128);
            let names: Vec<_> = page.keys.iter().map(|k| k.name.clone()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(names, sorted, "a page is ordered with no key twice");
            for name in names {
                assert!(name.starts_with("user:"), "prefix isolation: {name}");
                assert!(seen.insert(name.clone()), "{name} returned twice");
            }
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
            assert!(pages < 20, "listing does not terminate");
        }
        assert_eq!(seen.len(), 1000);
        assert_eq!(pages, 8);
        let err = h.store.list(ListOptions::prefix("user:").limit(0)).await;
        assert!(matches!(err, Err(StoreError::InvalidArgument(_))));
    }

    pub async fn list_reports_metadata_and_skips_expired<S: KvStore>(h: Harness<S>) {
        let meta = serde_json::json!({"owner": "u1"});
        h.store
            .put("s:a", b("v"), PutOptions::new().metadata(meta.clone()))
            .await
            .unwrap();
        h.store.put("s:b", b("v"), ttl(300)).await.unwrap();
        h.store.put("s:c", b("v"), ttl(60_000)).await.unwrap();
        h.advance(Duration::from_millis(450)).await;
        let page = h.store.list(ListOptions::prefix("s:")).await.unwrap();
        let names: Vec<_> = page.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["s:a", "s:c"]);
        assert_eq!(page.keys[0].metadata, Some(meta));
        assert_eq!(page.keys[0].expires_at, None);
        assert!(page.keys[1].expires_at.is_some());
        assert_eq!(page.cursor, None);
        h.store.delete("s:a").await.unwrap();
        let page = h.store.list(ListOptions::prefix("s:")).await.unwrap();
        assert_eq!(page.keys.len(), 1);
    }

    pub async fn insert_if_absent_semantics<S: KvStore>(h: Harness<S>) {
        let v = h
            .store
            .insert_if_absent("lock", b("a"), ttl(300))
            .await
            .unwrap();
        assert!(v.is_some());
        assert_eq!(
            h.store.get("lock").await.unwrap().unwrap().version,
            v.unwrap()
        );
        assert!(h
            .store
            .insert_if_absent("lock", b("b"), PutOptions::new())
            .await
            .unwrap()
            .is_none());
        assert_eq!(h.store.get("lock").await.unwrap().unwrap().value, "a");
        h.advance(Duration::from_millis(450)).await;
        assert!(
            h.store
                .insert_if_absent("lock", b("c"), PutOptions::new())
                .await
                .unwrap()
                .is_some(),
            "an expired entry counts as absent"
        );
        assert_eq!(h.store.get("lock").await.unwrap().unwrap().value, "c");
    }

    pub async fn compare_and_swap_semantics<S: KvStore>(h: Harness<S>) {
        let CasOutcome::Swapped(v1) = h
            .store
            .compare_and_swap("doc", None, b("1"), PutOptions::new())
            .await
            .unwrap()
        else {
            panic!("creating an absent key with expected None swaps");
        };
        assert_eq!(
            h.store
                .compare_and_swap("doc", None, b("x"), PutOptions::new())
                .await
                .unwrap(),
            CasOutcome::Conflict
        );
        let CasOutcome::Swapped(v2) = h
            .store
            .compare_and_swap("doc", Some(v1), b("2"), PutOptions::new())
            .await
            .unwrap()
        else {
            panic!("matching version swaps");
        };
        assert_eq!(
            h.store
                .compare_and_swap("doc", Some(v1), b("x"), PutOptions::new())
                .await
                .unwrap(),
            CasOutcome::Conflict
        );
        assert_eq!(h.store.get("doc").await.unwrap().unwrap().value, "2");
        h.store.delete("doc").await.unwrap();
        assert_eq!(
            h.store
                .compare_and_swap("doc", Some(v2), b("x"), PutOptions::new())
                .await
                .unwrap(),
            CasOutcome::Conflict,
            "an update never resurrects a deleted entry"
        );
        assert!(h.store.get("doc").await.unwrap().is_none());
    }

    pub async fn increment_semantics<S: KvStore>(h: Harness<S>) {
        assert_eq!(
            h.store
                .increment("c", 5, Expiration::Ttl(Duration::from_millis(300)))
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            h.store
                .increment("c", -2, Expiration::Ttl(Duration::from_secs(3600)))
                .await
                .unwrap(),
            3
        );
        assert_eq!(h.store.get("c").await.unwrap().unwrap().value, "3");
        h.advance(Duration::from_millis(450)).await;
        assert!(
            h.store.get("c").await.unwrap().is_none(),
            "expiry is set on creation only"
        );
        assert_eq!(
            h.store.increment("c", 1, Expiration::Never).await.unwrap(),
            1
        );

        h.store
            .put("text", b("hello"), PutOptions::new())
            .await
            .unwrap();
        assert!(matches!(
            h.store.increment("text", 1, Expiration::Never).await,
            Err(StoreError::NotACounter { .. })
        ));
        assert_eq!(h.store.get("text").await.unwrap().unwrap().value, "hello");
        h.store
            .put("max", Bytes::from(i64::MAX.to_string()), PutOptions::new())
            .await
            .unwrap();
        assert!(matches!(
            h.store.increment("max", 1, Expiration::Never).await,
            Err(StoreError::NotACounter { .. })
        ));
    }

    pub async fn concurrent_increments_are_exact<S: KvStore>(h: Harness<S>) {
        let results = h
            .concurrently(64, |_, store| async move {
                for _ in 0..100 {
                    store
                        .increment("hits", 1, Expiration::Ttl(Duration::from_secs(60)))
                        .await
                        .unwrap();
                }
            })
            .await;
        assert_eq!(results.len(), 64);
        assert_eq!(h.store.get("hits").await.unwrap().unwrap().value, "6400");
    }

    pub async fn concurrent_insert_if_absent_has_one_winner<S: KvStore>(h: Harness<S>) {
        let results = h
            .concurrently(100, |i, store| async move {
                store
                    .insert_if_absent("winner", Bytes::from(i.to_string()), PutOptions::new())
                    .await
                    .unwrap()
                    .map(|_| i)
            })
            .await;
        let winners: Vec<usize> = results.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let stored = h.store.get("winner").await.unwrap().unwrap().value;
        assert_eq!(stored, winners[0].to_string());
    }

    pub async fn concurrent_cas_loops_lose_nothing<S: KvStore>(h: Harness<S>) {
        h.store
            .put_json("record", &Vec::<u32>::new(), PutOptions::new())
            .await
            .unwrap();
        let results = h
            .concurrently(50, |i, store| async move {
                loop {
                    let entry = store.get("record").await.unwrap().unwrap();
                    let mut items: Vec<usize> = serde_json::from_slice(&entry.value).unwrap();
                    items.push(i);
                    let value = Bytes::from(serde_json::to_vec(&items).unwrap());
                    match store
                        .compare_and_swap("record", Some(entry.version), value, PutOptions::new())
                        .await
                        .unwrap()
                    {
                        CasOutcome::Swapped(_) => break,
                        CasOutcome::Conflict => tokio::task::yield_now().await,
                    }
                }
            })
            .await;
        assert_eq!(results.len(), 50);
        let mut items: Vec<usize> = h.store.get_json("record").await.unwrap().unwrap();
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }

    pub async fn gcra_allows_exactly_the_burst_under_contention<S: KvStore>(h: Harness<S>) {
        const BURST: u32 = 37;
        let rate = GcraRate::per(1, Duration::from_secs(3600)).with_burst(BURST);
        let results = h
            .concurrently(1000, |_, store| async move {
                let req = [RateRequest::new("rl:ip", rate, 1)];
                store.rate_limit(&req).await.unwrap().allowed
            })
            .await;
        let allowed = results.into_iter().filter(|allowed| *allowed).count();
        assert_eq!(allowed, BURST as usize);
    }

    pub async fn gcra_reports_remaining_and_retry_after<S: KvStore>(h: Harness<S>) {
        let rate = GcraRate::per(10, Duration::from_secs(1)).with_burst(3);
        let req = [RateRequest::new("rl:one", rate, 1)];
        let first = h.store.rate_limit(&req).await.unwrap();
        assert!(first.allowed);
        assert_eq!(first.states[0].remaining, 2);
        let reset = first.states[0].reset_after;
        assert!(
            reset <= Duration::from_millis(100) && reset > Duration::from_millis(50),
            "{reset:?}"
        );
        h.store.rate_limit(&req).await.unwrap();
        h.store.rate_limit(&req).await.unwrap();
        let denied = h.store.rate_limit(&req).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.states[0].remaining, 0);
        let retry = denied.retry_after();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(100),
            "{retry:?}"
        );
        h.advance(Duration::from_millis(150)).await;
        let again = h.store.rate_limit(&req).await.unwrap();
        assert!(again.allowed, "one unit replenished after one interval");

        let expensive = [RateRequest::new("rl:one", rate, 4)];
        assert!(matches!(
            h.store.rate_limit(&expensive).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }

    pub async fn gcra_several_buckets_are_all_or_nothing<S: KvStore>(h: Harness<S>) {
        let tight = GcraRate::per(2, Duration::from_secs(3600));
        let loose = GcraRate::per(100, Duration::from_secs(3600));
        let req = [
            RateRequest::new("rl:{client}:loose", loose, 1),
            RateRequest::new("rl:{client}:tight", tight, 1),
        ];
        for _ in 0..2 {
            assert!(h.store.rate_limit(&req).await.unwrap().allowed);
        }
        for _ in 0..5 {
            let d = h.store.rate_limit(&req).await.unwrap();
            assert!(!d.allowed);
            assert!(d.states[0].allowed && !d.states[1].allowed);
            assert_eq!(
                d.states[0].remaining, 98,
                "the loose bucket is not consumed on a denial"
            );
        }
        let loose_only = [req[0].clone()];
        assert_eq!(
            h.store.rate_limit(&loose_only).await.unwrap().states[0].remaining,
            97
        );
    }

    pub async fn rate_buckets_are_entries_like_any_other<S: KvStore>(h: Harness<S>) {
        let rate = Rate::FixedWindow {
            limit: 3,
            window: Duration::from_secs(86_400),
        };
        let key = "rl:{c}:seen";
        let req = [RateRequest::new(key, rate, 1)];
        let remaining = || async { h.store.rate_limit(&req).await.unwrap().states[0].remaining };
        assert_eq!(remaining().await, 2);
        let bucket = h
            .store
            .get(key)
            .await
            .unwrap()
            .expect("a bucket is an entry");
        assert!(bucket.expires_at.is_some(), "a bucket expires");
        let state = String::from_utf8(bucket.value.to_vec()).unwrap();
        assert!(
            state.ends_with(":1"),
            "a window state is start:count, not {state}"
        );
        let page = h.store.list(ListOptions::prefix("rl:{c}:")).await.unwrap();
        let names: Vec<String> = page.keys.into_iter().map(|k| k.name).collect();
        assert_eq!(names, [key]);

        // Compare-and-swap sees the bucket's version; a write replaces it,
        // and a decision over a value that is no state starts afresh.
        let swap = h
            .store
            .compare_and_swap(key, None, b("x"), PutOptions::new());
        assert_eq!(swap.await.unwrap(), CasOutcome::Conflict);
        let swap = h
            .store
            .compare_and_swap(key, Some(bucket.version), b("x"), PutOptions::new());
        assert!(matches!(swap.await.unwrap(), CasOutcome::Swapped(_)));
        assert_eq!(h.store.get(key).await.unwrap().unwrap().value, b("x"));
        assert_eq!(remaining().await, 2);
        assert_eq!(remaining().await, 1);

        assert!(h.store.delete(key).await.unwrap());
        assert!(h.store.get(key).await.unwrap().is_none());
        assert!(h
            .store
            .list(ListOptions::prefix("rl:{c}:"))
            .await
            .unwrap()
            .keys
            .is_empty());
        assert_eq!(remaining().await, 2, "a deleted bucket starts afresh");
        assert_eq!(
            h.store.increment(key, 1, Expiration::Never).await.ok(),
            None
        );
    }

    pub async fn windows_allow_exactly_the_limit_under_contention<S: KvStore>(h: Harness<S>) {
        let day = Duration::from_secs(86_400);
        for (key, rate) in [
            (
                "rl:{client}:fixed",
                Rate::FixedWindow {
                    limit: 25,
                    window: day,
                },
            ),
            (
                "rl:sliding",
                Rate::SlidingWindow {
                    limit: 25,
                    window: day,
                },
            ),
        ] {
            let results = h
                .concurrently(300, |_, store| async move {
                    let req = [RateRequest::new(key, rate, 1)];
                    store.rate_limit(&req).await.unwrap().allowed
                })
                .await;
            assert_eq!(results.into_iter().filter(|a| *a).count(), 25, "{key}");
        }
    }

    pub async fn mixed_algorithms_are_all_or_nothing<S: KvStore>(h: Harness<S>) {
        let fixed = Rate::FixedWindow {
            limit: 2,
            window: Duration::from_secs(86_400),
        };
        let smooth = GcraRate::per(100, Duration::from_secs(3600));
        let req = [
            RateRequest::new("rl:{client}:fixed", fixed, 1),
            RateRequest::new("rl:{client}:smooth", smooth, 1),
        ];
        assert!(h.store.rate_limit(&req).await.unwrap().allowed);
        assert!(h.store.rate_limit(&req).await.unwrap().allowed);
        let denied = h.store.rate_limit(&req).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.states[0].remaining, 0);
        assert!(denied.states[0].retry_after > Duration::ZERO);
        assert_eq!(
            denied.states[1].remaining, 98,
            "GCRA bucket untouched by the denial"
        );
    }

    pub async fn peeking_never_charges<S: KvStore>(h: Harness<S>) {
        let rate = GcraRate::per(5, Duration::from_secs(3600));
        let would_five_pass = [RateRequest::new("rl:look", rate, 5).peek()];
        assert!(h.store.rate_limit(&would_five_pass).await.unwrap().allowed);
        assert!(h.store.rate_limit(&would_five_pass).await.unwrap().allowed);
        let look = [RateRequest::new("rl:look", rate, 0)];
        let spend = [RateRequest::new("rl:look", rate, 1)];
        for _ in 0..3 {
            let d = h.store.rate_limit(&look).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.states[0].remaining, 5);
        }
        h.store.rate_limit(&spend).await.unwrap();
        assert_eq!(
            h.store.rate_limit(&look).await.unwrap().states[0].remaining,
            4
        );
    }

    /// `get_now`, where a store answers it at once, says what `get` says.
    pub async fn get_now_agrees_with_get<S: KvStore>(h: Harness<S>) {
        let agrees = |key: &'static str| {
            let store = h.store.clone();
            async move {
                let read = store.get(key).await.unwrap();
                if let Some(now) = store.get_now(key) {
                    assert_eq!(now.unwrap(), read, "{key}");
                }
            }
        };
        h.store
            .put("now:a", b("1"), PutOptions::new())
            .await
            .unwrap();
        agrees("now:a").await;
        agrees("now:missing").await;
        h.store
            .put("now:a", b("2"), PutOptions::new())
            .await
            .unwrap();
        agrees("now:a").await;
        h.store.delete("now:a").await.unwrap();
        agrees("now:a").await;
    }

    /// The three algorithms, each allowing 3 units a day (so a test never
    /// sees the bucket replenish).
    fn three_a_day() -> [(&'static str, Rate); 3] {
        let day = Duration::from_secs(86_400);
        [
            ("rl:back:gcra", GcraRate::per(3, day).into()),
            (
                "rl:back:fixed",
                Rate::FixedWindow {
                    limit: 3,
                    window: day,
                },
            ),
            (
                "rl:back:sliding",
                Rate::SlidingWindow {
                    limit: 3,
                    window: day,
                },
            ),
        ]
    }

    pub async fn refunds_give_back_what_was_spent<S: KvStore>(h: Harness<S>) {
        for (key, rate) in three_a_day() {
            let decide = |cost, refund: bool| {
                let r = RateRequest::new(key, rate, cost);
                let r = if refund { r.refund() } else { r };
                let store = h.store.clone();
                async move { store.rate_limit(&[r]).await.unwrap() }
            };
            let nothing_spent = decide(1, true).await;
            assert!(nothing_spent.allowed, "{key}");
            assert_eq!(nothing_spent.states[0].remaining, 3, "{key}");
            assert!(
                h.store.get(key).await.unwrap().is_none(),
                "{key}: a refund of nothing stores nothing"
            );
            for left in [2, 1, 0] {
                assert_eq!(decide(1, false).await.states[0].remaining, left, "{key}");
            }
            assert!(!decide(1, false).await.allowed, "{key}");
            let back = decide(1, true).await;
            assert!(back.allowed, "{key}");
            assert_eq!(back.states[0].remaining, 1, "{key}");
            assert_eq!(back.states[0].retry_after, Duration::ZERO, "{key}");
            assert!(decide(1, false).await.allowed, "{key}");
            assert!(!decide(1, false).await.allowed, "{key}");
            let more_than_spent = decide(3, true).await;
            assert_eq!(
                more_than_spent.states[0].remaining, 3,
                "{key}: never above capacity"
            );
            assert_eq!(decide(3, false).await.states[0].remaining, 0, "{key}");
            assert!(!decide(1, false).await.allowed, "{key}");
        }
        // Several buckets (one hash tag): given back together, like a charge.
        let [(_, gcra), (_, fixed), _] = three_a_day();
        let both = |refund: bool| {
            [("rl:{both}:a", gcra), ("rl:{both}:b", fixed)].map(|(key, rate)| {
                let r = RateRequest::new(key, rate, 2);
                if refund {
                    r.refund()
                } else {
                    r
                }
            })
        };
        assert!(h.store.rate_limit(&both(false)).await.unwrap().allowed);
        let back = h.store.rate_limit(&both(true)).await.unwrap();
        assert!(back.allowed);
        let left: Vec<u32> = back.states.iter().map(|s| s.remaining).collect();
        assert_eq!(left, [3, 3]);
    }

    /// Concurrent reservations, each given back once it is known not to
    /// count, leave every bucket exactly as full as they found it.
    pub async fn concurrent_reserve_and_refund_leave_nothing_spent<S: KvStore>(h: Harness<S>) {
        for (key, rate) in three_a_day() {
            let reserved = h
                .concurrently(60, move |_, store| async move {
                    let charge = RateRequest::new(key, rate, 1);
                    let decided = store
                        .rate_limit(std::slice::from_ref(&charge))
                        .await
                        .unwrap();
                    if decided.allowed {
                        store.rate_limit(&[charge.refund()]).await.unwrap();
                    }
                    decided.allowed
                })
                .await;
            assert!(reserved.iter().any(|a| *a), "{key}");
            let full = [RateRequest::new(key, rate, 3).peek()];
            let d = h.store.rate_limit(&full).await.unwrap();
            assert!(d.allowed, "{key}: all three units are back");
            assert_eq!(d.states[0].remaining, 0, "{key}");
        }
    }

    /// A watcher hears of every kind of write to keys under its prefix, by
    /// key, from the other handle; writes elsewhere and rate decisions are
    /// not announced.
    pub async fn watchers_hear_of_writes<S: KvStore>(h: Harness<S>) {
        let Some(mut changes) = h.twin.watch("w:") else {
            return;
        };
        h.store.announce("w:");
        // The subscription is up (and has pinged) once a write is heard.
        let subscribed = std::time::Instant::now();
        loop {
            h.store
                .put("w:ready", Bytes::new(), PutOptions::new())
                .await
                .unwrap();
            let next = tokio::time::timeout(Duration::from_millis(200), changes.next()).await;
            if matches!(next, Ok(Some(Change::Key(ref k))) if k == "w:ready") {
                break;
            }
            assert!(
                subscribed.elapsed() < Duration::from_secs(5),
                "never subscribed"
            );
        }
        // Notices of the repeated `w:ready` writes still queued.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(100), changes.next()).await
        {}
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.store
            .put("x:elsewhere", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        let rate = GcraRate::per(5, Duration::from_secs(60));
        h.store
            .rate_limit(&[RateRequest::new("w:bucket", rate, 1)])
            .await
            .unwrap();
        h.store
            .put("w:a", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        h.store
            .insert_if_absent("w:b", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        h.store
            .compare_and_swap("w:b", None, Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        h.store
            .increment("w:n", 1, Expiration::Never)
            .await
            .unwrap();
        h.store.delete("w:a").await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
            match next.expect("a notice within 5 s") {
                Some(Change::Key(key)) => seen.push(key),
                other => panic!("a key notice, not {other:?}"),
            }
        }
        // The failed compare-and-swap changed nothing and said nothing.
        // Notices of different keys may arrive in any order: a cluster
        // publishes each from its key's node.
        seen.sort();
        assert_eq!(seen, ["w:a", "w:a", "w:b", "w:n"]);
    }

    /// A copy a near cache holds follows another instance's writes within a
    /// second (on stores without a near cache, reads go to the store).
    pub async fn reads_follow_other_instances<S: KvStore>(h: Harness<S>) {
        let read = ReadOptions::cache_ttl(Duration::from_secs(600));
        h.store
            .put("n:k", Bytes::from("start"), PutOptions::new())
            .await
            .unwrap();
        h.twin.get_with("n:k", read).await.unwrap();
        let delays = support::propagation(
            100,
            Duration::from_secs(1),
            |i| {
                let store = h.store.clone();
                async move {
                    let value = Bytes::from(i.to_string());
                    store.put("n:k", value, PutOptions::new()).await.unwrap();
                }
            },
            |i| {
                let twin = h.twin.clone();
                async move {
                    let entry = twin.get_with("n:k", read).await.unwrap().unwrap();
                    entry.value == i.to_string()
                }
            },
        )
        .await;
        eprintln!("near-cache propagation over 100 changes: {delays:?}");
    }

    pub async fn json_helpers_name_the_key_on_bad_data<S: KvStore>(h: Harness<S>) {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Session {
            user_id: String,
            expires_at: u64,
        }
        let s = Session {
            user_id: "u1".into(),
            expires_at: 42,
        };
        h.store
            .put_json("session:1", &s, PutOptions::new())
            .await
            .unwrap();
        assert_eq!(
            h.store.get_json::<Session>("session:1").await.unwrap(),
            Some(s)
        );
        assert_eq!(
            h.store.get_json::<Session>("session:none").await.unwrap(),
            None
        );
        h.store
            .put("session:bad", b("{not json"), PutOptions::new())
            .await
            .unwrap();
        match h.store.get_json::<Session>("session:bad").await {
            Err(e @ StoreError::Decode { .. }) => assert!(e.to_string().contains("session:bad")),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}

/// Every case, against one backend.
macro_rules! conformance {
    ($backend:ident = $make:path) => {
        run_cases!($backend = $make;
            get_missing_is_none,
            put_get_roundtrip_with_metadata,
            delete_removes_and_reports,
            ttl_expiry,
            absolute_expiry,
            binary_values,
            unicode_keys,
            key_and_value_limits,
            list_paginates_every_key_once,
            list_reports_metadata_and_skips_expired,
            insert_if_absent_semantics,
            compare_and_swap_semantics,
            increment_semantics,
            concurrent_increments_are_exact,
            concurrent_insert_if_absent_has_one_winner,
            concurrent_cas_loops_lose_nothing,
            gcra_allows_exactly_the_burst_under_contention,
            gcra_reports_remaining_and_retry_after,
            gcra_several_buckets_are_all_or_nothing,
            rate_buckets_are_entries_like_any_other,
            windows_allow_exactly_the_limit_under_contention,
            mixed_algorithms_are_all_or_nothing,
            peeking_never_charges,
            get_now_agrees_with_get,
            refunds_give_back_what_was_spent,
            concurrent_reserve_and_refund_leave_nothing_spent,
            json_helpers_name_the_key_on_bad_data,
            watchers_hear_of_writes,
            reads_follow_other_instances,
        );
    };
}

conformance!(memory = support::memory);
conformance!(near_cache_memory = support::near_cache_memory);
#[cfg(feature = "redis")]
conformance!(redis = support::redis);
#[cfg(feature = "redis")]
conformance!(near_cache_redis = support::near_cache_redis);
#[cfg(feature = "redis")]
conformance!(redis_cluster = support::redis_cluster);
#[cfg(feature = "tls")]
conformance!(redis_tls = support::redis_tls);
