use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_LOCATION, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use http::response::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::entry::Entry;
use super::inflight::{self, Role};
use super::key::{align_host, Keyed, RequestKey};
use super::layer::CacheConfig;
use super::lease::{self, Lease, Turn};
use super::respond::from_entry;
use super::storage::Lookup;
use super::{reuse, storable, CacheControl, CacheStatus, Forward, Reuse};
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::service::{inner_accessors, layer_service, take_ready};
use crate::session::Session;
use crate::store::KvStore;

/// A response extension with which a handler sets how long its response is
/// cached when the response itself says nothing about freshness (instead of
/// the layer's default TTL). Extensions never reach the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtl(pub Duration);

/// The response header listing a response's purge tags, space separated
/// (the surrogate-key convention). Stripped before responses leave the cache.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// A response extension with which the service inside the cache says the
/// origin could not be reached (a proxy's 502 after a connection failure or
/// timeout): the cache may then answer with a stale response, as it does
/// when the inner service fails
/// ([`CacheLayer::serve_stale_if_unreachable`](super::CacheLayer::serve_stale_if_unreachable)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginUnreachable;

/// The `Cache-Status` field name (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The cache service; see [`CacheLayer`](super::CacheLayer).
#[derive(Clone, Debug)]
pub struct CacheService<S, St> {
    inner: S,
    config: Arc<CacheConfig<St>>,
}

impl<S, St> CacheService<S, St> {
    pub(crate) fn from_parts(inner: S, config: Arc<CacheConfig<St>>) -> Self {
        Self { inner, config }
    }

    inner_accessors!();
}

type Reply<B> = Response<ResponseBody<B>>;

layer_service! {
    impl<S, St: KvStore> CacheService<S, St>
    where [ResB: Body<Data = Bytes>, ResB::Error: std::fmt::Display]
    { future: S::Future, headers: (HeaderName, HeaderValue) }
    fn call(&mut self, mut req) {
        let config = self.config.clone();
        for name in &config.strip {
            req.headers_mut().remove(name);
        }
        align_host(&mut req);
        let strip = config
            .strip_targeted
            .then(|| config.policy.targeted.clone());
        let key = match RequestKey::of(&config, &req) {
            Keyed::Cache(key) => key,
            Keyed::Bypass => {
                // Neither served from nor stored in the cache.
                let status = CacheStatus::Forward {
                    reason: Forward::Bypass,
                    status: None,
                    stored: false,
                    collapsed: false,
                };
                let status = config.status_field(&status, None);
                let Some(strip) = strip else {
                    let future = self.inner.call(req);
                    return ResponseFuture::inner(future, Some((CACHE_STATUS, status)));
                };
                let mut inner = take_ready(&mut self.inner);
                return ResponseFuture::waiting(async move {
                    let mut res = inner.call(req).await?.map(ResponseBody::inner);
                    res.headers_mut().insert(CACHE_STATUS, status);
                    strip_fields(&mut res, &strip);
                    Ok(res)
                });
            }
            Keyed::Ambiguous => {
                let mut res = Response::new(ResponseBody::full("ambiguous host\n"));
                *res.status_mut() = StatusCode::BAD_REQUEST;
                return ResponseFuture::ready(res);
            }
        };
        let ctx = Ctx {
            config,
            key,
            method: req.method().clone(),
            session: req.extensions().get::<Session>().cloned(),
        };
        let read = ctx.method == Method::GET || ctx.method == Method::HEAD;
        // A fresh hit from a store that answers at once: no future to box.
        if let Some(mut res) = read.then(|| ctx.fresh_hit_now(&req)).flatten() {
            if let Some(strip) = strip {
                strip_fields(&mut res, &strip);
            }
            return ResponseFuture::ready(res);
        }
        let flow = Flow {
            inner: take_ready(&mut self.inner),
            ctx,
            _types: PhantomData,
        };
        ResponseFuture::waiting(async move {
            let mut res = match read {
                true => flow.serve(req).await?,
                // Boxed, like every way to the origin: a hit's future stays small.
                false => Box::pin(flow.forward_other_method(req)).await?,
            };
            if let Some(strip) = strip {
                strip_fields(&mut res, &strip);
            }
            Ok(res)
        })
    }
}

/// Removes the targeted cache-control fields meant for this cache alone.
fn strip_fields<B>(res: &mut Response<B>, fields: &[HeaderName]) {
    for field in fields {
        res.headers_mut().remove(field);
    }
}

/// One request's way through the cache: the steps that call the origin.
struct Flow<S, St, ReqB, ResB> {
    inner: S,
    ctx: Ctx<St>,
    _types: PhantomData<fn(ReqB) -> ResB>,
}

/// What every step knows of the request, and the steps that need no origin.
struct Ctx<St> {
    config: Arc<CacheConfig<St>>,
    key: RequestKey,
    method: Method,
    /// The session of a request that passed a session layer outside the
    /// cache: a response made after the handler used it is that user's alone.
    session: Option<Session>,
}

/// Why the origin is asked, and the stale entry the answer may refresh.
struct Miss {
    reason: Forward,
    stale: Option<Entry>,
}

impl<S, St, ReqB, ResB> Flow<S, St, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: std::fmt::Display,
{
    /// Methods other than `GET` and `HEAD` go to the origin; a successful
    /// unsafe one invalidates what is stored for its target and for
    /// same-origin `Location` / `Content-Location` (RFC 9111 §4.4).
    async fn forward_other_method(mut self, req: Request<ReqB>) -> Result<Reply<ResB>, S::Error> {
        let res = self.inner.call(req).await?;
        let succeeded = res.status().is_success() || res.status().is_redirection();
        if unsafe_method(&self.ctx.method) && succeeded {
            let config = &self.ctx.config;
            config.invalidate(&self.ctx.key.url_prefix()).await;
            config
                .invalidate_groups(&self.ctx.key.origin, res.headers())
                .await;
            for name in [LOCATION, CONTENT_LOCATION] {
                let uri = res
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok()?.parse::<Uri>().ok());
                let target =
                    uri.and_then(|uri| self.ctx.key.same_origin(&self.ctx.config.key_prefix, &uri));
                if let Some(primary) = target {
                    self.ctx.config.invalidate(&format!("{primary}|")).await;
                }
            }
        }
        let code = res.status().as_u16();
        let res = res.map(ResponseBody::inner);
        Ok(self
            .ctx
            .with_status(res, CacheStatus::forwarded(Forward::Method, code, false)))
    }

    /// `GET` and `HEAD`: a stored response when one may be reused, else the origin.
    async fn serve(self, req: Request<ReqB>) -> Result<Reply<ResB>, S::Error> {
        let request_cc = CacheControl::from_headers(req.headers());
        let miss = if request_cc.no_store {
            Miss {
                reason: Forward::Request,
                stale: None,
            }
        } else {
            match self.ctx.config.lookup(&self.ctx.key, req.headers()).await {
                Err(e) => {
                    tracing::warn!(error = %e, "cache store unavailable: bypassing the cache");
                    Miss {
                        reason: Forward::Bypass,
                        stale: None,
                    }
                }
                Ok(Lookup::Found(entry)) => {
                    return self.reuse_or_revalidate(req, *entry, &request_cc).await
                }
                Ok(Lookup::VaryMiss) => Miss {
                    reason: Forward::VaryMiss,
                    stale: None,
                },
                Ok(Lookup::UriMiss) => Miss {
                    reason: Forward::UriMiss,
                    stale: None,
                },
            }
        };
        Box::pin(self.go_forward(req, &request_cc, miss)).await
    }

    /// A stored response: served when fresh enough (RFC 9111 §4.2), served
    /// and refreshed in the background within `stale-while-revalidate`, or
    /// revalidated first.
    async fn reuse_or_revalidate(
        self,
        req: Request<ReqB>,
        entry: Entry,
        request_cc: &CacheControl,
    ) -> Result<Reply<ResB>, S::Error> {
        let age = entry.age(self.ctx.config.clock.now());
        match reuse(&entry.storable, age, request_cc) {
            Reuse::Fresh | Reuse::StaleAllowed => {
                Ok(self.ctx.answer_stored(&entry, req.headers(), age))
            }
            Reuse::StaleWhileRevalidate => {
                let res = self.ctx.answer_stored(&entry, req.headers(), age);
                self.revalidate_in_background(req, entry);
                Ok(res)
            }
            Reuse::Revalidate => {
                let reason = match request_cc.no_cache {
                    true => Forward::Request,
                    false => Forward::Stale,
                };
                let miss = Miss {
                    reason,
                    stale: Some(entry),
                };
                Box::pin(self.go_forward(req, request_cc, miss)).await
            }
        }
    }

    /// One background request per URL refreshes a stale entry.
    fn revalidate_in_background(self, req: Request<ReqB>, entry: Entry) {
        let refresh_key = format!("{}|swr", self.ctx.key.base());
        let Role::Leader(refreshing) = self.ctx.config.inflight.join_or_lead(&refresh_key) else {
            return;
        };
        let request_cc = CacheControl::from_headers(req.headers());
        tokio::spawn(async move {
            let _refreshing = refreshing;
            let miss = Miss {
                reason: Forward::Stale,
                stale: Some(entry),
            };
            if self.fetch(req, &request_cc, miss).await.is_err() {
                tracing::warn!("background revalidation failed");
            }
        });
    }

    /// To the origin, unless the request allows only stored responses.
    async fn go_forward(
        self,
        req: Request<ReqB>,
        request_cc: &CacheControl,
        miss: Miss,
    ) -> Result<Reply<ResB>, S::Error> {
        if request_cc.only_if_cached {
            let mut res = Response::new(ResponseBody::empty());
            *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            return Ok(res);
        }
        self.fetch(req, request_cc, miss).await
    }

    /// Asks the origin (once for concurrent misses of one URL), revalidating
    /// a stale entry when it has validators, and stores what may be stored.
    async fn fetch(
        mut self,
        mut req: Request<ReqB>,
        request_cc: &CacheControl,
        miss: Miss,
    ) -> Result<Reply<ResB>, S::Error> {
        let mut leader = match self.ctx.coalesce(req.headers(), &miss).await {
            Coalesced::Answered(res) => return Ok(*res),
            Coalesced::Fetch(leader) => leader,
        };
        let request_headers = req.headers().clone();
        let path = req.uri().path().to_owned();
        let revalidating = miss
            .stale
            .as_ref()
            .is_some_and(|entry| make_conditional(req.headers_mut(), entry));
        let request_time = self.ctx.config.clock.now();
        // The origin unreachable (the inner service failed, or said so):
        // a stale entry may answer.
        let res = match self.inner.call(req).await {
            Ok(res) => res,
            Err(e) => {
                let now = self.ctx.config.clock.now();
                let stale = miss
                    .stale
                    .as_ref()
                    .and_then(|entry| self.ctx.stale_if_unreachable(entry, &request_headers, now));
                return stale.ok_or(e);
            }
        };
        let times = (request_time, self.ctx.config.clock.now());
        if let (true, Some(entry), StatusCode::NOT_MODIFIED) =
            (revalidating, &miss.stale, res.status())
        {
            return Ok(self
                .ctx
                .refresh(entry, res.headers(), &request_headers, miss.reason, times)
                .await);
        }
        let stale = miss.stale.as_ref();
        if let Some(stale) = self
            .ctx
            .stale_instead(stale, &res, &request_headers, times.1)
        {
            return Ok(stale);
        }
        let stored = self
            .ctx
            .storable(&path, &request_headers, request_cc, &res, miss.reason);
        let Some(storable) = stored else {
            if let Some(lease) = leader.as_mut().and_then(|l| l.lease.as_mut()) {
                lease.nothing_stored();
            }
            let code = res.status().as_u16();
            let status = CacheStatus::forwarded(miss.reason, code, false);
            return Ok(self.ctx.with_status(res.map(ResponseBody::inner), status));
        };
        let fetched = Fetched {
            request_headers,
            times,
            storable,
            reason: miss.reason,
        };
        Ok(self.ctx.store_and_respond(res, fetched).await)
    }
}

impl<St> CacheConfig<St> {
    /// This cache's `Cache-Status` entry for a response about to be sent,
    /// disclosing `key` only when given; every one rendered is counted.
    fn status_field(&self, status: &CacheStatus, key: Option<&str>) -> HeaderValue {
        status.record(&self.name, &self.counters);
        status.header_value(&self.name, key)
    }
}

impl<St: KvStore> Ctx<St> {
    /// Whether the handler read or changed the session: its response is
    /// then that user's alone, whatever its headers say.
    fn depends_on_session(&self) -> bool {
        self.session.as_ref().is_some_and(Session::was_used)
    }

    fn status(&self, status: CacheStatus) -> HeaderValue {
        let key = self.config.expose_key.then_some(self.key.base());
        self.config.status_field(&status, key)
    }

    fn with_status<B>(&self, mut res: Reply<B>, status: CacheStatus) -> Reply<B> {
        res.headers_mut().insert(CACHE_STATUS, self.status(status));
        res
    }

    /// [`Flow::serve`]'s answer when it is a fresh stored response the
    /// store gives without waiting; `None`: ask `serve`.
    fn fresh_hit_now<B, ReqB>(&self, req: &Request<ReqB>) -> Option<Reply<B>> {
        let request_cc = CacheControl::from_headers(req.headers());
        if request_cc.no_store {
            return None;
        }
        let entry = self.config.lookup_now(&self.key, req.headers())?;
        let age = entry.age(self.config.clock.now());
        match reuse(&entry.storable, age, &request_cc) {
            Reuse::Fresh | Reuse::StaleAllowed => {
                Some(self.answer_stored(&entry, req.headers(), age))
            }
            Reuse::StaleWhileRevalidate | Reuse::Revalidate => None,
        }
    }

    fn answer_stored<B>(&self, entry: &Entry, request: &HeaderMap, age: Duration) -> Reply<B> {
        from_entry(
            entry,
            &self.method,
            request,
            age,
            self.status(entry.hit(age)),
        )
    }

    /// Concurrent misses of one URL: the first leads the fetch, the others
    /// wait for it (bounded) and answer from what it stored — in this
    /// process, then across the fleet (a lease in the store).
    async fn coalesce<B>(&self, request: &HeaderMap, miss: &Miss) -> Coalesced<B, St> {
        let coalesce = matches!(miss.reason, Forward::UriMiss | Forward::VaryMiss)
            && self.method == Method::GET;
        if !coalesce {
            return Coalesced::Fetch(None);
        }
        match self.config.inflight.join_or_lead(self.key.base()) {
            Role::Leader(inflight) => match self.fleet_turn(request, miss.reason).await {
                Ok(lease) => Coalesced::Fetch(Some(Leader {
                    _inflight: inflight,
                    lease,
                })),
                Err(answered) => Coalesced::Answered(answered),
            },
            Role::Follower(done) => {
                if !inflight::wait(done).await {
                    return Coalesced::Fetch(None);
                }
                match self.answer_collapsed(request, miss.reason).await {
                    Some(res) => Coalesced::Answered(Box::new(res)),
                    None => Coalesced::Fetch(None),
                }
            }
        }
    }

    /// This process's leader takes the fleet's turn: the lease (`Ok`), or
    /// the response another instance stored meanwhile (`Err`); fetching
    /// without a lease (`Ok(None)`) when the holder stored nothing, the
    /// lease's TTL ran out, or the store cannot say.
    async fn fleet_turn<B>(
        &self,
        request: &HeaderMap,
        reason: Forward,
    ) -> Result<Option<Lease<St>>, Box<Reply<B>>> {
        let Some(ttl) = self.config.fleet_lease else {
            return Ok(None);
        };
        let key = self.key.lease();
        let deadline = std::time::Instant::now() + ttl;
        loop {
            match lease::take(&self.config.store, &key, ttl).await {
                Turn::Mine(lease) => return Ok(Some(lease)),
                Turn::Anyone => return Ok(None),
                Turn::Theirs if std::time::Instant::now() >= deadline => return Ok(None),
                Turn::Theirs => {}
            }
            tokio::time::sleep(lease::POLL).await;
            if let Some(res) = self.answer_collapsed(request, reason).await {
                return Err(Box::new(res));
            }
        }
    }

    /// An answer from what a concurrent fetch stored, if it stored
    /// something usable.
    async fn answer_collapsed<B>(&self, request: &HeaderMap, reason: Forward) -> Option<Reply<B>> {
        let Ok(Lookup::Found(entry)) = self.config.lookup(&self.key, request).await else {
            return None;
        };
        let age = entry.age(self.config.clock.now());
        let status = CacheStatus::Forward {
            reason,
            status: Some(entry.status.as_u16()),
            stored: false,
            collapsed: true,
        };
        Some(from_entry(
            &entry,
            &self.method,
            request,
            age,
            self.status(status),
        ))
    }

    /// A 304 to a revalidation: the stored response, with the new headers,
    /// is fresh again (RFC 9111 §4.3.4).
    async fn refresh<B>(
        &self,
        entry: &Entry,
        new_headers: &HeaderMap,
        request_headers: &HeaderMap,
        reason: Forward,
        (request_time, response_time): (SystemTime, SystemTime),
    ) -> Reply<B> {
        let mut refreshed = entry.clone();
        for (name, value) in new_headers {
            if name != CONTENT_LENGTH {
                Arc::make_mut(&mut refreshed.headers).insert(name.clone(), value.clone());
            }
        }
        refreshed.request_time = request_time;
        refreshed.response_time = response_time;
        let policy = &self.config.policy;
        let still = match self.depends_on_session() {
            true => Err(super::NotStorable::Private),
            false => storable(
                &self.method,
                request_headers,
                refreshed.status,
                &refreshed.headers,
                policy,
            ),
        };
        if let Ok(storable) = &still {
            refreshed.storable = *storable;
            self.config
                .save(&self.key, request_headers, &refreshed)
                .await;
        }
        let age = refreshed.age(response_time);
        let status = self.status(CacheStatus::forwarded(reason, 304, still.is_ok()));
        from_entry(&refreshed, &self.method, request_headers, age, status)
    }

    /// An origin error within the stale entry's `stale-if-error` window
    /// serves the stale entry instead (RFC 5861 §4).
    fn stale_if_error<B>(
        &self,
        entry: &Entry,
        status: StatusCode,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Option<Reply<B>> {
        let age = entry.age(now);
        let staleness = age.saturating_sub(entry.storable.lifetime);
        let allowed = entry
            .storable
            .stale_if_error
            .is_some_and(|window| staleness <= window)
            && !entry.storable.must_revalidate;
        (status.is_server_error() && allowed).then(|| self.answer_stored(entry, request, age))
    }

    /// A stale entry that answers instead of the origin's response: the
    /// origin is unreachable (it said so), or failed within
    /// `stale-if-error`.
    fn stale_instead<B, R>(
        &self,
        stale: Option<&Entry>,
        res: &Response<R>,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Option<Reply<B>> {
        let entry = stale?;
        let unreachable = res.extensions().get::<OriginUnreachable>().is_some();
        let answer = unreachable
            .then(|| self.stale_if_unreachable(entry, request, now))
            .flatten();
        answer.or_else(|| self.stale_if_error(entry, res.status(), request, now))
    }

    /// The origin could not be reached: a stale entry within the configured
    /// staleness answers (RFC 9111 §4.2.4), said in `Cache-Status`, unless
    /// it must be revalidated (`must-revalidate`, `proxy-revalidate`,
    /// `s-maxage`, `no-cache`).
    fn stale_if_unreachable<B>(
        &self,
        entry: &Entry,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Option<Reply<B>> {
        let max_staleness = self.config.stale_if_unreachable?;
        let age = entry.age(now);
        let staleness = age.saturating_sub(entry.storable.lifetime);
        let forbidden = entry.storable.must_revalidate || entry.storable.no_cache;
        if forbidden || staleness > max_staleness {
            return None;
        }
        let status = match entry.hit(age) {
            CacheStatus::Hit { ttl, .. } => CacheStatus::Hit {
                ttl,
                detail: Some("origin-unreachable"),
            },
            other => other,
        };
        Some(from_entry(
            entry,
            &self.method,
            request,
            age,
            self.status(status),
        ))
    }

    /// Whether the origin's response may be stored, and how.
    fn storable<B>(
        &self,
        path: &str,
        request_headers: &HeaderMap,
        request_cc: &CacheControl,
        res: &Response<B>,
        reason: Forward,
    ) -> Option<super::Storable> {
        if self.method != Method::GET || request_cc.no_store || reason == Forward::Bypass {
            return None;
        }
        if self.depends_on_session() {
            return None;
        }
        // Per route, then per response (`CacheTtl`), a default TTL replaces the layer's.
        let mut policy = self.config.policy.clone();
        if let Some(ttl) = self.config.route_ttls.at(&self.method, path) {
            policy.default_ttl = Some(*ttl);
        }
        if let Some(CacheTtl(ttl)) = res.extensions().get::<CacheTtl>() {
            policy.default_ttl = Some(*ttl);
        }
        let declared = res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // A declared length over the limit is never buffered.
        if declared.is_some_and(|len| len > self.config.max_body) {
            return None;
        }
        storable(
            &self.method,
            request_headers,
            res.status(),
            res.headers(),
            &policy,
        )
        .ok()
    }

    /// Reads the body while it stays under the size limit, stores the
    /// response and answers with it; a body that grows past the limit (or
    /// has trailers) streams on unstored.
    async fn store_and_respond<B>(&self, res: Response<B>, fetched: Fetched) -> Reply<B>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let code = res.status().as_u16();
        let (mut parts, body) = res.into_parts();
        let body = match self.buffer(body).await {
            Buffered::Complete(body) => body,
            Buffered::TooLarge(body) => {
                let res = Response::from_parts(parts, body);
                return self.with_status(res, CacheStatus::forwarded(fetched.reason, code, false));
            }
            Buffered::Failed => {
                let mut res = Response::new(ResponseBody::empty());
                *res.status_mut() = StatusCode::BAD_GATEWAY;
                return res;
            }
        };
        let entry = fetched.entry(&parts, body.clone());
        self.config
            .save(&self.key, &fetched.request_headers, &entry)
            .await;
        parts.headers.remove(SURROGATE_KEY);
        let res = Response::from_parts(parts, ResponseBody::full(body));
        self.with_status(res, CacheStatus::forwarded(fetched.reason, code, true))
    }

    async fn buffer<B>(&self, body: B) -> Buffered<B>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let mut body = Box::pin(body);
        let mut frames = VecDeque::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::warn!(error = %e, "upstream body failed");
                    return Buffered::Failed;
                }
            };
            let data_len = frame.data_ref().map(|d| d.len() as u64);
            frames.push_back(frame);
            match data_len {
                Some(len) if size + len <= self.config.max_body => size += len,
                _ => return Buffered::TooLarge(ResponseBody::prefixed(frames, body)),
            }
        }
        let mut buffer = bytes::BytesMut::with_capacity(size as usize);
        for data in frames.into_iter().filter_map(|f| f.into_data().ok()) {
            buffer.extend_from_slice(&data);
        }
        Buffered::Complete(buffer.freeze())
    }
}

/// What request coalescing decided.
enum Coalesced<B, St: KvStore> {
    /// Another request's fetch answered this one.
    Answered(Box<Reply<B>>),
    /// Fetch from the origin, leading the concurrent misses when `Some`.
    Fetch(Option<Leader<St>>),
}

/// The request that fetches for the others: this process's and, with a
/// lease, the fleet's.
struct Leader<St: KvStore> {
    _inflight: inflight::InFlight,
    lease: Option<Lease<St>>,
}

/// A body read for storing.
enum Buffered<B> {
    Complete(Bytes),
    /// Past the limit (or with trailers): what was read, then the rest.
    TooLarge(ResponseBody<B>),
    Failed,
}

/// What the cache knows of an origin response it is about to store.
struct Fetched {
    request_headers: HeaderMap,
    times: (SystemTime, SystemTime),
    storable: super::Storable,
    reason: Forward,
}

impl Fetched {
    fn entry(&self, parts: &Parts, body: Bytes) -> Entry {
        Entry {
            status: parts.status,
            headers: Arc::new(parts.headers.clone()),
            body,
            request_time: self.times.0,
            response_time: self.times.1,
            storable: self.storable,
        }
    }
}

/// Turns a request into a revalidation of `entry` with its validators
/// (RFC 9111 §4.3.1), unless the client sent its own conditions; returns
/// whether it did.
fn make_conditional(request: &mut HeaderMap, entry: &Entry) -> bool {
    if request.contains_key(IF_NONE_MATCH) || request.contains_key(IF_MODIFIED_SINCE) {
        return false;
    }
    if let Some(etag) = entry.headers.get(ETAG) {
        request.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = entry.headers.get(LAST_MODIFIED) {
        request.insert(IF_MODIFIED_SINCE, modified.clone());
    }
    request.contains_key(IF_NONE_MATCH) || request.contains_key(IF_MODIFIED_SINCE)
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}
