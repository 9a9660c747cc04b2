//! `rediss://`: a store over TLS to one node and to a cluster, each started
//! by the harness with a certificate the test generates. (The conformance
//! suite also runs over TLS: `redis_tls::*` in `tests/conformance.rs`.)
#![cfg(feature = "tls")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::{RedisCluster, RedisServer, TlsFiles};
use tower_kv::store::{GcraRate, KvStore, ListOptions, PutOptions, RateRequest, RedisStore};

/// A server whose certificate the client does not trust is an error at
/// connect time, never a plaintext fallback.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let tls = TlsFiles::generate();
    let Some(server) = RedisServer::start_tls(tls.clone()) else {
        return;
    };
    let trusted = RedisStore::builder(server.tls_url())
        .tls_root_certificates(tls.ca_pem.clone())
        .connect()
        .await
        .expect("the server is there, and trusted with its CA");
    trusted
        .put("k", Bytes::from_static(b"v"), PutOptions::new())
        .await
        .unwrap();
    let other_ca = TlsFiles::generate();
    let refused = RedisStore::builder(server.tls_url())
        .tls_root_certificates(other_ca.ca_pem.clone())
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(refused.is_err(), "connected to a server it cannot verify");
}

/// A cluster serving TLS only: keys spread over every bucket, listed back
/// in order, rate decisions one round trip per identity.
#[tokio::test]
async fn a_tls_cluster_serves_every_operation() {
    let tls = TlsFiles::generate();
    let Some(cluster) = RedisCluster::start_tls(tls.clone()) else {
        return;
    };
    let store = RedisStore::cluster_builder(cluster.urls())
        .prefix(support::unique_prefix())
        .tls_root_certificates(tls.ca_pem.clone())
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect to the TLS cluster");
    let keys: Vec<String> = (0..200).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        store
            .put(key, Bytes::from(key.clone()), PutOptions::new())
            .await
            .unwrap();
    }
    for master in cluster.masters() {
        let count: u64 = master.cli(&["dbsize"]).parse().unwrap();
        assert!(count > 0, "master {} holds no keys", master.port);
    }
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let options = ListOptions::prefix("k").limit(64).cursor(cursor.take());
        let page = store.list(options).await.unwrap();
        listed.extend(page.keys.into_iter().map(|k| k.name));
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(listed, keys, "every key once, in byte order, across pages");
    let rate = GcraRate::per(3, Duration::from_secs(60));
    let decisions = [
        RateRequest::new("rl:{user-1}:a", rate, 1),
        RateRequest::new("rl:{user-1}:b", rate, 1),
    ];
    for _ in 0..3 {
        assert!(store.rate_limit(&decisions).await.unwrap().allowed);
    }
    assert!(!store.rate_limit(&decisions).await.unwrap().allowed);
}
