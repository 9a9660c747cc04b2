use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{KvStore, PutOptions, ReadOptions, StoreError, Version};

/// Typed JSON helpers over any [`KvStore`].
///
/// Malformed JSON in the store is a [`StoreError::Decode`] naming the key.
pub trait KvStoreExt: KvStore {
    /// The value at `key` decoded from JSON, or `None` when absent.
    fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        self.get_json_with(key, ReadOptions::default())
    }

    /// [`get_json`](Self::get_json) with near-cache hints.
    fn get_json_with<T: DeserializeOwned>(
        &self,
        key: &str,
        options: ReadOptions,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        async move {
            match self.get_with(key, options).await? {
                Some(entry) => decode_json(key, &entry.value).map(Some),
                None => Ok(None),
            }
        }
    }

    /// Encodes `value` as JSON and writes it at `key`.
    fn put_json<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        async move {
            let bytes = encode_json(key, value)?;
            self.put(key, bytes.into(), options).await
        }
    }
}

impl<S: KvStore> KvStoreExt for S {}

/// Decodes JSON bytes read at `key`.
pub(crate) fn decode_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        key: key.to_owned(),
        source: Box::new(e),
    })
}

/// Encodes a value as JSON for writing at `key`.
pub(crate) fn encode_json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        key: key.to_owned(),
        source: Box::new(e),
    })
}
