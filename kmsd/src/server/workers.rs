//! The connection loops: one thread per core serves every connection it is given,
//! event-driven (`mio`, epoll), so that a request costs no thread wake-up or hand-off
//! of its own and the records of many requests go to the trail in one `write(2)`.
//!
//! Each turn a worker waits for readiness, reads every ready connection (non-blocking,
//! at most [`READ_PER_TURN`] bytes each, into a buffer that holds only what arrived),
//! answers every whole request frame in it with [`KeyService::handle_envelope`] under an
//! [`audit::Deferral`], records the turn's deferred audit events with one batch (one
//! trail `write(2)`, plus one fdatasync in `every-event`) and only then encodes and sends
//! the replies; if the batch cannot be written, every reply it covers becomes the audit
//! refusal (fail closed: nothing answered is missing from the trail). Calls that may
//! change state or read much (anything not read-only, and LookupEvents) run on a thread
//! of their own, so that their fdatasync or scan never stalls the worker's other
//! connections; their connection reads nothing more until the reply is back.
//!
//! The listener's rules are [`super::connections`]'s: before taking a byte from a
//! connection the worker claims it ([`super::connections::Activity::begin`], which fails if it was evicted),
//! and marks it idle once its replies are sent and no frame has started. A connection
//! must send its first request, and the whole of every request, within the first-frame
//! timeout, may stay idle for the idle timeout, and must take each reply within the
//! first-frame timeout; timeouts are checked at least every [`SCAN_EVERY`]. A reply not
//! yet taken stops the worker reading that connection (no unbounded buffering).
//!
//! Why `mio`: a thin, well-kept wrapper over epoll (already in the workspace through
//! tokio); a full async runtime would add a scheduler between the socket and the
//! service for nothing, the service being synchronous.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::connections::{LogLimiter, Registry, Slot, TimedOut};
use crate::protocol::{
    decode_request, encode_frame, ErrorCode, FrameError, KmsError, Request, RequestEnvelope,
    Response, ResponseEnvelope, MAX_FRAME, PROTOCOL_VERSION,
};
use crate::service::audit::Deferral;
use crate::service::authz::Peer;
use crate::service::{audit_refusal, KeyService};

/// The token of a worker's waker (new connections, offloaded calls done, stop).
const WAKE: Token = Token(usize::MAX);
/// Bytes read from one connection per turn, so that one flooding client cannot hold
/// the worker; the rest is read next turn.
const READ_PER_TURN: usize = 256 * 1024;
/// Timeouts are checked at least this often.
const SCAN_EVERY: Duration = Duration::from_millis(50);

/// A connection the accept loop admitted, for a worker.
pub(crate) struct NewConn {
    pub slot: Slot,
    pub peer: Peer,
}

enum Inbox {
    Conn(NewConn),
    /// An offloaded call finished.
    Done {
        id: usize,
        result: Result<Response, KmsError>,
    },
}

/// The accept loop's side of a worker.
pub(crate) struct WorkerHandle {
    tx: Sender<Inbox>,
    waker: Arc<Waker>,
}

impl WorkerHandle {
    /// Gives the worker a connection; gives it back if the worker is gone.
    pub(crate) fn hand(&self, conn: NewConn) -> Result<(), NewConn> {
        match self.tx.send(Inbox::Conn(conn)) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(mpsc::SendError(Inbox::Conn(c))) => Err(c),
            Err(_) => Ok(()),
        }
    }

    /// Wakes the worker (to see the stop flag).
    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// Starts one worker. It serves until `stop` is set and its last connection closed.
pub(crate) fn spawn(
    index: usize,
    service: Arc<KeyService>,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
) -> io::Result<WorkerHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let (tx, rx) = mpsc::channel();
    let mut worker = Worker {
        poll,
        service,
        registry,
        stop,
        rx,
        tx: tx.clone(),
        waker: Arc::clone(&waker),
        conns: HashMap::new(),
        next_id: 0,
        scratch: vec![0u8; 64 * 1024],
        frame: Vec::with_capacity(1024),
        again: Vec::new(),
        replies: Vec::new(),
        touched: Vec::new(),
    };
    std::thread::Builder::new()
        .name(format!("kmsd-worker-{index}"))
        .spawn(move || worker.run())?;
    Ok(WorkerHandle { tx, waker })
}

/// How many workers: one per core.
pub(crate) fn count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// An answer waiting for the turn's audit batch.
// Kept in a Vec reused every turn: boxing the large variant would cost an allocation
// per request instead.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Ping,
    /// `deferred`: its audit event is in the turn's batch.
    Frame {
        result: Result<Response, KmsError>,
        deferred: bool,
    },
    /// A bad frame: this error, then the connection is closed.
    Refusal(String),
}

struct Conn {
    slot: Slot,
    peer: Arc<Peer>,
    /// Bytes read and not yet consumed (whole frames are consumed each turn).
    inbuf: Vec<u8>,
    /// When the frame at the start of `inbuf` began to arrive.
    frame_started: Option<Instant>,
    /// Reply bytes not yet sent, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Since when `out` has waited for the client.
    out_since: Option<Instant>,
    /// Claimed ([`Activity::begin`]) and not yet idle again.
    busy: bool,
    /// A whole request has been read (the idle timeout applies from then on).
    started: bool,
    /// Connected, or last idle, at this time.
    since: Instant,
    /// Bytes may be waiting (an edge was seen and not read to `WouldBlock`).
    readable: bool,
    /// The peer has shut its end (or the socket has an error): read to end-of-file.
    hup: bool,
    /// An offloaded call is running; nothing more is read meanwhile.
    in_flight: bool,
    /// WRITABLE interest is registered.
    want_write: bool,
    /// Close once the replies are flushed (end-of-file, a bad frame).
    closing: bool,
    /// Close now (evicted, an error).
    dead: bool,
    /// Listed in this turn's work already.
    queued: bool,
}

impl Conn {
    fn out_pending(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Whether `inbuf` holds a whole frame (or a frame header too large to read).
    fn has_frame(&self) -> bool {
        frame_len(&self.inbuf).is_some_and(|len| len > MAX_FRAME || self.inbuf.len() >= 4 + len)
    }

    /// When this connection times out, and how that is counted.
    fn deadline(&self, ff: Duration, idle: Duration) -> Option<(Instant, Option<TimedOut>)> {
        if self.in_flight {
            return None;
        }
        if let Some(t) = self.out_since {
            return Some((t + ff, None));
        }
        let kind = if self.started {
            TimedOut::Idle
        } else {
            TimedOut::FirstFrame
        };
        if let Some(t) = self.frame_started {
            return Some((t + ff, Some(kind)));
        }
        if self.started {
            Some((self.since + idle, Some(kind)))
        } else {
            Some((self.since + ff, Some(kind)))
        }
    }
}

/// The length a frame's header announces, once its 4 bytes are in.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let header: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

struct Worker {
    poll: Poll,
    service: Arc<KeyService>,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
    rx: Receiver<Inbox>,
    tx: Sender<Inbox>,
    waker: Arc<Waker>,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    scratch: Vec<u8>,
    frame: Vec<u8>,
    /// Connections to serve next turn without waiting for an event.
    again: Vec<usize>,
    replies: Vec<(usize, Reply)>,
    touched: Vec<usize>,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let deferral = Deferral::begin();
        let limits = self.registry.limits;
        let mut next_scan = Instant::now() + SCAN_EVERY;
        let mut ready: Vec<usize> = Vec::new();
        loop {
            let timeout = if self.again.is_empty() {
                next_scan.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "connection loop: poll failed");
                    std::thread::sleep(SCAN_EVERY);
                }
                continue;
            }
            ready.clear();
            for id in self.again.drain(..) {
                if let Some(c) = self.conns.get_mut(&id) {
                    if !c.queued {
                        c.queued = true;
                        ready.push(id);
                    }
                }
            }
            let mut woken = false;
            for ev in events.iter() {
                if ev.token() == WAKE {
                    woken = true;
                    continue;
                }
                let id = ev.token().0;
                let Some(c) = self.conns.get_mut(&id) else {
                    continue;
                };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.readable = true;
                }
                if ev.is_read_closed() || ev.is_error() {
                    c.hup = true;
                }
                if !c.queued {
                    c.queued = true;
                    ready.push(id);
                }
            }
            if woken {
                self.take_inbox(&mut ready);
            }
            for &id in &ready {
                self.serve(id, &deferral);
            }
            // The turn's records, in one write, before any of its replies.
            let failed = self.service.record_deferred(&deferral).is_err();
            self.send_replies(failed);
            let now = Instant::now();
            if now >= next_scan {
                next_scan = self.expire(now, limits.first_frame_timeout, limits.idle_timeout);
            }
            if self.stop.load(Ordering::SeqCst) && self.conns.is_empty() {
                return;
            }
        }
    }

    /// New connections and finished offloaded calls.
    fn take_inbox(&mut self, ready: &mut Vec<usize>) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Inbox::Conn(nc) => self.add(nc),
                Inbox::Done { id, result } => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.in_flight = false;
                        self.replies.push((
                            id,
                            Reply::Frame {
                                result,
                                deferred: false,
                            },
                        ));
                        if !c.queued {
                            c.queued = true;
                            ready.push(id);
                        }
                    }
                }
            }
        }
    }

    fn add(&mut self, nc: NewConn) {
        let stream = &nc.slot.stream;
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!(error = %e, "cannot make the connection non-blocking; closing it");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let fd = stream.as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(id), Interest::READABLE)
        {
            tracing::warn!(error = %e, "cannot watch the connection; closing it");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        self.conns.insert(
            id,
            Conn {
                slot: nc.slot,
                peer: Arc::new(nc.peer),
                inbuf: Vec::new(),
                frame_started: None,
                out: Vec::new(),
                out_pos: 0,
                out_since: None,
                busy: false,
                started: false,
                since: Instant::now(),
                readable: false,
                hup: false,
                in_flight: false,
                want_write: false,
                closing: false,
                dead: false,
                queued: false,
            },
        );
    }

    /// Reads what is ready on one connection and answers its whole frames (the replies
    /// wait in `self.replies` for the turn's audit batch).
    fn serve(&mut self, id: usize, deferral: &Deferral) {
        self.touched.push(id);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.in_flight || c.dead || (c.closing && !c.has_frame()) {
            return;
        }
        // A client that does not take its replies sends no more requests for now.
        if c.out_pending() {
            if let Err(e) = flush(c) {
                tracing::debug!(error = %e, uid = c.peer.uid, "reply not delivered");
                c.dead = true;
                return;
            }
            if c.out_pending() {
                return;
            }
        }
        if c.readable && !c.has_frame() {
            // Claim the connection before taking a byte of it, so that an eviction
            // either sees the bytes queued or finds the connection busy.
            if !c.busy {
                if !c.slot.activity.begin() {
                    c.dead = true; // evicted: its client reconnects
                    return;
                }
                c.busy = true;
            }
            let mut taken = 0;
            loop {
                match (&*c.slot.stream).read(&mut self.scratch) {
                    Ok(0) => {
                        c.readable = false;
                        c.closing = true;
                        break;
                    }
                    Ok(n) => {
                        if c.inbuf.is_empty() {
                            c.frame_started = Some(Instant::now());
                        }
                        c.inbuf.extend_from_slice(&self.scratch[..n]);
                        taken += n;
                        if n < self.scratch.len() && !c.hup {
                            // The queue is empty (a read stops short only then); bytes
                            // arriving from now on raise a new edge. Saves a read that
                            // would only say `WouldBlock`.
                            c.readable = false;
                            break;
                        }
                        if taken >= READ_PER_TURN {
                            break; // still readable: next turn
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, uid = c.peer.uid, "connection error");
                        c.dead = true;
                        return;
                    }
                }
            }
        }
        let mut pos = 0;
        let mut refusal: Option<FrameError> = None;
        while let Some(len) = frame_len(&c.inbuf[pos..]) {
            if len > MAX_FRAME {
                refusal = Some(FrameError::TooLarge {
                    len,
                    max: MAX_FRAME,
                });
                break;
            }
            let Some(payload) = c.inbuf.get(pos + 4..pos + 4 + len) else {
                break; // not all here yet
            };
            pos += 4 + len;
            c.started = true;
            if plumbing::frame::is_ping(payload) {
                self.replies.push((id, Reply::Ping));
                continue;
            }
            let env = match decode_request(payload) {
                Ok(env) => env,
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            };
            if let Request::Status(_) = env.request {
                let status = self.service.status(self.registry.status());
                let result = Ok(Response::Status(status));
                self.replies.push((
                    id,
                    Reply::Frame {
                        result,
                        deferred: false,
                    },
                ));
                continue;
            }
            if !env.request.read_only() || matches!(env.request, Request::LookupEvents(_)) {
                match offload(
                    id,
                    env,
                    &self.service,
                    &c.peer,
                    self.tx.clone(),
                    Arc::clone(&self.waker),
                ) {
                    Ok(()) => {
                        c.in_flight = true;
                        break;
                    }
                    Err(e) => {
                        static NO_THREAD: LogLimiter = LogLimiter::new();
                        if let Some(quiet) = NO_THREAD.hit() {
                            tracing::error!(error = %e, not_logged = quiet, "cannot start a thread for a call; refusing it");
                        }
                        let result = Err(KmsError::internal(
                            "kmsd could not start a thread for this call; try again",
                        ));
                        self.replies.push((
                            id,
                            Reply::Frame {
                                result,
                                deferred: false,
                            },
                        ));
                        continue;
                    }
                }
            }
            let before = deferral.len();
            let service = &self.service;
            let peer = &c.peer;
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| service.handle_envelope(peer, env)))
                    .unwrap_or_else(|_| {
                        Err(KmsError::internal("kmsd failed while handling the call"))
                    });
            let deferred = deferral.len() > before;
            self.replies.push((id, Reply::Frame { result, deferred }));
        }
        c.inbuf.drain(..pos);
        if c.inbuf.is_empty() {
            c.frame_started = None;
        } else if pos > 0 {
            // The next frame began in what was just read.
            c.frame_started = Some(Instant::now());
        }
        if refusal.is_none() && c.closing && !c.inbuf.is_empty() && !c.in_flight {
            refusal = Some(FrameError::Malformed(
                "connection closed inside a frame".into(),
            ));
        }
        if let Some(e) = refusal {
            static BAD_FRAME: LogLimiter = LogLimiter::new();
            if let Some(quiet) = BAD_FRAME.hit() {
                tracing::warn!(uid = c.peer.uid, pid = ?c.peer.pid, error = %e, not_logged = quiet, "bad frame; closing the connection");
            }
            c.inbuf.clear();
            c.frame_started = None;
            c.closing = true;
            self.replies.push((
                id,
                Reply::Refusal(format!("kmsd refused the request frame: {e}")),
            ));
        }
    }

    /// Encodes the turn's replies (the audit refusal for those whose record could not
    /// be written), sends them and settles every connection the turn touched.
    fn send_replies(&mut self, audit_failed: bool) {
        for (id, reply) in self.replies.drain(..) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let result = match reply {
                Reply::Ping => {
                    c.out.extend_from_slice(&[0u8; 4]);
                    continue;
                }
                Reply::Frame { deferred: true, .. } if audit_failed => Err(audit_refusal()),
                Reply::Frame { result, .. } => result,
                Reply::Refusal(message) => {
                    Err(KmsError::new(ErrorCode::ValidationException, message))
                }
            };
            let envelope = ResponseEnvelope {
                version: PROTOCOL_VERSION,
                result,
            };
            match encode_frame(&envelope, &mut self.frame) {
                Ok(()) => c.out.extend_from_slice(&self.frame),
                Err(e) => {
                    tracing::debug!(error = %e, uid = c.peer.uid, "reply not delivered");
                    c.dead = true;
                }
            }
            self.touched.push(id);
        }
        let now_ms = self.registry.now_ms();
        let mut touched = std::mem::take(&mut self.touched);
        for id in touched.drain(..) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            c.queued = false;
            if !c.dead && c.out_pending() {
                if let Err(e) = flush(c) {
                    tracing::debug!(error = %e, uid = c.peer.uid, "reply not delivered");
                    c.dead = true;
                }
            }
            if c.dead || (c.closing && !c.out_pending() && !c.in_flight) {
                self.close(id);
                continue;
            }
            let pending = c.out_pending();
            if pending != c.want_write {
                let interest = if pending {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let fd = c.slot.stream.as_raw_fd();
                if self
                    .poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), Token(id), interest)
                    .is_err()
                {
                    self.close(id);
                    continue;
                }
                c.want_write = pending;
            }
            if !c.in_flight && !pending && c.inbuf.is_empty() && c.busy {
                // Answered, and the next request has not started: evictable again.
                c.busy = false;
                c.since = Instant::now();
                c.slot.activity.idle(now_ms);
            }
            if !c.in_flight && !pending && (c.readable || c.has_frame()) {
                self.again.push(id);
            }
        }
        self.touched = touched;
    }

    /// Closes the connections whose time is up; returns when to look again.
    fn expire(&mut self, now: Instant, ff: Duration, idle: Duration) -> Instant {
        let mut next = now + SCAN_EVERY.max(ff.min(idle).min(Duration::from_secs(1)));
        let mut expired = Vec::new();
        for (&id, c) in &self.conns {
            if let Some((at, kind)) = c.deadline(ff, idle) {
                if at <= now {
                    expired.push((id, kind));
                } else {
                    next = next.min(at);
                }
            }
        }
        for (id, kind) in expired {
            if let Some(c) = self.conns.get(&id) {
                tracing::debug!(uid = c.peer.uid, pid = ?c.peer.pid, ?kind, "connection timed out; closing it");
            }
            if let Some(kind) = kind {
                self.registry.timed_out(kind);
            }
            self.close(id);
        }
        next.max(now + Duration::from_millis(5))
    }

    fn close(&mut self, id: usize) {
        if let Some(c) = self.conns.remove(&id) {
            let fd = c.slot.stream.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            let _ = c.slot.stream.shutdown(std::net::Shutdown::Both);
            // Dropping the slot unregisters it and closes the descriptor.
        }
    }
}

/// Writes what `c.out` holds until the socket would block.
fn flush(c: &mut Conn) -> io::Result<()> {
    while c.out_pending() {
        match (&*c.slot.stream).write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.out_since.get_or_insert_with(Instant::now);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    c.out_pos = 0;
    c.out_since = None;
    Ok(())
}

/// Runs a call that may take long (an fdatasync, a trail scan) on a thread of its own;
/// its result comes back to the worker through `tx`.
fn offload(
    id: usize,
    env: RequestEnvelope,
    service: &Arc<KeyService>,
    peer: &Arc<Peer>,
    tx: Sender<Inbox>,
    waker: Arc<Waker>,
) -> io::Result<()> {
    let service = Arc::clone(service);
    let peer = Arc::clone(peer);
    std::thread::Builder::new()
        .name("kmsd-call".into())
        .spawn(move || {
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| service.handle_envelope(&peer, env)))
                    .unwrap_or_else(|_| {
                        Err(KmsError::internal("kmsd failed while handling the call"))
                    });
            if tx.send(Inbox::Done { id, result }).is_ok() {
                let _ = waker.wake();
            }
        })
        .map(drop)
}
