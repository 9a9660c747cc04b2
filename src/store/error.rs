/// Why a store operation failed.
///
/// Layers turn these into responses according to their fail-open /
/// fail-closed policy; none of them is ever a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key is the empty string.
    #[error("empty key")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`](crate::store::MAX_KEY_LEN) bytes.
    #[error("key of {len} bytes is longer than the limit of {max} bytes")]
    KeyTooLong {
        /// Length of the rejected key in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than the store's configured limit.
    #[error("value of {len} bytes for key {key:?} is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// The key written.
        key: String,
        /// Size of the rejected value in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An argument is out of range (zero TTL, zero burst, foreign cursor, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A counter operation found a value that is not a decimal integer, or would overflow.
    #[error("value at key {key:?} is not an integer counter, or the counter would overflow")]
    NotACounter {
        /// The key incremented.
        key: String,
    },
    /// The stored bytes are not what the caller expected (malformed JSON, …).
    #[error("cannot decode value at key {key:?}: {source}")]
    Decode {
        /// The key read.
        key: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A value could not be encoded before writing.
    #[error("cannot encode value for key {key:?}: {source}")]
    Encode {
        /// The key written.
        key: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read-change-write kept losing compare-and-swap races to concurrent
    /// writers and gave up (the change was not applied; retry later).
    #[error("key {key:?} changed concurrently {attempts} times in a row: change not applied")]
    Contention {
        /// The key updated.
        key: String,
        /// How many times the update was tried.
        attempts: usize,
    },
    /// The backend did not answer within the configured timeout.
    #[error("store operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The backend failed (connection refused, protocol error, …).
    #[error("store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the failure is the store being unreachable or slow (as opposed
    /// to a bad argument or bad data), i.e. whether a fail-open / fail-closed
    /// policy should apply.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Backend(_))
    }

    #[cfg(feature = "redis")]
    pub(crate) fn backend(msg: impl std::fmt::Display) -> Self {
        Self::Backend(msg.to_string().into())
    }
}
