use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use http::header::HeaderName;
use http::HeaderMap;
use sha2::Sha256;
use tower_layer::Layer;

use super::config::{InvalidTestConfig, LoadedConfig, TestConfig, Variant};
use super::AbTestService;
use crate::bucket::bucket;
use crate::cookies::SetCookie;
use crate::identity::{push_digest, Identity, UserSourceCheck};
use crate::metrics::{self, count};
use crate::store::{CachedDocument, CasOutcome, KvStore, PutOptions, StoreError};
use crate::Clock;

/// A new assignment, reported once to the exposure hook (for analytics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// The test.
    pub test: String,
    /// The variant assigned.
    pub variant: String,
    /// The identity it was assigned to (a user id or visitor id: handle as personal data).
    pub identity: String,
}

type Hook = Arc<dyn Fn(Exposure) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The variants of the current request, by test name, in request extensions
/// (axum extractor with feature `axum`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variants(Vec<(Arc<str>, Variant)>);

impl Variants {
    /// Each test's variant, sorted by test name (a layer has a handful of
    /// tests: a vector costs one allocation where a map costs a node).
    pub(crate) fn new(mut by_test: Vec<(Arc<str>, Variant)>) -> Self {
        by_test.sort_by(|a, b| a.0.cmp(&b.0));
        by_test.dedup_by(|a, b| a.0 == b.0);
        Self(by_test)
    }

    /// The variant of `test` for this request (`"control"` when the test is off).
    pub fn get(&self, test: &str) -> Option<&str> {
        let (_, variant) = self.0.iter().find(|(name, _)| **name == *test)?;
        Some(&variant.name)
    }

    /// `(test, variant)` pairs, by test name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(test, variant)| (&**test, &*variant.name))
    }
}

/// Assigns each request a sticky variant of one or several A/B tests and
/// injects it as a request header. See the [module docs](super).
///
/// Setters may come in any order: each test's config cache is built when
/// the layer builds its service.
#[derive(Clone)]
pub struct AbTestLayer<St> {
    /// Shared, so cloning the layer (as handler state, per request) is cheap.
    settings: Arc<Settings<St>>,
    /// Built on the first service (or config write) and shared by every
    /// service of this layer; a setter starts a new one.
    runtime: Arc<OnceLock<Arc<Config<St>>>>,
}

/// The layer's settings, as configured.
#[derive(Clone)]
pub(crate) struct Settings<St> {
    pub(crate) store: St,
    pub(crate) tests: Vec<(String, HeaderName)>,
    pub(crate) identity: Identity,
    pub(crate) user_check: Option<UserSourceCheck>,
    pub(crate) visitor_cookie: Option<String>,
    pub(crate) store_visitor_assignments: bool,
    pub(crate) assignment_ttl: Duration,
    pub(crate) config_ttl: Duration,
    pub(crate) clock: Clock,
    pub(crate) echo: bool,
    pub(crate) exposure: Option<Hook>,
    pub(crate) qa_key: Option<Vec<u8>>,
}

/// What the services run on: the settings and each test's config cache.
pub(crate) struct Config<St> {
    pub(crate) settings: Arc<Settings<St>>,
    pub(crate) tests: Vec<Test<St>>,
    /// The first-party visitor cookie (`HttpOnly`, `Secure`, `SameSite=Lax`,
    /// a year), when visitors get one.
    pub(crate) visitor_cookie: Option<SetCookie>,
}

pub(crate) struct Test<St> {
    pub(crate) name: Arc<str>,
    pub(crate) header: HeaderName,
    pub(crate) config: CachedDocument<St, Option<LoadedConfig>>,
}

impl<St> fmt::Debug for AbTestLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tests: Vec<&str> = self.settings.tests.iter().map(|t| t.0.as_str()).collect();
        f.debug_struct("AbTestLayer")
            .field("tests", &tests)
            .finish_non_exhaustive()
    }
}

/// The header a client may send to force variants when QA overrides are on.
pub const OVERRIDE_HEADER: HeaderName = HeaderName::from_static("x-ab-override");

fn parse_config(bytes: Option<&[u8]>) -> Result<Option<LoadedConfig>, String> {
    bytes
        .map(LoadedConfig::from_json)
        .transpose()
        .map_err(|e| e.to_string())
}

fn config_key(test: &str) -> String {
    format!("test:{test}:config")
}

/// Why [`AbTestLayer::set_config`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetConfigError {
    /// The config is invalid; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidTestConfig),
    /// The store refused the write (too large, …): nothing was written.
    #[error(transparent)]
    Store(StoreError),
    /// The store became unavailable during the write: the config may or may
    /// not have been written. This process reads the test's config again
    /// on its next request; check, then retry.
    #[error("test config write outcome unknown: {0}")]
    OutcomeUnknown(StoreError),
}

impl<St: KvStore> AbTestLayer<St> {
    /// A/B tests with state in `store`, assigned per `identity` (e.g.
    /// `Identity::User`); requests without one are identified by a
    /// first-party visitor cookie (`ab_visitor`) the layer sets.
    pub fn new(store: St, identity: Identity) -> Self {
        Self {
            settings: Arc::new(Settings {
                store,
                tests: Vec::new(),
                user_check: UserSourceCheck::new("AbTestLayer", &identity),
                identity,
                visitor_cookie: Some("ab_visitor".into()),
                store_visitor_assignments: false,
                assignment_ttl: Duration::from_secs(30 * 86_400),
                config_ttl: Duration::from_secs(3600),
                clock: Clock::system(),
                echo: false,
                exposure: None,
                qa_key: None,
            }),
            runtime: Arc::default(),
        }
    }

    fn set(mut self, change: impl FnOnce(&mut Settings<St>)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self.runtime = Arc::default();
        self
    }

    /// The config services run on, built once per configuration.
    fn runtime(&self) -> Arc<Config<St>> {
        self.runtime
            .get_or_init(|| {
                let settings = self.settings.clone();
                let tests = settings
                    .tests
                    .iter()
                    .map(|(name, header)| Test {
                        name: name.as_str().into(),
                        header: header.clone(),
                        config: CachedDocument::new(
                            settings.store.clone(),
                            config_key(name),
                            settings.config_ttl,
                            settings.clock.clone(),
                            parse_config,
                        ),
                    })
                    .collect();
                let visitor_cookie = settings.visitor_cookie.as_ref().map(|name| {
                    let cookie = Cookie::build((name.clone(), ""))
                        .http_only(true)
                        .secure(true)
                        .same_site(SameSite::Lax)
                        .path("/")
                        .max_age(cookie::time::Duration::days(365));
                    SetCookie::new(&cookie.build())
                });
                Arc::new(Config {
                    settings,
                    tests,
                    visitor_cookie,
                })
            })
            .clone()
    }

    /// Run test `name`, configured at `test:{name}:config`, its variant sent
    /// in the `x-variant-{name}` request header.
    ///
    /// # Panics
    ///
    /// If `name` makes an invalid header name.
    #[must_use]
    pub fn test(self, name: &str) -> Self {
        let header = HeaderName::try_from(format!("x-variant-{name}"))
            .expect("test names make header names");
        self.test_with_header(name, header)
    }

    /// Run test `name` with the variant in `header`.
    #[must_use]
    pub fn test_with_header(self, name: &str, header: HeaderName) -> Self {
        self.set(|s| s.tests.push((name.to_owned(), header)))
    }

    /// Read each test config at most once per `ttl` (default 3600 s), or
    /// again at once when another instance changes it (a store change
    /// notice, [`KvStore::watch`]).
    #[must_use]
    pub fn config_ttl(self, ttl: Duration) -> Self {
        self.set(|s| s.config_ttl = ttl)
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(self, clock: Clock) -> Self {
        self.set(|s| s.clock = clock)
    }

    /// Keep assignments this long (default 30 days).
    #[must_use]
    pub fn assignment_ttl(self, ttl: Duration) -> Self {
        self.set(|s| s.assignment_ttl = ttl)
    }

    /// The anonymous-visitor cookie's name, or `None` to leave requests
    /// without an identity in `control`.
    #[must_use]
    pub fn visitor_cookie(self, name: Option<&str>) -> Self {
        self.set(|s| s.visitor_cookie = name.map(str::to_owned))
    }

    /// Store anonymous visitors' assignments too (off by default). Without
    /// it a visitor's variant is the bucket of its cookie's id — the same on
    /// every request and instance, with no store I/O and no per-visitor
    /// storage — but a weight change may move visitors between variants;
    /// with it they stay put (one stored key per visitor and test, kept
    /// `assignment_ttl`). Identified users are always stored.
    #[must_use]
    pub fn store_visitor_assignments(self, store: bool) -> Self {
        self.set(|s| s.store_visitor_assignments = store)
    }

    /// Also send each variant on the response, with `Vary` on its header so
    /// caches keep variants apart.
    #[must_use]
    pub fn echo_response(self, echo: bool) -> Self {
        self.set(|s| s.echo = echo)
    }

    /// Call `hook` once per new assignment (awaited before the request
    /// continues: keep it quick, or spawn).
    #[must_use]
    pub fn on_exposure<F, Fut>(self, hook: F) -> Self
    where
        F: Fn(Exposure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.set(|s| s.exposure = Some(Arc::new(move |e| Box::pin(hook(e)))))
    }

    /// Let QA force variants with signed tokens in the `x-ab-override`
    /// header (off by default): `{test}={variant}.{hex HMAC-SHA256(secret, "{test}={variant}")}`,
    /// several separated by commas. Forced variants are not stored. A plain,
    /// unsigned header never changes anything.
    #[must_use]
    pub fn qa_override(self, secret: impl Into<Vec<u8>>) -> Self {
        self.set(|s| s.qa_key = Some(secret.into()))
    }

    /// Validates and stores `json` as the config of `test`, taking effect
    /// with this process's next request; other instances follow as soon as
    /// the store's change notice reaches them (within the config TTL at
    /// worst).
    pub async fn set_config(&self, test: &str, json: &[u8]) -> Result<(), SetConfigError> {
        TestConfig::from_json(json)?;
        // Other instances hear of the write (`KvStore::announce`).
        self.settings.store.announce(&config_key(test));
        let value = Bytes::copy_from_slice(json);
        let written = self
            .settings
            .store
            .put(&config_key(test), value, PutOptions::new())
            .await;
        // Written, or maybe written: the next request reads the store.
        if let Some(t) = self.runtime().tests.iter().find(|t| *t.name == *test) {
            t.config.invalidate();
        }
        written.map(drop).map_err(|e| match e.is_unavailable() {
            true => SetConfigError::OutcomeUnknown(e),
            false => SetConfigError::Store(e),
        })
    }

    /// The QA token forcing `variant` of `test`, for this layer's secret.
    pub fn override_token(&self, test: &str, variant: &str) -> Option<String> {
        let key = self.settings.qa_key.as_ref()?;
        Some(format!("{test}={variant}.{}", sign(key, test, variant)))
    }
}

/// The `test=variant` claims of an `x-ab-override` value whose HMAC
/// signature under `key` verifies; others are ignored (logged).
pub(crate) fn verified_overrides(key: &[u8], value: &[u8]) -> BTreeMap<String, Variant> {
    let mut forced = BTreeMap::new();
    for token in std::str::from_utf8(value).unwrap_or("").split(',') {
        let Some((claim, signature)) = token.trim().rsplit_once('.') else {
            continue;
        };
        let Some((test, variant)) = claim.split_once('=') else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(claim.as_bytes());
        let valid = hex::decode(signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok());
        match Variant::new(variant).filter(|_| valid) {
            Some(variant) => {
                forced.insert(test.to_owned(), variant);
            }
            None => tracing::warn!("invalid A/B override token ignored"),
        }
    }
    forced
}

fn sign(key: &[u8], test: &str, variant: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{test}={variant}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl<St: KvStore> Config<St> {
    /// Variants forced by valid QA tokens in `headers`, with the override
    /// header removed (it never reaches the handler). (The variant headers
    /// a client sends are replaced, every copy, when the layer sets them.)
    pub(crate) fn take_overrides(&self, headers: &mut HeaderMap) -> BTreeMap<String, Variant> {
        match (&self.settings.qa_key, headers.remove(OVERRIDE_HEADER)) {
            (Some(key), Some(value)) => verified_overrides(key, value.as_bytes()),
            _ => BTreeMap::new(),
        }
    }

    /// The variant of `test` for `identity`. No config, a bad config or a
    /// store failure: `control`.
    ///
    /// With `sticky`, the stored assignment when it is one of the current
    /// variants; else a new one, bucketed and written with a
    /// compare-and-swap against what was read (so concurrent first requests
    /// agree, and a corrupt or retired assignment is replaced). Without, the
    /// bucket alone decides: no store I/O.
    pub(crate) async fn assign(&self, test: &Test<St>, identity: &str, sticky: bool) -> Variant {
        let Some(doc) = test.config.current().await else {
            return Variant::control();
        };
        let Some(config) = doc.as_ref() else {
            return Variant::control();
        };
        let chosen = config.choose(bucket(&test.name, config.salt(), identity));
        if !sticky {
            return chosen.clone();
        }
        let store = &self.settings.store;
        let key = assignment_key(&test.name, identity);
        let current = match store.get(&key).await {
            Ok(entry) => entry,
            Err(e) => return unavailable(&test.name, &e),
        };
        if let Some(variant) = current.as_ref().and_then(|e| config.assigned(e)) {
            return variant.clone();
        }
        if current.is_some() {
            tracing::warn!(test = %test.name, "stored assignment is corrupt or no longer a variant: reassigning");
        }
        let ttl = PutOptions::new().ttl(self.settings.assignment_ttl);
        let expected = current.map(|e| e.version);
        let value = Bytes::copy_from_slice(chosen.name.as_bytes());
        match store.compare_and_swap(&key, expected, value, ttl).await {
            Ok(CasOutcome::Swapped(_)) => {
                self.report_exposure(test, &chosen.name, identity).await;
                chosen.clone()
            }
            // Another request assigned first: use what it stored.
            Ok(CasOutcome::Conflict) => match store.get(&key).await {
                Ok(Some(entry)) => config.assigned(&entry).unwrap_or(chosen).clone(),
                _ => chosen.clone(),
            },
            Err(e) => unavailable(&test.name, &e),
        }
    }

    /// [`assign`](Self::assign) without I/O, when it needs none: the
    /// config is cached and the store answers at once with a current
    /// assignment (or assignments are not stored). `None`: call `assign`.
    pub(crate) fn assign_now(
        &self,
        test: &Test<St>,
        identity: &str,
        sticky: bool,
    ) -> Option<Variant> {
        let Some(doc) = test.config.cached()? else {
            return Some(Variant::control());
        };
        let Some(config) = doc.as_ref() else {
            return Some(Variant::control());
        };
        if !sticky {
            let chosen = config.choose(bucket(&test.name, config.salt(), identity));
            return Some(chosen.clone());
        }
        let key = assignment_key(&test.name, identity);
        match self.settings.store.get_now(&key)? {
            // Absent, corrupt or retired: `assign` writes a new one.
            Ok(entry) => entry.and_then(|e| config.assigned(&e).cloned()),
            Err(e) => Some(unavailable(&test.name, &e)),
        }
    }

    async fn report_exposure(&self, test: &Test<St>, variant: &str, identity: &str) {
        count_exposure(&test.name, variant);
        if let Some(hook) = &self.settings.exposure {
            hook(Exposure {
                test: test.name.to_string(),
                variant: variant.to_owned(),
                identity: identity.to_owned(),
            })
            .await;
        }
    }
}

/// Counts a first exposure of a visitor to `variant` of `test`.
pub(crate) fn count_exposure(test: &str, variant: &str) {
    count!(metrics::ABTEST_EXPOSURES, 1, "test" => test.to_owned(), "variant" => variant.to_owned());
}

/// Where `identity`'s assignment in `test` is stored: a digest, never the identity.
fn assignment_key(test: &str, identity: &str) -> String {
    let mut key = String::with_capacity(test.len() + 43);
    key.push_str("test:");
    key.push_str(test);
    key.push_str(":user:");
    push_digest(&mut key, identity.as_bytes());
    key
}

fn unavailable(test: &str, error: &StoreError) -> Variant {
    tracing::warn!(test, error = %error, "assignment store unavailable: control");
    Variant::control()
}

impl<S, St: KvStore> Layer<S> for AbTestLayer<St> {
    type Service = AbTestService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AbTestService::from_parts(inner, self.runtime())
    }
}

#[cfg(test)]
mod tests {
    use super::{Variant, Variants};
    use std::sync::Arc;

    #[test]
    fn variants_are_by_test_name_whatever_the_layer_order() {
        let pair = |t: &str, v: &str| (Arc::from(t), Variant::new(v).unwrap());
        let variants = Variants::new(vec![
            pair("pricing", "b"),
            pair("checkout", "a"),
            pair("pricing", "b"),
        ]);
        let listed: Vec<_> = variants.iter().collect();
        assert_eq!(listed, [("checkout", "a"), ("pricing", "b")]);
        assert_eq!(variants.get("pricing"), Some("b"));
        assert_eq!(variants.get("missing"), None);
    }
}
