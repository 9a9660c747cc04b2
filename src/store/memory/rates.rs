//! A shard's rate buckets, kept apart from its general entries.
//!
//! A bucket is a few integers rewritten on every request of its client, so
//! it lives inline beside its key in one hash table: no LRU node, no expiry
//! filing, no shared key. Expired buckets are dropped in one pass whenever
//! the table has doubled since the last pass; a table over its share of the
//! store drops the buckets closest to expiry (the ones that remember least).

use std::collections::HashMap;

use super::super::rate::Fields;
use super::super::Version;
use super::ENTRY_OVERHEAD;

/// Buckets the table holds before its first sweep for expired ones.
pub(super) const FIRST_SWEEP_AT: usize = 1024;

/// One rate bucket.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) state: Fields,
    pub(super) expires_at: u64,
    pub(super) version: Version,
}

impl Bucket {
    pub(super) fn is_live(&self, now: u64) -> bool {
        self.expires_at > now
    }
}

/// Bytes charged for a bucket: the same as a general entry of its size.
pub(super) fn charge(key: &str) -> usize {
    key.len() + 24 + ENTRY_OVERHEAD
}

#[derive(Debug, Default)]
pub(super) struct RateTable {
    buckets: HashMap<Box<str>, Bucket, foldhash::fast::RandomState>,
    bytes: usize,
    /// Table size after the last sweep for expired buckets.
    swept_at: usize,
}

impl RateTable {
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn live_count(&self, now: u64) -> usize {
        self.buckets.values().filter(|b| b.is_live(now)).count()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.buckets.keys().map(|k| &**k)
    }

    /// The bucket at `key`, expired or not.
    pub(super) fn get(&self, key: &str) -> Option<&Bucket> {
        self.buckets.get(key)
    }

    /// The live bucket at `key`, for an update in place.
    pub(super) fn live_mut(&mut self, key: &str, now: u64) -> Option<&mut Bucket> {
        self.buckets.get_mut(key).filter(|b| b.is_live(now))
    }

    /// Stores `bucket` at `key`; returns whether the key is new to the table.
    pub(super) fn insert(&mut self, key: &str, bucket: Bucket) -> bool {
        if let Some(current) = self.buckets.get_mut(key) {
            *current = bucket;
            return false;
        }
        self.bytes += charge(key);
        self.buckets.insert(key.into(), bucket);
        true
    }

    /// Whether the table has doubled since its last sweep.
    pub(super) fn due_for_sweep(&self) -> bool {
        self.buckets.len() >= (self.swept_at * 2).max(FIRST_SWEEP_AT)
    }

    /// Takes the bucket at `key` out of the table.
    pub(super) fn remove(&mut self, key: &str) -> Option<Bucket> {
        let bucket = self.buckets.remove(key)?;
        self.bytes -= charge(key);
        Some(bucket)
    }

    /// Drops every expired bucket, telling `forget` each key.
    pub(super) fn sweep(&mut self, now: u64, forget: impl FnMut(&str)) {
        self.drop_where(|b| !b.is_live(now), None, usize::MAX, forget);
        self.swept_at = self.buckets.len();
    }

    /// Frees room: drops the expired buckets and, if none were, the eighth
    /// closest to expiry (at least one), never `keep`, telling `forget`
    /// each key. Returns whether any was dropped.
    pub(super) fn shrink(
        &mut self,
        now: u64,
        keep: Option<&str>,
        mut forget: impl FnMut(&str),
    ) -> bool {
        if self.drop_where(|b| !b.is_live(now), keep, usize::MAX, &mut forget) > 0 {
            return true;
        }
        let mut expiries: Vec<u64> = (self.buckets.iter())
            .filter(|(key, _)| keep != Some(&***key))
            .map(|(_, b)| b.expires_at)
            .collect();
        if expiries.is_empty() {
            return false;
        }
        let nth = expiries.len() / 8;
        let threshold = *expiries.select_nth_unstable(nth).1;
        // Ties at the threshold must not take more than their share.
        self.drop_where(|b| b.expires_at <= threshold, keep, nth + 1, forget) > 0
    }

    fn drop_where(
        &mut self,
        drop: impl Fn(&Bucket) -> bool,
        keep: Option<&str>,
        max: usize,
        mut forget: impl FnMut(&str),
    ) -> usize {
        let (mut dropped, mut freed) = (0, 0);
        self.buckets.retain(|key, bucket| {
            if dropped == max || !drop(bucket) || keep == Some(&**key) {
                return true;
            }
            dropped += 1;
            freed += charge(key);
            forget(key);
            false
        });
        self.bytes -= freed;
        dropped
    }
}
