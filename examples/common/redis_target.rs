//! `--redis URL` or `--redis-cluster host:port,host:port,…`: the Redis an
//! example runs on (shared by the examples).

/// The Redis the command line names.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // refused without the feature
pub enum RedisTarget {
    /// One server: its URL.
    Node(String),
    /// A Redis Cluster: the URLs of some of its nodes.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// From `--redis` or `--redis-cluster`, if either is given.
    pub fn from_args() -> Option<Self> {
        let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
        if let Some(url) = arg("--redis") {
            return Some(Self::Node(url));
        }
        let nodes = arg("--redis-cluster")?;
        let urls = nodes
            .split(',')
            .map(|node| match node.contains("://") {
                true => node.to_owned(),
                false => format!("redis://{node}"),
            })
            .collect();
        Some(Self::Cluster(urls))
    }

    /// The backend, for a start-up line.
    pub fn describe(&self) -> String {
        match self {
            Self::Node(url) => format!("RedisStore at {url}"),
            Self::Cluster(nodes) => format!("RedisStore on the cluster at {}", nodes.join(",")),
        }
    }

    /// A store builder for the target.
    #[cfg(feature = "redis")]
    pub fn builder(&self) -> tower_kv::store::RedisStoreBuilder {
        use tower_kv::store::RedisStore;
        match self {
            Self::Node(url) => RedisStore::builder(url),
            Self::Cluster(nodes) => RedisStore::cluster_builder(nodes.clone()),
        }
    }
}
