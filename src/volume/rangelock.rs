//! Sector-range locks: readers share, writers exclude, and only overlapping ranges wait.
//!
//! A read-modify-write of a partial sector must not interleave with another write of the
//! same sector, or one of the two updates is lost (a torn sector). Locking exactly the
//! sectors an operation touches keeps writers of different sectors fully parallel. The
//! internal mutex guards only the short list of held ranges, never the I/O itself.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy)]
struct Held {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

#[derive(Debug, Default)]
struct State {
    held: Vec<Held>,
    next_id: u64,
    /// Threads waiting in [`RangeLock::acquire`]: a release wakes them only if there are
    /// any (`Condvar::notify_all` is a futex syscall even with no waiter, once per I/O).
    waiting: usize,
}

/// A set of held sector ranges `[start, end)`.
#[derive(Debug, Default)]
pub struct RangeLock {
    state: Mutex<State>,
    released: Condvar,
}

/// Releases its range when dropped.
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the list cannot leave it inconsistent (every update is a
        // single push or remove), so a poisoned mutex is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(&self, start: u64, end: u64, exclusive: bool) -> RangeGuard<'_> {
        let mut st = self.state();
        loop {
            let conflict = st
                .held
                .iter()
                .any(|h| h.start < end && start < h.end && (exclusive || h.exclusive));
            if !conflict {
                break;
            }
            st.waiting += 1;
            st = self.released.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        st.held.push(Held {
            id,
            start,
            end,
            exclusive,
        });
        RangeGuard { lock: self, id }
    }

    /// Waits until no writer holds any sector of `[start, end)`, then holds it shared.
    pub fn read(&self, start: u64, end: u64) -> RangeGuard<'_> {
        self.acquire(start, end, false)
    }

    /// Waits until nobody holds any sector of `[start, end)`, then holds it exclusively.
    pub fn write(&self, start: u64, end: u64) -> RangeGuard<'_> {
        self.acquire(start, end, true)
    }

    /// Number of ranges held right now (for tests and diagnostics).
    pub fn held(&self) -> usize {
        self.state().held.len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.lock.state();
        if let Some(i) = st.held.iter().position(|h| h.id == self.id) {
            st.held.swap_remove(i);
        }
        let waiting = st.waiting > 0;
        drop(st);
        if waiting {
            self.lock.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn disjoint_writers_do_not_wait() {
        let l = RangeLock::new();
        let _a = l.write(0, 1);
        let _b = l.write(1, 2);
        let _c = l.read(2, 10);
        let _d = l.read(5, 6);
        assert_eq!(l.held(), 4);
    }

    #[test]
    fn overlapping_writer_waits_until_release() {
        let l = Arc::new(RangeLock::new());
        let g = l.write(3, 5);
        let got = Arc::new(AtomicBool::new(false));
        let (l2, got2) = (l.clone(), got.clone());
        let t = std::thread::spawn(move || {
            let _g = l2.read(4, 8);
            got2.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!got.load(Ordering::SeqCst));
        drop(g);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert_eq!(l.held(), 0);
    }
}
