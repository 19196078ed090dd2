//! Which log lines repeat too often, and the one line that says how many were dropped.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Entries kept before idle ones are swept out.
const MAX_ENTRIES: usize = 1024;
/// Characters of a suppressed line quoted in its summary.
const SAMPLE_CHARS: usize = 160;

struct Entry {
    window_start: Instant,
    passed: u32,
    suppressed: u64,
    sample: String,
}

impl Entry {
    fn summary(&self, now: Instant) -> Option<String> {
        (self.suppressed > 0).then(|| {
            format!(
                "{} more identical lines suppressed in the last {} s: {}",
                self.suppressed,
                now.duration_since(self.window_start).as_secs().max(1),
                self.sample
            )
        })
    }
}

/// Counts identical lines per window.
pub struct Repeats {
    window: Duration,
    burst: u32,
    entries: HashMap<u64, Entry>,
    last_sweep: Instant,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Write the line.
    pub pass: bool,
    /// Summaries of suppressed lines whose window has closed, to write first.
    pub summaries: Vec<String>,
}

impl Repeats {
    pub fn new(window: Duration, burst: u32) -> Repeats {
        Repeats {
            window,
            burst: burst.max(1),
            entries: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Decides about a line whose identity (timestamp aside) is `key`.
    pub fn admit(&mut self, key: &str, now: Instant) -> Verdict {
        let mut summaries = Vec::new();
        if now.duration_since(self.last_sweep) >= self.window || self.entries.len() >= MAX_ENTRIES {
            self.sweep(now, &mut summaries);
        }
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let window = self.window;
        let e = self.entries.entry(h.finish()).or_insert_with(|| Entry {
            window_start: now,
            passed: 0,
            suppressed: 0,
            sample: key.chars().take(SAMPLE_CHARS).collect(),
        });
        if now.duration_since(e.window_start) >= window {
            summaries.extend(e.summary(now));
            e.window_start = now;
            e.passed = 0;
            e.suppressed = 0;
        }
        let pass = if e.passed < self.burst {
            e.passed += 1;
            true
        } else {
            e.suppressed += 1;
            false
        };
        Verdict { pass, summaries }
    }

    /// Closes expired windows (reporting what they suppressed) and forgets them; if the
    /// table is still full, forgets the oldest half.
    fn sweep(&mut self, now: Instant, summaries: &mut Vec<String>) {
        self.last_sweep = now;
        let window = self.window;
        self.entries.retain(|_, e| {
            if now.duration_since(e.window_start) >= window {
                summaries.extend(e.summary(now));
                false
            } else {
                true
            }
        });
        if self.entries.len() >= MAX_ENTRIES {
            let mut by_age: Vec<(Instant, u64)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.window_start, *k))
                .collect();
            by_age.sort_unstable();
            for (_, k) in by_age.iter().take(by_age.len() / 2) {
                if let Some(e) = self.entries.remove(k) {
                    summaries.extend(e.summary(now));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_lines_pass_a_burst_per_window_then_are_counted() {
        let t0 = Instant::now();
        let mut r = Repeats::new(Duration::from_secs(10), 3);
        let passed = (0..1000)
            .filter(|_| r.admit("WARN accept failed", t0).pass)
            .count();
        assert_eq!(passed, 3);
        // Other lines are not affected.
        assert!(r.admit("WARN something else", t0).pass);
        // The next window reports the 997 suppressed and lets the line through again.
        let v = r.admit("WARN accept failed", t0 + Duration::from_secs(11));
        assert!(v.pass);
        assert_eq!(v.summaries.len(), 1, "{:?}", v.summaries);
        assert!(v.summaries[0].starts_with("997 more identical lines suppressed"));
        assert!(v.summaries[0].ends_with("WARN accept failed"));
    }

    #[test]
    fn many_distinct_lines_keep_the_table_bounded() {
        let t0 = Instant::now();
        let mut r = Repeats::new(Duration::from_secs(10), 3);
        for i in 0..100_000 {
            assert!(r.admit(&format!("line {i}"), t0).pass);
        }
        assert!(r.entries.len() <= MAX_ENTRIES);
    }
}
