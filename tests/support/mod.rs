//! Test harness: a private `redis-server` per test binary (or per fault test),
//! isolated key prefixes, and a controllable notion of time per backend.
#![allow(dead_code)]

/// Runs each named case of a test file's `cases` module against one
/// backend, as tests named `{backend}::{case}`.
#[allow(unused_macros)] // not every test binary uses both
macro_rules! run_cases {
    ($backend:ident = $make:path; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(harness) = $make().await else { return };
                    cases::$case(harness).await;
                }
            )*
        }
    };
}

/// Runs each named case against every backend: MemoryStore and (feature
/// `redis`) RedisStore on one node and on a Redis Cluster.
#[allow(unused_macros)] // not every test binary uses both
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        run_cases!(memory = support::memory; $($case),*);
        #[cfg(feature = "redis")]
        run_cases!(redis = support::redis; $($case),*);
        #[cfg(feature = "redis")]
        run_cases!(redis_cluster = support::redis_cluster; $($case),*);
    };
}

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod cluster;
mod tls;
#[allow(unused_imports)] // used with feature `redis` only
pub use cluster::RedisCluster;
pub use tls::TlsFiles;

use tower_kv::store::{KvStore, MemoryStore, NearCache};
use tower_kv::Clock;

/// Whether this is a CI run, where a missing Redis fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A process that dies with the test process: a watchdog shell kills it
/// (SIGKILL) when our end of its stdin closes — on drop, or at exit.
pub struct Watched {
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: u32,
}

impl Watched {
    pub fn spawn(program: &str, args: &[String]) -> Result<Self, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(r#"{program} "$@" >/dev/null 2>&1 & pid=$!; echo $pid; trap 'kill -9 $pid 2>/dev/null; wait $pid' EXIT; read _"#))
            .arg("sh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .map_err(|e| format!("watchdog: {e}"))?;
        let pid = line
            .trim()
            .parse()
            .map_err(|_| format!("{program} did not start"))?;
        Ok(Self {
            child,
            stdin: Some(stdin),
            pid,
        })
    }

    /// Whether the process has exited (the watchdog with it).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.pid.to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A paused process must run again to be killed cleanly.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A `redis-server` on a unix socket in a temporary directory, killed with
/// the test process.
pub struct RedisServer {
    dir: tempfile::TempDir,
    process: Option<Watched>,
    /// Also serving TLS on this loopback port.
    tls: Option<(std::sync::Arc<TlsFiles>, u16)>,
}

impl RedisServer {
    /// Starts a server, or returns `None` (with a printed reason) when
    /// `redis-server` is unavailable. With `CI=true` that is a panic instead.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// A server that also serves TLS on a free loopback port.
    pub fn start_tls(tls: std::sync::Arc<TlsFiles>) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_with(Some((tls, port)))
    }

    fn start_with(tls: Option<(std::sync::Arc<TlsFiles>, u16)>) -> Option<Self> {
        let mut server = Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            process: None,
            tls,
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(reason) if ci() => {
                panic!("CI=true and no redis-server could be started: {reason}")
            }
            Err(reason) => {
                eprintln!("skipping Redis test: {reason}");
                None
            }
        }
    }

    /// The server shared by every test of this binary.
    pub fn shared() -> Option<&'static RedisServer> {
        static SHARED: OnceLock<Option<RedisServer>> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start).as_ref()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The TLS endpoint, for a server started with [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        let (_, port) = self.tls.as_ref().expect("started with TLS");
        format!("rediss://127.0.0.1:{port}")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let socket = self.socket();
        let socket_arg = socket.to_str().expect("UTF-8 temp path");
        let mut args = strings(&["--port", "0", "--unixsocket", socket_arg]);
        args.extend(strings(&["--unixsocketperm", "700"]));
        args.extend(throwaway(self.dir.path()));
        if let Some((tls, port)) = &self.tls {
            args.extend(["--tls-port".to_owned(), port.to_string()]);
            args.extend(tls.server_args());
        }
        let mut process = Watched::spawn("redis-server", &args)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(&socket) {
                self.process = Some(process);
                return Ok(());
            }
            if process.exited() {
                return Err("redis-server exited at start (is it installed?)".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer PING within 10 s".into())
    }

    /// Kills the server (SIGKILL): clients see a dead peer.
    pub fn stop(&mut self) {
        self.process.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(&self.socket()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes the server (SIGSTOP): clients see a peer that never answers.
    pub fn pause(&self) {
        self.process
            .as_ref()
            .expect("server running")
            .signal("-STOP");
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        self.process
            .as_ref()
            .expect("server running")
            .signal("-CONT");
    }

    /// Starts the server again on the same socket (empty: nothing persisted).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("redis-server restarts");
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// `redis-server` arguments for a throwaway server: nothing persisted, its
/// files in `dir`.
fn throwaway(dir: &std::path::Path) -> Vec<String> {
    let mut args = strings(&["--save", "", "--appendonly", "no", "--dir"]);
    args.push(dir.to_str().expect("UTF-8 temp path").to_owned());
    args
}

fn ping(socket: &PathBuf) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A key prefix no other test of this run uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store under test, a second handle on the same data (a separate
/// connection for Redis: another "instance"), and control over time.
pub struct Harness<S> {
    pub store: S,
    pub twin: S,
    pub clock: Option<Clock>,
}

impl<S: KvStore> Harness<S> {
    /// Runs `n` tasks at once, alternating between the two handles, and
    /// returns their results in order.
    pub async fn concurrently<T, F, Fut>(&self, n: usize, task: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(usize, S) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let store = if i % 2 == 0 { &self.store } else { &self.twin };
                tokio::spawn(task(i, store.clone()))
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for h in handles {
            results.push(h.await.expect("task panicked"));
        }
        results
    }

    /// Lets `d` pass: instantly on a manual clock, by sleeping on a server's clock.
    pub async fn advance(&self, d: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }
}

pub async fn memory() -> Option<Harness<MemoryStore>> {
    let clock = Clock::manual();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    Some(Harness {
        twin: store.clone(),
        store,
        clock: Some(clock),
    })
}

fn near(store: MemoryStore, clock: &Clock) -> NearCache<MemoryStore> {
    NearCache::builder(store)
        .default_ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
}

pub async fn near_cache_memory() -> Option<Harness<NearCache<MemoryStore>>> {
    let h = memory().await?;
    let clock = h.clock.clone().expect("manual clock");
    Some(Harness {
        store: near(h.store, &clock),
        twin: near(h.twin, &clock),
        clock: Some(clock),
    })
}

#[cfg(feature = "redis")]
mod redis_backends {
    use super::*;
    use tower_kv::store::{NearCache, RedisStore};

    async fn connect(url: &str, prefix: &str) -> RedisStore {
        RedisStore::builder(url)
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect("connect to the test redis-server")
    }

    pub async fn redis() -> Option<Harness<RedisStore>> {
        let server = RedisServer::shared()?;
        let prefix = unique_prefix();
        Some(Harness {
            store: connect(&server.url(), &prefix).await,
            twin: connect(&server.url(), &prefix).await,
            clock: None,
        })
    }

    async fn connect_cluster(nodes: Vec<String>, prefix: &str) -> RedisStore {
        RedisStore::cluster_builder(nodes)
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect("connect to the test cluster")
    }

    pub async fn redis_cluster() -> Option<Harness<RedisStore>> {
        let cluster = RedisCluster::shared()?;
        let prefix = unique_prefix();
        Some(Harness {
            store: connect_cluster(cluster.urls(), &prefix).await,
            twin: connect_cluster(cluster.urls(), &prefix).await,
            clock: None,
        })
    }

    /// RedisStore over TLS (`rediss://`), trusting the test's private CA.
    #[cfg(feature = "tls")]
    pub async fn redis_tls() -> Option<Harness<RedisStore>> {
        static SHARED: OnceLock<Option<RedisServer>> = OnceLock::new();
        let server = SHARED
            .get_or_init(|| RedisServer::start_tls(TlsFiles::generate()))
            .as_ref()?;
        let (tls, _) = server.tls.as_ref().expect("TLS");
        let prefix = unique_prefix();
        let connect = || {
            RedisStore::builder(server.tls_url())
                .prefix(&prefix)
                .tls_root_certificates(tls.ca_pem.clone())
                .timeout(Duration::from_secs(2))
                .connect()
        };
        Some(Harness {
            store: connect().await.expect("connect over TLS"),
            twin: connect().await.expect("connect over TLS"),
            clock: None,
        })
    }

    fn near(store: RedisStore) -> NearCache<RedisStore> {
        NearCache::builder(store)
            .default_ttl(Duration::from_secs(60))
            .build()
    }

    pub async fn near_cache_redis() -> Option<Harness<NearCache<RedisStore>>> {
        let h = redis().await?;
        Some(Harness {
            store: near(h.store),
            twin: near(h.twin),
            clock: None,
        })
    }
}

#[cfg(feature = "tls")]
#[allow(unused_imports)] // not every test binary uses every backend
pub use redis_backends::redis_tls;
#[cfg(feature = "redis")]
#[allow(unused_imports)] // not every test binary uses every backend
pub use redis_backends::{near_cache_redis, redis, redis_cluster};

/// Wraps a store and counts the operations that reach it, to prove a layer
/// does no store I/O (or exactly as much as it should).
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    pub reads: std::sync::Arc<AtomicUsize>,
    pub writes: std::sync::Arc<AtomicUsize>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            reads: Default::default(),
            writes: Default::default(),
        }
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

mod counting_impl {
    use super::*;
    use bytes::Bytes;
    use tower_kv::store::{
        CasOutcome, Entry, Expiration, ListOptions, ListPage, PutOptions, RateDecision,
        RateRequest, StoreError, Version,
    };

    impl<S: KvStore> KvStore for Counting<S> {
        async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
            self.read();
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: Bytes, o: PutOptions) -> Result<Version, StoreError> {
            self.write();
            self.inner.put(key, value, o).await
        }
        async fn delete(&self, key: &str) -> Result<bool, StoreError> {
            self.write();
            self.inner.delete(key).await
        }
        async fn list(&self, o: ListOptions) -> Result<ListPage, StoreError> {
            self.read();
            self.inner.list(o).await
        }
        async fn insert_if_absent(
            &self,
            key: &str,
            value: Bytes,
            o: PutOptions,
        ) -> Result<Option<Version>, StoreError> {
            self.write();
            self.inner.insert_if_absent(key, value, o).await
        }
        async fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<Version>,
            value: Bytes,
            o: PutOptions,
        ) -> Result<CasOutcome, StoreError> {
            self.write();
            self.inner.compare_and_swap(key, expected, value, o).await
        }
        async fn increment(&self, key: &str, delta: i64, e: Expiration) -> Result<i64, StoreError> {
            self.write();
            self.inner.increment(key, delta, e).await
        }
        async fn rate_limit(&self, requests: &[RateRequest]) -> Result<RateDecision, StoreError> {
            self.write();
            self.inner.rate_limit(requests).await
        }
    }
}

/// Captures the `tracing` warnings emitted on this thread while the guard
/// lives (the layers' order warnings), as `field=value` text.
pub mod warnings {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Captured(Arc<Mutex<Vec<String>>>);

    impl Captured {
        /// Starts capturing on this thread.
        pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
            let captured = Self::default();
            let guard = tracing::subscriber::set_default(captured.clone());
            (captured, guard)
        }

        pub fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }

        /// The captured warnings that mention `text`.
        pub fn mentioning(&self, text: &str) -> Vec<String> {
            self.all()
                .into_iter()
                .filter(|w| w.contains(text))
                .collect()
        }
    }

    struct Text(String);

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl Subscriber for Captured {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::WARN
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if *event.metadata().level() == Level::WARN {
                let mut text = Text(String::new());
                event.record(&mut text);
                self.0.lock().unwrap().push(text.0);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

/// How long changes took to be seen elsewhere.
#[derive(Debug)]
pub struct Delays {
    pub p50: Duration,
    pub max: Duration,
}

/// Makes `n` changes with `change(i)` and after each polls `seen(i)` (every
/// millisecond) until it is true; panics when one takes longer than
/// `limit`. Real time: the propagation under test is real I/O.
pub async fn propagation<C, CF, V, VF>(
    n: usize,
    limit: Duration,
    mut change: C,
    mut seen: V,
) -> Delays
where
    C: FnMut(usize) -> CF,
    CF: std::future::Future<Output = ()>,
    V: FnMut(usize) -> VF,
    VF: std::future::Future<Output = bool>,
{
    let mut delays = Vec::with_capacity(n);
    for i in 0..n {
        change(i).await;
        let started = Instant::now();
        while !seen(i).await {
            assert!(
                started.elapsed() < limit,
                "change {i} not seen within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort_unstable();
    Delays {
        p50: delays[n / 2],
        max: delays[n - 1],
    }
}
