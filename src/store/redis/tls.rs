//! Which certificates a `rediss://` connection trusts (feature `tls`).

use redis::cluster::ClusterClientBuilder;
use redis::{Client, RedisError};

/// The roots a TLS connection trusts: the system's, or the configured PEM.
#[cfg(feature = "tls")]
#[derive(Clone)]
pub(super) struct Roots(Option<Vec<u8>>);

/// Without feature `tls`, `rediss://` is refused by the client.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(super) struct Roots;

#[cfg(feature = "tls")]
impl Roots {
    pub(super) fn new(pem: Option<Vec<u8>>) -> Self {
        // rustls needs a process-wide crypto provider; another crate may
        // have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self(pem)
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.0.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }

    pub(super) fn client(&self, url: &str) -> Result<Client, RedisError> {
        match self.certificates() {
            Some(certificates) => Client::build_with_tls(url, certificates),
            None => Client::open(url),
        }
    }

    pub(super) fn cluster(&self, builder: ClusterClientBuilder) -> ClusterClientBuilder {
        match self.certificates() {
            Some(certificates) => builder.certs(certificates),
            None => builder,
        }
    }
}

#[cfg(not(feature = "tls"))]
impl Roots {
    pub(super) fn client(&self, url: &str) -> Result<Client, RedisError> {
        Client::open(url)
    }

    pub(super) fn cluster(&self, builder: ClusterClientBuilder) -> ClusterClientBuilder {
        builder
    }
}
