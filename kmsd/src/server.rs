//! The Unix-socket front end of the key service.
//!
//! One thread per connection (a slow client blocks only itself). The caller's
//! identity comes from the kernel (`SO_PEERCRED`), never from the request. A
//! malformed, oversized or unknown frame gets an error reply and that connection
//! is closed; the daemon keeps serving everyone else. A sweeper thread deletes
//! keys whose waiting period has passed and runs due rotations, at start and every
//! `kmsd.sweep_interval_seconds`.

use std::collections::HashMap;
use std::io::{self, BufReader};
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
    decode_request, read_frame_bytes, write_frame, ErrorCode, FrameError, KmsError,
    ResponseEnvelope, PROTOCOL_VERSION,
};
use crate::service::audit::{AuditSink, TrailAuditSink};
use crate::service::authz::Peer;
use crate::service::ServiceError;
use crate::service::{KeyService, ReloadSource, ServiceOptions};
use plumbing::home::Layout;

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
    #[error("{0}")]
    Config(String),
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
    accept: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Blocks until the server stops (it normally runs until the process ends).
    pub fn wait(mut self) {
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, stops the sweeper and removes the socket. Connections
    /// already open finish their current request and are then closed by their
    /// clients.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.socket);
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
    let accept = {
        let service = Arc::clone(&service);
        let stop = Arc::clone(&stop);
        let source = format!("unix:{}", socket.display());
        std::thread::Builder::new()
            .name("kmsd-accept".into())
            .spawn(move || accept_loop(listener, service, stop, source))
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

fn accept_loop(
    listener: UnixListener,
    service: Arc<KeyService>,
    stop: Arc<AtomicBool>,
    source: String,
) {
    let names: Arc<Mutex<HashMap<u32, String>>> = Arc::default();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let (uid, pid) = match plumbing::peer::peer_cred(&stream) {
            Ok(c) => (c.uid, c.pid),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the peer's credentials; closing");
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
        let spawned = std::thread::Builder::new()
            .name(format!("kmsd-conn-{pid}"))
            .spawn(move || serve_connection(&service, stream, &peer));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a connection thread");
        }
    }
}

/// Serves one connection until the peer closes it or sends a bad frame.
fn serve_connection(service: &KeyService, stream: UnixStream, peer: &Peer) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot clone the connection");
            return;
        }
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut inbuf = Vec::with_capacity(1024);
    let mut outbuf = Vec::with_capacity(1024);
    loop {
        let refusal = match read_frame_bytes(&mut reader, &mut inbuf) {
            // A liveness ping (`atrest up`, `atrest status`): answered, never audited.
            Ok(()) if plumbing::frame::is_ping(&inbuf) => {
                if let Err(e) = plumbing::frame::write_ping(&mut writer) {
                    tracing::debug!(error = %e, uid = peer.uid, "ping not answered");
                    return;
                }
                continue;
            }
            Ok(()) => match decode_request(&inbuf) {
                Ok(env) => {
                    let result = service.handle_envelope(peer, env);
                    let reply = ResponseEnvelope {
                        version: PROTOCOL_VERSION,
                        result,
                    };
                    if let Err(e) = write_frame(&mut writer, &reply, &mut outbuf) {
                        tracing::debug!(error = %e, uid = peer.uid, "reply not delivered");
                        return;
                    }
                    continue;
                }
                Err(e) => e,
            },
            Err(FrameError::Closed) => return,
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, uid = peer.uid, "connection error");
                return;
            }
            Err(e) => e,
        };
        tracing::warn!(uid = peer.uid, pid = ?peer.pid, error = %refusal, "bad frame; closing the connection");
        let reply = ResponseEnvelope {
            version: PROTOCOL_VERSION,
            result: Err(KmsError::new(
                ErrorCode::ValidationException,
                format!("kmsd refused the request frame: {refusal}"),
            )),
        };
        let _ = write_frame(&mut writer, &reply, &mut outbuf);
        let _ = writer.shutdown(std::net::Shutdown::Both);
        return;
    }
}
