use std::collections::HashSet;
use std::sync::Arc;

use http::Request;
use ipnet::IpNet;

use crate::identity::{parse_network, Identity, InvalidNetwork, UserId};

/// Clients matched by network or signed-in user: an allow-list is never
/// limited, a deny-list is answered `403 Forbidden`. Set per layer
/// ([`RateLimitLayer::allow`](super::RateLimitLayer::allow),
/// [`deny`](super::RateLimitLayer::deny)) or per route ([`Limit::allow`](super::Limit::allow),
/// [`Limit::deny`](super::Limit::deny)).
///
/// Networks match the client address the layer's identity resolves
/// ([`Identity::ClientIp`] behind trusted proxies, else the TCP peer), never a
/// client-sent header; users match the [`UserId`] a session layer (or your
/// own authentication) put in the request; identities match the plain value
/// of the layer's identity (an API key, say).
///
/// ```
/// use tower_kv::ratelimit::AccessList;
///
/// let office = AccessList::new().network("10.0.0.0/8")?.network("2001:db8::/32")?.user("ops-bot");
/// let partners = AccessList::new().identity("partner-api-key"); // with Identity::header("x-api-key")
/// # Ok::<(), tower_kv::identity::InvalidNetwork>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct AccessList {
    networks: Vec<IpNet>,
    users: HashSet<String>,
    identities: HashSet<String>,
}

impl AccessList {
    /// An empty list (matches nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network in CIDR notation, or one address (IPv4 or IPv6).
    pub fn network(mut self, cidr: &str) -> Result<Self, InvalidNetwork> {
        self.networks.push(parse_network(cidr)?);
        Ok(self)
    }

    /// Adds a signed-in user, by the id in its [`UserId`].
    #[must_use]
    pub fn user(mut self, id: impl Into<String>) -> Self {
        self.users.insert(id.into());
        self
    }

    /// Adds a client by the plain value of the layer's identity
    /// ([`Identity::value_of`]): an API key for [`Identity::header`], a
    /// cookie's value, a user id, an address.
    #[must_use]
    pub fn identity(mut self, value: impl Into<String>) -> Self {
        self.identities.insert(value.into());
        self
    }

    fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.users.is_empty() && self.identities.is_empty()
    }

    /// Whether `req`'s client (as `identity` resolves its address) or user is listed.
    pub(crate) fn matches<B>(&self, identity: &Identity, req: &Request<B>) -> bool {
        if self.is_empty() {
            return false;
        }
        let user = req.extensions().get::<UserId>();
        if user.is_some_and(|u| self.users.contains(&u.0)) {
            return true;
        }
        if !self.identities.is_empty()
            && identity
                .value_in(req)
                .is_some_and(|v| self.identities.contains(&*v))
        {
            return true;
        }
        !self.networks.is_empty()
            && identity
                .client_address(req)
                .is_some_and(|ip| self.networks.iter().any(|n| n.contains(&ip)))
    }
}

/// What the access lists say about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Listed as allowed: never limited.
    Allowed,
    /// Listed as denied: 403.
    Denied,
    /// Neither: limit as usual.
    Limited,
}

/// The layer's and a route's allow- and deny-lists; a deny wins over an allow.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessLists {
    pub(crate) allow: Option<Arc<AccessList>>,
    pub(crate) deny: Option<Arc<AccessList>>,
}

impl AccessLists {
    pub(crate) fn check<B>(
        identity: &Identity,
        req: &Request<B>,
        lists: [&AccessLists; 2],
    ) -> Access {
        let listed = |pick: fn(&AccessLists) -> Option<&Arc<AccessList>>| {
            lists
                .iter()
                .filter_map(|l| pick(l))
                .any(|l| l.matches(identity, req))
        };
        if listed(|l| l.deny.as_ref()) {
            Access::Denied
        } else if listed(|l| l.allow.as_ref()) {
            Access::Allowed
        } else {
            Access::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn from(ip: &str, user: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        let peer: SocketAddr = format!("{ip}:1")
            .parse()
            .unwrap_or_else(|_| format!("[{ip}]:1").parse().unwrap());
        req.extensions_mut().insert(peer);
        if let Some(u) = user {
            req.extensions_mut().insert(UserId(u.to_owned()));
        }
        req
    }

    #[test]
    fn networks_addresses_and_users_match() {
        let list = AccessList::new()
            .network("10.1.2.3/8")
            .unwrap()
            .network("2001:db8::1")
            .unwrap()
            .user("bot");
        let id = Identity::PeerIp;
        assert!(list.matches(&id, &from("10.200.0.1", None)));
        assert!(!list.matches(&id, &from("11.0.0.1", None)));
        assert!(list.matches(&id, &from("2001:db8::1", None)));
        assert!(!list.matches(&id, &from("2001:db8::2", None)));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert!(list.matches(&id, &from("::ffff:10.0.0.9", None)));
        assert!(list.matches(&id, &from("192.0.2.1", Some("bot"))));
        assert!(!list.matches(&id, &from("192.0.2.1", Some("bob"))));
        let keys = AccessList::new().identity("partner-key");
        let by_key = Identity::header("x-api-key");
        let mut req = from("192.0.2.1", None);
        assert!(!keys.matches(&by_key, &req));
        req.headers_mut()
            .insert("x-api-key", "partner-key".parse().unwrap());
        assert!(keys.matches(&by_key, &req));
        assert!(AccessList::new().network("10.0.0.0/33").is_err());
        assert!(AccessList::new().network("ten").is_err());
    }

    #[test]
    fn deny_wins_over_allow() {
        let both = AccessList::new().network("10.0.0.0/8").unwrap();
        let both = Arc::new(both);
        let lists = AccessLists {
            allow: Some(both.clone()),
            deny: Some(both),
        };
        let none = AccessLists::default();
        let req = from("10.0.0.1", None);
        let id = Identity::PeerIp;
        assert_eq!(
            AccessLists::check(&id, &req, [&none, &lists]),
            Access::Denied
        );
        assert_eq!(
            AccessLists::check(&id, &req, [&none, &none]),
            Access::Limited
        );
    }
}
