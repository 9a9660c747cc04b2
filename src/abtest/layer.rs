use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::HeaderName;
use http::HeaderMap;
use sha2::Sha256;
use tower_layer::Layer;

use super::config::{is_variant_name, InvalidTestConfig, TestConfig};
use super::AbTestService;
use crate::bucket::bucket;
use crate::identity::{digest, Identity, UserSourceCheck};
use crate::store::{CachedDocument, Entry, KvStore, PutOptions, StoreError};
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
pub struct Variants(pub(crate) BTreeMap<String, String>);

impl Variants {
    /// The variant of `test` for this request (`"control"` when the test is off).
    pub fn get(&self, test: &str) -> Option<&str> {
        self.0.get(test).map(String::as_str)
    }
}

/// Assigns each request a sticky variant of one or several A/B tests and
/// injects it as a request header. See the [module docs](super).
///
/// Setters may come in any order: each test's config cache is built when
/// the layer builds its service.
#[derive(Clone)]
pub struct AbTestLayer<St> {
    settings: Settings<St>,
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
    pub(crate) assignment_ttl: Duration,
    pub(crate) config_ttl: Duration,
    pub(crate) clock: Clock,
    pub(crate) echo: bool,
    pub(crate) exposure: Option<Hook>,
    pub(crate) qa_key: Option<Vec<u8>>,
}

/// What the services run on: the settings and each test's config cache.
pub(crate) struct Config<St> {
    pub(crate) settings: Settings<St>,
    pub(crate) tests: Vec<Test<St>>,
}

pub(crate) struct Test<St> {
    pub(crate) name: String,
    pub(crate) header: HeaderName,
    pub(crate) config: CachedDocument<St, Option<TestConfig>>,
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

fn parse_config(bytes: Option<&[u8]>) -> Result<Option<TestConfig>, String> {
    bytes
        .map(TestConfig::from_json)
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
    /// The store failed; the config may or may not have been written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<St: KvStore> AbTestLayer<St> {
    /// A/B tests with state in `store`, assigned per `identity` (e.g.
    /// `Identity::User`); requests without one are identified by a
    /// first-party visitor cookie (`ab_visitor`) the layer sets.
    pub fn new(store: St, identity: Identity) -> Self {
        Self {
            settings: Settings {
                store,
                tests: Vec::new(),
                user_check: UserSourceCheck::new("AbTestLayer", &identity),
                identity,
                visitor_cookie: Some("ab_visitor".into()),
                assignment_ttl: Duration::from_secs(30 * 86_400),
                config_ttl: Duration::from_secs(3600),
                clock: Clock::system(),
                echo: false,
                exposure: None,
                qa_key: None,
            },
            runtime: Arc::default(),
        }
    }

    fn set(mut self, change: impl FnOnce(&mut Settings<St>)) -> Self {
        change(&mut self.settings);
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
                        name: name.clone(),
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
                Arc::new(Config { settings, tests })
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

    /// Read each test config at most once per `ttl` (default 3600 s).
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
    /// with this process's next request (other instances follow within the
    /// config TTL).
    pub async fn set_config(&self, test: &str, json: &[u8]) -> Result<(), SetConfigError> {
        TestConfig::from_json(json)?;
        self.settings
            .store
            .put(
                &config_key(test),
                Bytes::copy_from_slice(json),
                PutOptions::new(),
            )
            .await?;
        if let Some(t) = self.runtime().tests.iter().find(|t| t.name == test) {
            t.config.invalidate();
        }
        Ok(())
    }

    /// The QA token forcing `variant` of `test`, for this layer's secret.
    pub fn override_token(&self, test: &str, variant: &str) -> Option<String> {
        let key = self.settings.qa_key.as_ref()?;
        Some(format!("{test}={variant}.{}", sign(key, test, variant)))
    }
}

fn sign(key: &[u8], test: &str, variant: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{test}={variant}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl<St: KvStore> Config<St> {
    /// Variants forced by valid QA tokens in `headers`.
    pub(crate) fn overrides(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        let mut forced = BTreeMap::new();
        let (Some(key), Some(value)) = (&self.settings.qa_key, headers.get(OVERRIDE_HEADER)) else {
            return forced;
        };
        for token in value.to_str().unwrap_or("").split(',') {
            let Some((claim, signature)) = token.trim().rsplit_once('.') else {
                continue;
            };
            let Some((test, variant)) = claim.split_once('=') else {
                continue;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(claim.as_bytes());
            let valid = hex::decode(signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok());
            if valid && is_variant_name(variant) {
                forced.insert(test.to_owned(), variant.to_owned());
            } else {
                tracing::warn!("invalid A/B override token ignored");
            }
        }
        forced
    }

    /// The sticky variant of `test` for `identity`: the stored assignment, or
    /// a new one (bucketed, written with insert-if-absent so concurrent first
    /// requests agree). No config, a bad config or a store failure: `control`.
    pub(crate) async fn assign(&self, test: &Test<St>, identity: &str) -> String {
        let Some(doc) = test.config.current().await else {
            return control();
        };
        let Some(config) = doc.as_ref() else {
            return control();
        };
        let settings = &self.settings;
        let key = format!("test:{}:user:{}", test.name, digest(identity.as_bytes()));
        match settings.store.get(&key).await {
            Ok(Some(entry)) => match stored_variant(&entry) {
                Some(variant) => return variant,
                None => tracing::warn!(test = %test.name, "corrupt assignment: reassigning"),
            },
            Ok(None) => {}
            Err(e) => return unavailable(&test.name, &e),
        }
        let variant = config
            .choose(bucket(&test.name, &config.salt, identity))
            .to_owned();
        let ttl = PutOptions::new().ttl(settings.assignment_ttl);
        match settings
            .store
            .insert_if_absent(&key, Bytes::from(variant.clone()), ttl)
            .await
        {
            Ok(Some(_)) => {
                if let Some(hook) = &settings.exposure {
                    hook(Exposure {
                        test: test.name.clone(),
                        variant: variant.clone(),
                        identity: identity.to_owned(),
                    })
                    .await;
                }
                variant
            }
            // Another request assigned first (or a corrupt value is in the
            // way): use what is stored when it is a variant name.
            Ok(None) => match settings.store.get(&key).await {
                Ok(Some(entry)) => stored_variant(&entry).unwrap_or(variant),
                _ => variant,
            },
            Err(e) => unavailable(&test.name, &e),
        }
    }
}

fn control() -> String {
    "control".to_owned()
}

fn unavailable(test: &str, error: &StoreError) -> String {
    tracing::warn!(test, error = %error, "assignment store unavailable: control");
    control()
}

/// A stored assignment, when it is a valid variant name.
fn stored_variant(entry: &Entry) -> Option<String> {
    std::str::from_utf8(&entry.value)
        .ok()
        .filter(|v| is_variant_name(v))
        .map(str::to_owned)
}

impl<S, St: KvStore> Layer<S> for AbTestLayer<St> {
    type Service = AbTestService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AbTestService::from_parts(inner, self.runtime())
    }
}
