//! Feature flags and route gates on the shared store.
//!
//! All flags live in one JSON document (the seed's `features:flags` →
//! `{"beta_feature": true, …}`), read through a process-local cache at most
//! once per `cache_ttl` (the seed's 600 s). A flag is a boolean or a rule with
//! `enabled`, a deterministic percentage `rollout`, `allow`/`deny` lists of
//! targeting keys and an optional `variant` value.
//!
//! [`FeatureFlagsLayer`] puts the request's [`Flags`] in its extensions
//! (axum extractor with feature `axum`); [`FeatureFlagsLayer::gate`] builds a
//! layer that lets a request through only when a flag is on for it.
//!
//! ```
//! use tower_kv::flags::{FeatureFlags, FeatureFlagsLayer};
//! use tower_kv::identity::Identity;
//! use tower_kv::store::MemoryStore;
//!
//! let flags = FeatureFlags::new(MemoryStore::new());
//! let layer = FeatureFlagsLayer::new(flags, Identity::User.or(Identity::Cookie("visitor")));
//! // The seed's switch: the beta handler when `beta_feature` is on, else the standard one.
//! let beta_gate = layer.gate("beta_feature"); // .fallback(standard_service)
//! # let _ = beta_gate;
//! ```
//!
//! Evaluation never fails a request: a missing flag is off (reason
//! `Missing`); a malformed document or a store outage keeps the last good
//! document, and before one was ever loaded every flag is off (reason
//! `Error`). Writers use [`FeatureFlags::set_flag`] and friends, which
//! compare-and-swap the stored document so concurrent writers of different
//! flags both persist, and validate (unknown fields, rollout range).
//! Rollouts use the shared [`bucket`](crate::bucket::bucket) function.

mod document;
mod evaluator;
mod gate;
mod layer;
mod source;

pub use crate::future::ResponseFuture;
pub use document::{Evaluation, Flag, FlagDocument, InvalidFlags, Reason, Rule};
pub use evaluator::Flags;
pub use gate::{Fallback, FlagGateLayer, FlagGateService, Respond};
pub use layer::{FeatureFlagsLayer, FeatureFlagsService};
pub use source::{FeatureFlags, FlagWriteError};
