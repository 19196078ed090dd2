//! Time, as kmsd sees it: the system clock, or one that tests can move forward.
//!
//! Deletion windows and rotation periods are days long; integration tests run kmsd
//! with `--allow-clock-control` and move its clock past them with `AdvanceClock`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A source of "now", in Unix milliseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
    /// Moves the clock forward; `false` if this clock cannot be moved.
    fn advance(&self, _seconds: u64) -> bool {
        false
    }
}

fn system_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

/// The system clock plus an offset that only grows (tests).
#[derive(Debug, Default)]
pub struct MovableClock {
    offset_ms: AtomicI64,
}

impl MovableClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for MovableClock {
    fn now_ms(&self) -> i64 {
        system_now_ms().saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }
    fn advance(&self, seconds: u64) -> bool {
        let add = i64::try_from(seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(add))
            });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movable_clock_moves_forward() {
        let c = MovableClock::new();
        let before = c.now_ms();
        assert!(c.advance(86_400));
        assert!(c.now_ms() >= before + DAY_MS);
        assert!(!SystemClock.advance(1));
    }
}
