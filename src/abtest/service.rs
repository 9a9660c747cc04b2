use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use http::Request;

use super::config::Variant;
use super::layer::{count_exposure, Config, Variants};
use crate::body::ResponseBody;
use crate::future::{AddHeaders, ResponseFuture};
use crate::identity::{cookie_value, random_hex};
use crate::privacy::{add_vary, mark_private};
use crate::service::{inner_accessors, layer_service, take_ready};
use crate::store::KvStore;

/// The A/B service; see [`AbTestLayer`](super::AbTestLayer).
pub struct AbTestService<S, St> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S: Clone, St> Clone for AbTestService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for AbTestService<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbTestService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St> AbTestService<S, St> {
    pub(crate) fn from_parts(inner: S, config: Arc<Config<St>>) -> Self {
        Self { inner, config }
    }

    inner_accessors!();
}

/// Who a request is for assignment: its identity, or a visitor id (new
/// ones get a cookie on the response).
struct Visitor<'r> {
    /// Borrowed from the request when it is there as is.
    identity: Option<Cow<'r, str>>,
    arrival: Arrival,
}

/// What the layer keeps of a visitor once its variants are known.
struct Arrival {
    /// Whether assignments for it are stored (sticky across weight changes).
    sticky: bool,
    /// The `Set-Cookie` field of a new visitor's id.
    new_cookie: Option<HeaderValue>,
}

impl<St: KvStore> Config<St> {
    fn visitor<'r, B>(&self, req: &'r Request<B>) -> Visitor<'r> {
        let settings = &self.settings;
        if let Some(check) = &settings.user_check {
            check.check(req);
        }
        if let Some(id) = settings.identity.value_in(req) {
            return Visitor {
                identity: Some(id),
                arrival: Arrival {
                    sticky: true,
                    new_cookie: None,
                },
            };
        }
        // Anonymous visitors: the bucket of their cookie's id decides, and
        // is stored only when the layer asks for it.
        let sticky = settings.store_visitor_assignments;
        let cookie = settings.visitor_cookie.as_deref();
        match (
            cookie.and_then(|name| cookie_value(req, name)),
            &self.visitor_cookie,
        ) {
            (Some(id), _) => Visitor {
                identity: Some(Cow::Borrowed(id)),
                arrival: Arrival {
                    sticky,
                    new_cookie: None,
                },
            },
            (None, Some(set_cookie)) => {
                let id = random_hex(16);
                Visitor {
                    arrival: Arrival {
                        sticky,
                        new_cookie: set_cookie.with_value(&id),
                    },
                    identity: Some(Cow::Owned(id)),
                }
            }
            (None, None) => Visitor {
                identity: None,
                arrival: Arrival {
                    sticky: false,
                    new_cookie: None,
                },
            },
        }
    }

    /// What decides `test` for this request: a forced variant, `control`
    /// (no identity), or an assignment for the identity.
    fn pick<'a>(
        &self,
        test: &str,
        forced: &BTreeMap<String, Variant>,
        visitor: &'a Visitor<'_>,
    ) -> Pick<'a> {
        match (forced.get(test), visitor.identity.as_deref()) {
            (Some(v), _) => Pick::Decided(v.clone()),
            (None, Some(id)) => Pick::Assign(id),
            (None, None) => Pick::Decided(Variant::control()),
        }
    }

    /// Each test's variant for this request, by test (in test order).
    async fn variants(
        &self,
        forced: &BTreeMap<String, Variant>,
        visitor: &Visitor<'_>,
    ) -> Vec<(Arc<str>, Variant)> {
        let mut variants = Vec::with_capacity(self.tests.len());
        for test in &self.tests {
            let variant = match self.pick(&test.name, forced, visitor) {
                Pick::Decided(v) => v,
                Pick::Assign(id) => self.assign(test, id, visitor.arrival.sticky).await,
            };
            variants.push((test.name.clone(), variant));
        }
        variants
    }

    /// [`variants`](Self::variants) without I/O, when no test needs any.
    fn variants_now(
        &self,
        forced: &BTreeMap<String, Variant>,
        visitor: &Visitor<'_>,
    ) -> Option<Vec<(Arc<str>, Variant)>> {
        self.tests
            .iter()
            .map(|test| {
                let variant = match self.pick(&test.name, forced, visitor) {
                    Pick::Decided(v) => v,
                    Pick::Assign(id) => self.assign_now(test, id, visitor.arrival.sticky)?,
                };
                Some((test.name.clone(), variant))
            })
            .collect()
    }

    /// Puts the variants (by test, in test order) in the request (headers
    /// and [`Variants`]) and returns what its response gets.
    fn apply<B>(
        &self,
        variants: Vec<(Arc<str>, Variant)>,
        forced: &BTreeMap<String, Variant>,
        arrival: Arrival,
        req: &mut Request<B>,
    ) -> ResponseAdditions {
        let Arrival { sticky, new_cookie } = arrival;
        let mut echo = Vec::new();
        for (test, (_, variant)) in self.tests.iter().zip(&variants) {
            // A new visitor whose assignment is not stored is exposed now.
            if new_cookie.is_some() && !sticky && !forced.contains_key(&*test.name) {
                count_exposure(&test.name, &variant.name);
            }
            let span = tracing::debug_span!("abtest", test = %test.name, variant = %variant.name);
            span.in_scope(|| tracing::debug!("variant assigned"));
            if self.settings.echo {
                echo.push((test.header.clone(), variant.header.clone()));
            }
            // `insert`: any copy the client sent goes.
            req.headers_mut()
                .insert(test.header.clone(), variant.header.clone());
        }
        req.extensions_mut().insert(Variants::new(variants));
        ResponseAdditions { echo, new_cookie }
    }
}

impl Visitor<'_> {
    /// The same visitor, its identity copied out of the request.
    fn into_owned(self) -> Visitor<'static> {
        Visitor {
            identity: self.identity.map(|id| Cow::Owned(id.into_owned())),
            arrival: self.arrival,
        }
    }
}

/// How a test is decided for a request.
enum Pick<'a> {
    Decided(Variant),
    Assign(&'a str),
}

/// What the A/B layer adds to a response: the echoed variants (with
/// `Vary`) and a new visitor's cookie.
#[derive(Debug)]
pub struct ResponseAdditions {
    echo: Vec<(HeaderName, HeaderValue)>,
    new_cookie: Option<HeaderValue>,
}

impl AddHeaders for ResponseAdditions {
    fn add_to(self, headers: &mut HeaderMap) {
        for (name, value) in self.echo {
            add_vary(headers, &name);
            headers.insert(name, value);
        }
        if let Some(cookie) = self.new_cookie {
            // A response that sets the visitor's id is that visitor's alone.
            headers.append(SET_COOKIE, cookie);
            mark_private(headers, None, true);
        }
    }
}

layer_service! {
    impl<S, St: KvStore> AbTestService<S, St>
    { future: S::Future, headers: ResponseAdditions }
    fn call(&mut self, mut req) {
        let config = &self.config;
        // A client never chooses its variant: only a signed override
        // forces one, and `apply` replaces the variant headers it sent.
        let forced = config.take_overrides(req.headers_mut());
        let visitor = config.visitor(&req);
        // Config cached and assignments read without I/O: no future to box.
        if let Some(variants) = config.variants_now(&forced, &visitor) {
            let additions = config.apply(variants, &forced, visitor.arrival, &mut req);
            return ResponseFuture::inner(self.inner.call(req), Some(additions));
        }
        let visitor = visitor.into_owned();
        let config = config.clone();
        let mut inner = take_ready(&mut self.inner);
        ResponseFuture::waiting(async move {
            let variants = config.variants(&forced, &visitor).await;
            let additions = config.apply(variants, &forced, visitor.arrival, &mut req);
            let mut res = inner.call(req).await?.map(ResponseBody::inner);
            additions.add_to(res.headers_mut());
            Ok(res)
        })
    }
}
