//! Reading, writing and deleting stored responses.

use std::sync::Arc;
use std::time::Duration;

use http::header::SET_COOKIE;
use http::HeaderMap;

use super::entry::Entry;
use super::key::{is_response, vary_names, RequestKey};
use super::layer::{CacheConfig, SetCookieResponses};
use crate::identity::digest;
use crate::metrics::{self, count};
use crate::store::update::KeyPages;
use crate::store::{CasOutcome, KvStore, PutOptions, StoreError};

/// `Cache-Groups`: the groups a response belongs to (RFC 9875 §2).
const CACHE_GROUPS: &str = "cache-groups";
/// `Cache-Group-Invalidation`: the groups an unsafe response invalidates (RFC 9875 §3).
const CACHE_GROUP_INVALIDATION: &str = "cache-group-invalidation";

/// The group names in a structured-field list of strings; an invalid field
/// is ignored as a whole, and members that are not strings are skipped.
fn cache_groups(headers: &HeaderMap, field: &str) -> Vec<String> {
    let lines: Option<Vec<&str>> = headers
        .get_all(field)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    let Some(lines) = lines.filter(|l| !l.is_empty()) else {
        return Vec::new();
    };
    let Ok(list) = sfv::Parser::new(&lines.join(", ")).parse::<sfv::List>() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|member| match member {
            sfv::ListEntry::Item(item) => item.bare_item.as_string().map(|s| s.as_str().to_owned()),
            sfv::ListEntry::InnerList(_) => None,
        })
        .collect()
}

/// How a purge treats what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purge {
    /// Delete it.
    Delete,
    /// Mark it stale: the next request revalidates it (or, within
    /// `stale-while-revalidate`, is served it while it is refreshed).
    MarkStale,
}

/// What the store holds for a request.
pub(crate) enum Lookup {
    /// A stored response for this request.
    Found(Box<Entry>),
    /// Responses are stored for the URL, but none for this request's `Vary` headers.
    VaryMiss,
    /// Nothing is stored for the URL.
    UriMiss,
}

/// How long a response stays in the store past its freshness: long enough
/// for the stale uses it allows, plus a minute for revalidation.
fn retention(entry: &Entry) -> Duration {
    let storable = &entry.storable;
    let stale_use = storable
        .stale_while_revalidate
        .unwrap_or_default()
        .max(storable.stale_if_error.unwrap_or_default());
    storable.lifetime + stale_use + Duration::from_secs(60)
}

/// The response tags of `headers` (`Surrogate-Key`), usable in keys.
fn tags(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(super::SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .filter(|t| t.len() <= 128 && !t.contains(':'))
        .map(str::to_owned)
        .collect()
}

impl<St: KvStore> CacheConfig<St> {
    /// The response stored without `Vary` for `key`, when the store answers
    /// at once (the in-memory store); `None` when it cannot, fails or holds
    /// none there: then [`lookup`](Self::lookup) decides.
    pub(crate) fn lookup_now(&self, key: &RequestKey, request: &HeaderMap) -> Option<Entry> {
        let only = key.variant(&[], request);
        let found = self.store.get_now(&only)?.ok()??;
        Entry::decode_at(&only, &found.value, &self.decoded)
    }

    /// The stored response for `request` at `key`.
    pub(crate) async fn lookup(
        &self,
        key: &RequestKey,
        request: &HeaderMap,
    ) -> Result<Lookup, StoreError> {
        // Most responses do not vary: their one variant is looked up first,
        // so a hit costs one store read (one Redis round trip).
        let only = key.variant(&[], request);
        if let Some(found) = self.store.get(&only).await? {
            if let Some(entry) = Entry::decode_at(&only, &found.value, &self.decoded) {
                return Ok(Lookup::Found(Box::new(entry)));
            }
        }
        let Some(index) = self.store.get(&key.vary_index()).await? else {
            return Ok(Lookup::UriMiss);
        };
        let names: Vec<String> = serde_json::from_slice(&index.value).unwrap_or_default();
        if names.is_empty() {
            return Ok(Lookup::VaryMiss);
        }
        let variant = key.variant(&names, request);
        let entry = self.store.get(&variant).await?;
        Ok(
            match entry.and_then(|e| Entry::decode_at(&variant, &e.value, &self.decoded)) {
                Some(entry) => Lookup::Found(Box::new(entry)),
                None => Lookup::VaryMiss,
            },
        )
    }

    /// Stores `entry` as the response to `request` (best effort: a store
    /// failure is logged, the client still gets its response).
    pub(crate) async fn save(&self, key: &RequestKey, request: &HeaderMap, entry: &Entry) {
        match self.try_save(key, request, entry).await {
            Ok(()) => {
                count!(metrics::CACHE_STORED, 1, "cache" => self.name.clone());
                count!(metrics::CACHE_STORED_BYTES, entry.body.len() as u64, "cache" => self.name.clone());
            }
            Err(e) => tracing::warn!(error = %e, "response not cached: store unavailable"),
        }
    }

    async fn try_save(
        &self,
        key: &RequestKey,
        request: &HeaderMap,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let stripped;
        let entry = match self.set_cookie {
            SetCookieResponses::StoreWithoutCookie if entry.headers.contains_key(SET_COOKIE) => {
                let mut copy = entry.clone();
                Arc::make_mut(&mut copy.headers).remove(SET_COOKIE);
                stripped = copy;
                &stripped
            }
            _ => entry,
        };
        let names = vary_names(&entry.headers);
        let options = PutOptions::new().ttl(retention(entry));
        let index = serde_json::to_vec(&names).expect("names serialize");
        let variant = key.variant(&names, request);
        self.store
            .put(&key.vary_index(), index.into(), options.clone())
            .await?;
        if !names.is_empty() {
            // A varying response supersedes a non-varying one.
            self.store.delete(&key.variant(&[], request)).await?;
        }
        let indexes = tags(&entry.headers)
            .into_iter()
            .map(|tag| self.tag_prefix(&tag))
            .chain(
                cache_groups(&entry.headers, CACHE_GROUPS)
                    .into_iter()
                    .map(|group| self.group_prefix(&key.origin, &group)),
            );
        for index in indexes {
            let index_key = format!("{index}{}", digest(variant.as_bytes()));
            self.store
                .put(&index_key, variant.clone().into(), options.clone())
                .await?;
        }
        self.store.put(&variant, entry.encode(), options).await?;
        Ok(())
    }

    /// Deletes every key under `prefix`; returns how many.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        self.purge_prefix(prefix, Purge::Delete).await
    }

    /// Purges every key under `prefix`; returns how many keys went (or
    /// stored responses were marked stale).
    pub(crate) async fn purge_prefix(&self, prefix: &str, how: Purge) -> Result<usize, StoreError> {
        let mut purged = 0;
        let mut pages = KeyPages::new(&self.store, prefix);
        while let Some(keys) = pages.next().await? {
            for key in keys {
                purged += usize::from(self.purge_key(&key.name, how).await?);
            }
        }
        Ok(purged)
    }

    /// Where the index of the responses tagged `tag` lives.
    fn tag_prefix(&self, tag: &str) -> String {
        // Digested, as a hash tag: any tag text is a valid key part, and one
        // tag's index shares a cluster slot.
        format!("{}tag:{{{}}}:", self.key_prefix, digest(tag.as_bytes()))
    }

    /// Where the index of an origin's cache group lives (RFC 9875: groups
    /// are scoped to their origin; names are any string, so digested).
    fn group_prefix(&self, origin: &str, group: &str) -> String {
        let scope = digest(origin.as_bytes());
        format!(
            "{}group:{{{scope}:{}}}:",
            self.key_prefix,
            digest(group.as_bytes())
        )
    }

    /// Purges every response tagged `tag`; returns how many responses.
    pub(crate) async fn purge_tag(&self, tag: &str, how: Purge) -> Result<usize, StoreError> {
        self.purge_indexed(&self.tag_prefix(tag), how).await
    }

    /// Deletes every response of `origin` in the cache groups a successful
    /// unsafe response names in `Cache-Group-Invalidation` (RFC 9875 §3),
    /// best effort (logged on failure).
    pub(crate) async fn invalidate_groups(&self, origin: &str, response: &HeaderMap) {
        for group in cache_groups(response, CACHE_GROUP_INVALIDATION) {
            let prefix = self.group_prefix(origin, &group);
            if let Err(e) = self.purge_indexed(&prefix, Purge::Delete).await {
                tracing::warn!(error = %e, "cache group not invalidated: store unavailable");
            }
        }
    }

    /// Purges every response an index under `prefix` points to (a hard
    /// purge also drops the index); returns how many responses.
    async fn purge_indexed(&self, prefix: &str, how: Purge) -> Result<usize, StoreError> {
        let mut purged = 0;
        let mut pages = KeyPages::new(&self.store, prefix);
        while let Some(keys) = pages.next().await? {
            for tag_key in keys {
                if let Some(entry) = self.store.get(&tag_key.name).await? {
                    let key = String::from_utf8_lossy(&entry.value).into_owned();
                    purged += usize::from(self.purge_key(&key, how).await?);
                }
                if how == Purge::Delete {
                    self.store.delete(&tag_key.name).await?;
                }
            }
        }
        Ok(purged)
    }

    /// Deletes `key`, or marks the response stored there stale (a
    /// compare-and-swap, so a fresher response stored meanwhile stays);
    /// whether something was purged.
    async fn purge_key(&self, key: &str, how: Purge) -> Result<bool, StoreError> {
        if how == Purge::Delete {
            return Ok(self.store.delete(key).await? && is_response(key));
        }
        let Some(stored) = self.store.get(key).await? else {
            return Ok(false);
        };
        // Vary indexes and foreign values are not responses: left alone.
        let Some(mut entry) = Entry::decode(&stored.value) else {
            return Ok(false);
        };
        entry.storable.lifetime = Duration::ZERO;
        let options = match stored.expires_at {
            Some(at) => PutOptions::new().expires_at(at),
            None => PutOptions::new(),
        };
        let swapped = self
            .store
            .compare_and_swap(key, Some(stored.version), entry.encode(), options)
            .await?;
        Ok(matches!(swapped, CasOutcome::Swapped(_)))
    }

    /// Deletes every stored variant of a URL after an unsafe request
    /// (best effort: logged on failure).
    pub(crate) async fn invalidate(&self, primary_prefix: &str) {
        if let Err(e) = self.delete_prefix(primary_prefix).await {
            tracing::warn!(error = %e, "stored responses not invalidated: store unavailable");
        }
    }
}
