use std::time::Duration;

use super::{Expiration, ListOptions, Rate, RateRequest, StoreError};

/// Longest key accepted, in bytes (as edge key-value stores allow).
pub const MAX_KEY_LEN: usize = 512;
/// Default largest value accepted, in bytes (25 MiB, as edge key-value stores allow).
pub const DEFAULT_MAX_VALUE_LEN: usize = 25 * 1024 * 1024;
/// Largest page size of [`KvStore::list`](super::KvStore::list).
pub const MAX_LIST_LIMIT: usize = 1000;

pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

pub(crate) fn check_value(key: &str, len: usize, max: usize) -> Result<(), StoreError> {
    if len > max {
        return Err(StoreError::ValueTooLarge {
            key: key.to_owned(),
            len,
            max,
        });
    }
    Ok(())
}

pub(crate) fn check_expiration(expiration: Expiration) -> Result<(), StoreError> {
    match expiration {
        Expiration::Ttl(ttl) if ttl.is_zero() => {
            Err(StoreError::InvalidArgument("zero TTL".into()))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_list(opts: &ListOptions) -> Result<(), StoreError> {
    if opts.limit == 0 || opts.limit > MAX_LIST_LIMIT {
        return Err(StoreError::InvalidArgument(format!(
            "list limit {} is outside 1..={MAX_LIST_LIMIT}",
            opts.limit
        )));
    }
    if opts.prefix.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong {
            len: opts.prefix.len(),
            max: MAX_KEY_LEN,
        });
    }
    match &opts.cursor {
        Some(c) if !c.starts_with(&opts.prefix) || c.len() > MAX_KEY_LEN => Err(
            StoreError::InvalidArgument("cursor does not belong to this listing".into()),
        ),
        _ => Ok(()),
    }
}

pub(crate) fn check_rate(requests: &[RateRequest]) -> Result<(), StoreError> {
    let invalid = |msg: String| Err(StoreError::InvalidArgument(msg));
    if requests.is_empty() {
        return invalid("no rate buckets given".into());
    }
    for (i, r) in requests.iter().enumerate() {
        check_key(&r.key)?;
        if requests[..i].iter().any(|o| o.key == r.key) {
            return invalid(format!(
                "rate bucket {:?} given twice in one decision",
                r.key
            ));
        }
        let period_ok = match r.rate {
            Rate::Gcra(g) => g.emission_interval >= Duration::from_micros(1),
            Rate::FixedWindow { window, .. } | Rate::SlidingWindow { window, .. } => {
                window >= Duration::from_millis(1)
            }
        };
        if r.rate.capacity() == 0 || !period_ok {
            return invalid(format!(
                "rate for {:?} needs a limit of at least 1 and a period of at least 1 ms",
                r.key
            ));
        }
        if r.cost > r.rate.capacity() {
            return invalid(format!(
                "cost {} for {:?} exceeds the rate's capacity {} and could never be allowed",
                r.cost,
                r.key,
                r.rate.capacity()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_by_byte_length() {
        assert!(matches!(check_key(""), Err(StoreError::EmptyKey)));
        assert!(check_key(&"é".repeat(256)).is_ok());
        assert!(matches!(
            check_key(&"é".repeat(257)),
            Err(StoreError::KeyTooLong { len: 514, max: 512 })
        ));
    }

    #[test]
    fn list_cursor_must_stay_inside_the_prefix() {
        let opts = ListOptions::prefix("a:").cursor(Some("b:1".into()));
        assert!(check_list(&opts).is_err());
        assert!(check_list(&ListOptions::prefix("a:").limit(0)).is_err());
    }
}
