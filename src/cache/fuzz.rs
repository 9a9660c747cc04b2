//! The cache's parsers and rules under fuzzing (`--cfg fuzzing` only).

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};

use super::entry::Entry;
use super::freshness::CDN_CACHE_CONTROL;
use super::key::vary_names;
use super::respond::from_entry;
use super::{current_age, reuse, storable, CacheControl, CacheStatus, StoragePolicy};
use crate::fuzzing::{instant, READ_METHODS};

/// Storage, age, reuse and answering from storage for one exchange.
pub(crate) fn check_rules(status: StatusCode, request: &HeaderMap, response: &HeaderMap) {
    // What this cache obeys: a valid targeted field replaces Cache-Control.
    let response_cc = CacheControl::from_targeted(response, &CDN_CACHE_CONTROL)
        .unwrap_or_else(|| CacheControl::from_headers(response));
    let request_cc = CacheControl::from_headers(request);
    let now = instant();
    let sent = now - Duration::from_secs(1);
    let age = current_age(response, sent, now, now + Duration::from_secs(30));
    for policy in [
        StoragePolicy::default(),
        StoragePolicy {
            default_ttl: None,
            ..StoragePolicy::default()
        },
    ] {
        let Ok(stored) = storable(&http::Method::GET, request, status, response, &policy) else {
            continue;
        };
        assert!(!response_cc.no_store && !response_cc.private && !request_cc.no_store);
        reuse(&stored, age, &request_cc);
        let entry_age = Duration::MAX;
        reuse(&stored, entry_age, &request_cc);
        vary_names(response);
        let entry = Entry {
            status,
            headers: std::sync::Arc::new(response.clone()),
            body: Bytes::from_static(b"body"),
            request_time: now,
            response_time: now,
            storable: stored,
        };
        let ttl = match entry.hit(Duration::MAX) {
            CacheStatus::Hit { ttl, .. } => ttl,
            CacheStatus::Forward { .. } => unreachable!("a hit"),
        };
        assert!(ttl <= 0, "an absurd age never looks fresh");
        for method in &READ_METHODS {
            let res = from_entry::<()>(&entry, method, request, age, HeaderValue::from_static("x"));
            let answered = [
                status,
                StatusCode::NOT_MODIFIED,
                StatusCode::PARTIAL_CONTENT,
            ];
            let unsatisfiable = res.status() == StatusCode::RANGE_NOT_SATISFIABLE;
            assert!(answered.contains(&res.status()) || unsatisfiable);
        }
    }
}

/// Decoding stored bytes: `None` or an entry that round-trips.
pub(crate) fn check_entry(bytes: Bytes) {
    let Some(entry) = Entry::decode(&bytes) else {
        return;
    };
    let again = Entry::decode(&entry.encode()).expect("an encoded entry decodes");
    assert_eq!(again.status, entry.status);
    assert_eq!(again.headers, entry.headers);
    assert_eq!(again.body, entry.body);
    assert_eq!(again.storable, entry.storable);
}
