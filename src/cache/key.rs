//! Cache keys: which stored responses a request may be answered with.
//!
//! A request's key is `{prefix}{scheme}://{host}{path}?{query}` (its
//! *primary* key, what purges and invalidation address), extended with the
//! values of the cookies the layer was told to key on and the A/B variants
//! the request was assigned, then with the request headers a stored
//! response varies on.

use std::fmt::Write as _;

use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING, VARY,
};
use http::{Method, Request, Uri};

use super::layer::CacheConfig;
use crate::abtest::Variants;
use crate::identity::{digest, push_digest};

/// Where a request's responses are stored.
#[derive(Clone, Debug)]
pub(crate) struct RequestKey {
    /// `scheme://host` of the request.
    pub(crate) origin: String,
    /// The URL's key: what unsafe methods and purges invalidate.
    pub(crate) primary: String,
    /// The primary key with this request's keyed cookies and variants,
    /// when it has any (see [`base`](Self::base)).
    keyed: Option<String>,
}

/// What the cache does with a request.
pub(crate) enum Keyed {
    /// Serve from and store under this key.
    Cache(RequestKey),
    /// Pass through untouched: credentials the layer was not told about, or
    /// a `GET` with a body (input no key covers).
    Bypass,
    /// Refuse with 400: two `Host` fields (RFC 9112 §3.2), so no key can
    /// say which host the origin will answer for.
    Ambiguous,
}

/// Makes the host the origin sees the one the key uses: an absolute-form
/// target's authority wins over `Host` (RFC 9112 §3.2.2), so `Host` is
/// rewritten to it.
pub(crate) fn align_host<B>(req: &mut Request<B>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    let same = req.headers().get(HOST).is_some_and(|h| {
        h.as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    });
    if !same {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(HOST, value);
        }
    }
}

impl RequestKey {
    /// How the cache treats `req`, and its key when it caches it.
    pub(crate) fn of<St, B>(config: &CacheConfig<St>, req: &Request<B>) -> Keyed {
        let headers = req.headers();
        if headers.get_all(HOST).iter().nth(1).is_some() {
            return Keyed::Ambiguous;
        }
        let has_body = headers.contains_key(TRANSFER_ENCODING)
            || headers.get(CONTENT_LENGTH).is_some_and(|v| v != "0");
        let read = matches!(*req.method(), Method::GET | Method::HEAD);
        if headers.contains_key(AUTHORIZATION) || (read && has_body) {
            return Keyed::Bypass;
        }
        match Self::keyed(config, req) {
            Some(key) => Keyed::Cache(key),
            None => Keyed::Bypass,
        }
    }

    /// The key of `req`; `None` when it carries cookies the layer was not
    /// told responses depend on.
    fn keyed<St, B>(config: &CacheConfig<St>, req: &Request<B>) -> Option<Self> {
        let headers = req.headers();
        let mut material = String::new();
        if headers.contains_key(COOKIE) {
            let names = config.key_cookies.as_ref()?;
            for name in names {
                let value = crate::identity::cookie_value(req, name).unwrap_or_default();
                let _ = write!(material, "c:{name}={value}\u{1e}");
            }
        }
        if let Some(variants) = req.extensions().get::<Variants>() {
            for (test, variant) in variants.iter() {
                let _ = write!(material, "ab:{test}={variant}\u{1e}");
            }
        }
        let origin = origin(req.uri(), headers);
        let primary = match &config.key_fn {
            Some(key) => format!("{}{}", config.key_prefix, (key.0)(req.uri(), headers)),
            None if config.normalize_query => {
                key_for(&config.key_prefix, &origin, &normalized_target(req.uri()))
            }
            None => key_for(&config.key_prefix, &origin, target(req.uri())),
        };
        let keyed =
            (!material.is_empty()).then(|| format!("{primary}|k|{}", digest(material.as_bytes())));
        Some(Self {
            origin,
            primary,
            keyed,
        })
    }

    /// The primary key with this request's keyed cookies and variants.
    pub(crate) fn base(&self) -> &str {
        self.keyed.as_deref().unwrap_or(&self.primary)
    }

    /// The key of the response stored for `request` among those varying on `names`.
    pub(crate) fn variant(&self, names: &[String], request: &HeaderMap) -> String {
        let base = self.base();
        let mut key = String::with_capacity(base.len() + VARIANT_SUFFIX_LEN);
        key.push_str(base);
        push_variant_suffix(&mut key, names, request);
        key
    }

    /// The key of the fleet's fetch lease for this URL and variant.
    pub(crate) fn lease(&self) -> String {
        format!("{}|lease", self.base())
    }

    /// The key listing the header names responses at this key vary on.
    pub(crate) fn vary_index(&self) -> String {
        format!("{}|vary", self.base())
    }

    /// The prefix of every key stored for this URL.
    pub(crate) fn url_prefix(&self) -> String {
        format!("{}|", self.primary)
    }

    /// The primary key of a same-origin `Location`-like URI, if it is one.
    pub(crate) fn same_origin(&self, prefix: &str, uri: &Uri) -> Option<String> {
        let same = uri.authority().is_none() || self.origin == origin(uri, &HeaderMap::new());
        (same && uri.path().starts_with('/')).then(|| key_for(prefix, &self.origin, target(uri)))
    }
}

/// `scheme://host` of a request: the host always goes into the key.
fn origin(uri: &Uri, headers: &HeaderMap) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    let scheme = uri.scheme_str().unwrap_or("http");
    let mut origin = String::with_capacity(scheme.len() + 3 + host.len());
    origin.push_str(scheme);
    origin.push_str("://");
    origin.push_str(host);
    origin[scheme.len() + 3..].make_ascii_lowercase();
    origin
}

/// `{prefix}{scheme}://{host}{path}?{query}`. A long URL keeps its first
/// 300 bytes, so prefix purges still find it, then a digest of the whole,
/// so keys stay within the store's limit.
fn key_for(prefix: &str, origin: &str, target: &str) -> String {
    if origin.len() + target.len() <= 400 {
        let mut key = String::with_capacity(prefix.len() + origin.len() + target.len());
        for part in [prefix, origin, target] {
            key.push_str(part);
        }
        return key;
    }
    let full = format!("{origin}{target}");
    let mut cut = 300;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}{}#{}", &full[..cut], digest(full.as_bytes()))
}

/// A purge prefix as keys spell it: scheme and host lowercased.
pub(crate) fn normalized_prefix(prefix: &str) -> String {
    let Some((scheme, rest)) = prefix.split_once("://") else {
        return prefix.to_owned();
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

fn target(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The path and the query with its parameters sorted.
fn normalized_target(uri: &Uri) -> String {
    match uri.query() {
        Some(query) => {
            let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            pairs.sort_unstable();
            format!("{}?{}", uri.path(), pairs.join("&"))
        }
        None => uri.path().to_owned(),
    }
}

/// The key of an absolute URL (for purges).
pub(crate) fn primary_key(prefix: &str, uri: &Uri) -> String {
    key_for(prefix, &origin(uri, &HeaderMap::new()), target(uri))
}

/// The request headers a stored response varies on, as one key suffix.
/// Whether `key` holds a response (`…|v|{digest}`), not bookkeeping such
/// as a Vary index.
pub(crate) fn is_response(key: &str) -> bool {
    key.rsplit_once('|')
        .is_some_and(|(head, _)| head.ends_with("|v"))
}

/// Bytes [`push_variant_suffix`] appends: `|v|` and a 32-digit digest.
const VARIANT_SUFFIX_LEN: usize = 35;

/// [`digest`]`(b"")`: the variant of a response that varies on nothing,
/// the one every hit without `Vary` reads first.
const NO_VARY_DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb924";

fn push_variant_suffix(key: &mut String, names: &[String], request: &HeaderMap) {
    key.push_str("|v|");
    if names.is_empty() {
        key.push_str(NO_VARY_DIGEST);
        return;
    }
    let mut material = String::new();
    for name in names {
        material.push_str(name);
        material.push('\u{1f}');
        for value in request.get_all(name.as_str()) {
            material.push_str(&String::from_utf8_lossy(value.as_bytes()));
            material.push('\u{1e}');
        }
    }
    push_digest(key, material.as_bytes());
}

/// The field names a response varies on, lowercased, sorted, once each.
pub(crate) fn vary_names(response: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = response
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_without_vary_has_the_digest_of_nothing() {
        assert_eq!(NO_VARY_DIGEST, digest(b""));
        let mut key = String::new();
        push_variant_suffix(&mut key, &[], &HeaderMap::new());
        assert_eq!(key.len(), VARIANT_SUFFIX_LEN);
        assert_eq!(key, format!("|v|{}", digest(b"")));
    }
}
