use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, AGE, CONTENT_LENGTH, CONTENT_LOCATION, ETAG, HOST, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, LOCATION, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::entry::Entry;
use super::inflight::Role;
use super::layer::CacheConfig;
use super::{reuse, storable, CacheControl, CacheStatus, Forward, Reuse};
use crate::body::ResponseBody;
use crate::identity::digest;
use crate::store::{KvStore, ListOptions, PutOptions};

/// A response extension with which a handler sets how long its response is
/// cached when the response itself says nothing about freshness (instead of
/// the layer's default TTL). Extensions never reach the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtl(pub Duration);

/// The response header listing a response's purge tags, space separated
/// (the surrogate-key convention). Stripped before responses leave the cache.
pub const SURROGATE_KEY: http::header::HeaderName =
    http::header::HeaderName::from_static("surrogate-key");

fn tags(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .filter(|t| t.len() <= 128 && !t.contains(':'))
        .map(str::to_owned)
        .collect()
}

/// The `Cache-Status` field name (RFC 9211).
pub const CACHE_STATUS: http::header::HeaderName =
    http::header::HeaderName::from_static("cache-status");

/// The cache service; see [`CacheLayer`](super::CacheLayer).
#[derive(Clone, Debug)]
pub struct CacheService<S, St> {
    inner: S,
    config: Arc<CacheConfig<St>>,
}

/// The response future of [`CacheService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, St> CacheService<S, St> {
    pub(crate) fn from_parts(inner: S, config: Arc<CacheConfig<St>>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the cache, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// `scheme://host` of a request: the host always goes into the key.
fn origin(uri: &Uri, headers: &HeaderMap) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase)
        })
        .unwrap_or_default();
    format!("{}://{host}", uri.scheme_str().unwrap_or("http"))
}

/// `{prefix}{scheme}://{host}{path}?{query}`; long URIs become a digest so
/// keys stay within the store's limit.
fn key_for(prefix: &str, origin: &str, target: &str) -> String {
    let full = format!("{origin}{target}");
    if full.len() <= 400 {
        format!("{prefix}{full}")
    } else {
        format!("{prefix}#{}", digest(full.as_bytes()))
    }
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

/// The key of an absolute URL.
pub(crate) fn primary_key(prefix: &str, uri: &Uri) -> String {
    key_for(prefix, &origin(uri, &HeaderMap::new()), target(uri))
}

/// The request headers a stored response varies on, as one key suffix.
fn variant_suffix(names: &[String], request: &HeaderMap) -> String {
    let mut material = String::new();
    for name in names {
        material.push_str(name);
        material.push('\u{1f}');
        for value in request.get_all(name.as_str()) {
            material.push_str(&String::from_utf8_lossy(value.as_bytes()));
            material.push('\u{1e}');
        }
    }
    format!("|v|{}", digest(material.as_bytes()))
}

fn vary_names(response: &HeaderMap) -> Vec<String> {
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

impl<St: KvStore> CacheConfig<St> {
    fn join_or_lead(&self, key: &str) -> Role {
        self.inflight.join_or_lead(key)
    }

    fn status(&self, status: CacheStatus, key: &str) -> HeaderValue {
        status.header_value(&self.name, self.expose_key.then_some(key))
    }

    /// Looks up the variant for `request`: (`vary names known`, entry).
    async fn lookup(
        &self,
        primary: &str,
        request: &HeaderMap,
    ) -> Result<(bool, Option<Entry>), ()> {
        // Most responses do not vary: their one variant is looked up first,
        // so a hit costs one store read (one Redis round trip).
        let plain = format!("{primary}{}", variant_suffix(&[], request));
        if let Some(found) = self.store.get(&plain).await.map_err(drop)? {
            if let Some(entry) = Entry::decode(&found.value) {
                return Ok((true, Some(entry)));
            }
        }
        let index = self
            .store
            .get(&format!("{primary}|vary"))
            .await
            .map_err(drop)?;
        let Some(index) = index else {
            return Ok((false, None));
        };
        let names: Vec<String> = serde_json::from_slice(&index.value).unwrap_or_default();
        if names.is_empty() {
            return Ok((true, None));
        }
        let key = format!("{primary}{}", variant_suffix(&names, request));
        let entry = self.store.get(&key).await.map_err(drop)?;
        Ok((true, entry.and_then(|e| Entry::decode(&e.value))))
    }

    async fn save(&self, primary: &str, request: &HeaderMap, entry: &Entry) {
        let names = vary_names(&entry.headers);
        let ttl = entry.storable.lifetime
            + entry
                .storable
                .stale_while_revalidate
                .unwrap_or_default()
                .max(entry.storable.stale_if_error.unwrap_or_default())
            + Duration::from_secs(60);
        let options = PutOptions::new().ttl(ttl);
        let index = serde_json::to_vec(&names).expect("names serialize");
        let key = format!("{primary}{}", variant_suffix(&names, request));
        let saved = async {
            self.store
                .put(&format!("{primary}|vary"), index.into(), options.clone())
                .await?;
            if !names.is_empty() {
                // A varying response supersedes a non-varying one.
                self.store
                    .delete(&format!("{primary}{}", variant_suffix(&[], request)))
                    .await?;
            }
            for tag in tags(&entry.headers) {
                let tag_key = format!("{}tag:{tag}:{}", self.key_prefix, digest(key.as_bytes()));
                self.store
                    .put(&tag_key, key.clone().into(), options.clone())
                    .await?;
            }
            self.store.put(&key, entry.encode(), options).await
        };
        if let Err(e) = saved.await {
            tracing::warn!(error = %e, "response not cached: store unavailable");
        }
    }

    /// Deletes every stored variant of a URI (after an unsafe request).
    async fn invalidate(&self, primary: &str) {
        self.delete_prefix(&format!("{primary}|")).await;
    }

    /// Deletes every key under `prefix`; returns how many.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> usize {
        let mut deleted = 0;
        let mut cursor = None;
        loop {
            let Ok(page) = self
                .store
                .list(ListOptions::prefix(prefix).cursor(cursor))
                .await
            else {
                return deleted;
            };
            for key in &page.keys {
                deleted += usize::from(self.store.delete(&key.name).await.unwrap_or(false));
            }
            cursor = page.cursor;
            if cursor.is_none() {
                return deleted;
            }
        }
    }
}

/// Answers a request from a stored response: `Age`, `Cache-Status`, a 304
/// for a matching conditional request, no body for `HEAD`.
fn from_entry<B>(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    age: Duration,
    status: HeaderValue,
) -> Response<ResponseBody<B>> {
    let not_modified = match (request.get(IF_NONE_MATCH), entry.headers.get(ETAG)) {
        (Some(inm), Some(etag)) => etag_matches(inm, etag),
        (Some(_), None) => false,
        (None, _) => match (
            request.get(IF_MODIFIED_SINCE),
            entry.headers.get(LAST_MODIFIED),
        ) {
            (Some(ims), Some(lm)) => {
                let parse = |v: &HeaderValue| {
                    v.to_str()
                        .ok()
                        .and_then(|s| httpdate::parse_http_date(s).ok())
                };
                matches!((parse(ims), parse(lm)), (Some(ims), Some(lm)) if lm <= ims)
            }
            _ => false,
        },
    };
    let (code, body) = if not_modified && entry.status == StatusCode::OK {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if method == Method::HEAD {
        (entry.status, Bytes::new())
    } else {
        (entry.status, entry.body.clone())
    };
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = code;
    *res.headers_mut() = entry.headers.clone();
    res.headers_mut()
        .insert(AGE, HeaderValue::from(age.as_secs()));
    res.headers_mut().insert(CACHE_STATUS, status);
    if code == StatusCode::NOT_MODIFIED {
        res.headers_mut().remove(CONTENT_LENGTH);
    }
    res
}

/// Weak comparison of `If-None-Match` against an `ETag` (RFC 9110 §13.1.2).
fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    list.trim() == "*" || list.split(',').any(|t| strip(t) == strip(etag))
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for CacheService<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = self.config.clone();
        for name in &config.strip {
            req.headers_mut().remove(name);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let method = req.method().clone();
            let origin = origin(req.uri(), req.headers());
            let primary = match &config.key_fn {
                Some(key) => format!("{}{}", config.key_prefix, (key.0)(req.uri(), req.headers())),
                None if config.normalize_query => {
                    key_for(&config.key_prefix, &origin, &normalized_target(req.uri()))
                }
                None => key_for(&config.key_prefix, &origin, target(req.uri())),
            };
            if method != Method::GET && method != Method::HEAD {
                let res = inner.call(req).await?;
                let succeeded = res.status().is_success() || res.status().is_redirection();
                if unsafe_method(&method) && succeeded {
                    // RFC 9111 §4.4: the target URI, and same-origin
                    // Location / Content-Location.
                    config.invalidate(&primary).await;
                    for name in [LOCATION, CONTENT_LOCATION] {
                        let Some(uri) = res
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok()?.parse::<Uri>().ok())
                        else {
                            continue;
                        };
                        let same_origin = uri.authority().is_none()
                            || origin == self::origin(&uri, &HeaderMap::new());
                        if same_origin && uri.path().starts_with('/') {
                            config
                                .invalidate(&key_for(&config.key_prefix, &origin, target(&uri)))
                                .await;
                        }
                    }
                }
                let mut res = res.map(ResponseBody::inner);
                let status = CacheStatus::forwarded(Forward::Method, res.status().as_u16(), false);
                res.headers_mut()
                    .insert(CACHE_STATUS, config.status(status, &primary));
                return Ok(res);
            }
            let request_cc = CacheControl::from_headers(req.headers());
            let now = config.clock.now();
            let (reason, stale) = if request_cc.no_store {
                (Forward::Request, None)
            } else {
                match config.lookup(&primary, req.headers()).await {
                    Err(()) => (Forward::Bypass, None),
                    Ok((_, Some(entry))) => {
                        let age = entry.age(now);
                        match reuse(&entry.storable, age, &request_cc) {
                            Reuse::Fresh | Reuse::StaleAllowed => {
                                let status = config.status(entry.hit(age), &primary);
                                return Ok(from_entry(&entry, &method, req.headers(), age, status));
                            }
                            Reuse::StaleWhileRevalidate => {
                                // Serve the stale copy now; one background
                                // request per URI refreshes it.
                                let status = config.status(entry.hit(age), &primary);
                                let res = from_entry(&entry, &method, req.headers(), age, status);
                                if let Role::Leader(refreshing) =
                                    config.join_or_lead(&format!("{primary}|swr"))
                                {
                                    let config = config.clone();
                                    tokio::spawn(async move {
                                        let _refreshing = refreshing;
                                        let refreshed = fetch(
                                            inner,
                                            config,
                                            req,
                                            primary,
                                            method,
                                            request_cc,
                                            Forward::Stale,
                                            Some(entry),
                                        );
                                        if refreshed.await.is_err() {
                                            tracing::warn!("background revalidation failed");
                                        }
                                    });
                                }
                                return Ok(res);
                            }
                            Reuse::Revalidate => {
                                let forward = if request_cc.no_cache {
                                    Forward::Request
                                } else {
                                    Forward::Stale
                                };
                                (forward, Some(entry))
                            }
                        }
                    }
                    Ok((known, None)) => (
                        if known {
                            Forward::VaryMiss
                        } else {
                            Forward::UriMiss
                        },
                        None,
                    ),
                }
            };
            if request_cc.only_if_cached {
                let mut res = Response::new(ResponseBody::empty());
                *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                return Ok(res);
            }
            fetch(
                inner, config, req, primary, method, request_cc, reason, stale,
            )
            .await
        })
    }
}

/// Goes to the origin for a miss or a stale entry (revalidating it when it
/// has validators), stores what may be stored, and answers.
#[allow(clippy::too_many_arguments)]
async fn fetch<S, St, ReqB, ResB>(
    mut inner: S,
    config: Arc<CacheConfig<St>>,
    mut req: Request<ReqB>,
    primary: String,
    method: Method,
    request_cc: CacheControl,
    reason: Forward,
    stale: Option<Entry>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: KvStore,
    ResB: Body<Data = Bytes>,
    ResB::Error: std::fmt::Display,
{
    // Concurrent misses of one URI: one goes to the origin, the
    // others wait for it (bounded) and answer from what it stored.
    let coalesce = matches!(reason, Forward::UriMiss | Forward::VaryMiss) && method == Method::GET;
    let _leader = match coalesce.then(|| config.join_or_lead(&primary)) {
        Some(Role::Follower(done)) => {
            if super::inflight::wait(done).await {
                if let Ok((_, Some(entry))) = config.lookup(&primary, req.headers()).await {
                    let age = entry.age(config.clock.now());
                    let status = CacheStatus::Forward {
                        reason,
                        status: Some(entry.status.as_u16()),
                        stored: false,
                        collapsed: true,
                    };
                    let status = config.status(status, &primary);
                    return Ok(from_entry(&entry, &method, req.headers(), age, status));
                }
            }
            None
        }
        Some(Role::Leader(guard)) => Some(guard),
        None => None,
    };
    let request_headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    // A stale entry with validators is revalidated with a conditional request.
    let revalidating = match &stale {
        Some(entry)
            if !request_headers.contains_key(IF_NONE_MATCH)
                && !request_headers.contains_key(IF_MODIFIED_SINCE) =>
        {
            if let Some(etag) = entry.headers.get(ETAG) {
                req.headers_mut().insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = entry.headers.get(LAST_MODIFIED) {
                req.headers_mut()
                    .insert(IF_MODIFIED_SINCE, modified.clone());
            }
            req.headers().contains_key(IF_NONE_MATCH)
                || req.headers().contains_key(IF_MODIFIED_SINCE)
        }
        _ => false,
    };
    let request_time = config.clock.now();
    let res = inner.call(req).await?;
    let response_time = config.clock.now();
    let code = res.status().as_u16();
    if let (true, Some(entry), StatusCode::NOT_MODIFIED) = (revalidating, &stale, res.status()) {
        let mut refreshed = entry.clone();
        for (name, value) in res.headers() {
            if name != CONTENT_LENGTH {
                refreshed.headers.insert(name.clone(), value.clone());
            }
        }
        refreshed.request_time = request_time;
        refreshed.response_time = response_time;
        let stored = match storable(
            &method,
            &request_headers,
            refreshed.status,
            &refreshed.headers,
            &config.policy,
        ) {
            Ok(storable) => {
                refreshed.storable = storable;
                config.save(&primary, &request_headers, &refreshed).await;
                true
            }
            Err(_) => false,
        };
        let age = refreshed.age(response_time);
        let status = config.status(CacheStatus::forwarded(reason, 304, stored), &primary);
        return Ok(from_entry(
            &refreshed,
            &method,
            &request_headers,
            age,
            status,
        ));
    }
    // stale-if-error: an origin error within the window serves the stale copy.
    if let Some(entry) = &stale {
        let age = entry.age(response_time);
        let staleness = age.saturating_sub(entry.storable.lifetime);
        let allowed = entry
            .storable
            .stale_if_error
            .is_some_and(|w| staleness <= w)
            && !entry.storable.must_revalidate;
        if res.status().is_server_error() && allowed {
            let status = config.status(entry.hit(age), &primary);
            return Ok(from_entry(entry, &method, &request_headers, age, status));
        }
    }
    // A handler's `CacheTtl` replaces the default TTL for this response.
    let mut policy = config.policy;
    if let Some(route) = config.route_ttls.at(&method, &path) {
        policy.default_ttl = Some(*route.value);
    }
    if let Some(CacheTtl(ttl)) = res.extensions().get::<CacheTtl>() {
        policy.default_ttl = Some(*ttl);
    }
    let storable_response = (method == Method::GET && !request_cc.no_store)
        .then(|| {
            storable(
                &method,
                &request_headers,
                res.status(),
                res.headers(),
                &policy,
            )
            .ok()
        })
        .flatten();
    let declared = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // A declared length over the limit is never buffered; an unsized body is
    // read while it stays under the limit, then streamed on if it grows past it.
    let fits = declared.is_none_or(|len| len <= config.max_body);
    let (Some(storable_response), true) = (storable_response, fits && reason != Forward::Bypass)
    else {
        let mut res = res.map(ResponseBody::inner);
        res.headers_mut().insert(
            CACHE_STATUS,
            config.status(CacheStatus::forwarded(reason, code, false), &primary),
        );
        return Ok(res);
    };
    let (mut parts, body) = res.into_parts();
    let mut body = Box::pin(body);
    let mut frames = VecDeque::new();
    let mut size = 0u64;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let storable_frame = frame.data_ref().map(|d| d.len() as u64);
                frames.push_back(frame);
                match storable_frame {
                    Some(len) if size + len <= config.max_body => size += len,
                    // Too large, or trailers: not stored, streamed on untouched.
                    _ => {
                        let mut res =
                            Response::from_parts(parts, ResponseBody::prefixed(frames, body));
                        let status = CacheStatus::forwarded(reason, code, false);
                        res.headers_mut()
                            .insert(CACHE_STATUS, config.status(status, &primary));
                        return Ok(res);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "upstream body failed");
                let mut res = Response::new(ResponseBody::empty());
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(res);
            }
        }
    }
    let mut buffer = bytes::BytesMut::with_capacity(size as usize);
    for frame in frames {
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    let body = buffer.freeze();
    let entry = Entry {
        status: parts.status,
        headers: parts.headers.clone(),
        body: body.clone(),
        request_time,
        response_time,
        storable: storable_response,
    };
    config.save(&primary, &request_headers, &entry).await;
    parts.headers.remove(SURROGATE_KEY);
    let mut res = Response::from_parts(parts, ResponseBody::full(body));
    res.headers_mut().insert(
        CACHE_STATUS,
        config.status(CacheStatus::forwarded(reason, code, true), &primary),
    );
    Ok(res)
}
