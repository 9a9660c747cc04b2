use std::time::Duration;

use crate::store::{GcraRate, Rate};

/// How a [`Quota`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Generic cell rate algorithm (default): requests are spread evenly over
    /// the period, with a burst allowance of `burst` requests at once.
    #[default]
    Gcra,
    /// At most `limit` per aligned window (`12:00:00–12:00:59`, …). Simple,
    /// but allows up to 2 × limit across a window boundary.
    FixedWindow,
    /// At most `limit` in any trailing period, estimated from two fixed windows.
    SlidingWindow,
}

/// A number of requests per period, named for the `RateLimit` headers.
///
/// ```
/// use tower_kv::ratelimit::Quota;
///
/// let api = Quota::per_minute(100);                 // GCRA, burst 100
/// let smooth = Quota::per_second(10).burst(2);      // at most 2 at once
/// let seed_like = Quota::per_hour(1000).fixed_window().named("hourly");
/// # let _ = (api, smooth, seed_like);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    limit: u32,
    period: Duration,
    burst: Option<u32>,
    algorithm: Algorithm,
    name: String,
}

impl Quota {
    /// `limit` requests per `period`.
    ///
    /// # Panics
    ///
    /// If `limit` is zero, `period` is shorter than a millisecond, or the
    /// quota is faster than one request per microsecond (the stores'
    /// resolution): such a quota is a configuration error.
    pub fn per(limit: u32, period: Duration) -> Self {
        assert!(limit > 0, "a quota needs a limit of at least 1");
        assert!(
            period >= Duration::from_millis(1),
            "a quota period must be at least 1 ms"
        );
        assert!(
            period / limit >= Duration::from_micros(1),
            "a quota of {limit} per {period:?} is faster than one request per microsecond"
        );
        Self {
            limit,
            period,
            burst: None,
            algorithm: Algorithm::Gcra,
            name: default_name(period),
        }
    }

    /// `limit` requests per second.
    pub fn per_second(limit: u32) -> Self {
        Self::per(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub fn per_minute(limit: u32) -> Self {
        Self::per(limit, Duration::from_secs(60))
    }

    /// `limit` requests per hour.
    pub fn per_hour(limit: u32) -> Self {
        Self::per(limit, Duration::from_secs(3600))
    }

    /// `limit` requests per day.
    pub fn per_day(limit: u32) -> Self {
        Self::per(limit, Duration::from_secs(86_400))
    }

    /// At most `burst` requests at once (GCRA only; default: the limit).
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst.max(1));
        self
    }

    /// Count with this algorithm.
    #[must_use]
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Count in fixed windows (simple, and cheapest on Redis).
    #[must_use]
    pub fn fixed_window(self) -> Self {
        self.algorithm(Algorithm::FixedWindow)
    }

    /// Count in a sliding window.
    #[must_use]
    pub fn sliding_window(self) -> Self {
        self.algorithm(Algorithm::SlidingWindow)
    }

    /// Name the quota in the `RateLimit` headers and store keys (default:
    /// `second`, `minute`, `hour`, `day` or `{n}s` after the period).
    ///
    /// # Panics
    ///
    /// If `name` is empty or not printable ASCII without `"`, `\` or `:`.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b':'));
        assert!(
            valid,
            "quota name {name:?} must be printable ASCII without '\"', '\\\\' or ':'"
        );
        self.name = name.to_owned();
        self
    }

    /// The quota's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests allowed per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The counting rule the store applies.
    pub(crate) fn rate(&self) -> Rate {
        match self.algorithm {
            Algorithm::Gcra => Rate::Gcra(
                GcraRate::per(self.limit, self.period).with_burst(self.burst.unwrap_or(self.limit)),
            ),
            Algorithm::FixedWindow => Rate::FixedWindow {
                limit: self.limit,
                window: self.period,
            },
            Algorithm::SlidingWindow => Rate::SlidingWindow {
                limit: self.limit,
                window: self.period,
            },
        }
    }
}

fn default_name(period: Duration) -> String {
    match period.as_secs() {
        1 if period.subsec_nanos() == 0 => "second".into(),
        60 if period.subsec_nanos() == 0 => "minute".into(),
        3600 if period.subsec_nanos() == 0 => "hour".into(),
        86_400 if period.subsec_nanos() == 0 => "day".into(),
        _ => format!("{}ms", period.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_period() {
        assert_eq!(Quota::per_minute(5).name(), "minute");
        assert_eq!(Quota::per(5, Duration::from_secs(90)).name(), "90000ms");
        assert_eq!(Quota::per_day(5).named("daily").name(), "daily");
    }

    #[test]
    fn burst_applies_to_gcra() {
        let rate = Quota::per_second(10).burst(2).rate();
        assert_eq!(rate.capacity(), 2);
        assert_eq!(Quota::per_second(10).rate().capacity(), 10);
    }

    #[test]
    #[should_panic(expected = "faster than one request per microsecond")]
    fn sub_microsecond_rates_are_rejected() {
        let _ = Quota::per_second(2_000_000);
    }

    #[test]
    #[should_panic(expected = "quota name")]
    fn names_must_be_header_safe() {
        let _ = Quota::per_second(1).named("a\"b");
    }
}
