//! What unauthenticated traffic may cost a Unix-socket listener (one thread per
//! connection, one frame in, one frame out): a connection cap, a first-frame and an idle
//! timeout, eviction of the connections that do least, accept failures backed off, and
//! warnings rate-limited to one line per [`LOG_EVERY`].
//!
//! - Every connection is tracked with its phase: waiting for its first frame, busy with a
//!   request, or idle between requests, and since when. A whole frame must arrive within
//!   [`Limits::first_frame_timeout`] of the connect, and each later one within
//!   [`Limits::idle_timeout`] of the previous answer; a client that trickles bytes gets no
//!   more time than one that sends nothing.
//! - At the cap ([`Limits::max_connections`], lowered to fit the open-file limit) a new
//!   connection takes the place of the oldest one that has sent nothing yet (a real
//!   client writes its request as soon as it connects), else of the oldest still short of
//!   its first frame, else of the one idle longest (for at least [`IDLE_PROTECTED`]):
//!   that one is shut down. A connection busy with a request is never closed, so no request is cut off
//!   and an evicted client's request was never started. When nothing can go, the new
//!   connection is handed back to be refused with one error frame.
//! - `EMFILE`/`ENFILE` (and `ENOBUFS`/`ENOMEM`) from accept(2) close the oldest evictable
//!   connection and wait with a doubling delay (5 ms to 500 ms), instead of retrying at
//!   once (which spins at full CPU and logs a line per try).
//! - What happened to connections is logged as one summary line per interval, counting
//!   evictions, refusals, timeouts, bad frames and failed accepts.
//!
//! The limits are the process's, not one caller's: any user who may connect can use them
//! up and is then evicted in turn. The protocol (what a refusal frame says) is the
//! caller's; this module only moves connections.
//!
//! A daemon stops its accept loop with an [`AcceptWaker`]: it shuts the listening socket
//! down, which fails the blocked accept(2) whatever became of the socket's path.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::frame::{self, FrameError};

/// A summary of what happened to connections is logged at most once per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// An idle connection is not evicted before it has been idle this long (a client
/// between two calls of a sequence keeps its connection).
pub const IDLE_PROTECTED: Duration = Duration::from_secs(1);
const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// A listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// A new connection's first frame must be whole within this.
    pub first_frame_timeout: Duration,
    /// Each later frame must be whole within this of the previous answer.
    pub idle_timeout: Duration,
    /// An answer must be taken by the client within this.
    pub write_timeout: Duration,
}

impl Limits {
    /// These limits with `max_connections` lowered so that the connections and `reserved`
    /// other descriptors fit the soft `RLIMIT_NOFILE` (at least 4 connections).
    pub fn fitted(self, reserved: u64) -> Limits {
        let soft = nofile_limit().map(|(soft, _)| soft).unwrap_or(1024);
        let room = usize::try_from(soft.saturating_sub(reserved))
            .unwrap_or(usize::MAX)
            .max(4);
        // Evicted connections still closing may go past the cap by up to its slack.
        let room = room.saturating_sub(closing_slack(room)).max(4);
        Limits {
            max_connections: self.max_connections.min(room),
            ..self
        }
    }
}

/// The (soft, hard) `RLIMIT_NOFILE` of this process.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one (the soft default, 1024, is what runs
/// out first); returns the (soft, hard) limits in force.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    nofile_limit()
}

/// Whether an accept error means the process or system ran out of something (as opposed
/// to one connection failing).
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; its first frame has not arrived whole.
    Pending,
    Busy,
    /// Answered; its next frame has not arrived whole.
    Idle,
    Evicted,
}

struct Tracked {
    stream: Arc<UnixStream>,
    phase: Phase,
    since: Instant,
}

/// What happened to a listener's connections (counted between two summary lines, and
/// in total: [`Connections::totals`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub evicted: u64,
    pub refused: u64,
    pub first_frame_timeouts: u64,
    pub idle_timeouts: u64,
    pub bad_frames: u64,
    pub accept_failures: u64,
}

impl Counts {
    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    fn add(&mut self, o: &Counts) {
        self.evicted += o.evicted;
        self.refused += o.refused;
        self.first_frame_timeouts += o.first_frame_timeouts;
        self.idle_timeouts += o.idle_timeouts;
        self.bad_frames += o.bad_frames;
        self.accept_failures += o.accept_failures;
    }
}

struct Table {
    next_id: u64,
    open: HashMap<u64, Tracked>,
    /// Since the last summary line.
    counts: Counts,
    /// Before it.
    logged: Counts,
    last_log: Option<Instant>,
    /// The first error of each kind since the last line (shown in it).
    last_error: Option<String>,
}

/// The connections of one listener.
pub struct Connections {
    name: &'static str,
    limits: Limits,
    table: Mutex<Table>,
}

/// How a new connection was taken.
pub enum Admission {
    /// Served (another connection may have been closed to make room).
    Admitted(Conn),
    /// At the cap with nothing to close: answer it with a refusal and drop it.
    Refused(UnixStream),
}

/// Why a connection's next frame did not come.
#[derive(Debug)]
pub enum End {
    /// The client closed it between frames.
    Closed,
    /// Its frame did not arrive whole in time.
    TimedOut,
    /// It was closed to make room for another.
    Evicted,
    /// It sent something that is not a frame (answer it, then close).
    Bad(FrameError),
}

/// One tracked connection; untracked when dropped.
pub struct Conn {
    connections: Arc<Connections>,
    id: u64,
    stream: Arc<UnixStream>,
}

impl Connections {
    /// `name` says which listener in log lines (`"ec2.sock"`).
    pub fn new(name: &'static str, limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            name,
            limits,
            table: Mutex::new(Table {
                next_id: 0,
                open: HashMap::new(),
                counts: Counts::default(),
                logged: Counts::default(),
                last_log: None,
                last_error: None,
            }),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // No update of the table can panic halfway; a poisoned lock only means a
        // connection thread panicked elsewhere.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are open (not counting evicted ones still closing).
    pub fn open(&self) -> usize {
        live(&self.lock())
    }

    /// Everything counted since the listener started.
    pub fn totals(&self) -> Counts {
        let table = self.lock();
        let mut t = table.logged;
        t.add(&table.counts);
        t
    }

    /// Tracks a new connection, making room at the cap if some connection may go.
    pub fn admit(self: &Arc<Self>, stream: UnixStream) -> Admission {
        let now = Instant::now();
        let mut table = self.lock();
        let max = self.limits.max_connections;
        // Evicted connections hold their descriptor until their thread lets go of it:
        // while `closing_slack` of them are still closing, wait (a little) for them
        // rather than take more descriptors, which the service needs for its own work
        // (kmsd, the registry, images). This also paces a client that reconnects as
        // fast as it is evicted.
        let mut waited = Duration::ZERO;
        while table.open.len() >= max.saturating_add(closing_slack(max)) && waited < CLOSING_WAIT {
            drop(table);
            std::thread::sleep(Duration::from_millis(2));
            waited += Duration::from_millis(2);
            table = self.lock();
        }
        if (live(&table) >= max && !evict_locked(&mut table, now))
            || table.open.len() >= max.saturating_add(closing_slack(max))
        {
            table.counts.refused += 1;
            self.log_locked(&mut table, now);
            return Admission::Refused(stream);
        }
        // Writes never block the thread longer than this; reads get their deadline per
        // frame.
        let _ = stream.set_write_timeout(Some(self.limits.write_timeout));
        let stream = Arc::new(stream);
        let id = table.next_id;
        table.next_id += 1;
        table.open.insert(
            id,
            Tracked {
                stream: Arc::clone(&stream),
                phase: Phase::Pending,
                since: now,
            },
        );
        self.log_locked(&mut table, now);
        Admission::Admitted(Conn {
            connections: Arc::clone(self),
            id,
            stream,
        })
    }

    /// Closes the connection that has waited longest for its first frame, or else the one
    /// idle longest; false if every connection is busy or was idle too briefly.
    pub fn evict_one(&self) -> bool {
        let now = Instant::now();
        let mut table = self.lock();
        let done = evict_locked(&mut table, now);
        self.log_locked(&mut table, now);
        done
    }

    fn note(&self, f: impl FnOnce(&mut Counts), error: Option<String>) {
        let now = Instant::now();
        let mut table = self.lock();
        f(&mut table.counts);
        if table.last_error.is_none() {
            table.last_error = error;
        }
        self.log_locked(&mut table, now);
    }

    /// One line for everything counted since the last one, at most once per [`LOG_EVERY`].
    fn log_locked(&self, table: &mut Table, now: Instant) {
        if table.counts.is_empty()
            || table
                .last_log
                .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            return;
        }
        let c = std::mem::take(&mut table.counts);
        table.logged.add(&c);
        let example = table.last_error.take();
        table.last_log = Some(now);
        tracing::warn!(
            listener = self.name,
            open = table.open.len(),
            max = self.limits.max_connections,
            evicted = c.evicted,
            refused = c.refused,
            first_frame_timeouts = c.first_frame_timeouts,
            idle_timeouts = c.idle_timeouts,
            bad_frames = c.bad_frames,
            accept_failures = c.accept_failures,
            "connections closed or refused (one line per {} s){}",
            LOG_EVERY.as_secs(),
            example.map(|e| format!("; e.g. {e}")).unwrap_or_default()
        );
    }

    /// Accepts connections until `stop` is set (wake the loop with a connect to stop it):
    /// admitted ones go to `serve` (which returns false if it could not take one, e.g. no
    /// thread could be started), refused ones to `refuse`.
    pub fn accept_loop(
        self: &Arc<Self>,
        listener: &UnixListener,
        stop: &AtomicBool,
        mut serve: impl FnMut(Conn) -> bool,
        mut refuse: impl FnMut(UnixStream),
    ) {
        let mut delay = FIRST_DELAY;
        loop {
            let accepted = listener.accept();
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match accepted {
                Ok((stream, _)) => {
                    delay = FIRST_DELAY;
                    match self.admit(stream) {
                        Admission::Admitted(conn) => {
                            if !serve(conn) {
                                self.note(|c| c.refused += 1, None);
                            }
                        }
                        Admission::Refused(stream) => refuse(stream),
                    }
                }
                Err(e) if is_exhaustion(&e) => {
                    self.note(
                        |c| c.accept_failures += 1,
                        Some(format!("cannot accept: {e}")),
                    );
                    // A descriptor freed now lets the next accept take the waiting client.
                    self.evict_one();
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_DELAY);
                }
                Err(e) => self.note(|c| c.accept_failures += 1, Some(format!("accept: {e}"))),
            }
        }
    }
}

/// Whether bytes sent by the client wait to be read (a client that wrote its request
/// right after connecting, as every real one does, has them before its thread runs).
fn has_input(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    rc == 0 && n > 0
}

/// Picks and shuts down the connection to evict (under the table lock): the oldest
/// connection that has sent nothing yet, else the oldest still short of its first frame,
/// else the oldest idle one.
/// Connections being served or waiting for a frame (evicted ones still closing are not).
fn live(table: &Table) -> usize {
    table
        .open
        .values()
        .filter(|t| t.phase != Phase::Evicted)
        .count()
}

/// How many evicted connections may still hold their descriptor beyond the cap, so
/// descriptors stay bounded however fast clients reconnect (ec2.sock under `prlimit
/// --nofile=128`, cap 64, held 111 sockets before evicted ones were counted, and its
/// own registry lock then failed with EMFILE).
fn closing_slack(max: usize) -> usize {
    (max / 8).max(4)
}

/// How long a new connection waits for evicted ones to finish closing.
const CLOSING_WAIT: Duration = Duration::from_millis(200);

fn evict_locked(table: &mut Table, now: Instant) -> bool {
    let mut pending: Vec<(u64, Instant)> = table
        .open
        .iter()
        .filter(|(_, t)| t.phase == Phase::Pending)
        .map(|(id, t)| (*id, t.since))
        .collect();
    pending.sort_by_key(|(_, since)| *since);
    let silent = pending
        .iter()
        .find(|(id, _)| table.open.get(id).is_some_and(|t| !has_input(&t.stream)))
        .or(pending.first())
        .map(|(id, _)| *id);
    let victim = silent.or_else(|| {
        table
            .open
            .iter()
            .filter(|(_, t)| {
                t.phase == Phase::Idle && now.duration_since(t.since) >= IDLE_PROTECTED
            })
            .min_by_key(|(_, t)| t.since)
            .map(|(id, _)| *id)
    });
    let Some(id) = victim else {
        return false;
    };
    if let Some(t) = table.open.get_mut(&id) {
        t.phase = Phase::Evicted;
        // Its thread's read returns at once; it stops tracking the connection (and
        // closes its descriptor) itself. Until then it counts as closing, not live.
        let _ = t.stream.shutdown(std::net::Shutdown::Both);
    }
    table.counts.evicted += 1;
    true
}

/// A reader that gives up at a deadline: each read waits at most until then.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            }
            other => other,
        }
    }
}

impl Conn {
    /// The connection (reads and writes go through the same descriptor).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    fn phase(&self) -> Option<(Phase, Instant)> {
        self.connections
            .lock()
            .open
            .get(&self.id)
            .map(|t| (t.phase, t.since))
    }

    /// Waits for the next whole frame (its payload into `buf`), within the phase's
    /// deadline; on success the connection is busy until [`Conn::answered`].
    pub fn next_frame(&self, buf: &mut Vec<u8>, max: usize) -> Result<(), End> {
        let limits = self.connections.limits;
        let Some((phase, since)) = self.phase().filter(|(p, _)| *p != Phase::Evicted) else {
            return Err(End::Evicted);
        };
        let until = since
            + match phase {
                Phase::Pending => limits.first_frame_timeout,
                _ => limits.idle_timeout,
            };
        let mut r = Deadline {
            stream: &self.stream,
            until,
        };
        let res = frame::read_bytes(&mut r, buf, max);
        let mut table = self.connections.lock();
        let Some(t) = table
            .open
            .get_mut(&self.id)
            .filter(|t| t.phase != Phase::Evicted)
        else {
            return Err(End::Evicted);
        };
        match res {
            Ok(()) => {
                t.phase = Phase::Busy;
                t.since = Instant::now();
                Ok(())
            }
            Err(FrameError::Closed) => Err(End::Closed),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                if phase == Phase::Pending {
                    table.counts.first_frame_timeouts += 1;
                } else {
                    table.counts.idle_timeouts += 1;
                }
                self.connections.log_locked(&mut table, Instant::now());
                Err(End::TimedOut)
            }
            Err(e) => {
                table.counts.bad_frames += 1;
                if table.last_error.is_none() {
                    table.last_error = Some(format!("bad frame: {e}"));
                }
                self.connections.log_locked(&mut table, Instant::now());
                Err(End::Bad(e))
            }
        }
    }

    /// The answer is written: idle from now (its next frame's deadline starts).
    pub fn answered(&self) {
        let mut table = self.connections.lock();
        if let Some(t) = table
            .open
            .get_mut(&self.id)
            .filter(|t| t.phase != Phase::Evicted)
        {
            t.phase = Phase::Idle;
            t.since = Instant::now();
        }
    }

    /// Writes `bytes` (a whole frame) to the client.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut w: &UnixStream = &self.stream;
        w.write_all(bytes)?;
        w.flush()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            max_connections: max,
            first_frame_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(1),
        }
    }

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn at_the_cap_the_oldest_silent_connection_makes_room() {
        let conns = Connections::new("test", limits(2));
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        let (c, _c_peer) = pair();
        let Admission::Admitted(first) = conns.admit(a) else {
            panic!("refused below the cap")
        };
        let Admission::Admitted(_second) = conns.admit(b) else {
            panic!("refused below the cap")
        };
        let Admission::Admitted(_third) = conns.admit(c) else {
            panic!("nothing made room")
        };
        assert_eq!(conns.open(), 2);
        // The first was shut down: its client reads end-of-file, its thread stops.
        let mut byte = [0u8; 1];
        assert_eq!(a_peer.read(&mut byte).unwrap(), 0);
        assert!(matches!(
            first.next_frame(&mut Vec::new(), 64),
            Err(End::Evicted)
        ));
    }

    #[test]
    fn a_connection_whose_request_waits_outlives_silent_ones() {
        let conns = Connections::new("test", limits(2));
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        let (c, _c_peer) = pair();
        let Admission::Admitted(real) = conns.admit(a) else {
            panic!("refused")
        };
        // Sent before its thread read anything: older, but not silent.
        frame::write(&mut a_peer, &(1u16, 2u8), &mut Vec::new(), 64).unwrap();
        let Admission::Admitted(_silent) = conns.admit(b) else {
            panic!("refused")
        };
        let Admission::Admitted(_newer) = conns.admit(c) else {
            panic!("nothing made room")
        };
        real.next_frame(&mut Vec::new(), 64).unwrap();
    }

    #[test]
    fn a_busy_connection_is_never_evicted() {
        let conns = Connections::new("test", limits(1));
        let (a, mut a_peer) = pair();
        let Admission::Admitted(busy) = conns.admit(a) else {
            panic!("refused")
        };
        frame::write(&mut a_peer, &(1u16, 2u8), &mut Vec::new(), 64).unwrap();
        busy.next_frame(&mut Vec::new(), 64).unwrap();
        let (b, _b_peer) = pair();
        assert!(matches!(conns.admit(b), Admission::Refused(_)));
        // Answered and idle, but only just: still protected.
        busy.answered();
        let (c, _c_peer) = pair();
        assert!(matches!(conns.admit(c), Admission::Refused(_)));
    }

    #[test]
    fn a_frame_must_be_whole_by_its_deadline_however_it_trickles() {
        let conns = Connections::new("test", limits(4));
        let (a, mut a_peer) = pair();
        let Admission::Admitted(conn) = conns.admit(a) else {
            panic!("refused")
        };
        let t0 = Instant::now();
        let writer = std::thread::spawn(move || {
            // A length of 100, then one byte every 100 ms: never whole in time.
            a_peer.write_all(&100u32.to_be_bytes()).unwrap();
            for _ in 0..10 {
                if a_peer.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        assert!(matches!(
            conn.next_frame(&mut Vec::new(), 1024),
            Err(End::TimedOut)
        ));
        let waited = t0.elapsed();
        assert!(
            waited < Duration::from_millis(700),
            "waited {waited:?} for a 300 ms deadline"
        );
        drop(conn);
        writer.join().unwrap();
        assert_eq!(conns.open(), 0);
    }

    #[test]
    fn the_file_limit_bounds_the_cap() {
        let (soft, hard) = raise_nofile_limit().unwrap();
        assert_eq!(soft, hard);
        let l = limits(usize::MAX).fitted(64);
        // Room for the cap and the evicted connections still closing beyond it.
        let room = soft.saturating_sub(64).max(4);
        let cap = l.max_connections as u64;
        assert!(
            cap < room && cap + (cap / 8).max(4) <= room,
            "{l:?}, room {room}"
        );
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}

/// Wakes an accept(2) blocked on a listener, from another thread, so that its loop sees
/// its stop flag. It shuts the listening socket down (Linux then fails the accept, and
/// every later one, with `EINVAL`). Connecting to the socket's path would do it only while
/// the path exists: with the socket file or its directory removed under a running daemon
/// (a state directory deleted by hand), that connect fails and the accept waits for ever,
/// so SIGTERM would never stop the daemon.
#[derive(Debug)]
pub struct AcceptWaker(UnixListener);

impl AcceptWaker {
    /// A waker for `listener` (it holds a duplicate of the descriptor).
    pub fn new(listener: &UnixListener) -> io::Result<AcceptWaker> {
        listener.try_clone().map(AcceptWaker)
    }

    /// Fails the listener's blocked accept and every later one. Set the loop's stop flag
    /// first.
    pub fn wake(&self) {
        // SAFETY: shutdown(2) on a descriptor this value owns (open until it is dropped);
        // it reads and writes no memory of ours.
        let rc = unsafe { libc::shutdown(self.0.as_raw_fd(), libc::SHUT_RDWR) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot shut the listening socket down to stop accepting");
        }
    }
}
