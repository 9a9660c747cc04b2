use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

use super::record::Record;

/// How many decoded records a session layer keeps.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).expect("non-zero");

/// Records decoded (or written) recently, by store key, beside the exact
/// bytes they came from: a load that reads identical bytes reuses the
/// record instead of parsing the JSON again. Bytes, not versions, decide,
/// so a record is reused only when it is the stored one, whatever the backend.
pub(crate) struct DecodedRecords(Mutex<LruCache<Box<str>, Decoded>>);

/// The bytes a record was decoded from, and the record.
type Decoded = (Bytes, Arc<Record>);

impl DecodedRecords {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(LruCache::new(CAPACITY)))
    }

    /// The record `bytes` (stored at `key`) hold.
    pub(crate) fn decode(&self, key: &str, bytes: &Bytes) -> serde_json::Result<Arc<Record>> {
        if let Some((seen, record)) = self.0.lock().get(key) {
            if seen == bytes {
                return Ok(record.clone());
            }
        }
        let record = Arc::new(serde_json::from_slice::<Record>(bytes)?);
        self.remember(key, bytes.clone(), record.clone());
        Ok(record)
    }

    /// Notes that `key` now holds `bytes`, which encode `record`.
    pub(crate) fn remember(&self, key: &str, bytes: Bytes, record: Arc<Record>) {
        self.0.lock().put(key.into(), (bytes, record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_only_identical_bytes() {
        let decoded = DecodedRecords::new();
        let one = Bytes::from_static(br#"{"created":1,"seen":1,"data":{"n":1}}"#);
        let first = decoded.decode("k", &one).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &decoded.decode("k", &one.clone()).unwrap()
        ));
        let two = Bytes::from_static(br#"{"created":1,"seen":1,"data":{"n":2}}"#);
        let second = decoded.decode("k", &two).unwrap();
        assert_eq!(second.data["n"], 2, "other bytes: decoded again");
        assert!(decoded.decode("k", &Bytes::from_static(b"{")).is_err());
    }
}
