//! A/B tests: sticky variant assignment, injected as request headers for
//! downstream handlers.
//!
//! [`AbTestLayer`] runs one or several tests configured at
//! `test:{name}:config` (`{"variants": [...], "weights": [...]}`,
//! read at most once per hour per process). Each request gets, per test, the
//! variant stored for its identity at `test:{name}:user:{digest}` — or a new
//! one chosen by a stable SHA-256 bucketing of the identity (1/10,000
//! granularity, the same on every instance) and stored with insert-if-absent for 30 days, so
//! concurrent first requests agree and later weight changes never reshuffle
//! assigned users.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_kv::abtest::AbTestLayer;
//! use tower_kv::identity::Identity;
//! use tower_kv::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Signed-in users by account, anonymous visitors by the `ab_visitor`
//! // cookie the layer sets.
//! let layer = AbTestLayer::new(MemoryStore::new(), Identity::User)
//!     .test("checkout") // handlers read the `x-variant-checkout` request header
//!     .echo_response(true);
//! layer.set_config("checkout", br#"{"variants": ["control", "one-click"], "weights": [0, 1]}"#).await?;
//! let app = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     assert_eq!(req.headers()["x-variant-checkout"], "one-click");
//!     Ok::<_, Infallible>(Response::new(()))
//! }));
//!
//! // A client-sent variant header is replaced by the assigned one.
//! let req = Request::get("/checkout").header("x-variant-checkout", "control").body(())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.headers()["x-variant-checkout"], "one-click"); // echoed, with Vary
//! assert!(res.headers()["set-cookie"].to_str()?.starts_with("ab_visitor="));
//! # Ok(())
//! # }
//! ```
//!
//! The variant header is the layer's alone: any copy the client sends is
//! removed first, so a client cannot pick its variant; QA can force one only
//! with a signed token ([`AbTestLayer::qa_override`], off by default). No
//! config, an invalid config, or a store failure mean `control` (logged) and
//! the request is served.

mod config;
#[cfg(fuzzing)]
pub(crate) mod fuzz {
    pub(crate) use super::config::LoadedConfig;
    pub(crate) use super::layer::verified_overrides;
}
mod layer;
mod service;

pub use crate::future::ResponseFuture;
pub use config::{InvalidTestConfig, TestConfig};
pub use layer::{AbTestLayer, Exposure, SetConfigError, Variants, OVERRIDE_HEADER};
pub use service::AbTestService;
