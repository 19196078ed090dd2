//! The volume service process (`atrest mount`): one per HOME (a flock'd pid file), the
//! FUSE mount, ec2.sock, recovery at start, clean shutdown on SIGINT/SIGTERM/SIGHUP
//! (guests stopped, keys forgotten, unmounted, socket and pid file removed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumbing::home::Layout;

use super::api::StatusRequest;
use super::client::Ec2Client;
use super::error::{Ec2Code, Ec2Error};
use super::model::{InstanceState, StateReason, LOCAL_INSTANCE_ID};
use super::runtime::{Runtime, RuntimeError};
use super::server::{self, ListenError};
use super::service::Ec2Service;
use crate::mount::daemon::TerminationSignals;
use plumbing::daemon::{PidFile, PidFileError};

/// Why the volume service could not start (or be started).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another service runs for this HOME (answered as `IncorrectState`).
    #[error("{0}")]
    AlreadyRunning(String),
    #[error("cannot {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    PidFile(PidFileError),
    #[error("cannot read the config")]
    Config(#[source] kmsd::client::site::ConfigError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Service(#[from] Ec2Error),
    #[error("the volume service exited ({status}); {}:\n{tail}", .log.display())]
    ChildExited {
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("the volume service did not answer on {} within 30 s (see {})", .socket.display(), .log.display())]
    NoAnswer { socket: PathBuf, log: PathBuf },
}

impl From<DaemonError> for Ec2Error {
    fn from(e: DaemonError) -> Ec2Error {
        match e {
            DaemonError::Service(e) => e,
            DaemonError::Runtime(e) => e.into(),
            DaemonError::AlreadyRunning(m) => Ec2Error::new(Ec2Code::IncorrectState, m),
            other => Ec2Error::caused_by(Ec2Code::InternalError, &other),
        }
    }
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let action = action.into();
    move |source| DaemonError::Io { action, source }
}

/// Set in the environment of the re-executed foreground child.
pub const CHILD_ENV: &str = "ATREST_MOUNT_CHILD";

pub fn pid_file(layout: &Layout) -> PathBuf {
    layout.run_dir().join("mount.pid")
}

pub fn log_file(layout: &Layout) -> PathBuf {
    layout.log_dir().join("mount.log")
}

/// A volume service already running for this HOME: its pid and, if it answers on
/// ec2.sock, the mountpoint it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningService {
    pub pid: String,
    pub mountpoint: Option<PathBuf>,
}

impl RunningService {
    /// The refusal a second `atrest mount` prints.
    pub fn refusal(&self, layout: &Layout) -> DaemonError {
        let serving = match &self.mountpoint {
            Some(m) => format!("serving {}", m.display()),
            None => "(not answering on ec2.sock yet)".to_string(),
        };
        DaemonError::AlreadyRunning(format!(
                "the volume service for {} is already running: pid {} {serving} (pid file {}); stop it first (atrest down, or kill {})",
                layout.root.display(),
                self.pid,
            pid_file(layout).display(),
            self.pid
        ))
    }
}

/// The volume service running for this HOME, if any: the holder of the pid file's lock,
/// or whatever answers on ec2.sock.
pub fn running_service(layout: &Layout) -> Option<RunningService> {
    let status = Ec2Client::connect(&layout.ec2_socket(), None)
        .ok()
        .and_then(|mut c| c.send(StatusRequest {}).ok());
    let holder = PidFile::holder(&pid_file(layout));
    match (holder, status) {
        (_, Some(s)) => Some(RunningService {
            pid: s.pid.to_string(),
            mountpoint: s.mountpoint,
        }),
        (Some(pid), None) => Some(RunningService {
            pid,
            mountpoint: None,
        }),
        (None, None) => None,
    }
}

/// How often the trail is read for key changes reaching served volumes.
const KEY_WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the service in the foreground until SIGINT/SIGTERM/SIGHUP (`strict_revocation`:
/// see [`Runtime::start`]). Refused while another one runs for this HOME.
pub fn run_foreground(
    layout: Layout,
    mountpoint: &Path,
    strict_revocation: bool,
) -> Result<(), DaemonError> {
    // From here on these signals are values for the shutdown thread, not a sudden end
    // (SIGHUP too: a closed terminal must not leave the mount behind).
    let mut signals = TerminationSignals::install().map_err(io("install the signal handlers"))?;
    // Connections, served images and guests all take descriptors: the soft limit (often
    // 1024) is what runs out first.
    match plumbing::listener::raise_nofile_limit() {
        Ok((soft, _)) => tracing::info!(nofile = soft, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    for d in [layout.run_dir(), layout.log_dir()] {
        plumbing::durable::ensure_dir(&d, 0o755).map_err(io(format!("create {}", d.display())))?;
    }
    // First, before touching the socket or the mountpoint: one service per HOME. The
    // lock is held until this function returns; dropping it removes the file.
    let _pid_file = match PidFile::acquire(&pid_file(&layout)) {
        Ok(p) => p,
        Err(PidFileError::AlreadyRunning { pid, .. }) => {
            let running = running_service(&layout).unwrap_or(RunningService {
                pid,
                mountpoint: None,
            });
            return Err(running.refusal(&layout));
        }
        Err(e) => return Err(DaemonError::PidFile(e)),
    };
    // A stale FUSE mount left by a crash fails lstat with ENOTCONN: the mount layer
    // recovers it; only a missing mountpoint is created here.
    if let Err(e) = std::fs::symlink_metadata(mountpoint) {
        if e.kind() == std::io::ErrorKind::NotFound {
            plumbing::durable::ensure_dir(mountpoint, 0o755)
                .map_err(io(format!("create {}", mountpoint.display())))?;
        }
    }
    let sock = layout.ec2_socket();
    let site =
        kmsd::client::site::SiteConfig::load(&layout.config()).map_err(DaemonError::Config)?;
    let listener = server::bind(&sock, site.socket_mode)?;
    let runtime = Runtime::start(mountpoint, strict_revocation, &layout.trail_dir())?;
    let svc = Ec2Service::new(layout.clone(), Some(runtime))?;
    svc.recover_instances()?;
    // Nothing is served yet: any instance grant still open was left by a crash.
    svc.kms.retire_stale_grants();
    // Restores a stop or a crash interrupted go on (before anything can serve them).
    svc.resume_restores();
    svc.ensure_local_instance()?;
    svc.reserve_local();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let waker = plumbing::listener::AcceptWaker::new(&listener)
            .map_err(io(format!("listen on {}", sock.display())))?;
        std::thread::spawn(move || {
            let sig = signals.wait();
            tracing::info!("signal {sig:?}: shutting down");
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop (even with ec2.sock's path gone).
            waker.wake();
        });
    }
    {
        let stop = Arc::clone(&stop);
        let svc = Arc::clone(&svc);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(KEY_WATCH_INTERVAL);
                let Some(rt) = svc.runtime.as_ref() else {
                    return;
                };
                rt.watch_keys();
            }
        });
    }
    eprintln!(
        "atrest mount: serving {} (ec2.sock {}, pid {})",
        mountpoint.display(),
        sock.display(),
        std::process::id()
    );
    server::serve(listener, Arc::clone(&svc), stop);
    shutdown(&svc);
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// Stops every guest and stops serving every volume (keys are dropped with the
/// images). Instances become `stopped`; the local instance keeps its attachments in
/// the registry, so the next start serves them again.
fn shutdown(svc: &Arc<Ec2Service>) {
    let Some(rt) = svc.runtime.as_ref() else {
        return;
    };
    if let Ok(state) = svc.registry.read() {
        for i in state.instances.values() {
            if i.instance_id == LOCAL_INSTANCE_ID {
                for (vol, _, _) in rt.served_of(LOCAL_INSTANCE_ID) {
                    if let Err(e) = svc.unserve_attached(LOCAL_INSTANCE_ID, &vol, true) {
                        tracing::error!(volume = %vol, "cannot stop serving: {e}");
                    }
                }
                continue;
            }
            if matches!(
                i.state,
                InstanceState::Pending | InstanceState::Running | InstanceState::Stopping
            ) {
                svc.halt(
                    &i.instance_id,
                    InstanceState::Stopped,
                    Some(StateReason {
                        code: "Client.UserInitiatedShutdown".into(),
                        message: "Client.UserInitiatedShutdown: the volume service was stopped"
                            .into(),
                    }),
                );
            }
        }
    }
    rt.shutdown();
    svc.restores.shutdown();
}

/// Starts the service in the background: re-executes this binary in the foreground
/// mode in a new session, its output going to HOME/log/mount.log, and waits until
/// ec2.sock answers *as that child* (or the child dies, whose log tail is then shown).
/// Refused up front while a service runs for this HOME.
pub fn spawn_background(layout: &Layout, args: &[String]) -> Result<u32, DaemonError> {
    if let Some(running) = running_service(layout) {
        return Err(running.refusal(layout));
    }
    plumbing::durable::ensure_dir(&layout.log_dir(), 0o700)
        .map_err(io("create the log directory"))?;
    let log_path = log_file(layout);
    let exe = std::env::current_exe().map_err(io("find this program"))?;
    let mut cmd = Command::new(exe);
    cmd.args(args).env(CHILD_ENV, "1");
    let mut child = plumbing::daemon::spawn_detached(&mut cmd, &log_path)
        .map_err(io("start the volume service"))?;
    let sock = layout.ec2_socket();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::ChildExited {
                status,
                tail: plumbing::daemon::log_tail(&log_path, 10),
                log: log_path,
            });
        }
        // Another service that started meanwhile may answer on the socket: only our
        // child's answer counts (its own pid file lock refuses it otherwise).
        if let Ok(mut c) = Ec2Client::connect(&sock, None) {
            if let Ok(s) = c.send(StatusRequest {}) {
                if s.pid == child.id() {
                    return Ok(child.id());
                }
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(DaemonError::NoAnswer {
                socket: sock,
                log: log_path,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
