use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::document::{Evaluation, FlagDocument, Reason};

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
        let Some(doc) = &self.doc else {
            return Evaluation::off(Reason::Error);
        };
        match doc.flags.get(name) {
            Some(flag) => flag.evaluate(name, self.key.as_deref()),
            None => Evaluation::off(Reason::Missing),
        }
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
