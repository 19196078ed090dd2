//! What unauthenticated traffic may cost the socket listener: a connection cap, a
//! first-frame and an idle timeout, eviction of the connections that do least, and
//! warnings rate-limited to one line per kind per [`LOG_EVERY`].
//!
//! Every connection is registered in a [`Registry`] with its [`Activity`]: waiting for
//! its first request, busy with one, or idle between requests, and since when. At the
//! cap a new connection takes the place of the one that has waited longest for its
//! first request, or else of the one idle longest (for at least [`IDLE_PROTECTED`]): that
//! one is shut down (its client's next write fails with `EPIPE`, which [`crate::client`]
//! answers by reconnecting, as nothing was sent). A connection busy with a request is
//! never closed. When nothing can be closed, the new connection gets one
//! `LimitExceededException` frame and is closed.
//!
//! A request the client has sent is never dropped by an eviction: the evictor first
//! shuts the socket for reading (from then on the client's writes fail with `EPIPE`,
//! and the connection's thread, blocked reading, sees end-of-file), then looks whether
//! bytes are waiting (`FIONREAD`), and only then marks the connection evicted, which
//! fails if its thread claimed it meanwhile ([`Activity::begin`], right after reading
//! a request's first bytes). Bytes that arrived before the shutdown are therefore
//! either seen by the evictor (the connection is spared), or claimed by the thread, or
//! taken by the thread just before the eviction's mark: the evictor leaves the write
//! side open, and the thread, whose claim then fails, answers that request and ends.
//! (Claiming after the read rather than before it, after a `MSG_PEEK`, saves a system
//! call per request.)
//!
//! The limits of one process, not of one caller: any local user who may connect can use
//! them up, and then keeps being evicted in turn (see docs/SECURITY.md).

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::protocol::ConnectionStatus;

/// A rate-limited warning is logged at most once per this interval.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
/// An idle connection is not evicted before it has been idle this long (a client
/// between two calls of a sequence keeps its connection).
pub(crate) const IDLE_PROTECTED: Duration = Duration::from_secs(1);
/// File descriptors kept free for everything but connections (trail segments,
/// keystore writes, LookupEvents reading segments, the log, refusals).
pub(crate) const RESERVED_FDS: u64 = 64;

/// The listener's limits (from `[kmsd]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once (already lowered to fit the open-file limit).
    pub max_connections: usize,
    pub first_frame_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A connection's phase and the time it entered it, in one atomic (for a lock-free
/// update per request and a race-free eviction).
pub(crate) struct Activity {
    /// `phase << 62 | milliseconds since the registry's epoch`.
    word: AtomicU64,
}

const PHASE_SHIFT: u32 = 62;
const TIME_MASK: u64 = (1 << PHASE_SHIFT) - 1;
const PENDING: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;
const EVICTED: u64 = 3;

impl Activity {
    fn new(now_ms: u64) -> Activity {
        Activity {
            word: AtomicU64::new(pack(PENDING, now_ms)),
        }
    }

    /// A request is arriving: busy, unless the connection was evicted (`false`: the
    /// request its thread has just read is the last it serves).
    pub(crate) fn begin(&self) -> bool {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            if cur >> PHASE_SHIFT == EVICTED {
                return false;
            }
            let next = pack(BUSY, cur & TIME_MASK);
            match self
                .word
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The reply is sent: idle from `now_ms`.
    pub(crate) fn idle(&self, now_ms: u64) {
        // Only the connection's own thread leaves BUSY, and eviction never touches a
        // busy connection, so a plain store cannot undo an eviction.
        self.word.store(pack(IDLE, now_ms), Ordering::Release);
    }

    /// Marks an evictable connection evicted; fails if it became busy meanwhile.
    fn evict(&self, seen: u64) -> bool {
        self.word
            .compare_exchange(
                seen,
                pack(EVICTED, seen & TIME_MASK),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

fn pack(phase: u64, ms: u64) -> u64 {
    phase << PHASE_SHIFT | (ms & TIME_MASK)
}

struct Tracked {
    stream: Arc<UnixStream>,
    activity: Arc<Activity>,
}

#[derive(Default)]
struct Counters {
    refused: AtomicU64,
    first_frame_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    evicted: AtomicU64,
}

/// The connections being served.
pub(crate) struct Registry {
    pub limits: Limits,
    epoch: Instant,
    table: Mutex<Table>,
    counters: Counters,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Tracked>,
}

/// A registered connection; unregisters itself when dropped.
pub(crate) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub stream: Arc<UnixStream>,
    pub activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().open.remove(&self.id);
    }
}

/// How a new connection was taken.
pub(crate) enum Admission {
    /// Served (`evicted`: another connection was closed to make room).
    Admitted { slot: Slot, evicted: bool },
    /// At the cap with nothing to close: refuse it.
    Refused(UnixStream),
}

/// Why a connection's thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimedOut {
    FirstFrame,
    Idle,
}

impl Registry {
    pub(crate) fn new(limits: Limits) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table's updates cannot panic halfway; a poisoned lock only means a
        // connection thread panicked elsewhere.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Milliseconds since the registry started (the clock of [`Activity`]).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(TIME_MASK)
    }

    /// Registers a new connection, making room at the cap if some connection may go.
    pub(crate) fn admit(self: &Arc<Self>, stream: UnixStream) -> Admission {
        let now = self.now_ms();
        let mut table = self.lock();
        let mut evicted = false;
        if table.open.len() >= self.limits.max_connections {
            if self.evict_one(&mut table, now) {
                evicted = true;
            } else {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Admission::Refused(stream);
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let stream = Arc::new(stream);
        let activity = Arc::new(Activity::new(now));
        table.open.insert(
            id,
            Tracked {
                stream: Arc::clone(&stream),
                activity: Arc::clone(&activity),
            },
        );
        Admission::Admitted {
            slot: Slot {
                registry: Arc::clone(self),
                id,
                stream,
                activity,
            },
            evicted,
        }
    }

    /// Closes one connection to free its file descriptor (after `EMFILE`); whether
    /// one could be closed.
    pub(crate) fn shed_one(&self) -> bool {
        let now = self.now_ms();
        let mut table = self.lock();
        self.evict_one(&mut table, now)
    }

    /// Shuts down the connection that waited longest for its first request, else the
    /// one idle longest (and at least [`IDLE_PROTECTED`]); never a busy one, nor one
    /// whose client has sent a request (see the module docs for why none is lost).
    fn evict_one(&self, table: &mut Table, now: u64) -> bool {
        let protected_ms = u64::try_from(IDLE_PROTECTED.as_millis()).unwrap_or(u64::MAX);
        // Shut for reading but holding a request: served once more, then ended.
        let mut spared: Vec<u64> = Vec::new();
        loop {
            let mut best: Option<(u64, u64, u64, u64)> = None; // (rank, since, id, word)
            for (id, t) in &table.open {
                let word = t.activity.word.load(Ordering::Acquire);
                let (phase, since) = (word >> PHASE_SHIFT, word & TIME_MASK);
                let rank = match phase {
                    PENDING => 0,
                    IDLE if now.saturating_sub(since) >= protected_ms => 1,
                    _ => continue,
                };
                if spared.contains(id) {
                    continue;
                }
                // Oldest first; among the same millisecond, the one admitted first.
                if best.is_none_or(|(r, s, i, _)| (rank, since, *id) < (r, s, i)) {
                    best = Some((rank, since, *id, word));
                }
            }
            let Some((_, _, id, word)) = best else {
                return false;
            };
            let Some(victim) = table.open.get(&id) else {
                return false;
            };
            // No byte can arrive after this; whatever arrived before is either still
            // queued or claimed by the connection's thread (`begin` before reading).
            let _ = victim.stream.shutdown(std::net::Shutdown::Read);
            if queued_bytes(&victim.stream) == 0 && victim.activity.evict(word) {
                // Its thread, blocked reading, sees end-of-file and exits (closing the
                // socket); or it has just taken a request, which it answers first.
                table.open.remove(&id);
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            // A request is in: it is served, then the connection ends. Look again.
            spared.push(id);
        }
    }

    pub(crate) fn timed_out(&self, kind: TimedOut) {
        let c = match kind {
            TimedOut::FirstFrame => &self.counters.first_frame_timeouts,
            TimedOut::Idle => &self.counters.idle_timeouts,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts `Status` reports.
    pub(crate) fn status(&self) -> ConnectionStatus {
        let c = &self.counters;
        ConnectionStatus {
            open: self.lock().open.len() as u64,
            max: self.limits.max_connections as u64,
            refused: c.refused.load(Ordering::Relaxed),
            first_frame_timeouts: c.first_frame_timeouts.load(Ordering::Relaxed),
            idle_timeouts: c.idle_timeouts.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
        }
    }
}

/// Bytes waiting in a socket's receive queue (`FIONREAD`); an error counts as some, so
/// that a connection that cannot be checked is never evicted.
fn queued_bytes(stream: &UnixStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into the pointer we pass, on a socket we own.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc != 0 {
        return 1;
    }
    usize::try_from(n).unwrap_or(1)
}

/// A warning that may repeat at any rate (one per refused connection, per failed
/// `accept`): logged at most once per [`LOG_EVERY`], with how many were not logged.
pub(crate) struct LogLimiter {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub(crate) const fn new() -> LogLimiter {
        LogLimiter {
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log now, `n` earlier occurrences were not logged; `None`: stay quiet.
    pub(crate) fn hit(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                s.1 += 1;
                None
            }
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns (soft before, soft now).
pub(crate) fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the rlimit we pass; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// The connection cap that fits `nofile` open files.
pub(crate) fn fit_cap(configured: u64, nofile: u64) -> usize {
    let fits = nofile.saturating_sub(RESERVED_FDS).max(1);
    usize::try_from(configured.min(fits)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> Arc<Registry> {
        Registry::new(Limits {
            max_connections: max,
            first_frame_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
        })
    }

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    fn admitted(a: Admission) -> (Slot, bool) {
        match a {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Refused(_) => panic!("refused"),
        }
    }

    #[test]
    fn the_cap_evicts_the_longest_waiting_then_refuses() {
        use std::io::{Read, Write};
        let r = registry(2);
        let (s1, mut c1) = pair();
        let (s2, _c2) = pair();
        let (a, _) = admitted(r.admit(s1));
        let (b, _) = admitted(r.admit(s2));
        // Both are waiting for a first request: the older one goes.
        let (s3, _c3) = pair();
        let (c, evicted) = admitted(r.admit(s3));
        assert!(evicted);
        // The evicted peer can send nothing more (its connection's thread, blocked
        // reading, sees end-of-file) ...
        let refused = c1.write(b"x").unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::BrokenPipe);
        assert!(
            !a.activity.begin(),
            "an evicted connection takes no new request"
        );
        // ... and sees end-of-file once that thread ends (the write side was left open
        // for a request the thread may have taken just before the eviction).
        drop(a);
        let mut buf = [0u8; 1];
        c1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c1.read(&mut buf).unwrap(), 0, "the evicted peer sees EOF");
        // Busy and freshly idle connections are kept: the next one is refused.
        assert!(b.activity.begin());
        assert!(c.activity.begin());
        c.activity.idle(r.now_ms());
        let (s4, _c4) = pair();
        assert!(matches!(r.admit(s4), Admission::Refused(_)));
        let st = r.status();
        assert_eq!((st.open, st.max, st.refused, st.evicted), (2, 2, 1, 1));
        // A slot frees itself when dropped.
        drop(b);
        let (s5, _c5) = pair();
        let (_e, evicted) = admitted(r.admit(s5));
        assert!(!evicted);
    }

    #[test]
    fn a_connection_whose_request_is_queued_is_never_evicted() {
        use std::io::{Read, Write};
        let r = registry(1);
        let (s1, mut c1) = pair();
        let (a, _) = admitted(r.admit(s1));
        // The client sent a request its connection's thread has not read yet.
        c1.write_all(b"request").unwrap();
        let (s2, _c2) = pair();
        assert!(matches!(r.admit(s2), Admission::Refused(_)));
        assert_eq!(r.status().evicted, 0);
        // It is still served: the thread claims it and reads it ...
        assert!(a.activity.begin());
        let mut buf = [0u8; 7];
        (&*a.stream).read_exact(&mut buf).unwrap();
        // ... while the client's next request fails to send (EPIPE): it reconnects.
        let e = c1.write_all(b"next").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn idle_connections_are_evicted_after_their_protection() {
        let r = registry(1);
        let (s1, _c1) = pair();
        let (a, _) = admitted(r.admit(s1));
        assert!(a.activity.begin());
        // Idle since long before now (the clock is the registry's).
        a.activity.idle(0);
        std::thread::sleep(IDLE_PROTECTED + Duration::from_millis(20));
        let (s2, _c2) = pair();
        let (_b, evicted) = admitted(r.admit(s2));
        assert!(evicted);
        assert!(!a.activity.begin());
    }

    #[test]
    fn a_request_read_just_before_its_eviction_is_still_answered() {
        use std::io::{Read, Write};
        let r = registry(1);
        let (s1, mut c1) = pair();
        let (a, _) = admitted(r.admit(s1));
        assert!(a.activity.begin());
        a.activity.idle(0);
        std::thread::sleep(IDLE_PROTECTED + Duration::from_millis(20));
        // The client sends a request; the connection's thread reads it but has not
        // claimed the connection yet when the eviction comes.
        c1.write_all(b"request").unwrap();
        let mut got = [0u8; 7];
        (&*a.stream).read_exact(&mut got).unwrap();
        let (s2, _c2) = pair();
        let (_b, evicted) = admitted(r.admit(s2));
        assert!(evicted, "nothing queued and not busy: evicted");
        // The claim fails, but the write side is open: the request is answered.
        assert!(!a.activity.begin());
        (&*a.stream).write_all(b"reply").unwrap();
        let mut reply = [0u8; 5];
        c1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c1.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"reply");
        drop(a);
        assert_eq!(c1.read(&mut reply).unwrap(), 0, "then the connection ends");
    }

    #[test]
    fn log_limiter_counts_what_it_kept_quiet() {
        let l = LogLimiter::new();
        assert_eq!(l.hit(), Some(0));
        assert_eq!(l.hit(), None);
        assert_eq!(l.hit(), None);
        l.state.lock().unwrap().0 = Some(Instant::now() - LOG_EVERY);
        assert_eq!(l.hit(), Some(2));
    }

    #[test]
    fn caps_fit_the_file_limit() {
        assert_eq!(fit_cap(1024, 1_048_576), 1024);
        assert_eq!(fit_cap(1024, 128), 64);
        assert_eq!(fit_cap(1024, 10), 1);
        let (before, now) = raise_nofile_limit().unwrap();
        assert!(now >= before);
    }
}
