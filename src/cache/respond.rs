//! Answering a request from a stored response.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, AGE, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use http::{HeaderMap, Method, Response, StatusCode};

use super::entry::Entry;
use super::range::{self, RangeAnswer};
use super::CACHE_STATUS;
use crate::body::ResponseBody;
use crate::integer;

/// The largest `Age` value sent (RFC 9111 §1.2.2).
const MAX_AGE_FIELD: u64 = 2_147_483_648;

/// Answers a request from a stored response: `Age`, `Cache-Status`, a 304
/// for a matching conditional request, no body for `HEAD`.
pub(crate) fn from_entry<B>(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    age: Duration,
    status: HeaderValue,
) -> Response<ResponseBody<B>> {
    let not_modified = not_modified(entry, request);
    let (code, body, content_range) = chosen_body(entry, method, request, not_modified);
    let body_len = body.len();
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = code;
    *res.headers_mut() = HeaderMap::clone(&entry.headers);
    if let Some(value) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        res.headers_mut().insert(CONTENT_RANGE, value);
        res.headers_mut()
            .insert(CONTENT_LENGTH, integer::header_value(body_len as u64));
    }
    // RFC 9111 §5.1: an age past 2^31 seconds is sent as 2^31.
    let age = age.as_secs().min(MAX_AGE_FIELD);
    res.headers_mut().insert(AGE, integer::header_value(age));
    res.headers_mut().insert(CACHE_STATUS, status);
    if code == StatusCode::NOT_MODIFIED {
        res.headers_mut().remove(CONTENT_LENGTH);
    } else if method == Method::HEAD && !res.headers().contains_key(CONTENT_LENGTH) {
        // A HEAD says how long the GET's body is (RFC 9110 §9.3.2).
        let len = integer::header_value(entry.body.len() as u64);
        res.headers_mut().insert(CONTENT_LENGTH, len);
    }
    res
}

/// Whether a conditional request matches the stored response (RFC 9110
/// §13.1.2, §13.1.3): `If-None-Match` first, else `If-Modified-Since`.
fn not_modified(entry: &Entry, request: &HeaderMap) -> bool {
    match (request.get(IF_NONE_MATCH), entry.headers.get(ETAG)) {
        (Some(inm), Some(etag)) => etag_matches(inm, etag),
        (Some(_), None) => false,
        (None, _) => match (
            request.get(IF_MODIFIED_SINCE),
            entry.headers.get(LAST_MODIFIED),
        ) {
            (Some(ims), Some(lm)) => {
                let parse = |v: &HeaderValue| {
                    v.to_str()
                        .ok()
                        .and_then(|s| httpdate::parse_http_date(s).ok())
                };
                matches!((parse(ims), parse(lm)), (Some(ims), Some(lm)) if lm <= ims)
            }
            _ => false,
        },
    }
}

/// What of the stored response is sent: status, body and `Content-Range`.
fn chosen_body(
    entry: &Entry,
    method: &Method,
    request: &HeaderMap,
    not_modified: bool,
) -> (StatusCode, Bytes, Option<String>) {
    let full = entry.body.len();
    let ranged = match (
        method == Method::GET && entry.status == StatusCode::OK,
        not_modified,
    ) {
        (true, false) => range::answer(request, &entry.headers, full),
        _ => RangeAnswer::Full,
    };
    if not_modified && entry.status == StatusCode::OK {
        (StatusCode::NOT_MODIFIED, Bytes::new(), None)
    } else if method == Method::HEAD {
        (entry.status, Bytes::new(), None)
    } else {
        match ranged {
            RangeAnswer::Full => (entry.status, entry.body.clone(), None),
            RangeAnswer::Partial(r) => {
                let value = format!("bytes {}-{}/{full}", r.start, r.end - 1);
                (
                    StatusCode::PARTIAL_CONTENT,
                    entry.body.slice(r),
                    Some(value),
                )
            }
            RangeAnswer::Unsatisfiable => {
                let value = format!("bytes */{full}");
                (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new(), Some(value))
            }
        }
    }
}

/// Weak comparison of `If-None-Match` against an `ETag` (RFC 9110 §13.1.2).
fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    list.trim() == "*" || list.split(',').any(|t| strip(t) == strip(etag))
}
