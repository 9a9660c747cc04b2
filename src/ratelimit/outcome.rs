//! How a request fared with the rate limiter, as metrics and traces name it.

use super::layer::Prepared;
use super::Quota;
use crate::metrics::{self, Counter};
use crate::store::RateDecision;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Allowed,
    Limited,
    ShadowLimited,
    AllowListed,
    DenyListed,
    /// The store failed and the policy let the request through.
    Bypassed,
    /// The store failed and the policy refused the request (503).
    StoreError,
}

const ALL: [Outcome; 7] = [
    Outcome::Allowed,
    Outcome::Limited,
    Outcome::ShadowLimited,
    Outcome::AllowListed,
    Outcome::DenyListed,
    Outcome::Bypassed,
    Outcome::StoreError,
];

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::ShadowLimited => "shadow_limited",
            Self::AllowListed => "allow_listed",
            Self::DenyListed => "deny_listed",
            Self::Bypassed => "bypassed",
            Self::StoreError => "store_error",
        }
    }
}

/// A route's decision counters, one per quota and outcome, built once.
#[derive(Debug)]
pub(crate) struct Counters(Box<[[Counter; ALL.len()]]>);

impl Counters {
    pub(crate) fn new(route: &str, quotas: &[Quota]) -> Self {
        let per_quota = |quota: &Quota| {
            ALL.map(|outcome| {
                let labels = [
                    ("route", route),
                    ("quota", quota.name()),
                    ("outcome", outcome.as_str()),
                ];
                Counter::new(metrics::RATELIMIT_DECISIONS, &labels)
            })
        };
        Self(quotas.iter().map(per_quota).collect())
    }
}

/// Counts the decision and traces it. A refused request counts under each
/// quota that refused it; any other outcome under each quota of the route.
pub(crate) fn record(prepared: &Prepared, outcome: Outcome, decision: Option<&RateDecision>) {
    let refusal = matches!(outcome, Outcome::Limited | Outcome::ShadowLimited);
    for (i, counters) in prepared.counters.0.iter().enumerate() {
        let refused = decision
            .and_then(|d| d.states.get(i))
            .is_some_and(|s| !s.allowed);
        if refusal && !refused {
            continue;
        }
        counters[outcome as usize].increment(1);
    }
    let span =
        tracing::debug_span!("ratelimit", route = %prepared.label, outcome = outcome.as_str());
    span.in_scope(|| tracing::debug!("rate-limit decision"));
}
