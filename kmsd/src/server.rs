//! The Unix-socket front end of the key service.
//!
//! One thread per connection (a slow client blocks only itself), up to a cap
//! (`kmsd.max_connections`, lowered to fit the open-file limit, whose soft value is
//! raised to the hard one at start); at the cap the connection doing least makes room
//! or the new one is refused with one `LimitExceededException` frame
//! ([`connections`]). A connection must send each request within
//! `kmsd.first_frame_timeout_ms` of connecting or of starting it, and is closed after
//! `kmsd.idle_timeout_seconds` without one. `accept` failing for lack of file
//! descriptors (`EMFILE`/`ENFILE`) closes one connection and backs off (10 ms doubling
//! to 1 s); every such warning is logged at most once per 10 s. The caller's identity
//! comes from the kernel (`SO_PEERCRED`), never from the request. A malformed,
//! oversized or unknown frame gets an error reply and that connection is closed; the
//! daemon keeps serving everyone else. A sweeper thread deletes keys whose waiting
//! period has passed and runs due rotations, at start and every
//! `kmsd.sweep_interval_seconds`.

mod connections;

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::{Clock, MovableClock, SystemClock};
use crate::config::Config;
use crate::protocol::{
    decode_request, encode_frame, read_frame_bytes, write_frame, ErrorCode, FrameError, KmsError,
    Request, Response, ResponseEnvelope, PROTOCOL_VERSION,
};
use crate::service::audit::{AuditSink, TrailAuditSink};
use crate::service::authz::Peer;
use crate::service::ServiceError;
use crate::service::{KeyService, ReloadSource, ServiceOptions};
use connections::{Admission, Limits, LogLimiter, Registry, Slot, TimedOut};
use plumbing::home::Layout;
use plumbing::listener::AcceptWaker;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot open the audit trail: {0}")]
    Trail(#[from] crate::trail::TrailError),
    #[error("another kmsd is already serving {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Config(crate::config::InvalidConfig),
}

/// How to start a server.
pub struct ServerOptions {
    pub home: PathBuf,
    /// Default `HOME/kmsd.sock`.
    pub socket: Option<PathBuf>,
    pub config: Config,
    /// Use a movable clock and accept `AdvanceClock` (tests only).
    pub allow_clock_control: bool,
    /// Default: [`TrailAuditSink`] on `HOME/trail`.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// Where ReloadConfig and SIGHUP re-read the config (default `HOME/config.toml`,
    /// optional); `Some((path, true))` for `--config PATH`.
    pub config_path: Option<(PathBuf, bool)>,
}

impl ServerOptions {
    #[cfg(any(test, feature = "testing"))]
    pub fn new(home: impl Into<PathBuf>) -> Self {
        ServerOptions {
            home: home.into(),
            socket: None,
            // What kmsd uses without a config file.
            config: Config::embedded(),
            allow_clock_control: false,
            audit: None,
            config_path: None,
        }
    }
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    pub socket: PathBuf,
    pub service: Arc<KeyService>,
    stop: Arc<AtomicBool>,
    waker: AcceptWaker,
    accept: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting, stops the sweeper and removes the socket. Connections
    /// already open finish their current request and are then closed by their
    /// clients.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop (even with the socket's path gone).
        self.waker.wake();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Some(t) = self.sweeper.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Opens the keystore, sweeps once, binds the socket and starts serving.
pub fn start(opts: ServerOptions) -> Result<ServerHandle, ServerError> {
    let layout = Layout::new(&opts.home);
    if !opts.home.exists() {
        plumbing::durable::ensure_dir(&opts.home, 0o755).map_err(|source| ServerError::Bind {
            path: opts.home.clone(),
            source,
        })?;
    }
    let socket_mode = opts.config.socket_mode().map_err(ServerError::Config)?;
    let clock: Arc<dyn Clock> = if opts.allow_clock_control {
        Arc::new(MovableClock::new())
    } else {
        Arc::new(SystemClock)
    };
    let sweep_every = Duration::from_secs(opts.config.kmsd.sweep_interval_seconds);
    let limits = listener_limits(&opts.config);
    for table in opts.config.other.keys() {
        tracing::info!(table = %table, "config: kmsd does not read this top-level entry");
    }
    let socket = opts.socket.clone().unwrap_or_else(|| layout.kmsd_socket());
    // Before taking the trail's lock: a second kmsd should hear "already serving".
    if UnixStream::connect(&socket).is_ok() {
        return Err(ServerError::AlreadyRunning(socket));
    }
    let audit: Arc<dyn AuditSink> = match opts.audit {
        Some(a) => a,
        None => {
            let sync = opts.config.trail.sync_mode().map_err(ServerError::Config)?;
            let trail = crate::trail::TrailConfig {
                sync,
                ..crate::trail::TrailConfig::new(layout.trail_dir())
            };
            let sink = TrailAuditSink::open_with(trail)?;
            tracing::info!(dir = %sink.dir().display(), sync = %sync, "audit trail open");
            Arc::new(sink)
        }
    };
    let (config_path, required) = opts
        .config_path
        .clone()
        .unwrap_or_else(|| (layout.config(), false));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let self_uid = unsafe { libc::geteuid() };
    let service = Arc::new(KeyService::open(
        &layout.kms_dir(),
        ServiceOptions {
            config: opts.config,
            clock,
            audit,
            allow_clock_control: opts.allow_clock_control,
            reload: Some(ReloadSource {
                home: opts.home.clone(),
                config_path,
                required,
            }),
            self_uid,
            trail_dir: Some(layout.trail_dir()),
        },
    )?);
    service.sweep();
    let listener = bind(&socket, socket_mode)?;
    tracing::info!(socket = %socket.display(), home = %opts.home.display(), "kmsd listening");

    let stop = Arc::new(AtomicBool::new(false));
    let waker = AcceptWaker::new(&listener).map_err(|source| ServerError::Bind {
        path: socket.clone(),
        source,
    })?;
    let accept = {
        let service = Arc::clone(&service);
        let stop = Arc::clone(&stop);
        let source = format!("unix:{}", socket.display());
        let registry = Registry::new(limits);
        std::thread::Builder::new()
            .name("kmsd-accept".into())
            .spawn(move || accept_loop(listener, service, registry, stop, source))
            .map_err(|source| ServerError::Bind {
                path: socket.clone(),
                source,
            })?
    };
    let sweeper = {
        let service = Arc::clone(&service);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kmsd-sweeper".into())
            .spawn(move || loop {
                let until = Instant::now() + sweep_every;
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
                }
                service.sweep();
            })
            .map_err(|source| ServerError::Bind {
                path: socket.clone(),
                source,
            })?
    };
    Ok(ServerHandle {
        socket,
        service,
        stop,
        waker,
        accept: Some(accept),
        sweeper: Some(sweeper),
    })
}

/// Binds the socket, replacing a stale one but never a live kmsd's.
fn bind(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    let bind_err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::AlreadyRunning(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        } else {
            return Err(bind_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        plumbing::durable::ensure_dir(dir, 0o755).map_err(bind_err)?;
    }
    // With the usual umask (022) the socket starts as 0755, which lets nobody but
    // the owner connect (connecting needs write permission); then set `mode`.
    let bound = UnixListener::bind(path);
    let listener = bound.map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    Ok(listener)
}

/// The listener's limits from the config, the cap fitted to the open-file limit (whose
/// soft value is raised to the hard one first).
fn listener_limits(config: &Config) -> Limits {
    let k = &config.kmsd;
    let nofile = match connections::raise_nofile_limit() {
        Ok((before, now)) => {
            if now > before {
                tracing::info!(
                    from = before,
                    to = now,
                    "raised the open-file limit to its hard limit"
                );
            }
            now
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            1024
        }
    };
    let max_connections = connections::fit_cap(k.max_connections, nofile);
    if (max_connections as u64) < k.max_connections {
        tracing::warn!(
            configured = k.max_connections,
            serving = max_connections,
            open_file_limit = nofile,
            "kmsd.max_connections lowered to fit the open-file limit"
        );
    }
    Limits {
        max_connections,
        first_frame_timeout: Duration::from_millis(k.first_frame_timeout_ms),
        idle_timeout: Duration::from_secs(k.idle_timeout_seconds),
    }
}

/// How long `accept` backs off after running out of file descriptors: from this,
/// doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

fn accept_loop(
    listener: UnixListener,
    service: Arc<KeyService>,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
    source: String,
) {
    static ACCEPT_FAILED: LogLimiter = LogLimiter::new();
    static REFUSED: LogLimiter = LogLimiter::new();
    static EVICTED: LogLimiter = LogLimiter::new();
    static NO_THREAD: LogLimiter = LogLimiter::new();
    let names: Arc<Mutex<HashMap<u32, String>>> = Arc::default();
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => {
                backoff = Duration::ZERO;
                s
            }
            Err(e) => {
                let out_of_fds =
                    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                let transient = matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EPROTO)
                );
                if transient {
                    continue;
                }
                // Never spin: back off, and (out of descriptors) close the connection
                // doing least so that the ones waiting in the backlog can get in.
                let shed = out_of_fds && registry.shed_one();
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                if let Some(quiet) = ACCEPT_FAILED.hit() {
                    tracing::warn!(error = %e, not_logged = quiet, closed_a_connection = shed, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                std::thread::sleep(backoff);
                continue;
            }
        };
        let (uid, pid) = match plumbing::peer::peer_cred(&stream) {
            Ok(c) => (c.uid, c.pid),
            Err(e) => {
                static NO_CRED: LogLimiter = LogLimiter::new();
                if let Some(quiet) = NO_CRED.hit() {
                    tracing::warn!(error = %e, not_logged = quiet, "cannot read the peer's credentials; closing");
                }
                continue;
            }
        };
        let slot = match registry.admit(stream) {
            Admission::Admitted { slot, evicted } => {
                if evicted {
                    if let Some(quiet) = EVICTED.hit() {
                        tracing::warn!(max = registry.limits.max_connections, not_logged = quiet, "connection cap reached: closed the connection doing least to make room");
                    }
                }
                slot
            }
            Admission::Refused(stream) => {
                if let Some(quiet) = REFUSED.hit() {
                    tracing::warn!(uid, pid, max = registry.limits.max_connections, not_logged = quiet, "connection cap reached and every connection busy: refusing new connections");
                }
                refuse(
                    stream,
                    format!(
                        "kmsd is serving its maximum of {} connections (kmsd.max_connections, within the open-file limit) and every one is busy; try again later",
                        registry.limits.max_connections
                    ),
                );
                continue;
            }
        };
        let user = {
            let mut cache = names.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entry(uid)
                .or_insert_with(|| plumbing::peer::display_name(uid))
                .clone()
        };
        let peer = Peer {
            uid,
            pid: Some(pid),
            user,
            source: source.clone(),
        };
        let service = Arc::clone(&service);
        let registry2 = Arc::clone(&registry);
        let stream = Arc::clone(&slot.stream);
        let spawned = std::thread::Builder::new()
            .name(format!("kmsd-conn-{pid}"))
            .spawn(move || serve_connection(&service, &registry2, slot, &peer));
        if let Err(e) = spawned {
            if let Some(quiet) = NO_THREAD.hit() {
                tracing::error!(error = %e, not_logged = quiet, "cannot start a connection thread; refusing the connection");
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Sends one error frame on a connection that will not be served, without blocking,
/// and closes it. The client reads it as the answer to its first request.
fn refuse(stream: UnixStream, message: String) {
    let reply = ResponseEnvelope {
        version: PROTOCOL_VERSION,
        result: Err(KmsError::new(ErrorCode::LimitExceededException, message)),
    };
    let mut buf = Vec::new();
    if encode_frame(&reply, &mut buf).is_ok() && stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write_all(&buf);
    }
}

/// The connection's reads: the socket's receive timeout is the phase's (first
/// request, then idle); once a frame has started, all of it must arrive within the
/// first-frame timeout, so a client trickling bytes holds a thread for no longer.
struct FrameReader<'a> {
    stream: &'a UnixStream,
    activity: &'a connections::Activity,
    frame_timeout: Duration,
    /// When the frame being read began to arrive.
    frame_started: Option<Instant>,
    /// The socket timeout was shortened for the frame in progress.
    shortened: bool,
}

impl Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(t) = self.frame_started {
            let left = self.frame_timeout.saturating_sub(t.elapsed());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            self.shortened = true;
        }
        let n = self.stream.read(buf)?;
        if n > 0 && self.frame_started.is_none() {
            self.frame_started = Some(Instant::now());
            // A new request: claim the connection (busy) as soon as its first bytes
            // are in. An eviction that got in between the read and this claim found
            // the bytes neither queued nor the connection busy; it leaves the write
            // side open, and the request is served before the connection ends
            // (`serve_connection` sees the failed claim).
            let _ = self.activity.begin();
        }
        Ok(n)
    }
}

impl FrameReader<'_> {
    /// A whole frame was read: the next one has not started.
    fn frame_done(&mut self, idle: Duration) -> io::Result<()> {
        self.frame_started = None;
        if std::mem::take(&mut self.shortened) {
            self.stream.set_read_timeout(Some(idle))?;
        }
        Ok(())
    }
}

/// Serves one connection until the peer closes it, sends a bad frame, times out or is
/// evicted.
fn serve_connection(service: &KeyService, registry: &Registry, slot: Slot, peer: &Peer) {
    let limits = registry.limits;
    let stream = &*slot.stream;
    // A reply the client does not read within the first-frame timeout ends it too.
    let timeouts = stream
        .set_read_timeout(Some(limits.first_frame_timeout))
        .and_then(|()| stream.set_write_timeout(Some(limits.first_frame_timeout)));
    if let Err(e) = timeouts {
        tracing::warn!(error = %e, "cannot set the connection's timeouts; closing it");
        return;
    }
    let mut writer = stream;
    let mut reader = BufReader::with_capacity(
        16 * 1024,
        FrameReader {
            stream,
            activity: &slot.activity,
            frame_timeout: limits.first_frame_timeout,
            frame_started: None,
            shortened: false,
        },
    );
    let mut inbuf = Vec::with_capacity(1024);
    let mut outbuf = Vec::with_capacity(1024);
    let mut started = false;
    // The reply is sent: idle, unless the next request is already buffered (then the
    // connection stays busy: an eviction would drop it). `false`: the connection was
    // evicted while its request arrived, and ends now that the request is answered.
    let done = |reader: &BufReader<FrameReader<'_>>, last: bool| {
        if last {
            return false;
        }
        if reader.buffer().is_empty() {
            slot.activity.idle(registry.now_ms());
        }
        true
    };
    loop {
        let refusal = match read_frame_bytes(&mut reader, &mut inbuf) {
            Ok(()) => {
                let first = !std::mem::replace(&mut started, true);
                // Claimed when its first bytes were read, or (already buffered) now. If
                // an eviction came first, the request is served and the connection ends.
                let last = !slot.activity.begin();
                if first {
                    // From now on the socket's timeout is the idle one.
                    reader.get_mut().shortened = true;
                }
                if let Err(e) = reader.get_mut().frame_done(limits.idle_timeout) {
                    tracing::debug!(error = %e, "cannot set the connection's idle timeout");
                    return;
                }
                // A liveness ping (`atrest up`, `atrest status`): answered, never audited.
                if plumbing::frame::is_ping(&inbuf) {
                    if let Err(e) = plumbing::frame::write_ping(&mut writer) {
                        tracing::debug!(error = %e, uid = peer.uid, "ping not answered");
                        return;
                    }
                    if !done(&reader, last) {
                        return;
                    }
                    continue;
                }
                match decode_request(&inbuf) {
                    Ok(env) => {
                        let result = match env.request {
                            Request::Status(_) => {
                                Ok(Response::Status(service.status(registry.status())))
                            }
                            _ => service.handle_envelope(peer, env),
                        };
                        let reply = ResponseEnvelope {
                            version: PROTOCOL_VERSION,
                            result,
                        };
                        if let Err(e) = write_frame(&mut writer, &reply, &mut outbuf) {
                            tracing::debug!(error = %e, uid = peer.uid, "reply not delivered");
                            return;
                        }
                        if !done(&reader, last) {
                            return;
                        }
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Err(FrameError::Closed) => return,
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let kind = if started {
                    TimedOut::Idle
                } else {
                    TimedOut::FirstFrame
                };
                registry.timed_out(kind);
                tracing::debug!(uid = peer.uid, pid = ?peer.pid, ?kind, "connection timed out; closing it");
                return;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, uid = peer.uid, "connection error");
                return;
            }
            Err(e) => e,
        };
        static BAD_FRAME: LogLimiter = LogLimiter::new();
        if let Some(quiet) = BAD_FRAME.hit() {
            tracing::warn!(uid = peer.uid, pid = ?peer.pid, error = %refusal, not_logged = quiet, "bad frame; closing the connection");
        }
        let reply = ResponseEnvelope {
            version: PROTOCOL_VERSION,
            result: Err(KmsError::new(
                ErrorCode::ValidationException,
                format!("kmsd refused the request frame: {refusal}"),
            )),
        };
        let _ = write_frame(&mut writer, &reply, &mut outbuf);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
}
