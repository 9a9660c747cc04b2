//! The session layer against every backend: `memory::*` and `redis::*`.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{Counting, Harness};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_kv::session::{Session, SessionLayer, SessionManager};
use tower_kv::store::{KvStore, PutOptions};
use tower_kv::Clock;
use tower_kv::ResponseBody;

type Reply = Response<ResponseBody<Full<Bytes>>>;

/// A tiny app: `GET /get/{k}`, `POST /set/{k}/{v}`, `POST /login/{user}`,
/// `POST /logout`, `POST /logout-then-set/{k}/{v}`, `POST /logout-all`, `POST /cycle`, `GET /slow-set/{k}`,
/// anything else ignores the session.
async fn handle(req: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let session = req.extensions().get::<Session>().unwrap().clone();
    let parts: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .skip(1)
        .map(str::to_owned)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let result = async {
        Ok::<String, tower_kv::session::SessionError>(
            match (req.method().clone(), parts.as_slice()) {
                (Method::GET, ["get", k]) => session
                    .get::<String>(k)
                    .await?
                    .unwrap_or_else(|| "none".into()),
                (Method::POST, ["set", k, v]) => {
                    session.insert(k, v.to_string()).await?;
                    "ok".into()
                }
                (Method::POST, ["fan-out", v]) => {
                    // Eight tasks load and change the one session at once.
                    let tasks: Vec<_> = (0..8)
                        .map(|i| {
                            let session = session.clone();
                            let v = v.to_string();
                            tokio::spawn(async move {
                                session.get::<String>("anything").await?;
                                session.insert(&format!("f{i}"), v).await
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task")?;
                    }
                    "ok".into()
                }
                (Method::POST, ["set-keep-handle", k, v]) => {
                    // A task holds a handle past the response.
                    session.insert(k, v.to_string()).await?;
                    let kept = session.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        drop(kept);
                    });
                    "ok".into()
                }
                (Method::POST, ["slow-set", k]) => {
                    // Load, wait so concurrent requests overlap, then change.
                    session.get::<String>("anything").await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    session.insert(k, "v").await?;
                    "ok".into()
                }
                (Method::POST, ["login", user]) => {
                    session.login(*user).await?;
                    "ok".into()
                }
                (Method::POST, ["logout"]) => {
                    session.destroy().await?;
                    "ok".into()
                }
                (Method::POST, ["logout-then-set", k, v]) => {
                    session.destroy().await?;
                    session.insert(k, v.to_string()).await?;
                    "ok".into()
                }
                (Method::POST, ["logout-all"]) => session.logout_everywhere().await?.to_string(),
                (Method::POST, ["cycle"]) => {
                    session.cycle_id().await?;
                    "ok".into()
                }
                _ => "untouched".into(),
            },
        )
    }
    .await;
    Ok(match result {
        Ok(body) => Response::new(Full::new(Bytes::from(body))),
        Err(_) => {
            let mut res = Response::new(Full::new(Bytes::from_static(b"unavailable")));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            res
        }
    })
}

fn app(
    layer: SessionLayer,
) -> impl Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone {
    ServiceBuilder::new().layer(layer).service_fn(handle)
}

/// One browser: remembers the session cookie it was given.
struct Client<S> {
    svc: S,
    cookie: Option<String>,
}

impl<S> Client<S>
where
    S: Service<Request<()>, Response = Reply, Error = Infallible, Future: Send> + Clone,
{
    fn new(svc: &S) -> Self {
        Self {
            svc: svc.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, method: Method, path: &str) -> (Reply, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("id={c}"));
        }
        let res = self
            .svc
            .clone()
            .oneshot(req.body(()).unwrap())
            .await
            .unwrap();
        for set in res.headers().get_all("set-cookie") {
            let value = set.to_str().unwrap();
            let id = value
                .strip_prefix("id=")
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            self.cookie = (!id.is_empty()).then(|| id.to_owned());
        }
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ResponseBody::full(bytes.clone())),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    async fn get(&mut self, key: &str) -> String {
        self.send(Method::GET, &format!("/get/{key}")).await.1
    }

    async fn post(&mut self, path: &str) -> Reply {
        self.send(Method::POST, path).await.0
    }
}

/// Whether the store holds a session record under `id`.
async fn stored<S: KvStore>(h: &Harness<S>, id: &str) -> bool {
    h.store
        .get(&format!("session:{id}"))
        .await
        .unwrap()
        .is_some()
}

fn layer<S: KvStore, St: KvStore>(h: &Harness<S>, store: St) -> SessionLayer {
    SessionLayer::new(store).clock(h.clock.clone().unwrap_or_else(Clock::system))
}

mod cases {
    use super::*;

    pub async fn lifecycle_is_lazy_and_secure<S: KvStore>(h: Harness<S>) {
        let store = Counting::new(h.store.clone());
        let svc = app(layer(&h, store.clone()));
        let mut client = Client::new(&svc);
        let (res, body) = client.send(Method::GET, "/other").await;
        assert_eq!(body, "untouched");
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(
            (store.reads(), store.writes()),
            (0, 0),
            "no store I/O for an untouched session"
        );
        assert_eq!(client.get("color").await, "none");
        assert!(
            client.cookie.is_none(),
            "reading creates nothing and sets no cookie"
        );
        assert_eq!(store.writes(), 0);

        let res = client.post("/set/color/blue").await;
        let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        assert_eq!(res.headers()["cache-control"], "private, no-store");
        assert_eq!(client.cookie.as_ref().unwrap().len(), 48, "192-bit hex id");
        assert_eq!(client.get("color").await, "blue");

        let before = (store.reads(), store.writes());
        let (res, _) = client.send(Method::GET, "/other").await;
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(
            (store.reads(), store.writes()),
            before,
            "a cookie alone causes no I/O"
        );
        let _ = client.get("color").await;
        assert_eq!(store.writes(), before.1, "reads write nothing");

        let id = client.cookie.clone().unwrap();
        let res = client.post("/logout").await;
        assert!(res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        assert!(client.cookie.is_none());
        assert!(!stored(&h, &id).await, "record deleted");
    }

    pub async fn idle_and_absolute_timeouts<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone())
            .idle_timeout(Duration::from_millis(400))
            .absolute_timeout(Duration::from_millis(1000))
            .renew_after(0.25));
        let mut idle = Client::new(&svc);
        idle.post("/set/k/v").await;
        h.advance(Duration::from_millis(550)).await;
        assert_eq!(idle.get("k").await, "none", "idle timeout");

        let mut busy = Client::new(&svc);
        busy.post("/set/k/v").await;
        for _ in 0..3 {
            h.advance(Duration::from_millis(250)).await;
            assert_eq!(busy.get("k").await, "v", "activity renews the idle timeout");
        }
        h.advance(Duration::from_millis(300)).await;
        assert_eq!(
            busy.get("k").await,
            "none",
            "absolute timeout, however active"
        );
    }

    pub async fn renewal_writes_only_after_its_interval<S: KvStore>(h: Harness<S>) {
        let store = Counting::new(h.store.clone());
        let svc = app(layer(&h, store.clone())
            .idle_timeout(Duration::from_millis(2000))
            .renew_after(0.5));
        let mut client = Client::new(&svc);
        client.post("/set/k/v").await;
        let writes = store.writes();
        h.advance(Duration::from_millis(300)).await;
        assert_eq!(client.get("k").await, "v");
        assert_eq!(store.writes(), writes, "no write before a renewal is due");
        h.advance(Duration::from_millis(900)).await;
        assert_eq!(client.get("k").await, "v");
        assert_eq!(store.writes(), writes + 1, "one renewal write");
        h.advance(Duration::from_millis(1500)).await;
        assert_eq!(
            client.get("k").await,
            "v",
            "renewal extended the idle timeout"
        );
    }

    pub async fn ids_are_never_adopted_and_cycle_on_login<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut attacker_chosen = Client::new(&svc);
        let planted = "ab".repeat(24);
        attacker_chosen.cookie = Some(planted.clone());
        attacker_chosen.post("/set/k/v").await;
        let issued = attacker_chosen.cookie.clone().unwrap();
        assert_ne!(issued, planted, "a pre-set id is not adopted");
        assert!(!stored(&h, &planted).await);

        attacker_chosen.post("/login/alice").await;
        let after_login = attacker_chosen.cookie.clone().unwrap();
        assert_ne!(after_login, issued, "login gives a new id");
        assert_eq!(
            attacker_chosen.get("k").await,
            "v",
            "data survives the new id"
        );
        let mut old = Client::new(&svc);
        old.cookie = Some(issued);
        assert_eq!(old.get("k").await, "none", "the old id is dead");

        attacker_chosen.post("/cycle").await;
        assert_ne!(attacker_chosen.cookie.clone().unwrap(), after_login);
        assert_eq!(attacker_chosen.get("k").await, "v");
    }

    pub async fn concurrent_writes_both_persist<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/set/start/1").await;
        let cookie = client.cookie.clone();
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let mut c = Client::new(&svc);
                c.cookie = cookie.clone();
                tokio::spawn(async move { c.post(&format!("/slow-set/k{i}")).await.status() })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.await.unwrap(), StatusCode::OK);
        }
        for i in 0..10 {
            assert_eq!(client.get(&format!("k{i}")).await, "v", "k{i} lost");
        }
        assert_eq!(client.get("start").await, "1");
    }

    pub async fn setters_after_manager_reach_it<S: KvStore>(h: Harness<S>) {
        let layer = layer(&h, h.store.clone());
        // A copy of the handle, as app state holds one, follows too.
        let manager = layer.manager().clone();
        // Any setter after taking the handle: no panic, and the handle follows.
        let layer = layer
            .key_prefix("late-session:")
            .idle_timeout(std::time::Duration::from_secs(600));
        let svc = app(layer);
        let mut client = Client::new(&svc);
        client.post("/login/erin").await;
        assert_eq!(manager.count_user_sessions("erin").await.unwrap(), 1);
        let stored = h
            .store
            .list(tower_kv::store::ListOptions::prefix("late-session:"))
            .await
            .unwrap();
        assert!(!stored.keys.is_empty(), "records under the late prefix");
    }

    pub async fn logout_everywhere_ends_every_device<S: KvStore>(h: Harness<S>) {
        let layer = layer(&h, h.store.clone());
        let manager: SessionManager = layer.manager();
        let svc = app(layer);
        let mut devices: Vec<_> = (0..3).map(|_| Client::new(&svc)).collect();
        for d in &mut devices {
            d.post("/set/k/v").await;
            d.post("/login/alice").await;
        }
        let mut bob = Client::new(&svc);
        bob.post("/login/bob").await;
        bob.post("/set/k/v").await;
        assert_eq!(manager.count_user_sessions("alice").await.unwrap(), 3);

        let (_, ended) = devices[0].send(Method::POST, "/logout-all").await;
        assert_eq!(ended, "3");
        for d in &mut devices[1..] {
            assert_eq!(d.get("k").await, "none");
        }
        assert_eq!(bob.get("k").await, "v", "other users keep their sessions");
        assert_eq!(manager.count_user_sessions("alice").await.unwrap(), 0);
        assert_eq!(manager.revoke_user("bob").await.unwrap(), 1);
        assert_eq!(bob.get("k").await, "none");
    }

    pub async fn bad_input_means_no_session_never_an_error<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/set/k/v").await;
        let good = client.cookie.clone().unwrap();
        let cases = [
            "id=not-an-id".to_owned(),
            format!("id={}", "a".repeat(10_000)),
            format!("id={good}; id={good}"),
            format!("other=1; id={good}x"),
            "id=%zz;;;=;id".to_owned(),
        ];
        for cookie in &cases {
            let req = Request::get("/get/k")
                .header("cookie", cookie)
                .body(())
                .unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{cookie:.40}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "none", "{cookie:.40}");
        }
        // A corrupt record is no session, and is not resurrected by a write.
        h.store
            .put(
                &format!("session:{good}"),
                Bytes::from_static(b"{garbage"),
                PutOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(client.get("k").await, "none");
        client.post("/set/k/w").await;
        assert_ne!(
            client.cookie.as_deref(),
            Some(good.as_str()),
            "a fresh session replaces it"
        );
        assert_eq!(client.get("k").await, "w");
    }

    pub async fn a_handle_kept_past_the_response_does_not_stop_the_save<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/set-keep-handle/k/v").await;
        assert!(client.cookie.is_some(), "a new session, its cookie sent");
        assert_eq!(client.get("k").await, "v");
        client.post("/set-keep-handle/k/w").await;
        assert_eq!(client.get("k").await, "w", "an update saved too");
    }

    pub async fn tasks_sharing_a_session_all_land_their_changes<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/fan-out/a").await;
        for i in 0..8 {
            assert_eq!(
                client.get(&format!("f{i}")).await,
                "a",
                "new session, key f{i}"
            );
        }
        client.post("/fan-out/b").await;
        for i in 0..8 {
            assert_eq!(client.get(&format!("f{i}")).await, "b", "update, key f{i}");
        }
    }

    pub async fn an_update_never_resurrects_a_deleted_session<S: KvStore>(h: Harness<S>) {
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/set/k/v").await;
        let mut slow = Client::new(&svc);
        slow.cookie = client.cookie.clone();
        // The slow request loads the session, then logout lands before it saves.
        let pending = tokio::spawn(async move { slow.post("/slow-set/late").await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let id = client.cookie.clone().unwrap();
        client.post("/logout").await;
        let res = pending.await.unwrap();
        assert!(
            res.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0"),
            "told to forget"
        );
        assert!(!stored(&h, &id).await, "not resurrected");
    }

    pub async fn a_change_after_logout_starts_a_new_session<S: KvStore>(h: Harness<S>) {
        // Logging out, then setting a value (a "signed out" notice, say), in
        // one request: the old session and its user end; the value goes to
        // a new session under a new id.
        let svc = app(layer(&h, h.store.clone()));
        let mut client = Client::new(&svc);
        client.post("/set/secret/s3").await;
        client.post("/login/alice").await;
        let old = client.cookie.clone().unwrap();
        client.post("/logout-then-set/notice/bye").await;
        let new = client.cookie.clone().expect("a new session was issued");
        assert_ne!(new, old, "the old id is not kept");
        assert!(!stored(&h, &old).await, "the old record is deleted");
        assert_eq!(client.get("notice").await, "bye");
        assert_eq!(client.get("secret").await, "none", "old values are gone");
        let manager = layer(&h, h.store.clone()).manager();
        assert_eq!(
            manager.count_user_sessions("alice").await.unwrap(),
            0,
            "the user is signed out"
        );
        let mut stale = Client::new(&svc);
        stale.cookie = Some(old);
        assert_eq!(stale.get("secret").await, "none", "the old id is dead");
    }

    pub async fn header_signed_and_prefixed_transports<S: KvStore>(h: Harness<S>) {
        use tower_kv::session::{CookieConfig, Key, Transport};
        // Header mode: the id travels in `x-session`.
        let svc = app(layer(&h, h.store.clone()).transport(Transport::Header(
            http::HeaderName::from_static("x-session"),
        )));
        let res = svc
            .clone()
            .oneshot(Request::post("/set/k/v").body(()).unwrap())
            .await
            .unwrap();
        let id = res.headers()["x-session"].to_str().unwrap().to_owned();
        assert!(res.headers().get("set-cookie").is_none());
        let req = Request::get("/get/k")
            .header("x-session", &id)
            .body(())
            .unwrap();
        let body = svc
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "v");
        // Bearer mode.
        let svc = app(layer(&h, h.store.clone()).transport(Transport::Bearer));
        let res = svc
            .clone()
            .oneshot(Request::post("/set/k/b").body(()).unwrap())
            .await
            .unwrap();
        let token = res.headers()["session-token"].to_str().unwrap().to_owned();
        let req = Request::get("/get/k")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let body = svc
            .oneshot(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "b");
        // Signed cookies: a tampered or unsigned id is ignored.
        let key = Key::generate();
        let svc = app(layer(&h, h.store.clone())
            .cookie(CookieConfig::default().name("__Host-sid").signed(key)));
        let res = svc
            .clone()
            .oneshot(Request::post("/set/k/s").body(()).unwrap())
            .await
            .unwrap();
        let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set.starts_with("__Host-sid=") && set.contains("Secure") && set.contains("Path=/"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap().to_owned();
        let get = |cookie: String| {
            let svc = svc.clone();
            async move {
                let req = Request::get("/get/k")
                    .header("cookie", cookie)
                    .body(())
                    .unwrap();
                svc.oneshot(req)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
            }
        };
        assert_eq!(get(pair.clone()).await, "s");
        let bare_id = &pair[pair.len() - 48..];
        assert_eq!(
            get(format!("__Host-sid={bare_id}")).await,
            "none",
            "unsigned id ignored"
        );
        let mut tampered = pair.clone().into_bytes();
        let i = "__Host-sid=".len() + 3;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            get(String::from_utf8(tampered).unwrap()).await,
            "none",
            "bad signature ignored"
        );
        // A prefix's rules win over conflicting setters, in any order.
        let svc = app(layer(&h, h.store.clone()).cookie(
            CookieConfig::default()
                .domain("example.com")
                .insecure()
                .name("__Host-x")
                .path("/app"),
        ));
        let req = Request::post("/set/k/v").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set.starts_with("__Host-x=") && set.contains("Secure") && set.ends_with("Path=/"),
            "{set}"
        );
        assert!(!set.contains("Domain") && !set.contains("/app"), "{set}");
    }

    pub async fn exposes_the_user_to_inner_layers<S: KvStore>(h: Harness<S>) {
        use tower_kv::identity::{Identity, UserId};
        use tower_kv::ratelimit::{Quota, RateLimitLayer};
        let plain = app(layer(&h, h.store.clone()));
        let (mut phone, mut laptop) = (Client::new(&plain), Client::new(&plain));
        phone.post("/login/alice").await;
        laptop.post("/login/alice").await;
        // Rate limiting by user inside the session layer: one bucket for
        // both devices of one user.
        let svc = ServiceBuilder::new()
            .layer(layer(&h, h.store.clone()).expose_user())
            .layer(
                RateLimitLayer::new(h.store.clone(), Identity::User)
                    .default_limit(Quota::per_minute(3)),
            )
            .service_fn(|req: Request<()>| async move {
                let user = req.extensions().get::<UserId>().map(|u| u.0.clone());
                Ok::<_, Infallible>(Response::new(user.unwrap_or_default()))
            });
        let call = |cookie: &Option<String>| {
            let req = Request::get("/")
                .header("cookie", format!("id={}", cookie.as_deref().unwrap_or("x")));
            svc.clone().oneshot(req.body(()).unwrap())
        };
        for device in [&phone.cookie, &laptop.cookie, &phone.cookie] {
            let res = call(device).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "alice");
        }
        let res = call(&laptop.cookie).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "the user's quota spans devices"
        );
        let res = call(&None).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "no session, no user: the limiter's policy"
        );
    }

    /// An expired session exposes no user, and its record is deleted, on
    /// the synchronous path (`MemoryStore`) as on the waiting one.
    pub async fn exposes_no_user_of_an_expired_session<S: KvStore>(h: Harness<S>) {
        use tower_kv::identity::UserId;
        let short = || layer(&h, h.store.clone()).idle_timeout(Duration::from_millis(400));
        let mut client = Client::new(&app(short()));
        client.post("/login/alice").await;
        let svc = ServiceBuilder::new()
            .layer(short().expose_user())
            .service_fn(|req: Request<()>| async move {
                let user = req.extensions().get::<UserId>().map(|u| u.0.clone());
                Ok::<_, Infallible>(Response::new(user.unwrap_or_default()))
            });
        let call = || {
            let cookie = format!("id={}", client.cookie.as_deref().unwrap());
            let req = Request::get("/").header("cookie", cookie);
            svc.clone().oneshot(req.body(()).unwrap())
        };
        let res = call().await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "alice");
        h.advance(Duration::from_millis(550)).await;
        let res = call().await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "",
            "expired: no user"
        );
        let stored = h
            .store
            .list(tower_kv::store::ListOptions::prefix("session:"))
            .await
            .unwrap();
        let records: Vec<_> = stored
            .keys
            .iter()
            .filter(|k| !k.name.contains("user:"))
            .map(|k| &k.name)
            .collect();
        assert!(
            records.is_empty(),
            "the expired record is deleted: {records:?}"
        );
    }
}

both_backends!(
    exposes_no_user_of_an_expired_session,
    setters_after_manager_reach_it,
    lifecycle_is_lazy_and_secure,
    idle_and_absolute_timeouts,
    renewal_writes_only_after_its_interval,
    ids_are_never_adopted_and_cycle_on_login,
    concurrent_writes_both_persist,
    logout_everywhere_ends_every_device,
    bad_input_means_no_session_never_an_error,
    a_handle_kept_past_the_response_does_not_stop_the_save,
    tasks_sharing_a_session_all_land_their_changes,
    an_update_never_resurrects_a_deleted_session,
    a_change_after_logout_starts_a_new_session,
    header_signed_and_prefixed_transports,
    exposes_the_user_to_inner_layers,
);
