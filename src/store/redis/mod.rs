//! The Redis / Valkey backend: one Lua script per operation, one round trip
//! each, on one node or a Redis Cluster.

mod connection;
mod layout;
mod subscriber;
mod tls;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

use self::connection::Connection;
use self::layout::{Bucket, Layout};

use super::json::decode_json;
use super::limits::{check_expiration, check_key, check_list, check_rate, check_value};
use super::rate;
use super::{
    Announcer, CasOutcome, Changes, Entry, Expiration, KeyInfo, KvStore, ListOptions, ListPage,
    PutOptions, Rate, RateDecision, RateMode, RateRequest, RateState, StoreError, TaskGuard,
    Version, DEFAULT_MAX_VALUE_LEN,
};
use crate::clock::{duration_ms_ceil, system_time_ms};
#[cfg(feature = "metrics")]
use crate::metrics::{self, count, observe};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_CLUSTER_BUCKETS: u16 = 64;

macro_rules! source {
    ($file:literal) => {
        concat!(
            include_str!("lua/prelude.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

macro_rules! script {
    ($file:literal) => {
        Script::new(source!($file))
    };
}

/// The `get` script, also run as `EVAL_RO` on replicas.
const GET_SOURCE: &str = source!("get.lua");

/// The shared backend for a fleet: Redis 6.2+ or Valkey.
///
/// Built on the `redis` crate's auto-reconnecting multiplexed
/// [`ConnectionManager`]: one connection per store, shared by clones, with
/// pipelined requests. Every operation is one Lua script called by its SHA
/// (loaded on first use), so each is atomic and costs one round trip.
/// Every operation is bounded by a timeout (default 500 ms), so a dead server
/// yields [`StoreError::Timeout`] or [`StoreError::Backend`] quickly instead
/// of a hung request; the connection is re-established when the server returns.
///
/// Entries live at `{prefix}d:{key}` as hashes holding the value, metadata and
/// version; `{prefix}i` is a sorted-set index of key names for `list`.
///
/// On a Redis Cluster ([`cluster_builder`](Self::cluster_builder)) keys are
/// spread over hash-tagged buckets (`{prefix}{7}d:{key}`, index
/// `{prefix}{7}i`): every script still touches one hash slot, so each
/// operation stays atomic and one round trip. A key's own hash tag
/// (`user:{42}:cart`) decides its bucket the way Redis would, so keys that
/// share a tag share a bucket; a rate decision over keys in different
/// buckets is refused with [`StoreError::InvalidArgument`]. `list` queries
/// the buckets concurrently and merges them — one bucket when the prefix
/// contains a complete hash tag.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_kv::store::RedisStore;
///
/// # async fn run() -> Result<(), tower_kv::store::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:")
///     .timeout(Duration::from_millis(250))
///     .connect()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    announcer: Announcer,
    /// Where change notices are published and subscribed to.
    channel: String,
    /// The subscription, started by the first `watch`.
    subscription: OnceLock<TaskGuard>,
    /// The nodes a subscription may use, and the TLS roots to reach them.
    nodes: Vec<String>,
    roots: tls::Roots,
    /// `get` may be answered by a replica (cluster, opt-in).
    replica_reads: bool,
    timeout: Duration,
    max_value_len: usize,
    scripts: Scripts,
}

struct Scripts {
    get: Script,
    write: Script,
    delete: Script,
    increment: Script,
    rate: Script,
    list: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("layout", &self.inner.layout)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`].
#[derive(Clone, Debug)]
pub struct RedisStoreBuilder {
    target: Target,
    /// PEM roots to trust instead of the system's, for `rediss://`.
    #[cfg(feature = "tls")]
    root_certificates: Option<Vec<u8>>,
    prefix: String,
    timeout: Duration,
    max_value_len: usize,
}

/// What a store connects to.
#[derive(Clone, Debug)]
enum Target {
    Node(String),
    Cluster {
        nodes: Vec<String>,
        buckets: u16,
        replica_reads: bool,
    },
}

impl Target {
    /// The nodes to reach the data through.
    fn nodes(&self) -> &[String] {
        match self {
            Self::Node(url) => std::slice::from_ref(url),
            Self::Cluster { nodes, .. } => nodes,
        }
    }

    fn replica_reads(&self) -> bool {
        matches!(
            self,
            Self::Cluster {
                replica_reads: true,
                ..
            }
        )
    }
}

impl RedisStoreBuilder {
    /// Namespace every key under this prefix (default `tower-kv:`). On a
    /// cluster it must not contain `{` or `}`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Fail an operation that has not completed after this long (default 500 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reject values larger than this (default 25 MiB).
    #[must_use]
    pub fn max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    /// On a cluster: how many hash-tagged buckets keys are spread over
    /// (default 64). Every instance sharing the data must use the same
    /// number; more buckets spread load over more shards, fewer make an
    /// untagged `list` cheaper (it queries every bucket).
    #[must_use]
    pub fn cluster_buckets(mut self, count: u16) -> Self {
        if let Target::Cluster { buckets, .. } = &mut self.target {
            *buckets = count;
        }
        self
    }

    /// On a cluster: let replicas answer [`get`](KvStore::get) (default:
    /// every operation goes to primaries). Replication is asynchronous, so
    /// a read may miss a write acknowledged a moment ago; writes, atomic
    /// operations, `list` and rate decisions still go to primaries.
    #[must_use]
    pub fn read_from_replicas(mut self, enabled: bool) -> Self {
        if let Target::Cluster { replica_reads, .. } = &mut self.target {
            *replica_reads = enabled;
        }
        self
    }

    /// For `rediss://`: trust these PEM certificates (a private CA) instead
    /// of the system's roots.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// Connects to the server (or the cluster's nodes). Fails if it cannot
    /// be reached within the timeout.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let timeout = self.timeout;
        #[cfg(feature = "tls")]
        let tls = tls::Roots::new(self.root_certificates.clone());
        #[cfg(not(feature = "tls"))]
        let tls = tls::Roots;
        let layout = match &self.target {
            Target::Node(_) => Layout::single(&self.prefix),
            Target::Cluster { buckets, .. } => Layout::cluster(&self.prefix, *buckets)?,
        };
        let conn = with_timeout(timeout, async {
            match &self.target {
                Target::Node(url) => connect_node(url, &tls, timeout).await,
                Target::Cluster { nodes, .. } => {
                    connect_cluster(nodes, self.target.replica_reads(), &tls, timeout).await
                }
            }
            .map_err(|e| map_error(e, timeout))
        })
        .await?;
        Ok(RedisStore {
            conn,
            inner: Arc::new(Inner {
                layout,
                announcer: Announcer::default(),
                channel: format!("{}changes", self.prefix),
                subscription: OnceLock::new(),
                nodes: self.target.nodes().to_vec(),
                roots: tls,
                replica_reads: self.target.replica_reads(),
                timeout: self.timeout,
                max_value_len: self.max_value_len,
                scripts: Scripts {
                    get: Script::new(GET_SOURCE),
                    write: script!("write.lua"),
                    delete: script!("delete.lua"),
                    increment: script!("increment.lua"),
                    rate: script!("rate.lua"),
                    list: script!("list.lua"),
                },
            }),
        })
    }
}

async fn connect_node(
    url: &str,
    tls: &tls::Roots,
    timeout: Duration,
) -> Result<Connection, RedisError> {
    let client = tls.client(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(timeout);
    let conn = ConnectionManager::new_with_config(client, config).await?;
    Ok(Connection::Single(conn))
}

async fn connect_cluster(
    nodes: &[String],
    replica_reads: bool,
    tls: &tls::Roots,
    timeout: Duration,
) -> Result<Connection, RedisError> {
    let mut builder = tls.cluster(ClusterClientBuilder::new(nodes.iter().map(String::as_str)));
    if replica_reads {
        // Only read-only commands follow it: `get`'s `EVALSHA_RO`.
        builder = builder.read_routing_strategy(RandomReplicaStrategy);
    }
    // Retries (after MOVED, a failover, a dropped connection) stay within
    // the operation timeout, which bounds every call.
    let client = builder
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(8)
        .min_retry_wait(10)
        .max_retry_wait(timeout.as_millis().try_into().unwrap_or(u64::MAX).max(10))
        .build()?;
    Ok(Connection::Cluster(client.get_async_connection().await?))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://…`, `redis+unix:///path`)
    /// with default settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Configure a store for `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        Self::with_target(Target::Node(url.into()))
    }

    /// Configure a store on a Redis Cluster reached through any of `nodes`
    /// (`redis://host:port`, or `rediss://` with feature `tls`); the rest of
    /// the topology is discovered.
    pub fn cluster_builder<I>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self::with_target(Target::Cluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
            buckets: DEFAULT_CLUSTER_BUCKETS,
            replica_reads: false,
        })
    }

    fn with_target(target: Target) -> RedisStoreBuilder {
        RedisStoreBuilder {
            target,
            #[cfg(feature = "tls")]
            root_certificates: None,
            prefix: "tower-kv:".into(),
            timeout: DEFAULT_TIMEOUT,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }

    /// The channel a write to `key` publishes on: empty when not announced.
    fn channel_for(&self, key: &str) -> &str {
        match self.inner.announcer.announces(key) {
            true => &self.inner.channel,
            false => "",
        }
    }

    /// The bucket of `key` and the Redis key of its entry.
    fn place(&self, key: &str) -> (&Bucket, String) {
        let bucket = self.inner.layout.bucket(key);
        (bucket, format!("{}{key}", bucket.data_prefix))
    }

    /// Awaits `operation`, timing it and counting its failure (feature `metrics`).
    async fn metered<T>(
        &self,
        operation: &'static str,
        run: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = run.await;
        #[cfg(feature = "metrics")]
        {
            let backend = match self.conn {
                Connection::Single(_) => "redis",
                Connection::Cluster(_) => "redis_cluster",
            };
            let seconds = started.elapsed().as_secs_f64();
            observe!(metrics::STORE_OPERATION_SECONDS, seconds, "operation" => operation, "backend" => backend);
            if result.is_err() {
                count!(metrics::STORE_ERRORS, 1, "operation" => operation, "backend" => backend);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = operation;
        result
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: redis::ScriptInvocation<'_>,
        key: &str,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let run = with_timeout(self.inner.timeout, async move {
            invocation.invoke_async(&mut conn).await.map_err(|e| {
                if e.code() == Some("NOTCOUNTER") {
                    StoreError::NotACounter {
                        key: key.to_owned(),
                    }
                } else {
                    map_error(e, self.inner.timeout)
                }
            })
        });
        self.metered(operation, run).await
    }

    /// A write with a condition; `None` when the condition failed.
    async fn write(
        &self,
        key: &str,
        condition: (&str, Option<Version>),
        value: Bytes,
        options: PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        check_key(key)?;
        check_value(key, value.len(), self.inner.max_value_len)?;
        check_expiration(options.expiration)?;
        let metadata = options
            .metadata
            .as_ref()
            .map(|m| super::json::encode_json(key, m))
            .transpose()?;
        let version = Version::random();
        let (mode, ms) = expiry_args(options.expiration);
        let (bucket, data) = self.place(key);
        let mut call = self.inner.scripts.write.prepare_invoke();
        call.key(data)
            .key(&bucket.index)
            .arg(&bucket.data_prefix)
            .arg(key)
            .arg(condition.0)
            .arg(condition.1.map_or(String::new(), |v| v.0.to_string()))
            .arg(value.as_ref())
            .arg(if metadata.is_some() { "1" } else { "0" })
            .arg(metadata.unwrap_or_default())
            .arg(version.0.to_string())
            .arg(mode)
            .arg(ms)
            .arg(self.channel_for(key));
        let written: Option<i64> = self.run("write", call, key).await?;
        Ok(written.map(|_| version))
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(StoreError::Timeout(timeout)))
}

fn map_error(e: RedisError, timeout: Duration) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(timeout)
    } else {
        StoreError::Backend(Box::new(e))
    }
}

fn expiry_args(expiration: Expiration) -> (&'static str, u64) {
    match expiration {
        Expiration::Never => ("none", 0),
        Expiration::Ttl(ttl) => ("px", duration_ms_ceil(ttl)),
        Expiration::At(at) => ("pxat", system_time_ms(at).max(1)),
    }
}

/// Turns a PTTL reply into an absolute expiry on the local clock.
fn expires_at(pttl: i64) -> Option<SystemTime> {
    u64::try_from(pttl)
        .ok()
        .map(|ms| SystemTime::now() + Duration::from_millis(ms))
}

fn parse_metadata(
    key: &str,
    raw: Option<Vec<u8>>,
) -> Result<Option<serde_json::Value>, StoreError> {
    raw.map(|m| decode_json(key, &m)).transpose()
}

fn parse_version(key: &str, raw: &str) -> Result<Version, StoreError> {
    raw.parse().map(Version).map_err(|e| StoreError::Decode {
        key: key.to_owned(),
        source: Box::new(e),
    })
}

impl RedisStore {
    /// The `get` script as `EVALSHA_RO`, which the cluster client routes
    /// to a replica; `EVAL_RO` loads it where it is missing.
    async fn get_from_replica<T: redis::FromRedisValue>(
        &self,
        data: &str,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let timeout = self.inner.timeout;
        with_timeout(timeout, async move {
            let sha = self.inner.scripts.get.get_hash();
            let by_hash = redis::cmd("EVALSHA_RO")
                .arg(sha)
                .arg(1)
                .arg(data)
                .query_async(&mut conn)
                .await;
            match by_hash {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    redis::cmd("EVAL_RO")
                        .arg(GET_SOURCE)
                        .arg(1)
                        .arg(data)
                        .query_async(&mut conn)
                        .await
                }
                other => other,
            }
            .map_err(|e| map_error(e, timeout))
        })
        .await
    }

    /// One bucket's first `limit` keys after the cursor, and whether it has more.
    async fn list_bucket(
        &self,
        bucket: &Bucket,
        options: &ListOptions,
    ) -> Result<(Vec<KeyInfo>, bool), StoreError> {
        let mut call = self.inner.scripts.list.prepare_invoke();
        call.key(&bucket.index)
            .arg(&bucket.data_prefix)
            .arg(&options.prefix)
            .arg(options.cursor.as_deref().unwrap_or(""))
            .arg(options.limit);
        type Reply = (Vec<(String, i64, Option<Vec<u8>>)>, i64);
        let (rows, more): Reply = self.run("list", call, &options.prefix).await?;
        let keys = rows
            .into_iter()
            .map(|(name, pttl, metadata)| {
                Ok(KeyInfo {
                    metadata: parse_metadata(&name, metadata)?,
                    expires_at: expires_at(pttl),
                    name,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((keys, more == 1))
    }
}

impl KvStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        let data = self.place(key).1;
        type Reply = Option<(Vec<u8>, Option<Vec<u8>>, Option<String>, i64)>;
        let reply: Reply = if self.inner.replica_reads {
            self.metered("get", self.get_from_replica(&data)).await?
        } else {
            let mut call = self.inner.scripts.get.prepare_invoke();
            call.key(data);
            self.run("get", call, key).await?
        };
        let Some((value, metadata, version, pttl)) = reply else {
            return Ok(None);
        };
        Ok(Some(Entry {
            value: value.into(),
            metadata: parse_metadata(key, metadata)?,
            expires_at: expires_at(pttl),
            version: parse_version(key, version.as_deref().unwrap_or("0"))?,
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Version, StoreError> {
        let written = self.write(key, ("any", None), value, options).await?;
        written.ok_or_else(|| StoreError::backend("unconditional write was refused"))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        let (bucket, data) = self.place(key);
        let mut call = self.inner.scripts.delete.prepare_invoke();
        call.key(data)
            .key(&bucket.index)
            .arg(key)
            .arg(self.channel_for(key));
        let removed: i64 = self.run("delete", call, key).await?;
        Ok(removed > 0)
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, StoreError> {
        check_list(&options)?;
        let buckets = self.inner.layout.buckets_under(&options.prefix);
        let pages = futures_util::future::try_join_all(
            buckets.iter().map(|b| self.list_bucket(b, &options)),
        )
        .await?;
        // Each bucket gave its first `limit` names after the cursor, in byte
        // order: the first `limit` of their union are the page.
        let mut more = false;
        let mut keys = Vec::new();
        for (page, bucket_more) in pages {
            more |= bucket_more;
            keys.extend(page);
        }
        keys.sort_unstable_by(|a: &KeyInfo, b| a.name.cmp(&b.name));
        if keys.len() > options.limit {
            keys.truncate(options.limit);
            more = true;
        }
        let cursor = if more {
            keys.last().map(|k| k.name.clone())
        } else {
            None
        };
        Ok(ListPage { keys, cursor })
    }

    async fn insert_if_absent(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        self.write(key, ("absent", None), value, options).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> Result<CasOutcome, StoreError> {
        let condition = match expected {
            Some(v) => ("version", Some(v)),
            None => ("absent", None),
        };
        let written = self.write(key, condition, value, options).await?;
        Ok(written.map_or(CasOutcome::Conflict, CasOutcome::Swapped))
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expiration_on_create: Expiration,
    ) -> Result<i64, StoreError> {
        check_key(key)?;
        check_expiration(expiration_on_create)?;
        let (mode, ms) = expiry_args(expiration_on_create);
        let (bucket, data) = self.place(key);
        let mut call = self.inner.scripts.increment.prepare_invoke();
        call.key(data)
            .key(&bucket.index)
            .arg(&bucket.data_prefix)
            .arg(key)
            .arg(delta)
            .arg(Version::random().0.to_string())
            .arg(mode)
            .arg(ms)
            .arg(self.channel_for(key));
        self.run("increment", call, key).await
    }

    fn watch(&self, prefix: &str) -> Option<Changes> {
        let inner = &self.inner;
        let changes = inner.announcer.watch(prefix);
        if inner.subscription.get().is_none() {
            let task = subscriber::run(
                inner.nodes.clone(),
                inner.roots.clone(),
                inner.channel.clone(),
                inner.announcer.clone(),
            );
            // Outside a runtime nothing listens: the TTLs still hold.
            if let Some(guard) = TaskGuard::spawn(task) {
                let _ = inner.subscription.set(guard);
            }
        }
        Some(changes)
    }

    fn announce(&self, prefix: &str) {
        self.inner.announcer.announce(prefix);
    }

    async fn rate_limit(&self, requests: &[RateRequest]) -> Result<RateDecision, StoreError> {
        check_rate(requests)?;
        let layout = &self.inner.layout;
        if !layout.same_bucket(requests.iter().map(|r| r.key.as_str())) {
            return Err(StoreError::InvalidArgument(
                "a rate decision's keys fall in different cluster buckets: give them one hash tag"
                    .into(),
            ));
        }
        let mut call = self.inner.scripts.rate.prepare_invoke();
        for r in requests {
            call.key(self.place(&r.key).1);
        }
        let bucket = layout.bucket(&requests[0].key);
        call.key(&bucket.index).arg(&bucket.data_prefix);
        for r in requests {
            let (algorithm, period) = match r.rate {
                Rate::Gcra(g) => ("gcra", g.emission_interval),
                Rate::FixedWindow { window, .. } => ("fixed", window),
                Rate::SlidingWindow { window, .. } => ("sliding", window),
            };
            call.arg(&r.key)
                .arg(algorithm)
                .arg(rate::us(period).max(1))
                .arg(r.rate.capacity())
                .arg(r.cost)
                .arg(match r.mode {
                    RateMode::Charge => "c",
                    RateMode::Peek => "p",
                    RateMode::Refund => "r",
                })
                .arg(Version::random().0.to_string());
        }
        type Reply = (i64, Vec<(i64, i64, i64, i64)>);
        let (allowed, states): Reply = self.run("rate_limit", call, &requests[0].key).await?;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(RateDecision {
            allowed: allowed == 1,
            states: states
                .into_iter()
                .map(|(allowed, remaining, retry, reset)| RateState {
                    allowed: allowed == 1,
                    remaining: u32::try_from(remaining).unwrap_or(0),
                    retry_after: micros(retry),
                    reset_after: micros(reset),
                })
                .collect(),
        })
    }
}
