//! Where a store key lives in Redis.
//!
//! One node: the entry at `{prefix}d:{key}`, the name index at `{prefix}i`.
//! A cluster: keys are spread over a fixed number of buckets, each with its
//! own hash tag — the entry at `{prefix}{b}d:{key}`, its bucket's index at
//! `{prefix}{b}i` — so every script touches a single hash slot and stays
//! one atomic round trip.
//!
//! A key's bucket follows Redis's own rule: the text inside the key's first
//! `{…}` (when non-empty) decides it, else the whole key. Keys that share a
//! hash tag share a bucket, so a caller can keep keys together (the layers
//! do, for one identity's rate-limit buckets and one user's sessions).

use super::StoreError;

/// The data prefix and index key of one bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) data_prefix: String,
    pub(crate) index: String,
}

/// How keys map to buckets.
#[derive(Debug)]
pub(crate) struct Layout {
    buckets: Vec<Bucket>,
}

impl Layout {
    /// One node: a single bucket without a hash tag.
    pub(crate) fn single(prefix: &str) -> Self {
        Self {
            buckets: vec![Bucket {
                data_prefix: format!("{prefix}d:"),
                index: format!("{prefix}i"),
            }],
        }
    }

    /// A cluster: `count` hash-tagged buckets.
    pub(crate) fn cluster(prefix: &str, count: u16) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::InvalidArgument(format!(
                "cluster key prefix {prefix:?} contains a brace: it would decide every key's hash slot"
            )));
        }
        if count == 0 {
            return Err(StoreError::InvalidArgument("zero cluster buckets".into()));
        }
        let buckets = (0..count)
            .map(|b| Bucket {
                data_prefix: format!("{prefix}{{{b}}}d:"),
                index: format!("{prefix}{{{b}}}i"),
            })
            .collect();
        Ok(Self { buckets })
    }

    /// The bucket `key` lives in.
    pub(crate) fn bucket(&self, key: &str) -> &Bucket {
        &self.buckets[self.bucket_index(hash_tag(key))]
    }

    /// Every bucket holding keys under `prefix`: one when the prefix
    /// contains a complete hash tag, else all of them.
    pub(crate) fn buckets_under(&self, prefix: &str) -> &[Bucket] {
        match prefix_tag(prefix) {
            Some(tag) => {
                let i = self.bucket_index(tag);
                &self.buckets[i..=i]
            }
            None => &self.buckets,
        }
    }

    /// Whether every key of `keys` lives in one bucket.
    pub(crate) fn same_bucket<'k>(&self, mut keys: impl Iterator<Item = &'k str>) -> bool {
        let Some(first) = keys.next() else {
            return true;
        };
        let first = self.bucket_index(hash_tag(first));
        keys.all(|k| self.bucket_index(hash_tag(k)) == first)
    }

    fn bucket_index(&self, tag: &str) -> usize {
        if self.buckets.len() == 1 {
            return 0;
        }
        // FNV-1a: stable across processes and versions, which placement must be.
        let hash = tag.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % self.buckets.len() as u64) as usize
    }
}

/// What Redis Cluster hashes for `key`: the text of its first `{…}` when
/// non-empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.find('}') {
        Some(len) if len > 0 => &rest[..len],
        _ => key,
    }
}

/// The hash tag every key starting with `prefix` shares, if the prefix
/// already decides it.
fn prefix_tag(prefix: &str) -> Option<&str> {
    let open = prefix.find('{')?;
    let rest = &prefix[open + 1..];
    match rest.find('}')? {
        0 => None,
        len => Some(&rest[..len]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_redis() {
        assert_eq!(hash_tag("user:{42}:a"), "42");
        assert_eq!(hash_tag("{a}{b}"), "a");
        assert_eq!(
            hash_tag("{}x{y}"),
            "{}x{y}",
            "an empty first tag hashes the key"
        );
        assert_eq!(hash_tag("x{y"), "x{y");
        assert_eq!(hash_tag("plain"), "plain");
    }

    #[test]
    fn prefixes_with_a_tag_name_one_bucket() {
        let layout = Layout::cluster("p:", 64).unwrap();
        assert_eq!(layout.buckets_under("user:{42}:").len(), 1);
        assert_eq!(layout.buckets_under("user:{42").len(), 64);
        assert_eq!(layout.buckets_under("{}").len(), 64);
        assert_eq!(
            layout.buckets_under("user:{42}:")[0].index,
            layout.bucket("user:{42}:session").index
        );
        assert_eq!(Layout::single("p:").buckets_under("").len(), 1);
    }

    #[test]
    fn keys_spread_and_tags_group() {
        let layout = Layout::cluster("p:", 64).unwrap();
        let used: std::collections::HashSet<_> = (0..1000)
            .map(|i| layout.bucket(&format!("k{i}")).index.clone())
            .collect();
        assert_eq!(used.len(), 64);
        assert!(layout.same_bucket(["a{t}1", "b{t}2"].into_iter()));
        assert!(!layout.same_bucket(["k1", "k2", "k3", "k4"].into_iter()));
        assert!(Layout::cluster("a{b}:", 8).is_err());
    }
}
