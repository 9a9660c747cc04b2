//! The rate algorithms, shared by the in-memory backend and mirrored line
//! for line by the Redis script (`lua/rate.lua`). Times are integer
//! microseconds; each bucket's state is one short decimal string:
//! GCRA `tat`, fixed window `start:count`, sliding window `start:current:previous`.
//! A stored state of another shape counts as a fresh bucket. The in-memory
//! backend keeps states as [`Fields`] and renders the string only when read.

use std::time::Duration;

use super::{GcraRate, Rate, RateMode, RateRequest, RateState};

/// A bucket's state: one to three integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    values: [u64; 3],
    len: usize,
}

impl Fields {
    fn new(values: &[u64]) -> Self {
        let mut f = Self::default();
        f.values[..values.len()].copy_from_slice(values);
        f.len = values.len();
        f
    }

    fn as_slice(&self) -> &[u64] {
        &self.values[..self.len]
    }

    /// Parses the stored string form; anything else is a fresh (empty) state.
    pub(crate) fn parse(stored: &[u8]) -> Self {
        let mut f = Self::default();
        let Ok(text) = std::str::from_utf8(stored) else {
            return f;
        };
        for part in text.split(':') {
            match (part.parse(), f.len < 3) {
                (Ok(n), true) => {
                    f.values[f.len] = n;
                    f.len += 1;
                }
                _ => return Self::default(),
            }
        }
        f
    }

    /// The stored string form: `a`, `a:b` or `a:b:c`.
    pub(crate) fn render(&self) -> String {
        let parts: Vec<String> = self.as_slice().iter().map(u64::to_string).collect();
        parts.join(":")
    }
}

/// One bucket's verdict.
pub(crate) struct Verdict {
    /// The bucket's state if the whole decision is allowed and applied.
    pub state: RateState,
    /// The bucket's state when another bucket denied the decision.
    pub unconsumed: RateState,
    /// The state to store when the whole decision is allowed.
    pub new_state: Fields,
    /// How long the stored state must live.
    pub ttl_us: u64,
    /// Whether `new_state` is to be stored if the whole decision is allowed.
    pub writes: bool,
}

/// One bucket's verdict on `request`, given its stored state.
pub(crate) fn apply(request: &RateRequest, stored: Fields, now: u64) -> Verdict {
    let cost = request.cost;
    match request.mode {
        RateMode::Charge => decide(request.rate, cost, stored, now),
        RateMode::Peek => Verdict {
            writes: false,
            ..decide(request.rate, cost, stored, now)
        },
        RateMode::Refund => refund(request.rate, cost, stored, now),
    }
}

/// Gives back `cost` units: the bucket's state with the units taken off,
/// decided at no cost so it reports what is left. Always allowed.
fn refund(rate: Rate, cost: u32, stored: Fields, now: u64) -> Verdict {
    let given_back = give_back(rate, u64::from(cost), stored.as_slice(), now);
    let verdict = decide(rate, 0, given_back.unwrap_or(stored), now);
    let state = RateState {
        allowed: true,
        retry_after: Duration::ZERO,
        ..verdict.unconsumed
    };
    Verdict {
        state,
        unconsumed: state,
        new_state: given_back.unwrap_or(verdict.new_state),
        ttl_us: verdict.ttl_us,
        writes: cost > 0 && given_back.is_some(),
    }
}

/// The state with `cost` units taken off, or `None` when nothing spent is
/// still counted: a GCRA time not yet reached, or a count in the current
/// window (or, sliding, the previous one, which still weighs).
fn give_back(rate: Rate, cost: u64, fields: &[u64], now: u64) -> Option<Fields> {
    match (rate, fields) {
        (Rate::Gcra(g), &[tat]) if tat > now => {
            let spent = us(g.emission_interval).max(1).saturating_mul(cost);
            Some(Fields::new(&[tat.saturating_sub(spent).max(now)]))
        }
        (Rate::FixedWindow { window, .. }, &[start, count])
            if count > 0 && start == window_start(now, us(window)) =>
        {
            Some(Fields::new(&[start, count.saturating_sub(cost)]))
        }
        (Rate::SlidingWindow { window, .. }, &[start, count, previous])
            if count > 0
                && (start == window_start(now, us(window))
                    || start.saturating_add(us(window)) == window_start(now, us(window))) =>
        {
            Some(Fields::new(&[start, count.saturating_sub(cost), previous]))
        }
        _ => None,
    }
}

/// The start of the window (µs) that `now` falls in.
fn window_start(now: u64, window: u64) -> u64 {
    now - now % window
}

pub(crate) fn decide(rate: Rate, cost: u32, stored: Fields, now: u64) -> Verdict {
    let fields = stored.as_slice();
    let cost = u64::from(cost);
    match rate {
        Rate::Gcra(g) => gcra(g, cost, fields, now),
        Rate::FixedWindow { limit, window } => {
            fixed(u64::from(limit), us(window), cost, fields, now)
        }
        Rate::SlidingWindow { limit, window } => {
            sliding(u64::from(limit), us(window), cost, fields, now)
        }
    }
}

fn state(allowed: bool, remaining: u64, retry_us: u64, reset_us: u64) -> RateState {
    RateState {
        allowed,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        retry_after: Duration::from_micros(retry_us),
        reset_after: Duration::from_micros(reset_us),
    }
}

fn gcra(rate: GcraRate, cost: u64, fields: &[u64], now: u64) -> Verdict {
    let stored_tat = match fields {
        [tat] => Some(*tat),
        _ => None,
    };
    let interval = us(rate.emission_interval).max(1);
    let tolerance = interval.saturating_mul(u64::from(rate.burst));
    let tat = stored_tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval.saturating_mul(cost));
    let allow_at = new_tat.saturating_sub(tolerance);
    let remaining = |used: u64| tolerance.saturating_sub(used) / interval;
    let unconsumed = state(true, remaining(tat - now), 0, tat - now);
    if now >= allow_at {
        let used = new_tat - now;
        Verdict {
            state: state(true, remaining(used), 0, used),
            unconsumed,
            new_state: Fields::new(&[new_tat]),
            ttl_us: used,
            writes: cost > 0,
        }
    } else {
        let denied = state(false, remaining(tat - now), allow_at - now, tat - now);
        Verdict {
            state: denied,
            unconsumed: denied,
            new_state: Fields::new(&[tat]),
            ttl_us: tat - now,
            writes: false,
        }
    }
}

fn fixed(limit: u64, window: u64, cost: u64, fields: &[u64], now: u64) -> Verdict {
    let start = window_start(now, window);
    let end = start + window;
    let count = match fields {
        [s, c] if *s == start => *c,
        _ => 0,
    };
    let reset = |count: u64| if count > 0 { end - now } else { 0 };
    let unconsumed = state(true, limit.saturating_sub(count), 0, reset(count));
    if count + cost <= limit {
        let after = count + cost;
        Verdict {
            state: state(true, limit - after, 0, reset(after)),
            unconsumed,
            new_state: Fields::new(&[start, after]),
            ttl_us: end - now,
            writes: cost > 0,
        }
    } else {
        let denied = state(false, limit.saturating_sub(count), end - now, reset(count));
        Verdict {
            state: denied,
            unconsumed: denied,
            new_state: Fields::new(&[start, count]),
            ttl_us: end - now,
            writes: false,
        }
    }
}

fn sliding(limit: u64, window: u64, cost: u64, fields: &[u64], now: u64) -> Verdict {
    let start = window_start(now, window);
    let (current, previous) = match fields {
        [s, c, p] if *s == start => (*c, *p),
        [s, c, _] if s + window == start => (0, *c),
        _ => (0, 0),
    };
    let elapsed = now - start;
    // Scaled by `window`: the estimate is previous × (unelapsed share) + current.
    let capacity = u128::from(limit) * u128::from(window);
    let estimate = |current: u64| {
        u128::from(previous) * u128::from(window - elapsed)
            + u128::from(current) * u128::from(window)
    };
    let remaining = |current: u64| {
        u64::try_from(capacity.saturating_sub(estimate(current)) / u128::from(window)).unwrap_or(0)
    };
    let reset = |current: u64| match (current, previous) {
        (0, 0) => 0,
        (0, _) => start + window - now,
        _ => start + 2 * window - now,
    };
    let unconsumed = state(true, remaining(current), 0, reset(current));
    if estimate(current + cost) <= capacity {
        let after = current + cost;
        return Verdict {
            state: state(true, remaining(after), 0, reset(after)),
            unconsumed,
            new_state: Fields::new(&[start, after, previous]),
            ttl_us: start + 2 * window - now,
            writes: cost > 0,
        };
    }
    // When will previous × share + current + cost fit? Within this window if
    // the current count leaves room, else once this window becomes the previous one.
    let retry_at = if current + cost <= limit {
        let room = limit - current - cost;
        start + window - room_share(room, previous, window)
    } else {
        let room = limit - cost;
        start + 2 * window - room_share(room, current, window)
    };
    let denied = state(
        false,
        remaining(current),
        retry_at.saturating_sub(now).max(1),
        reset(current),
    );
    Verdict {
        state: denied,
        unconsumed: denied,
        new_state: Fields::new(&[start, current, previous]),
        ttl_us: start + 2 * window - now,
        writes: false,
    }
}

/// The longest unelapsed part of a window (µs) at which `count` weighted by
/// it still fits in `room`: floor(room × window / count), capped at the window.
fn room_share(room: u64, count: u64, window: u64) -> u64 {
    if count == 0 {
        return window;
    }
    let share = u128::from(room) * u128::from(window) / u128::from(count);
    u64::try_from(share).unwrap_or(u64::MAX).min(window)
}

pub(crate) fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn run(rate: Rate, stored: &mut Option<String>, now: u64) -> RateState {
        let fields = stored
            .as_deref()
            .map_or_else(Fields::default, |s| Fields::parse(s.as_bytes()));
        let v = decide(rate, 1, fields, now);
        if v.state.allowed {
            *stored = Some(v.new_state.render());
        }
        v.state
    }

    #[test]
    fn gcra_burst_then_exact_retry_after() {
        let rate = Rate::Gcra(GcraRate::per(10, Duration::from_secs(1)).with_burst(3));
        let mut stored = None;
        for left in [2, 1, 0] {
            let s = run(rate, &mut stored, SECOND);
            assert!(s.allowed);
            assert_eq!(s.remaining, left);
        }
        let denied = run(rate, &mut stored, SECOND);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_millis(100));
        assert_eq!(denied.reset_after, Duration::from_millis(300));
        assert!(run(rate, &mut stored, SECOND + 100_000).allowed);
    }

    #[test]
    fn fixed_window_resets_at_the_boundary() {
        let rate = Rate::FixedWindow {
            limit: 2,
            window: Duration::from_secs(60),
        };
        let mut stored = None;
        let t = 120 * SECOND + 50 * SECOND;
        assert!(run(rate, &mut stored, t).allowed);
        assert!(run(rate, &mut stored, t).allowed);
        let denied = run(rate, &mut stored, t);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_secs(10));
        assert!(run(rate, &mut stored, 180 * SECOND).allowed);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let rate = Rate::SlidingWindow {
            limit: 10,
            window: Duration::from_secs(60),
        };
        let mut stored = None;
        for _ in 0..10 {
            assert!(run(rate, &mut stored, 59 * SECOND).allowed);
        }
        assert!(!run(rate, &mut stored, 59 * SECOND).allowed);
        // 15 s into the next window the previous 10 weigh 7.5: two more fit.
        let t = 75 * SECOND;
        assert!(run(rate, &mut stored, t).allowed);
        assert!(run(rate, &mut stored, t).allowed);
        let denied = run(rate, &mut stored, t);
        assert!(!denied.allowed);
        // 10 × share + 2 + 1 ≤ 10 once the unelapsed share is ≤ 0.7: at 78 s.
        assert_eq!(denied.retry_after, Duration::from_secs(3));
    }

    #[test]
    fn refunds_never_reach_past_now_or_an_expired_window() {
        let gcra = Rate::Gcra(GcraRate::per(10, Duration::from_secs(1)));
        let mut stored = None;
        run(gcra, &mut stored, SECOND);
        run(gcra, &mut stored, SECOND);
        let tat = Fields::parse(stored.as_deref().unwrap().as_bytes());
        // 150 ms later one of the two 100 ms units has been replenished by
        // time: giving both back lands on now, not before it.
        let back = refund(gcra, 2, tat, SECOND + 150_000);
        assert!(back.writes);
        assert_eq!(back.new_state.render(), (SECOND + 150_000).to_string());
        assert_eq!(back.state.remaining, 10);
        assert!(!refund(gcra, 1, tat, 2 * SECOND).writes, "all replenished");

        let minute = Duration::from_secs(60);
        let fixed = Rate::FixedWindow {
            limit: 5,
            window: minute,
        };
        let spent = Fields::parse(b"60000000:4");
        assert_eq!(
            refund(fixed, 1, spent, 70 * SECOND).new_state.render(),
            "60000000:3"
        );
        assert!(!refund(fixed, 1, spent, 130 * SECOND).writes, "window over");

        let sliding = Rate::SlidingWindow {
            limit: 5,
            window: minute,
        };
        let spent = Fields::parse(b"60000000:4:2");
        let back = refund(sliding, 1, spent, 130 * SECOND);
        assert_eq!(
            back.new_state.render(),
            "60000000:3:2",
            "the previous window still weighs"
        );
        // 10 s into the next window, 3 previous × 50/60 = 2.5: 2 units left.
        assert_eq!(back.state.remaining, 2);
        assert!(
            !refund(sliding, 1, spent, 190 * SECOND).writes,
            "both windows over"
        );
    }

    #[test]
    fn foreign_state_counts_as_fresh() {
        let rate = Rate::FixedWindow {
            limit: 1,
            window: Duration::from_secs(1),
        };
        let v = decide(rate, 1, Fields::parse(b"not-a-state"), SECOND);
        assert!(v.state.allowed);
        assert_eq!(Fields::parse(b"1:2:3:4"), Fields::default());
        assert_eq!(Fields::parse(b"12:34").render(), "12:34");
    }
}
