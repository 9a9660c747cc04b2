//! A stored response: status, headers, body and the times the freshness
//! calculation needs, framed as `u32 head length ‖ JSON head ‖ body`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::Storable;
use crate::decoded::Decoded;

#[derive(Serialize, Deserialize)]
struct Head {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    request_ms: u64,
    response_ms: u64,
    lifetime_ms: u64,
    no_cache: bool,
    must_revalidate: bool,
    swr_ms: Option<u64>,
    sie_ms: Option<u64>,
}

/// A response as the cache keeps it. Cloning shares the headers: a hit
/// copies them once, into its response.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) headers: Arc<HeaderMap>,
    pub(crate) body: Bytes,
    pub(crate) request_time: SystemTime,
    pub(crate) response_time: SystemTime,
    pub(crate) storable: Storable,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Entry {
    /// Its current age (RFC 9111 §4.2.3).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        super::current_age(&self.headers, self.request_time, self.response_time, now)
    }

    /// The `Cache-Status` of serving it at `age`: a hit with its remaining
    /// freshness (negative when stale).
    pub(crate) fn hit(&self, age: Duration) -> super::CacheStatus {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let ttl = secs(self.storable.lifetime).saturating_sub(secs(age));
        super::CacheStatus::Hit { ttl, detail: None }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let head = Head {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            request_ms: ms(self.request_time),
            response_ms: ms(self.response_time),
            lifetime_ms: self.storable.lifetime.as_millis() as u64,
            no_cache: self.storable.no_cache,
            must_revalidate: self.storable.must_revalidate,
            swr_ms: self
                .storable
                .stale_while_revalidate
                .map(|d| d.as_millis() as u64),
            sie_ms: self.storable.stale_if_error.map(|d| d.as_millis() as u64),
        };
        let head = serde_json::to_vec(&head).expect("heads serialize");
        let mut out = BytesMut::with_capacity(4 + head.len() + self.body.len());
        out.put_u32(head.len() as u32);
        out.put_slice(&head);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// `None` for bytes that are not an entry (corrupt or foreign data).
    pub(crate) fn decode(bytes: &Bytes) -> Option<Self> {
        let (head, body) = split(bytes)?;
        Some(Self {
            body,
            ..Self::from_head(head)?
        })
    }

    /// [`decode`](Self::decode) for bytes stored at `key`, reusing the head
    /// `decoded` kept when it came from identical bytes (no JSON parse).
    pub(crate) fn decode_at(key: &str, bytes: &Bytes, decoded: &Decoded<Entry>) -> Option<Self> {
        let (head, body) = split(bytes)?;
        let entry = decoded
            .decode(key, head, |h| Self::from_head(h).ok_or(()))
            .ok()?;
        Some(Self {
            body,
            ..Entry::clone(&entry)
        })
    }

    /// The entry a JSON head describes, with an empty body.
    fn from_head(head: &[u8]) -> Option<Self> {
        let head: Head = serde_json::from_slice(head).ok()?;
        let mut headers = HeaderMap::new();
        for (name, value) in head.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_bytes(&value).ok()?,
            );
        }
        Some(Self {
            status: StatusCode::from_u16(head.status).ok()?,
            headers: Arc::new(headers),
            body: Bytes::new(),
            request_time: time(head.request_ms),
            response_time: time(head.response_ms),
            storable: Storable {
                lifetime: Duration::from_millis(head.lifetime_ms),
                no_cache: head.no_cache,
                must_revalidate: head.must_revalidate,
                stale_while_revalidate: head.swr_ms.map(Duration::from_millis),
                stale_if_error: head.sie_ms.map(Duration::from_millis),
            },
        })
    }
}

/// The head (JSON) and the body of an entry's bytes.
fn split(bytes: &Bytes) -> Option<(&[u8], Bytes)> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head = bytes.get(4..4usize.checked_add(len)?)?;
    Some((head, bytes.slice(4 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert("etag", "\"v1\"".parse().unwrap());
        headers.append("x-bin", HeaderValue::from_bytes(&[0x80, 0xff]).unwrap());
        let entry = Entry {
            status: StatusCode::OK,
            headers: Arc::new(headers),
            body: Bytes::from_static(b"\x00body\xff"),
            request_time: time(1_000),
            response_time: time(2_000),
            storable: Storable {
                lifetime: Duration::from_secs(60),
                no_cache: false,
                must_revalidate: true,
                stale_while_revalidate: Some(Duration::from_secs(5)),
                stale_if_error: None,
            },
        };
        let back = Entry::decode(&entry.encode()).unwrap();
        assert_eq!(
            (back.status, back.body.clone()),
            (entry.status, entry.body.clone())
        );
        assert_eq!(back.headers, entry.headers);
        assert_eq!(back.storable, entry.storable);
        assert_eq!(back.response_time, entry.response_time);
        assert!(Entry::decode(&Bytes::from_static(b"\x00\x00\x00\x09garbage")).is_none());
        assert!(Entry::decode(&Bytes::new()).is_none());

        // A kept head serves the same head again, with each read's own body.
        let decoded = Decoded::new(10);
        let first = Entry::decode_at("k", &entry.encode(), &decoded).unwrap();
        let other_body = Entry {
            body: Bytes::from_static(b"other"),
            ..entry.clone()
        };
        let second = Entry::decode_at("k", &other_body.encode(), &decoded).unwrap();
        assert_eq!(
            (first.body, second.body),
            (entry.body.clone(), other_body.body)
        );
        assert_eq!(second.headers, entry.headers);
        let older = Entry {
            response_time: time(1_500),
            ..entry.clone()
        };
        let third = Entry::decode_at("k", &older.encode(), &decoded).unwrap();
        assert_eq!(
            third.response_time, older.response_time,
            "another head: decoded again"
        );
        assert!(Entry::decode_at(
            "k",
            &Bytes::from_static(b"\x00\x00\x00\x09garbage"),
            &decoded
        )
        .is_none());
    }
}
