//! Who is making a request: the one identity extraction that rate limiting,
//! A/B tests, feature flags and sessions share.
//!
//! An [`Identity`] names where a request's key comes from: the peer address,
//! the client address behind [`TrustedProxies`], a header (an API key), the
//! signed-in user ([`UserId`] in request extensions), one global key, or a
//! function of your own. Secrets never reach the store in clear: header
//! values, and any value longer than 64 bytes, are replaced by a SHA-256 digest.
//!
//! ```
//! use tower_kv::identity::{Identity, TrustedProxies};
//!
//! // Behind a load balancer at 10.0.0.0/8 that appends to X-Forwarded-For.
//! let by_client = Identity::client_ip(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
//! let by_api_key = Identity::header("x-api-key");
//! # let _ = (by_client, by_api_key);
//! ```
//!
//! The peer address is read from axum's `ConnectInfo<SocketAddr>` (serve the
//! app with `into_make_service_with_connect_info::<SocketAddr>()`; feature
//! `axum`, on by default) or from a [`SocketAddr`] in the request extensions:
//! with plain hyper, insert the accepted connection's address into each
//! request.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, FORWARDED};
use http::request::Parts;
use http::Request;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::once::Once;

/// The signed-in user of a request, placed in request extensions by the
/// session layer or by your own authentication middleware.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub String);

/// A function computing an identity from a request head.
pub type IdentityFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Where a request's identity comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum Identity {
    /// The TCP peer's IP address.
    PeerIp,
    /// The client's IP address as reported by trusted proxies.
    ClientIp(TrustedProxies),
    /// A request header's value (stored as a digest, never in clear).
    Header(HeaderName),
    /// The [`UserId`] in request extensions.
    User,
    /// A cookie's value (an anonymous-visitor cookie, …).
    Cookie(&'static str),
    /// One identity shared by every request.
    Global,
    /// Your own function of the request head.
    Custom(IdentityFn),
    /// The first identity, or the second when the request has none of the first.
    Either(Box<Identity>, Box<Identity>),
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerIp => f.write_str("PeerIp"),
            Self::ClientIp(p) => f.debug_tuple("ClientIp").field(p).finish(),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::User => f.write_str("User"),
            Self::Cookie(name) => f.debug_tuple("Cookie").field(name).finish(),
            Self::Global => f.write_str("Global"),
            Self::Custom(_) => f.write_str("Custom(..)"),
            Self::Either(a, b) => f.debug_tuple("Either").field(a).field(b).finish(),
        }
    }
}

impl Identity {
    /// The client address behind `proxies`.
    pub fn client_ip(proxies: TrustedProxies) -> Self {
        Self::ClientIp(proxies)
    }

    /// The value of header `name`.
    ///
    /// Whatever the client sends: for a rate limit, each new value is a new
    /// client with a fresh quota. Check the value (an API key) in a layer
    /// before this one, or limit per address beside it.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name.
    pub fn header(name: &'static str) -> Self {
        Self::Header(HeaderName::from_static(name))
    }

    /// This identity, or `other` when the request has none of this one:
    /// `Identity::User.or(Identity::PeerIp)` limits users by account and
    /// anonymous visitors by address.
    #[must_use]
    pub fn or(self, other: Identity) -> Self {
        Self::Either(Box::new(self), Box::new(other))
    }

    /// The client's address as this identity sees it: resolved through its
    /// trusted proxies when it has a [`ClientIp`](Self::ClientIp) (also
    /// inside [`Either`](Self::Either)), else the TCP peer.
    pub(crate) fn client_address<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        match self.proxies() {
            Some(proxies) => proxies.client_ip(req),
            None => peer_ip(req).map(canonical),
        }
    }

    fn proxies(&self) -> Option<&TrustedProxies> {
        match self {
            Self::ClientIp(proxies) => Some(proxies),
            Self::Either(first, second) => first.proxies().or_else(|| second.proxies()),
            _ => None,
        }
    }

    /// The identity's plain value, for comparing with lists kept in memory
    /// (feature-flag allow lists, A/B assignment): the user id, the header
    /// or cookie value, the address — untagged and not digested. Never
    /// store or log it; [`of`](Self::of) is the store-safe form.
    pub fn value_of<B>(&self, req: &Request<B>) -> Option<String> {
        self.value_in(req).map(Cow::into_owned)
    }

    /// [`value_of`](Self::value_of), borrowed from the request when it is
    /// there as is (a header, a cookie, the user id).
    pub(crate) fn value_in<'r, B>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        match self {
            Self::PeerIp => peer_ip(req).map(|ip| Cow::Owned(canonical(ip).to_string())),
            Self::ClientIp(proxies) => proxies.client_ip(req).map(|ip| Cow::Owned(ip.to_string())),
            Self::Header(name) => {
                let value = req.headers().get(name)?.to_str().ok()?;
                (!value.is_empty()).then_some(Cow::Borrowed(value))
            }
            Self::User => {
                let user = req.extensions().get::<UserId>()?;
                Some(Cow::Borrowed(user.0.as_str()))
            }
            Self::Cookie(name) => cookie_value(req, name).map(Cow::Borrowed),
            Self::Global => Some(Cow::Borrowed("global")),
            Self::Custom(_) => self.of(req).map(Cow::Owned),
            Self::Either(first, second) => first.value_in(req).or_else(|| second.value_in(req)),
        }
    }

    /// Your own function of the request head; `None` means "no identity".
    pub fn custom(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// The identity of `req` as a short store-safe string tagged with its
    /// kind (`ip:…`, `user:…`, `h:…`, `global`, `fn:…`, so kinds never
    /// collide), or `None` when the request carries none (no peer address,
    /// header absent, …). An IPv6 client is its
    /// [`/64` network](IPV6_CLIENT_PREFIX) (`ip:2001:db8:1:2::/64`).
    pub fn of<B>(&self, req: &Request<B>) -> Option<String> {
        self.of_grouped(req, IPV6_CLIENT_PREFIX)
    }

    /// [`of`](Self::of), with IPv6 clients grouped by their first
    /// `ipv6_prefix` bits (128: each address apart).
    pub(crate) fn of_grouped<B>(&self, req: &Request<B>, ipv6_prefix: u8) -> Option<String> {
        let mut out = String::with_capacity(IDENTITY_CAPACITY);
        self.push_grouped(req, ipv6_prefix, &mut out).then_some(out)
    }

    /// Appends [`of_grouped`](Self::of_grouped)'s identity to `out` (a
    /// store key being written: no string of its own); whether there was
    /// one (else `out` is unchanged).
    pub(crate) fn push_grouped<B>(
        &self,
        req: &Request<B>,
        ipv6_prefix: u8,
        out: &mut String,
    ) -> bool {
        match self {
            Self::PeerIp => peer_ip(req)
                .map(|addr| push_ip(out, canonical(addr), ipv6_prefix))
                .is_some(),
            Self::ClientIp(proxies) => proxies
                .client_ip(req)
                .map(|ip| push_ip(out, ip, ipv6_prefix))
                .is_some(),
            Self::Header(name) => match req.headers().get(name).map(HeaderValue::as_bytes) {
                Some(value) if !value.is_empty() => {
                    push_tagged_digest(out, "h:", value);
                    true
                }
                _ => false,
            },
            Self::User => req
                .extensions()
                .get::<UserId>()
                .map(|u| push_tagged(out, "user:", &u.0))
                .is_some(),
            Self::Cookie(name) => cookie_value(req, name)
                .map(|v| push_tagged_digest(out, "c:", v.as_bytes()))
                .is_some(),
            Self::Global => {
                out.push_str("global");
                true
            }
            Self::Either(first, second) => {
                first.push_grouped(req, ipv6_prefix, out)
                    || second.push_grouped(req, ipv6_prefix, out)
            }
            Self::Custom(f) => {
                // The function sees the head only; rebuilding one costs a
                // clone of the headers, paid only by custom identities.
                let mut head = Request::new(());
                *head.method_mut() = req.method().clone();
                *head.uri_mut() = req.uri().clone();
                *head.version_mut() = req.version();
                *head.headers_mut() = req.headers().clone();
                let (parts, ()) = head.into_parts();
                f(&parts).map(|v| push_tagged(out, "fn:", &v)).is_some()
            }
        }
    }
}

impl Identity {
    /// Whether this identity reads the [`UserId`] (alone or as a first choice).
    fn uses_user(&self) -> bool {
        match self {
            Self::User => true,
            Self::Either(first, second) => first.uses_user() || second.uses_user(),
            _ => false,
        }
    }
}

/// Watches a layer keyed on [`Identity::User`] for requests that cannot
/// carry a user because nothing outside the layer provides one, and says so
/// once per layer instance (a `tracing` warning naming the fix).
#[derive(Clone, Debug)]
pub(crate) struct UserSourceCheck {
    layer: &'static str,
    warned: Once,
}

impl UserSourceCheck {
    /// A check for `layer`, or `None` when `identity` does not use the user.
    pub(crate) fn new(layer: &'static str, identity: &Identity) -> Option<Self> {
        identity.uses_user().then(|| Self {
            layer,
            warned: Once::default(),
        })
    }

    /// Warns (once) when `req` has no [`UserId`] and no session layer that
    /// provides one ran before this layer.
    pub(crate) fn check<B>(&self, req: &Request<B>) {
        if self.warned.done() || req.extensions().get::<UserId>().is_some() {
            return;
        }
        let fix = match req.extensions().get::<crate::session::Session>() {
            Some(session) if session.exposes_user() => return,
            Some(_) => "call `.expose_user()` on the SessionLayer",
            None => "add `SessionLayer::new(store).expose_user()` outside this layer (or insert a `UserId` in your own authentication middleware)",
        };
        if self.warned.first() {
            tracing::warn!(
                layer = self.layer,
                "Identity::User found no signed-in user source: {fix}; until then requests fall back to the next identity"
           );
        }
    }
}

/// Room for most identities without growing: `ip:` and an IPv6 network
/// (at most 46), a tag and a 32-digit digest, a tag and a short user id.
pub(crate) const IDENTITY_CAPACITY: usize = 48;

/// How many leading bits of an IPv6 address identify a client by default.
/// A /64 is one network link, the least a host is given, and whoever holds
/// one can send from any of its 2⁶⁴ addresses: counted apart, they would be
/// as many clients.
pub const IPV6_CLIENT_PREFIX: u8 = 64;

/// Appends `ip:203.0.113.7`; an IPv6 address reduced to its first
/// `ipv6_prefix` bits (`ip:2001:db8::/64`) unless that is all 128. IPv4 is
/// written octet by octet: `Ipv4Addr`'s `Display` supports padding and
/// costs several times more on this per-request path.
fn push_ip(out: &mut String, ip: IpAddr, ipv6_prefix: u8) {
    out.push_str("ip:");
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) if ipv6_prefix >= 128 => {
            let _ = write!(out, "{v6}");
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix))
                .unwrap_or(0);
            let network = Ipv6Addr::from(u128::from(v6) & mask);
            let _ = write!(out, "{network}/{ipv6_prefix}");
        }
    }
}

/// The value of cookie `name`, if the request carries exactly one.
pub(crate) fn cookie_value<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    let found = crate::cookies::find(req.headers(), name, usize::MAX).ok()??;
    (!found.is_empty() && found.len() <= 256).then_some(found)
}

/// Appends `tag` then `value`, or `tag` then a digest of it when it is
/// longer than 64 bytes: short values stay readable, store keys stay bounded.
fn push_tagged(out: &mut String, tag: &str, value: &str) {
    if value.len() > 64 {
        return push_tagged_digest(out, tag, value.as_bytes());
    }
    out.push_str(tag);
    out.push_str(value);
}

/// `bytes` (at most 32) bytes from a CSPRNG (rand's `ThreadRng`: ChaCha12,
/// seeded and reseeded from the operating system) as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut hex = vec![0u8; bytes * 2];
    fill_random_hex(&mut hex);
    String::from_utf8(hex).expect("hex is ASCII")
}

/// Fills `out` (at most 64 bytes) with [`random_hex`] digits.
pub(crate) fn fill_random_hex(out: &mut [u8]) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    let bytes = &mut bytes[..out.len() / 2];
    rand::rng().fill_bytes(bytes);
    hex::encode_to_slice(bytes, out).expect("two hex digits per byte");
}

/// `{xxxxxxxx}`, a Redis Cluster hash tag derived from `value`: keys that
/// carry it share a hash slot (and a `RedisStore` cluster bucket), and
/// since it is a digest, no user-supplied text (a route pattern's `{id}`,
/// a `}` in an identity) decides where a key lives.
pub(crate) fn hash_tag(value: &str) -> [u8; HASH_TAG_LEN] {
    // FNV-1a: placement needs spread, not secrecy.
    let hash = value.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut tag = [0; HASH_TAG_LEN];
    tag.copy_from_slice(HASH_TAG_PLACEHOLDER.as_bytes());
    hex::encode_to_slice(hash.to_be_bytes(), &mut tag[1..9]).expect("two hex digits per byte");
    tag
}

/// A hash tag's shape before its digits are written.
pub(crate) const HASH_TAG_PLACEHOLDER: &str = "{00000000}";

/// Bytes in a hash tag: `{`, eight hex digits, `}`.
pub(crate) const HASH_TAG_LEN: usize = HASH_TAG_PLACEHOLDER.len();

/// A hex SHA-256 prefix (128 bits) of `value`: stable across instances, not reversible.
pub(crate) fn digest(value: &[u8]) -> String {
    let mut out = String::with_capacity(32);
    push_digest(&mut out, value);
    out
}

/// Appends `tag` followed by [`digest`]`(value)`.
fn push_tagged_digest(out: &mut String, tag: &str, value: &[u8]) {
    out.push_str(tag);
    push_digest(out, value);
}

/// Appends [`digest`]`(value)` to `out` (no intermediate `String`).
pub(crate) fn push_digest(out: &mut String, value: &[u8]) {
    let mut hex = [0u8; 32];
    hex::encode_to_slice(&Sha256::digest(value)[..16], &mut hex).expect("32 bytes hold 16 in hex");
    out.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
}

/// The TCP peer's address, from a `SocketAddr` extension or axum's `ConnectInfo`.
pub(crate) fn peer_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    if let Some(addr) = req.extensions().get::<SocketAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// Which header the trusted proxies append the client address to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// The proxies whose forwarding headers are believed.
///
/// The client address is the rightmost address in the configured header that
/// is not itself a trusted proxy, and only when the peer is a trusted proxy:
/// a client talking to the service directly cannot choose its address by
/// sending the header. Only the configured header is read, so a client-sent
/// copy of the other one is ignored.
#[derive(Clone, Debug)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

/// A network that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid network {0:?} (expected an address or CIDR like 10.0.0.0/8)")]
pub struct InvalidNetwork(String);

/// A network in CIDR notation, or one address.
pub(crate) fn parse_network(network: &str) -> Result<IpNet, InvalidNetwork> {
    network
        .parse::<IpNet>()
        .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| InvalidNetwork(network.to_owned()))
}

impl TrustedProxies {
    /// Trust these networks (`"10.0.0.0/8"`, `"::1"`, …), reading `X-Forwarded-For`.
    pub fn new<I, T>(networks: I) -> Result<Self, InvalidNetwork>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .map(|n| parse_network(n.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            networks,
            header: ForwardedHeader::XForwardedFor,
        })
    }

    /// Read this header instead of `X-Forwarded-For`.
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The client address of `req`, or `None` when a trusted proxy reported
    /// something that is not an address.
    pub fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = peer_ip(req)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<Option<IpAddr>> = match self.header {
            ForwardedHeader::XForwardedFor => req
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
                .map(|hop| parse_hop(hop.trim()))
                .collect(),
            ForwardedHeader::Forwarded => req
                .headers()
                .get_all(FORWARDED)
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("for=\u{0}").split(','))
                .filter_map(forwarded_for)
                .collect(),
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let hop = hop?;
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        Some(client)
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop: `203.0.113.7`, `203.0.113.7:443`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// The `for=` parameter of one `Forwarded` element, parsed; `None` when the
/// element has no `for=`.
fn forwarded_for(element: &str) -> Option<Option<IpAddr>> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.eq_ignore_ascii_case("for")
            .then(|| parse_hop(value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_are_eight_hex_digits_in_braces() {
        assert_eq!(&hash_tag(""), b"{811c9dc5}", "the FNV-1a offset basis");
        let other = String::from_utf8(hash_tag("203.0.113.7}{").to_vec()).unwrap();
        assert_eq!(other.len(), HASH_TAG_LEN);
        assert!(other.starts_with('{') && other.ends_with('}'));
        assert!(other[1..9].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    fn request(peer: &str, header: (&str, &str)) -> Request<()> {
        let mut req = Request::builder()
            .header(header.0, header.1)
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        req
    }

    #[test]
    fn untrusted_peer_cannot_spoof_its_address() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let req = request("198.51.100.9:5000", ("x-forwarded-for", "1.2.3.4"));
        assert_eq!(
            proxies.client_ip(&req),
            Some("198.51.100.9".parse().unwrap())
        );
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::new(["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let xff = ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 192.0.2.1");
        let req = request("10.1.2.3:80", xff);
        assert_eq!(
            proxies.client_ip(&req),
            Some("203.0.113.7".parse().unwrap())
        );
    }

    #[test]
    fn forwarded_header_with_ports_and_ipv6() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"])
            .unwrap()
            .header(ForwardedHeader::Forwarded);
        let value = r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2"#;
        let req = request("10.0.0.1:80", ("forwarded", value));
        assert_eq!(
            proxies.client_ip(&req),
            Some("2001:db8:cafe::17".parse().unwrap())
        );
        // X-Forwarded-For is not read in this mode.
        let req = request("10.0.0.1:80", ("x-forwarded-for", "6.6.6.6"));
        assert_eq!(proxies.client_ip(&req), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn garbage_from_a_trusted_proxy_means_no_identity() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let req = request("10.0.0.1:80", ("x-forwarded-for", "not-an-ip"));
        assert_eq!(proxies.client_ip(&req), None);
    }

    fn ip_identity(ip: IpAddr, ipv6_prefix: u8) -> String {
        let mut out = String::new();
        push_ip(&mut out, ip, ipv6_prefix);
        out
    }

    #[test]
    fn ip_identities_read_like_addresses() {
        for ip in ["0.0.0.0", "10.0.100.9", "255.255.255.255", "192.168.1.20"] {
            assert_eq!(ip_identity(ip.parse().unwrap(), 64), format!("ip:{ip}"));
        }
        let v6 = |ip: &str, prefix| ip_identity(ip.parse().unwrap(), prefix);
        assert_eq!(v6("2001:db8::1", 128), "ip:2001:db8::1");
        assert_eq!(v6("2001:db8:1:2:aaaa::1", 64), "ip:2001:db8:1:2::/64");
        assert_eq!(v6("2001:db8:1:2ff:aaaa::1", 56), "ip:2001:db8:1:200::/56");
        assert_eq!(v6("2001:db8::1", 1), "ip:::/1");
    }

    #[test]
    fn an_ipv6_client_is_its_network() {
        let id = |peer: &str| Identity::PeerIp.of(&request(peer, ("x", "y")));
        let same = id("[2001:db8:1:2::1]:80");
        assert_eq!(same.as_deref(), Some("ip:2001:db8:1:2::/64"));
        assert_eq!(same, id("[2001:db8:1:2:ffff:1234:5678:9abc]:80"));
        assert_ne!(same, id("[2001:db8:1:3::1]:80"));
        assert_eq!(id("[::ffff:10.0.0.1]:80").as_deref(), Some("ip:10.0.0.1"));
        let apart = Identity::PeerIp.of_grouped(&request("[2001:db8::1]:80", ("x", "y")), 128);
        assert_eq!(apart.as_deref(), Some("ip:2001:db8::1"));
    }

    #[test]
    fn header_identities_are_digests() {
        let req = request("10.0.0.1:80", ("x-api-key", "secret-key"));
        let id = Identity::header("x-api-key").of(&req).unwrap();
        assert!(!id.contains("secret"));
        assert_eq!(id, format!("h:{}", digest(b"secret-key")));
        assert_eq!(digest(b"x").len(), 32);
        let either = Identity::User.or(Identity::PeerIp);
        assert_eq!(either.of(&req).as_deref(), Some("ip:10.0.0.1"));
        assert!(TrustedProxies::new(["nope"]).is_err());
    }
}
