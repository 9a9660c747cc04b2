//! Entry points for the fuzz targets in `fuzz/`: every parser that sees
//! attacker input, each run with the invariants it must keep. Compiled only
//! under `--cfg fuzzing` (as `cargo fuzz` builds), never part of the API.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, COOKIE, FORWARDED};
use http::{HeaderMap, Method, Request, StatusCode};

use crate::abtest::fuzz::LoadedConfig;
use crate::abtest::TestConfig;
use crate::cache::fuzz as cache;

use crate::flags::FlagDocument;
use crate::identity::{ForwardedHeader, TrustedProxies};
use crate::session::{CookieConfig, Key, Transport};

/// The header names the cache rules read.
const CACHE_FIELDS: [&str; 16] = [
    "cache-control",
    "age",
    "date",
    "expires",
    "last-modified",
    "etag",
    "vary",
    "if-none-match",
    "if-modified-since",
    "authorization",
    "set-cookie",
    "cdn-cache-control",
    "pragma",
    "accept-language",
    "range",
    "if-range",
];

/// Reads `[selector, length, value…]` records into two header maps (request,
/// response), naming each field from `names` by the selector.
fn header_maps(data: &[u8], names: &[&'static str]) -> (HeaderMap, HeaderMap) {
    let (mut request, mut response) = (HeaderMap::new(), HeaderMap::new());
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (value, next) = tail.split_at(len);
        rest = next;
        let name = HeaderName::from_static(names[usize::from(selector / 2) % names.len()]);
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let map = if selector % 2 == 0 {
            &mut request
        } else {
            &mut response
        };
        map.append(name, value);
    }
    (request, response)
}

/// `Cache-Control` (and `CDN-Cache-Control`), `Age`, `Date`, `Expires`,
/// `Last-Modified`, `Vary`, the conditional request fields and `Range` /
/// `If-Range`, through the storage, age, reuse and answer-from-storage rules.
pub fn cache_rules(data: &[u8]) {
    let Some((status, data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = StatusCode::from_u16(100 + u16::from_be_bytes(*status) % 500).unwrap();
    let (request, response) = header_maps(data, &CACHE_FIELDS);
    cache::check_rules(status, &request, &response);
}

/// The session cookie, plain and signed: any id read is one this server
/// could have issued.
pub fn session_cookie(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for part in data.split(|b| *b == 0xff) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, value);
        }
    }
    let signed = CookieConfig::default().signed(Key::from(&[7u8; 64]));
    for transport in [Transport::default(), Transport::Cookie(signed)] {
        if let Some(id) = transport.read(&headers) {
            let id = id.expose();
            assert_eq!(id.len(), 48);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }
}

/// `X-Forwarded-For` and `Forwarded` chains: an untrusted peer is always
/// its own address; a trusted one yields an address or nothing.
pub fn forwarded(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let proxies = TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
    for (header, mode) in [
        (
            HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::XForwardedFor,
        ),
        (FORWARDED, ForwardedHeader::Forwarded),
    ] {
        let proxies = proxies.clone().header(mode);
        for peer in ["10.0.0.1:80", "203.0.113.9:80"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut req = Request::new(());
            req.headers_mut().insert(header.clone(), value.clone());
            req.extensions_mut().insert(peer);
            let client = proxies.client_ip(&req);
            if peer.ip().to_string().starts_with("203.") {
                assert_eq!(client, Some(peer.ip()));
            }
        }
    }
}

/// The flag document: what parses is within the limits, and stores and
/// parses back the same; every flag evaluates.
pub fn flag_document(data: &[u8]) {
    let Ok(doc) = FlagDocument::from_json(data) else {
        return;
    };
    let again = FlagDocument::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(again, doc);
    for (name, flag) in &doc.flags {
        flag.evaluate(name, Some("user-1"));
        flag.evaluate(name, None);
    }
}

/// An A/B test config: what parses splits every bucket among its variants.
pub fn ab_config(data: &[u8]) {
    let (config, loaded) = (TestConfig::from_json(data), LoadedConfig::from_json(data));
    assert_eq!(config.is_ok(), loaded.is_ok(), "valid both ways or neither");
    let (Ok(config), Ok(loaded)) = (config, loaded) else {
        return;
    };
    for bucket in [0, 1, 2_500, 4_999, 5_000, 9_998, 9_999] {
        let variant = loaded.choose(bucket);
        assert!(config.variants.iter().any(|v| **v == *variant.name));
        assert_eq!(variant.header, &*variant.name);
    }
}

/// `x-ab-override` tokens: only signed claims of valid variant names pass.
pub fn ab_override(data: &[u8]) {
    let forced = crate::abtest::fuzz::verified_overrides(b"qa-secret", data);
    for variant in forced.values() {
        assert!(HeaderValue::from_str(&variant.name).is_ok());
        assert_eq!(variant.header, &*variant.name);
    }
}

/// The stored cache entry framing: garbage is refused, what decodes
/// encodes back to itself.
pub fn stored_entry(data: &[u8]) {
    cache::check_entry(Bytes::copy_from_slice(data));
}

/// A fixed instant, so runs reproduce.
pub(crate) fn instant() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// The methods the cache answers from storage.
pub(crate) const READ_METHODS: [Method; 2] = [Method::GET, Method::HEAD];
