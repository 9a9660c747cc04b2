use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use sha2::Sha256;
use tower_layer::Layer;

use super::config::TestConfig;
use super::AbTest;
use crate::bucket::bucket;
use crate::identity::{digest, Identity};
use crate::store::{CachedDocument, KvStore, PutOptions};
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
#[derive(Clone)]
pub struct AbTestLayer<St> {
    pub(crate) config: Arc<Config<St>>,
}

pub(crate) struct Config<St> {
    pub(crate) store: St,
    pub(crate) tests: Vec<Test<St>>,
    pub(crate) identity: Identity,
    pub(crate) visitor_cookie: Option<String>,
    pub(crate) assignment_ttl: Duration,
    pub(crate) config_ttl: Duration,
    pub(crate) clock: Clock,
    pub(crate) echo: bool,
    pub(crate) exposure: Option<Hook>,
    pub(crate) qa_key: Option<Vec<u8>>,
}

pub(crate) struct Test<St> {
    pub(crate) name: String,
    pub(crate) header: HeaderName,
    pub(crate) config: CachedDocument<St, Option<TestConfig>>,
}

impl<St> fmt::Debug for AbTestLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tests: Vec<&str> = self.config.tests.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("AbTestLayer")
            .field("tests", &tests)
            .finish_non_exhaustive()
    }
}

/// The header a client may send to force variants when QA overrides are on.
pub const OVERRIDE_HEADER: HeaderName = HeaderName::from_static("x-ab-override");

fn parse_config(bytes: Option<&[u8]>) -> Result<Option<TestConfig>, String> {
    bytes.map(TestConfig::from_json).transpose()
}

impl<St: KvStore> AbTestLayer<St> {
    /// A/B tests with state in `store`, assigned per `identity` (e.g.
    /// `Identity::User`); requests without one are identified by a
    /// first-party visitor cookie (`ab_visitor`) the layer sets.
    pub fn new(store: St, identity: Identity) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                tests: Vec::new(),
                identity,
                visitor_cookie: Some("ab_visitor".into()),
                assignment_ttl: Duration::from_secs(30 * 86_400),
                config_ttl: Duration::from_secs(3600),
                clock: Clock::system(),
                echo: false,
                exposure: None,
                qa_key: None,
            }),
        }
    }

    fn config(&mut self) -> &mut Config<St> {
        Arc::get_mut(&mut self.config).expect("configure the layer before cloning it")
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
    pub fn test_with_header(mut self, name: &str, header: HeaderName) -> Self {
        let config = self.config();
        let cache = CachedDocument::new(
            config.store.clone(),
            format!("test:{name}:config"),
            config.config_ttl,
            config.clock.clone(),
            parse_config,
        );
        config.tests.push(Test {
            name: name.to_owned(),
            header,
            config: cache,
        });
        self
    }

    /// Read each test config at most once per `ttl` (default 3600 s, the
    /// seed's). Set before adding tests.
    #[must_use]
    pub fn config_ttl(mut self, ttl: Duration) -> Self {
        self.config().config_ttl = ttl;
        self
    }

    /// Read time from this clock (tests). Set before adding tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config().clock = clock;
        self
    }

    /// Keep assignments this long (default 30 days, the seed's).
    #[must_use]
    pub fn assignment_ttl(mut self, ttl: Duration) -> Self {
        self.config().assignment_ttl = ttl;
        self
    }

    /// The anonymous-visitor cookie's name, or `None` to leave requests
    /// without an identity in `control`.
    #[must_use]
    pub fn visitor_cookie(mut self, name: Option<&str>) -> Self {
        self.config().visitor_cookie = name.map(str::to_owned);
        self
    }

    /// Also send each variant on the response, with `Vary` on its header so
    /// caches keep variants apart.
    #[must_use]
    pub fn echo_response(mut self, echo: bool) -> Self {
        self.config().echo = echo;
        self
    }

    /// Call `hook` once per new assignment (awaited before the request
    /// continues: keep it quick, or spawn).
    #[must_use]
    pub fn on_exposure<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Exposure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.config().exposure = Some(Arc::new(move |e| Box::pin(hook(e))));
        self
    }

    /// Let QA force variants with signed tokens in the `x-ab-override`
    /// header (off by default): `{test}={variant}.{hex HMAC-SHA256(secret, "{test}={variant}")}`,
    /// several separated by commas. Forced variants are not stored. A plain,
    /// unsigned header never changes anything.
    #[must_use]
    pub fn qa_override(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.config().qa_key = Some(secret.into());
        self
    }

    /// Validates and stores `json` as the config of `test`, taking effect
    /// with this process's next request (other instances follow within the
    /// config TTL).
    pub async fn set_config(&self, test: &str, json: &[u8]) -> Result<(), String> {
        TestConfig::from_json(json)?;
        let key = format!("test:{test}:config");
        self.config
            .store
            .put(&key, Bytes::copy_from_slice(json), PutOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(t) = self.config.tests.iter().find(|t| t.name == test) {
            t.config.invalidate();
        }
        Ok(())
    }

    /// The QA token forcing `variant` of `test`, for this layer's secret.
    pub fn override_token(&self, test: &str, variant: &str) -> Option<String> {
        let key = self.config.qa_key.as_ref()?;
        Some(format!("{test}={variant}.{}", sign(key, test, variant)))
    }
}

fn sign(key: &[u8], test: &str, variant: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{test}={variant}").as_bytes());
    crate::identity::hex(&mac.finalize().into_bytes())
}

impl<St: KvStore> Config<St> {
    /// Variants forced by valid QA tokens in `headers`.
    pub(crate) fn overrides(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        let mut forced = BTreeMap::new();
        let (Some(key), Some(value)) = (&self.qa_key, headers.get(OVERRIDE_HEADER)) else {
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
            let valid = hex_bytes(signature).is_some_and(|sig| mac.verify_slice(&sig).is_ok());
            if valid && HeaderValue::from_str(variant).is_ok() {
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
        let control = || "control".to_owned();
        let Some(doc) = test.config.current().await else {
            return control();
        };
        let Some(config) = doc.as_ref() else {
            return control();
        };
        let key = format!("test:{}:user:{}", test.name, digest(identity.as_bytes()));
        match self.store.get(&key).await {
            Ok(Some(entry)) => match String::from_utf8(entry.value.to_vec()) {
                Ok(variant) if HeaderValue::from_str(&variant).is_ok() => return variant,
                _ => tracing::warn!(test = %test.name, "corrupt assignment: reassigning"),
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(test = %test.name, error = %e, "assignment store unavailable: control");
                return control();
            }
        }
        let variant = config
            .choose(bucket(&test.name, &config.salt, identity))
            .to_owned();
        let ttl = PutOptions::new().ttl(self.assignment_ttl);
        match self
            .store
            .insert_if_absent(&key, Bytes::from(variant.clone()), ttl)
            .await
        {
            Ok(Some(_)) => {
                if let Some(hook) = &self.exposure {
                    hook(Exposure {
                        test: test.name.clone(),
                        variant: variant.clone(),
                        identity: identity.to_owned(),
                    })
                    .await;
                }
                variant
            }
            // Another request assigned first: use what it stored.
            Ok(None) => match self.store.get(&key).await {
                Ok(Some(entry)) => String::from_utf8(entry.value.to_vec()).unwrap_or(variant),
                _ => variant,
            },
            Err(e) => {
                tracing::warn!(test = %test.name, error = %e, "assignment store unavailable: control");
                control()
            }
        }
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl<S, St> Layer<S> for AbTestLayer<St> {
    type Service = AbTest<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        AbTest::from_parts(inner, self.config.clone())
    }
}
