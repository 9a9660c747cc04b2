//! Feature flags and route gates on the shared store.
//!
//! All flags live in one JSON document (at `features:flags`:
//! `{"beta_feature": true, …}`), read through a process-local cache at most
//! once per `cache_ttl` (600 s by default). A flag is a boolean or a rule with
//! `enabled`, a deterministic percentage `rollout`, `allow`/`deny` lists of
//! targeting keys and an optional `variant` value.
//!
//! [`FeatureFlagsLayer`] puts the request's [`Flags`] in its extensions
//! (axum extractor with feature `axum`); [`FeatureFlagsLayer::gate`] builds a
//! layer that lets a request through only when a flag is on for it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer, Flag, Flags};
//! use tower_kv::identity::Identity;
//! use tower_kv::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flags = FeatureFlags::new(MemoryStore::new());
//! flags.set_flag("new_home", Flag::Bool(true)).await?;
//! let layer = FeatureFlagsLayer::new(flags, Identity::User.or(Identity::Cookie("visitor")));
//!
//! // Handlers read the request's flags (an axum extractor with feature `axum`).
//! let home = ServiceBuilder::new().layer(layer.clone()).service(service_fn(|req: Request<()>| async move {
//!     let flags = req.extensions().get::<Flags>().expect("the layer is outside");
//!     let page = if flags.is_enabled("new_home") { "new home" } else { "home" };
//!     Ok::<_, Infallible>(Response::builder().header("x-page", page).body(()).unwrap())
//! }));
//! let res = home.oneshot(Request::get("/").body(())?).await?;
//! assert_eq!(res.headers()["x-page"], "new home");
//!
//! // A gate: the route exists only while `beta` is on (else a 404, or a fallback service).
//! let beta = ServiceBuilder::new()
//!     .layer(layer.gate("beta"))
//!     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
//! let res = beta.oneshot(Request::get("/beta").body(())?).await?;
//! assert_eq!(res.status(), StatusCode::NOT_FOUND);
//! # Ok(())
//! # }
//! ```
//!
//! Evaluation never fails a request: a missing flag is off (reason
//! `Missing`); a malformed document or a store outage keeps the last good
//! document, and before one was ever loaded every flag is off (reason
//! `Error`). Writers use [`FeatureFlags::set_flag`] and friends, which
//! compare-and-swap the stored document so concurrent writers of different
//! flags both persist, and validate (unknown fields, rollout range).
//!
//! Rollouts bucket targeting keys with a stable SHA-256 hash (1/10,000
//! granularity), the same on every instance: raising a rollout keeps the
//! users already in.
//!
//! # Limits
//!
//! A document is at most [`MAX_DOCUMENT_BYTES`] of JSON with at most
//! [`MAX_FLAGS`] flags; names are 1 to [`MAX_NAME_BYTES`] bytes of ASCII
//! letters, digits, `_`, `-`, `.` and `:`; a rule's allow and deny lists
//! hold at most [`MAX_LIST_KEYS`] keys of at most [`MAX_KEY_BYTES`] bytes; a
//! variant is at most [`MAX_VARIANT_BYTES`] of JSON nested at most
//! [`MAX_VARIANT_DEPTH`] deep. Writes past a limit fail with
//! [`InvalidFlags::Limit`]; a stored document past one is treated as
//! malformed (the last good document stays in use).

mod document;
mod evaluator;
mod gate;
mod layer;
mod source;

pub use crate::future::ResponseFuture;
pub use document::{
    Evaluation, Flag, FlagDocument, InvalidFlags, Reason, Rule, MAX_DOCUMENT_BYTES, MAX_FLAGS,
    MAX_KEY_BYTES, MAX_LIST_KEYS, MAX_NAME_BYTES, MAX_VARIANT_BYTES, MAX_VARIANT_DEPTH,
};
pub use evaluator::Flags;
pub use gate::{Fallback, FlagGateLayer, FlagGateService, Respond};
pub use layer::{FeatureFlagsLayer, FeatureFlagsService};
pub use source::{FeatureFlags, FlagWriteError};
