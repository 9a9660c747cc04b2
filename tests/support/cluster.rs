//! A local Redis Cluster on free loopback ports: three masters, with a
//! replica each when failover is under test. Every node dies with the test
//! process (the same watchdog as `RedisServer`).

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::tls::TlsFiles;
use super::{ci, strings, throwaway, Watched};

pub struct Node {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<Watched>,
    /// Serving TLS only (cluster bus and replication too).
    tls: Option<Arc<TlsFiles>>,
}

pub struct RedisCluster {
    pub nodes: Vec<Node>,
    /// How many of the nodes are replicas once the cluster is healthy.
    replicas: usize,
}

impl Node {
    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut args = match &self.tls {
            None => strings(&["--port", &port]),
            Some(tls) => {
                let mut args = strings(&["--port", "0", "--tls-port", &port]);
                args.extend(strings(&[
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ]));
                args.extend(tls.server_args());
                args
            }
        };
        args.extend(strings(&[
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
        ]));
        args.extend(strings(&["--cluster-config-file", "nodes.conf"]));
        args.extend(strings(&["--cluster-node-timeout", "2000"]));
        args.extend(strings(&["--repl-diskless-sync-delay", "0"]));
        args.extend(throwaway(self.dir.path()));
        self.process = Some(Watched::spawn("redis-server", &args)?);
        Ok(())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, self.tls.as_deref(), args)
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self) {
        self.process.take();
    }

    /// Starts a killed node again on its port and configuration: it
    /// rejoins the cluster.
    pub fn restart(&mut self) {
        self.spawn().expect("redis-server restarts");
        wait_until(Duration::from_secs(10), || self.cli(&["ping"]) == "PONG")
            .expect("restarted node answers");
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn role(&self) -> String {
        self.cli(&["role"]).lines().next().unwrap_or("").to_owned()
    }
}

fn cli(port: u16, tls: Option<&TlsFiles>, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(tls.map(TlsFiles::cli_args).unwrap_or_default())
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not ready within {limit:?}"))
}

/// `count` ports that are free, each with its cluster-bus port (+10000).
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if let Ok(bus) = TcpListener::bind(("127.0.0.1", bus)) {
            ports.push(port);
            held.push(listener);
            held.push(bus);
        }
    }
    ports
}

impl RedisCluster {
    /// Three masters (each with a replica when `replicas`), or `None` with
    /// a printed reason when Redis is missing; with `CI=true` a panic.
    pub fn start(replicas: bool) -> Option<Self> {
        Self::start_with(replicas, None)
    }

    /// Three masters serving TLS only, with `tls`'s certificate.
    pub fn start_tls(tls: Arc<TlsFiles>) -> Option<Self> {
        Self::start_with(false, Some(tls))
    }

    fn start_with(replicas: bool, tls: Option<Arc<TlsFiles>>) -> Option<Self> {
        // A port chosen free can be taken before the node binds it (other
        // tests start servers too): start again on fresh ports.
        let mut attempt = Self::try_start(replicas, tls.clone());
        for _ in 0..2 {
            if attempt.is_ok() {
                break;
            }
            attempt = Self::try_start(replicas, tls.clone());
        }
        match attempt {
            Ok(cluster) => Some(cluster),
            Err(reason) if ci() => {
                panic!("CI=true and no Redis Cluster could be started: {reason}")
            }
            Err(reason) => {
                eprintln!("skipping Redis Cluster test: {reason}");
                None
            }
        }
    }

    /// The cluster (no replicas) shared by every test of this binary.
    pub fn shared() -> Option<&'static RedisCluster> {
        static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();
        SHARED.get_or_init(|| Self::start(false)).as_ref()
    }

    fn try_start(replicas: bool, tls: Option<Arc<TlsFiles>>) -> Result<Self, String> {
        if Command::new("redis-cli").arg("--version").output().is_err() {
            return Err("redis-cli is not installed".into());
        }
        let count = if replicas { 6 } else { 3 };
        let mut nodes = Vec::new();
        for port in free_ports(count) {
            let mut node = Node {
                port,
                dir: tempfile::tempdir().map_err(|e| e.to_string())?,
                process: None,
                tls: tls.clone(),
            };
            node.spawn()?;
            nodes.push(node);
        }
        let cluster = Self {
            nodes,
            replicas: if replicas { count / 2 } else { 0 },
        };
        for node in &cluster.nodes {
            wait_until(Duration::from_secs(10), || node.cli(&["ping"]) == "PONG")
                .map_err(|e| format!("node {}: {e}", node.port))?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(tls.as_deref().map(TlsFiles::cli_args).unwrap_or_default())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }])
            .arg("--cluster-yes")
            .output()
            .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// Every running node says `cluster_state:ok`, and every replica is one
    /// and linked to its master.
    pub fn wait_healthy(&self) -> Result<(), String> {
        wait_until(Duration::from_secs(30), || {
            let running = || self.nodes.iter().filter(|n| n.process.is_some());
            let linked = running()
                .filter(|n| {
                    n.role() == "slave"
                        && n.cli(&["info", "replication"])
                            .contains("master_link_status:up")
                })
                .count();
            // Every node's slot map names every master and replica, so a
            // client's first topology read sees the replicas too.
            let masters = self.nodes.len() - self.replicas;
            linked >= self.replicas
                && running().all(|n| {
                    n.cli(&["cluster", "info"]).contains("cluster_state:ok")
                        && n.cli(&["cluster", "slots"]).matches("127.0.0.1").count()
                            >= masters + self.replicas
                })
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The running masters.
    pub fn masters(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some() && n.role() == "master")
            .collect()
    }

    /// The index of the node serving `key`'s slot as master.
    pub fn master_of(&self, key: &str) -> usize {
        let slot = self.nodes[0].cli(&["cluster", "keyslot", key]);
        let slot: u16 = slot.parse().expect("a slot number");
        let shards = self.nodes[0].cli(&["cluster", "slots"]);
        let lines: Vec<&str> = shards.lines().collect();
        // `cluster slots`: start, end, then the master's ip and port (and id), …
        for window in lines.windows(4) {
            let (Ok(start), Ok(end)) = (window[0].parse::<u16>(), window[1].parse::<u16>()) else {
                continue;
            };
            if window[2] == "127.0.0.1" && (start..=end).contains(&slot) {
                let port: u16 = window[3].parse().expect("port");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("a node of ours");
            }
        }
        panic!("no master for slot {slot}: {shards}");
    }
}
