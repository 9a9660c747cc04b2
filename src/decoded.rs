//! Values decoded recently from stored bytes, by store key, beside the
//! exact bytes they came from: a read that returns identical bytes reuses
//! the value instead of decoding again. Bytes, not versions, decide, so a
//! value is reused only when it is what the store holds, on any backend.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

/// Locks taken by concurrent requests are spread over this many shards.
const SHARDS: usize = 16;

/// One shard: by store key, the bytes last decoded and their value.
type Shard<T> = Mutex<LruCache<Box<str>, (Bytes, Arc<T>)>>;

/// The decoded values, in shards of least-recently-used caches.
pub(crate) struct Decoded<T> {
    shards: Box<[Shard<T>]>,
    hasher: foldhash::fast::RandomState,
}

impl<T> std::fmt::Debug for Decoded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded").finish_non_exhaustive()
    }
}

impl<T> Decoded<T> {
    /// Keeps about `capacity` values.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &str) -> &Shard<T> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// What `bytes`, stored at `key`, decode to with `parse`: the value
    /// kept for `key` when it came from identical bytes, else parsed now
    /// (and kept, with a copy of the bytes).
    pub(crate) fn decode<E>(
        &self,
        key: &str,
        bytes: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some((seen, value)) = self.shard(key).lock().get(key) {
            if seen[..] == *bytes {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(parse(bytes)?);
        self.remember(key, Bytes::copy_from_slice(bytes), value.clone());
        Ok(value)
    }

    /// Notes that `key` now holds `bytes`, which decode to `value`.
    pub(crate) fn remember(&self, key: &str, bytes: Bytes, value: Arc<T>) {
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            // Kept already (a session saved again): replaced in place, the
            // key's copy reused.
            Some(slot) => *slot = (bytes, value),
            None => {
                shard.put(key.into(), (bytes, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<String, std::str::Utf8Error> {
        std::str::from_utf8(bytes).map(str::to_owned)
    }

    #[test]
    fn reuses_only_identical_bytes() {
        let decoded = Decoded::new(100);
        let first = decoded.decode("k", b"one", parse).unwrap();
        let again = decoded
            .decode("k", b"one", |_| -> Result<String, std::str::Utf8Error> {
                panic!("decoded again")
            })
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = decoded.decode("k", b"two", parse).unwrap();
        assert_eq!(*other, "two", "other bytes: decoded again");
        assert!(decoded.decode("k", &[0xff], parse).is_err());
        assert_eq!(*decoded.decode("k", b"two", parse).unwrap(), "two");
    }

    #[test]
    fn keeps_about_its_capacity() {
        let decoded = Decoded::new(32);
        for i in 0..1_000 {
            decoded.decode(&i.to_string(), b"v", parse).unwrap();
        }
        let kept: usize = decoded.shards.iter().map(|s| s.lock().len()).sum();
        assert!(kept <= 32, "{kept}");
    }
}
