use cookie::{Cookie, CookieJar, Key, SameSite};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, SET_COOKIE};
use http::HeaderMap;

use super::id::{SessionId, ID_LEN};
use crate::cookies::{self, Unreadable};

/// Largest `Cookie` header value examined, in bytes; larger ones are ignored.
const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// How the session id travels between client and server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transport {
    /// A cookie (default): see [`CookieConfig`].
    Cookie(CookieConfig),
    /// A request header carrying the bare id; a new id is returned in the
    /// same header on the response.
    Header(HeaderName),
    /// `Authorization: Bearer <id>`; a new id is returned in the
    /// `Session-Token` response header.
    Bearer,
}

impl Default for Transport {
    fn default() -> Self {
        Self::Cookie(CookieConfig::default())
    }
}

/// The session cookie's name and attributes. Defaults: name `id`,
/// `HttpOnly; Secure; SameSite=Lax; Path=/`, no `Domain`, no `Max-Age`
/// (the server enforces expiry).
#[derive(Clone)]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) signing_key: Option<Key>,
}

impl std::fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("signed", &self.signing_key.is_some())
            .finish()
    }
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "id".into(),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
            signing_key: None,
        }
    }
}

impl CookieConfig {
    /// The cookie's name. A `__Host-` name gets `Secure`, `Path=/` and no
    /// `Domain`, as that prefix requires.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Drop `Secure` (for plain-HTTP development only). Ignored with a
    /// `__Host-` or `__Secure-` name, which require `Secure`.
    #[must_use]
    pub fn insecure(mut self) -> Self {
        self.secure = false;
        self
    }

    /// The `SameSite` attribute (default `Lax`).
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `Path` attribute (default `/`). Ignored with a `__Host-` name,
    /// which requires `/`.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` attribute (default: none, the cookie stays on this
    /// host). Ignored with a `__Host-` name, which forbids it.
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sign the cookie with this key (HMAC-SHA256, `cookie` crate): a
    /// cookie whose signature does not verify is ignored.
    #[must_use]
    pub fn signed(mut self, key: Key) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// The configuration as sent: a name prefix's rules win over the
    /// setters (`__Host-`: `Secure`, `Path=/`, no `Domain`; `__Secure-`:
    /// `Secure`), whatever order they were called in. Logs a warning when
    /// a setter is overridden.
    pub(crate) fn with_prefix_rules(mut self) -> Self {
        let host = self.name.starts_with("__Host-");
        let secure_only = host || self.name.starts_with("__Secure-");
        let breaks =
            (secure_only && !self.secure) || (host && (self.path != "/" || self.domain.is_some()));
        if breaks {
            tracing::warn!(cookie = %self.name, "the cookie's name prefix requires Secure (and for __Host-: Path=/, no Domain): settings overridden");
        }
        if secure_only {
            self.secure = true;
        }
        if host {
            self.path = "/".into();
            self.domain = None;
        }
        self
    }

    /// The id in the request's cookies. Duplicated, oversized, malformed or
    /// badly signed cookies give no id (and a log line).
    fn read(&self, headers: &HeaderMap) -> Option<SessionId> {
        let raw = match cookies::find(headers, &self.name, MAX_COOKIE_HEADER) {
            Ok(found) => found?,
            Err(Unreadable::Oversized) => {
                tracing::warn!("oversized Cookie header ignored");
                return None;
            }
            Err(Unreadable::Duplicated) => {
                tracing::warn!(cookie = %self.name, "duplicated session cookie: ignoring both");
                return None;
            }
        };
        let verified;
        let value = match &self.signing_key {
            Some(key) => {
                let mut jar = CookieJar::new();
                jar.add_original(Cookie::new(self.name.clone(), raw.to_owned()));
                let Some(cookie) = jar.signed(key).get(&self.name) else {
                    tracing::warn!("session cookie with a bad signature ignored");
                    return None;
                };
                verified = cookie;
                verified.value()
            }
            None => raw,
        };
        let id = SessionId::parse(value);
        if id.is_none() {
            tracing::warn!(len = value.len(), "malformed session cookie ignored");
        }
        id
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.name.clone(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path(self.path.clone())
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    fn set(&self, headers: &mut HeaderMap, id: &SessionId) {
        let cookie = self.cookie(id.expose().to_owned());
        let cookie = match &self.signing_key {
            Some(key) => {
                let mut jar = CookieJar::new();
                jar.signed_mut(key).add(cookie);
                jar.get(&self.name).expect("just added").clone()
            }
            None => cookie,
        };
        append(headers, SET_COOKIE, &cookie.to_string());
    }

    fn remove(&self, headers: &mut HeaderMap) {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        append(headers, SET_COOKIE, &cookie.to_string());
    }
}

fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(name, value);
    }
}

/// The response header carrying a new id in [`Transport::Bearer`] mode.
pub(crate) const SESSION_TOKEN: HeaderName = HeaderName::from_static("session-token");

impl Transport {
    /// The session id the request presents, if well-formed.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Option<SessionId> {
        let text = match self {
            Transport::Cookie(c) => return c.read(headers),
            Transport::Header(name) => headers.get(name)?.to_str().ok()?,
            Transport::Bearer => headers
                .get(AUTHORIZATION)?
                .to_str()
                .ok()?
                .strip_prefix("Bearer ")?,
        };
        if text.len() > 4 * ID_LEN {
            return None;
        }
        SessionId::parse(text.trim())
    }

    /// The request field the id arrives in: what a response that depends on
    /// the session varies on.
    pub(crate) fn request_field(&self) -> &HeaderName {
        match self {
            Transport::Cookie(_) => &COOKIE,
            Transport::Header(name) => name,
            Transport::Bearer => &AUTHORIZATION,
        }
    }

    /// Tells the client its (new) id.
    pub(crate) fn issue(&self, headers: &mut HeaderMap, id: &SessionId) {
        match self {
            Transport::Cookie(c) => c.set(headers, id),
            Transport::Header(name) => append(headers, name.clone(), id.expose()),
            Transport::Bearer => append(headers, SESSION_TOKEN, id.expose()),
        }
    }

    /// Tells the client to forget its id (cookies only: header clients just stop sending it).
    pub(crate) fn revoke(&self, headers: &mut HeaderMap) {
        if let Transport::Cookie(c) = self {
            c.remove(headers);
        }
    }
}
