use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::document::{Evaluation, FlagDocument, Reason};
use crate::metrics::{self, count};

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
    doc: Option<Arc<FlagDocument>>,
    key: Option<String>,
}

impl Flags {
    pub(crate) fn new(doc: Option<Arc<FlagDocument>>, key: Option<String>) -> Self {
        Self { doc, key }
    }

    /// Whether flag `name` is on for this request.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.evaluate(name).enabled
    }

    /// The full evaluation of flag `name`, with the reason (for debugging).
    pub fn evaluate(&self, name: &str) -> Evaluation {
        let (label, evaluation) = match self.doc.as_ref().map(|doc| doc.flags.get_key_value(name)) {
            Some(Some((name, flag))) => (name.as_str(), flag.evaluate(name, self.key.as_deref())),
            // A name the document does not define is not a label: it may come from anywhere.
            Some(None) => ("(undefined)", Evaluation::off(Reason::Missing)),
            None => ("(undefined)", Evaluation::off(Reason::Error)),
        };
        record(label, &evaluation);
        evaluation
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

/// Counts and traces one evaluation; `flag` is a name the document defines.
fn record(flag: &str, evaluation: &Evaluation) {
    let reason = evaluation.reason.as_str();
    let value = if evaluation.enabled { "on" } else { "off" };
    count!(metrics::FLAG_EVALUATIONS, 1, "flag" => flag, "reason" => reason, "value" => value);
    let span = tracing::trace_span!("flag", flag, reason, value);
    span.in_scope(|| tracing::trace!("flag evaluated"));
}
