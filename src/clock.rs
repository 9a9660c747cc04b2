//! Wall-clock time for expiry decisions, with a manual clock for tests.
//!
//! Every time-dependent decision in tower-kv (entry expiry, session timeouts,
//! rate windows on the in-memory backend) reads a [`Clock`]. Production code
//! uses [`Clock::system`]; tests use [`Clock::manual`] and [`Clock::advance`]
//! instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use tower_kv::Clock;
//!
//! let clock = Clock::manual();
//! let start = clock.now_ms();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now_ms() - start, 90_000);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
///
/// Cloning is cheap; clones of a manual clock share one time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

/// The fixed instant a manual clock starts at: 2026-01-01T00:00:00Z.
const MANUAL_EPOCH_MS: u64 = 1_767_225_600_000;

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that only moves when [`Clock::advance`] is called.
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(MANUAL_EPOCH_MS))),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::Acquire),
            None => system_ms(),
        }
    }

    /// [`now_ms`](Self::now_ms) to within the kernel's tick (a few ms) on
    /// Linux, at a quarter of the cost: for checks counted in seconds or
    /// more that something else makes exact (freshness, a session's
    /// timeouts behind the store's TTL), never for rate decisions. Exact on
    /// a manual clock.
    pub(crate) fn recent_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::Acquire),
            None => coarse_system_ms(),
        }
    }

    /// The current time as a [`SystemTime`].
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// Moves a manual clock forward. Has no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            ms.fetch_add(duration_ms_ceil(by), Ordering::AcqRel);
        }
    }
}

/// The system time to within the kernel's tick, read without the TSC.
#[cfg(target_os = "linux")]
fn coarse_system_ms() -> u64 {
    linux_ms(rustix::time::ClockId::RealtimeCoarse)
}

#[cfg(not(target_os = "linux"))]
fn coarse_system_ms() -> u64 {
    system_ms()
}

/// The system time, read straight into milliseconds (`SystemTime`'s
/// checked `Duration` on the way costs a quarter of the read).
#[cfg(target_os = "linux")]
fn system_ms() -> u64 {
    linux_ms(rustix::time::ClockId::Realtime)
}

/// Milliseconds since the epoch on Linux clock `id`; 0 before the epoch.
#[cfg(target_os = "linux")]
fn linux_ms(id: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(id);
    match (u64::try_from(t.tv_sec), u64::try_from(t.tv_nsec)) {
        (Ok(secs), Ok(nanos)) => secs.saturating_mul(1000).saturating_add(nanos / 1_000_000),
        _ => 0,
    }
}

#[cfg(not(target_os = "linux"))]
fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        // Seconds and sub-second millis: no 128-bit division on a hot path.
        .map_or(0, |d| {
            d.as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_millis()))
        })
}

/// Whole milliseconds in `d`, rounded up, saturating.
pub(crate) fn duration_ms_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch of `t`, clamped to zero before the epoch.
pub(crate) fn system_time_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let a = Clock::manual();
        let b = a.clone();
        a.advance(Duration::from_millis(1500));
        assert_eq!(b.now_ms(), MANUAL_EPOCH_MS + 1500);
    }

    #[test]
    fn system_clock_ignores_advance() {
        let c = Clock::system();
        let before = c.now_ms();
        c.advance(Duration::from_secs(3600));
        assert!(c.now_ms() < before + 3_600_000);
    }

    #[test]
    fn the_recent_time_is_within_a_tick_of_now() {
        let c = Clock::system();
        let (before, recent, after) = (c.now_ms(), c.recent_ms(), c.now_ms());
        assert!(
            recent + 50 >= before && recent <= after + 50,
            "{before} {recent} {after}"
        );
    }

    #[test]
    fn rounding_up_to_milliseconds() {
        assert_eq!(duration_ms_ceil(Duration::from_micros(1)), 1);
        assert_eq!(duration_ms_ceil(Duration::from_millis(7)), 7);
        assert_eq!(duration_ms_ceil(Duration::MAX), u64::MAX);
    }
}
