//! What only a Redis Cluster shows: placement over the masters, hash tags,
//! refused cross-slot decisions, replay-safe scripts and a failover. (Every
//! behaviour suite also runs on the cluster: `redis_cluster::*` in each
//! test file.)
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use support::RedisCluster;
use tower::{ServiceBuilder, ServiceExt};
use tower_kv::identity::Identity;
use tower_kv::ratelimit::{Quota, RateLimitLayer};
use tower_kv::store::{
    GcraRate, KvStore, ListOptions, PutOptions, RateRequest, RedisStore, StoreError,
};

async fn connect(cluster: &RedisCluster, timeout: Duration) -> RedisStore {
    RedisStore::cluster_builder(cluster.urls())
        .prefix(support::unique_prefix())
        .timeout(timeout)
        .connect()
        .await
        .expect("connect to the cluster")
}

/// Keys of 100 identities, limited through the layer, land on every master.
#[tokio::test]
async fn identities_spread_over_every_master() {
    let Some(cluster) = RedisCluster::start(false) else {
        return;
    };
    let store = connect(&cluster, Duration::from_secs(2)).await;
    let app = ServiceBuilder::new()
        .layer(RateLimitLayer::new(store, Identity::PeerIp).default_limit(Quota::per_minute(10)))
        .service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
    for i in 0..100 {
        let mut req = Request::get("/").body(()).unwrap();
        let peer: SocketAddr = format!("198.51.100.{i}:4000").parse().unwrap();
        req.extensions_mut().insert(peer);
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for master in masters {
        let keys: u64 = master.cli(&["dbsize"]).parse().unwrap();
        assert!(keys > 0, "master {} holds none of the keys", master.port);
    }
}

/// Braces in keys and identities: Redis's hash-tag rule groups keys that
/// share a tag, anything else still works, and a cross-slot decision is
/// refused rather than made non-atomically.
#[tokio::test]
async fn braces_tags_and_cross_slot_decisions() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let store = connect(cluster, Duration::from_secs(2)).await;
    let keys = [
        "{",
        "}",
        "a{b}c",
        "a{b}d",
        "{}{x}",
        "x{y",
        "}{",
        "{user:{42}}",
    ];
    for key in keys {
        store
            .put(key, Bytes::from(key), PutOptions::new())
            .await
            .unwrap();
        assert_eq!(
            store.get(key).await.unwrap().unwrap().value,
            Bytes::from(key)
        );
    }
    let page = store.list(ListOptions::prefix("")).await.unwrap();
    let mut names: Vec<_> = page.keys.iter().map(|k| k.name.as_str()).collect();
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    names.sort_unstable();
    assert_eq!(names, sorted, "every key once");
    let tagged = store.list(ListOptions::prefix("a{b}")).await.unwrap();
    assert_eq!(tagged.keys.len(), 2);

    let rate = GcraRate::per(5, Duration::from_secs(60));
    let together = [
        RateRequest::new("rl:{client}:a", rate, 1),
        RateRequest::new("rl:{client}:b", rate, 1),
    ];
    assert!(store.rate_limit(&together).await.unwrap().allowed);
    let apart: Vec<_> = (0..8)
        .map(|i| RateRequest::new(format!("rl:apart:{i}"), rate, 1))
        .collect();
    match store.rate_limit(&apart).await {
        Err(StoreError::InvalidArgument(message)) => assert!(message.contains("hash tag")),
        other => panic!("a cross-slot decision must be refused: {other:?}"),
    }

    let braced = RedisStore::cluster_builder(cluster.urls())
        .prefix("app:{x}:")
        .connect()
        .await;
    assert!(matches!(braced, Err(StoreError::InvalidArgument(_))));
}

/// A node that lost its scripts (`SCRIPT FLUSH`, a restart, a new replica
/// promoted) answers `NOSCRIPT`; the script is loaded there and the
/// operation goes through.
#[tokio::test]
async fn scripts_are_reloaded_where_missing() {
    let Some(cluster) = RedisCluster::start(false) else {
        return;
    };
    let store = connect(&cluster, Duration::from_secs(2)).await;
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for key in &keys {
        store
            .increment(key, 1, tower_kv::store::Expiration::Never)
            .await
            .unwrap();
    }
    for master in cluster.masters() {
        assert_eq!(master.cli(&["script", "flush"]), "OK");
    }
    for key in &keys {
        assert_eq!(
            store
                .increment(key, 1, tower_kv::store::Expiration::Never)
                .await
                .unwrap(),
            2
        );
    }
}

/// A write or increment retried after its reply was lost lands once: the
/// scripts recognise their own version.
#[tokio::test]
async fn scripts_are_safe_to_replay() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let client = redis::Client::open(cluster.nodes[0].url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prelude = include_str!("../src/store/redis/lua/prelude.lua");
    let script = |body: &str| redis::Script::new(&format!("{prelude}{body}"));
    let key = "{replay}d:n";
    let increment = script(include_str!("../src/store/redis/lua/increment.lua"));
    for _ in 0..2 {
        let count: i64 = increment
            .key(key)
            .key("{replay}i")
            .arg("{replay}d:")
            .arg("n")
            .arg(5)
            .arg("77")
            .arg("none")
            .arg(0)
            .arg("")
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 5, "the replay does not add again");
    }
    let write = script(include_str!("../src/store/redis/lua/write.lua"));
    let swap = |new_version: &'static str| {
        let mut call = write.prepare_invoke();
        call.key(key)
            .key("{replay}i")
            .arg("{replay}d:")
            .arg("n")
            .arg("version")
            .arg("77")
            .arg("v")
            .arg("0")
            .arg("")
            .arg(new_version)
            .arg("none")
            .arg(0)
            .arg("");
        call
    };
    for _ in 0..2 {
        let swapped: Option<i64> = swap("78").invoke_async(&mut conn).await.unwrap();
        assert_eq!(
            swapped,
            Some(1),
            "the replayed compare-and-swap still succeeds"
        );
    }
    let other: Option<i64> = swap("79").invoke_async(&mut conn).await.unwrap();
    assert_eq!(other, None, "another swap from the old version conflicts");
}

/// SIGKILL the master that owns a key: operations fail within the timeout,
/// resume soon after the replica is promoted, and the old master rejoins
/// as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_master_failover() {
    let Some(mut cluster) = RedisCluster::start(true) else {
        return;
    };
    const TIMEOUT: Duration = Duration::from_millis(500);
    let prefix = support::unique_prefix();
    let builder = RedisStore::cluster_builder(cluster.urls())
        .prefix(&prefix)
        .timeout(TIMEOUT);
    let store = builder.clone().connect().await.unwrap();
    store
        .put("k", Bytes::from_static(b"v"), PutOptions::new())
        .await
        .unwrap();
    // Opt-in replica reads: `get` is answered by replicas.
    let replica_reader = builder.read_from_replicas(true).connect().await.unwrap();
    let asked = Instant::now();
    while replica_reader.get("k").await.unwrap().is_none() {
        assert!(asked.elapsed() < Duration::from_secs(5), "never replicated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replica_calls: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.role() == "slave")
        .map(|n| n.cli(&["info", "commandstats"]))
        .collect();
    assert!(
        replica_calls
            .iter()
            .any(|stats| stats.contains("cmdstat_eval")),
        "no replica ran the read: {replica_calls:?}"
    );
    let owner = cluster
        .masters()
        .iter()
        .find(|m| m.cli(&["--scan"]).lines().any(|k| k.ends_with("d:k")))
        .map(|m| m.port)
        .expect("a master holds the key");
    let owner = cluster.nodes.iter().position(|n| n.port == owner).unwrap();
    let replication = cluster.nodes[owner].cli(&["info", "replication"]);
    let replica_port: u16 = replication
        .split("port=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("the master has a replica");
    let replica = cluster
        .nodes
        .iter()
        .position(|n| n.port == replica_port)
        .unwrap();

    let killed = Instant::now();
    cluster.nodes[owner].kill();
    let mut promoted = None;
    let resumed = loop {
        let started = Instant::now();
        let result = store
            .put("k", Bytes::from_static(b"v2"), PutOptions::new())
            .await;
        // Liveness, not speed: bounded by the timeout, never a hang.
        assert!(
            started.elapsed() < TIMEOUT * 4,
            "an operation took {:?}",
            started.elapsed()
        );
        if promoted.is_none() && cluster.nodes[replica].role() == "master" {
            promoted = Some(killed.elapsed());
        }
        if result.is_ok() {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let promoted = promoted.unwrap_or(resumed);
    eprintln!("failover: replica promoted after {promoted:?}, writes resumed after {resumed:?}");
    assert!(resumed.saturating_sub(promoted) < Duration::from_secs(10));
    assert_eq!(
        store.get("k").await.unwrap().unwrap().value,
        Bytes::from_static(b"v2")
    );

    cluster.nodes[owner].restart();
    let rejoined = Instant::now();
    while cluster.nodes[owner].role() != "slave" {
        assert!(
            rejoined.elapsed() < Duration::from_secs(20),
            "the old master never rejoined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
