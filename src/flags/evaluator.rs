use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::document::{Evaluation, FlagDocument, Reason};
use crate::metrics::{self, Counter};

/// The flags of one request, in request extensions: the document and the
/// request's targeting key. Cheap to clone.
///
/// ```
/// # fn handler(flags: tower_kv::flags::Flags) {
/// if flags.is_enabled("beta_feature") {
///     // the beta flow
/// }
/// let color: Option<String> = flags.variant("button_color");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Flags {
    /// The id of the layer that made them.
    origin: u64,
    doc: Option<Arc<FlagDocument>>,
    key: Option<String>,
}

impl Flags {
    pub(crate) fn new(origin: u64, doc: Option<Arc<FlagDocument>>, key: Option<String>) -> Self {
        Self { origin, doc, key }
    }

    /// The id of the [`FeatureFlagsLayer`](super::FeatureFlagsLayer) that made them.
    pub(crate) fn origin(&self) -> u64 {
        self.origin
    }

    /// Whether flag `name` is on for this request.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.evaluate(name).enabled
    }

    /// The full evaluation of flag `name`, with the reason (for debugging).
    pub fn evaluate(&self, name: &str) -> Evaluation {
        let (doc, key) = self.parts();
        evaluate(doc, key, name, None)
    }

    /// The document and the targeting key.
    pub(crate) fn parts(&self) -> (Option<&FlagDocument>, Option<&str>) {
        (self.doc.as_deref(), self.key.as_deref())
    }

    /// The variant value of flag `name` as `T`, when the flag is on for this
    /// request and has a variant of that type.
    pub fn variant<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let value = self.evaluate(name).variant?;
        serde_json::from_value(value).ok()
    }

    /// The targeting key flags were evaluated for, if the request had one.
    pub fn targeting_key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// Evaluates flag `name` of `doc` (`None`: no usable document) for the
/// targeting key `key`, counted on `own` (counters built for `name`, e.g. a
/// gate's) when the document defines the flag: no lookup in the
/// process-wide registry.
pub(crate) fn evaluate(
    doc: Option<&FlagDocument>,
    key: Option<&str>,
    name: &str,
    own: Option<&EvaluationCounters>,
) -> Evaluation {
    let (label, evaluation, own) = match doc.map(|doc| doc.flags.get_key_value(name)) {
        Some(Some((name, flag))) => (name.as_str(), flag.evaluate(name, key), own),
        // A name the document does not define is not a label: it may come from anywhere.
        Some(None) => ("(undefined)", Evaluation::off(Reason::Missing), None),
        None => ("(undefined)", Evaluation::off(Reason::Error), None),
    };
    record(label, &evaluation, own);
    evaluation
}

/// Counts and traces one evaluation; `flag` is a name the document
/// defines, `own` its counters if the caller keeps them.
fn record(flag: &str, evaluation: &Evaluation, own: Option<&EvaluationCounters>) {
    let reason = evaluation.reason.as_str();
    let value = if evaluation.enabled { "on" } else { "off" };
    match own {
        Some(counters) => counters.count(evaluation),
        None => count_evaluation(flag, evaluation),
    }
    let span = tracing::trace_span!("flag", flag, reason, value);
    span.in_scope(|| tracing::trace!("flag evaluated"));
}

/// One flag's evaluation counters, one per outcome (reason × off/on).
#[derive(Debug)]
pub(crate) struct EvaluationCounters(Box<[Counter]>);

impl EvaluationCounters {
    pub(crate) fn new(flag: &str) -> Self {
        let counters = Reason::ALL.iter().flat_map(|reason| {
            ["off", "on"].map(|value| {
                let labels = [
                    ("flag", flag),
                    ("reason", reason.as_str()),
                    ("value", value),
                ];
                Counter::new(metrics::FLAG_EVALUATIONS, &labels)
            })
        });
        Self(counters.collect())
    }

    fn count(&self, evaluation: &Evaluation) {
        let outcome = evaluation.reason as usize * 2 + usize::from(evaluation.enabled);
        self.0[outcome].increment(1);
    }
}

/// Counts `evaluation` of `flag` on counters built the first time the flag
/// is evaluated and kept for the process: flag names are the documents'
/// own, a bounded set.
#[cfg(feature = "metrics")]
fn count_evaluation(flag: &str, evaluation: &Evaluation) {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    type ByFlag =
        parking_lot::RwLock<HashMap<Box<str>, EvaluationCounters, foldhash::fast::RandomState>>;
    static BY_FLAG: OnceLock<ByFlag> = OnceLock::new();
    let by_flag = BY_FLAG.get_or_init(Default::default);
    if let Some(counters) = by_flag.read().get(flag) {
        return counters.count(evaluation);
    }
    let counters = EvaluationCounters::new(flag);
    by_flag
        .write()
        .entry(flag.into())
        .or_insert(counters)
        .count(evaluation);
}

#[cfg(not(feature = "metrics"))]
fn count_evaluation(_: &str, _: &Evaluation) {}
