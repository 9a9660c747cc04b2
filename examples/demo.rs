//! A tour of the shared backend: the seed's edge-KV patterns, each done
//! atomically on one `KvStore`. (The full five-layer HTTP demo server replaces
//! this once the layers land.)
//!
//! `cargo run --example demo` runs on the in-memory backend;
//! `cargo run --example demo --features redis -- --redis redis://127.0.0.1:6379/`
//! runs the same tour on Redis.

use std::time::Duration;

use bytes::Bytes;
use tower_kv::store::{
    Expiration, GcraRate, KvStore, KvStoreExt, ListOptions, MemoryStore, PutOptions, RateRequest,
    StoreError,
};

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let redis_url = std::env::args().skip_while(|a| a != "--redis").nth(1);
    match redis_url {
        None => {
            println!("backend: MemoryStore");
            tour(MemoryStore::new()).await
        }
        Some(url) => tour_redis(&url).await,
    }
}

#[cfg(feature = "redis")]
async fn tour_redis(url: &str) -> Result<(), StoreError> {
    println!("backend: RedisStore at {url}");
    tour(
        tower_kv::store::RedisStore::builder(url)
            .prefix("tower-kv-demo:")
            .connect()
            .await?,
    )
    .await
}

#[cfg(not(feature = "redis"))]
async fn tour_redis(_: &str) -> Result<(), StoreError> {
    eprintln!("--redis needs the `redis` feature: cargo run --example demo --features redis -- --redis URL");
    std::process::exit(2)
}

async fn tour<S: KvStore>(store: S) -> Result<(), StoreError> {
    // Response caching: read through, 300 s TTL.
    let users: serde_json::Value = match store.get_json("cache:api:users").await? {
        Some(hit) => hit,
        None => {
            let fresh = serde_json::json!({"users": ["ada", "grace"]});
            let ttl = PutOptions::new().ttl(Duration::from_secs(300));
            store.put_json("cache:api:users", &fresh, ttl).await?;
            fresh
        }
    };
    println!("cache:     {users}");

    // Sessions: created with insert-if-absent, so an id is never overwritten.
    let id = format!("{:032x}", rand::random::<u128>());
    let created = store
        .insert_if_absent(
            &format!("session:{id}"),
            Bytes::from_static(br#"{"userId":"ada"}"#),
            PutOptions::new()
                .ttl(Duration::from_secs(86_400))
                .metadata(serde_json::json!({"createdAt": "now"})),
        )
        .await?;
    println!("session:   {id} created={}", created.is_some());

    // Rate limiting: one atomic GCRA decision per request, 5 per minute.
    let rate = GcraRate::per(5, Duration::from_secs(60));
    let mut verdicts = Vec::new();
    for _ in 0..7 {
        let d = store
            .rate_limit(&[RateRequest::new("ratelimit:ip:127.0.0.1", rate, 1)])
            .await?;
        verdicts.push(if d.allowed {
            "ok".to_owned()
        } else {
            format!("429 retry in {:?}", d.retry_after())
        });
    }
    println!("ratelimit: {}", verdicts.join(", "));

    // Counters: exact under concurrency, expiry set on creation.
    let hits = store
        .increment("stats:hits", 1, Expiration::Ttl(Duration::from_secs(3600)))
        .await?;
    println!("counter:   stats:hits = {hits}");

    // A/B assignment: sticky, first writer wins.
    let key = "test:checkout:user:ada";
    store
        .insert_if_absent(key, Bytes::from_static(b"treatment"), PutOptions::new())
        .await?;
    store
        .insert_if_absent(key, Bytes::from_static(b"control"), PutOptions::new())
        .await?;
    let variant = store.get(key).await?.map(|e| e.value).unwrap_or_default();
    println!("abtest:    ada -> {}", String::from_utf8_lossy(&variant));

    // Hierarchical keys.
    let page = store.list(ListOptions::prefix("session:")).await?;
    println!("list:      {} key(s) under session:", page.keys.len());
    Ok(())
}
