//! The three daemons: their pid and log files, how each is started and stopped, and
//! whether it is alive.
//!
//! Liveness is decided by a protocol-level ping, never by a successful `connect`: a
//! process being killed keeps its listening socket (and so accepts connections) for a
//! moment after it stopped serving. kmsd answers an empty frame, the volume service a
//! `Status` request, the AWS endpoint an unsigned `GET /` (a 403 is an answer; over
//! TLS, the TLS alert a plain-text request gets is one too). A
//! daemon that does not answer but whose pid (a live process of the right program) or
//! socket is still there is [`Liveness::Silent`]: `up` waits, bounded, until it answers
//! or is gone, and reports a daemon running only when it saw it answer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plumbing::daemon::{alive, read_pid, wait_until};
use plumbing::home::Layout;
use serde::Serialize;

use super::Supervisor;

/// How long a daemon gets to answer after being started, or to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one ping may take.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `up` waits, by default, for a daemon that does not answer but is still there
/// (being killed, or still starting) to answer or to be gone.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} did not come up within {secs} s; its log ({log}) ends with:\n{tail}")]
    NoAnswer {
        what: &'static str,
        secs: u64,
        log: String,
        tail: String,
    },
    #[error("{what} failed to start:\n{output}")]
    Failed { what: &'static str, output: String },
    #[error("cannot create {path}: {source}", path = .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the pid file {path}: {source}", path = .path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} does not answer, yet {} is still there after {secs} s; stop it (`atrest down`{}) and try again", match .pid { Some(p) => format!("its process (pid {p})"), None => "something listening on its socket".to_string() }, match .pid { Some(p) => format!(", or kill {p}"), None => String::new() })]
    Silent {
        what: &'static str,
        pid: Option<i32>,
        secs: u64,
    },
}

/// What supervision sees of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It answered a ping just now.
    Answering,
    /// It did not answer, but is still there: its pid file names a live process of its
    /// program, or something still accepts connections on its socket.
    Silent { pid: Option<i32> },
    /// Nothing of it is left: it can be started.
    Gone,
}

/// The three daemons, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Kmsd,
    VolumeService,
    ObjectEndpoint,
}

impl Daemon {
    pub const ALL: [Daemon; 3] = [Daemon::Kmsd, Daemon::VolumeService, Daemon::ObjectEndpoint];

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Kmsd => "kmsd",
            Daemon::VolumeService => "the volume service (atrest mount)",
            Daemon::ObjectEndpoint => "the AWS endpoint (atrest serve)",
        }
    }

    pub fn pid_file(self, layout: &Layout) -> PathBuf {
        layout.run_dir().join(match self {
            Daemon::Kmsd => "kmsd.pid",
            Daemon::VolumeService => "mount.pid",
            Daemon::ObjectEndpoint => "s3.pid",
        })
    }

    /// The program it runs as (`/proc/PID/comm`), to tell its pid from a reused one.
    fn program(self) -> &'static str {
        match self {
            Daemon::Kmsd => "kmsd",
            Daemon::VolumeService | Daemon::ObjectEndpoint => "atrest",
        }
    }

    pub fn log_file(self, layout: &Layout) -> PathBuf {
        layout.log_dir().join(match self {
            Daemon::Kmsd => "kmsd.log",
            Daemon::VolumeService => "mount.log",
            Daemon::ObjectEndpoint => "s3.log",
        })
    }
}

/// What stopping one daemon did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopReport {
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub stopped: bool,
    /// Why nothing was stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Whether it exited on SIGTERM (not SIGKILL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean: Option<bool>,
}

/// The AWS endpoint's URL and address, from `HOME/endpoint.url` (written once it
/// listens, naming the address it really bound: `http://ADDR` or `https://ADDR`).
pub fn endpoint_url(layout: &Layout) -> Option<(String, SocketAddr)> {
    let url = std::fs::read_to_string(layout.endpoint_url_file())
        .ok()?
        .trim()
        .to_string();
    let addr = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?
        .trim_end_matches('/')
        .parse()
        .ok()?;
    Some((url, addr))
}

/// The kmsd binary: beside this one (a build or an install puts them together), else PATH.
fn kmsd_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kmsd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kmsd"))
}

impl Supervisor {
    /// `--home HOME [--socket PATH]`, for the daemons this binary runs.
    fn global_args(&self) -> Vec<String> {
        let mut args = vec!["--home".to_string(), self.layout.root.display().to_string()];
        if let Some(s) = &self.kmsd_socket {
            args.push("--socket".into());
            args.push(s.display().to_string());
        }
        args
    }

    /// Whether the daemon answers a ping now.
    pub fn answers(&self, d: Daemon) -> bool {
        match d {
            Daemon::Kmsd => kmsd::client::ping(&self.kmsd_socket(), PING_TIMEOUT).is_ok(),
            Daemon::VolumeService => ping_volume_service(&self.layout.ec2_socket()).is_ok(),
            Daemon::ObjectEndpoint => {
                endpoint_url(&self.layout).is_some_and(|(u, a)| ping_endpoint(&u, a).is_ok())
            }
        }
    }

    /// Whether something accepts connections where the daemon listens (answering or not).
    fn accepts(&self, d: Daemon) -> bool {
        match d {
            Daemon::Kmsd => UnixStream::connect(self.kmsd_socket()).is_ok(),
            Daemon::VolumeService => UnixStream::connect(self.layout.ec2_socket()).is_ok(),
            Daemon::ObjectEndpoint => endpoint_url(&self.layout).is_some_and(|(_, a)| {
                TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
            }),
        }
    }

    /// The live pid in the daemon's pid file, if it is a process of the daemon's program
    /// (not a zombie, not a stranger that reused the number).
    pub fn pid(&self, d: Daemon) -> Option<i32> {
        read_pid(&d.pid_file(&self.layout))
            .filter(|p| alive(*p))
            .filter(|p| plumbing::daemon::process_name(*p).as_deref() == Some(d.program()))
    }

    /// Answering, silent but still there, or gone.
    pub fn liveness(&self, d: Daemon) -> Liveness {
        if self.answers(d) {
            return Liveness::Answering;
        }
        let pid = self.pid(d);
        if pid.is_some() || self.accepts(d) {
            Liveness::Silent { pid }
        } else {
            Liveness::Gone
        }
    }

    /// Waits while the daemon is [`Liveness::Silent`] (a dying daemon exits, a starting
    /// one comes up), at most the settle timeout; then it is answering or gone.
    pub fn settle(&self, d: Daemon) -> Result<Liveness, SuperviseError> {
        let start = Instant::now();
        loop {
            match self.liveness(d) {
                Liveness::Silent { pid } => {
                    if start.elapsed() >= self.settle_timeout {
                        return Err(SuperviseError::Silent {
                            what: d.name(),
                            pid,
                            secs: self.settle_timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                settled => return Ok(settled),
            }
        }
    }

    /// Starts one daemon and waits until it answers.
    pub fn start(&self, d: Daemon) -> Result<(), SuperviseError> {
        let layout = &self.layout;
        for dir in [layout.root.clone(), layout.run_dir(), layout.log_dir()] {
            plumbing::durable::ensure_dir(&dir, 0o700)
                .map_err(|source| SuperviseError::CreateDir { path: dir, source })?;
        }
        let spawn = |source| SuperviseError::Spawn {
            what: d.name(),
            source,
        };
        let me = std::env::current_exe().map_err(spawn)?;
        let log = d.log_file(layout);
        // The endpoint, detached here: its child and how long its log was before.
        let mut detached = match d {
            // kmsd and the volume service daemonize themselves and write their pid files.
            Daemon::Kmsd | Daemon::VolumeService => {
                let mut cmd = if d == Daemon::Kmsd {
                    let mut c = Command::new(kmsd_binary());
                    c.args(["--home", &layout.root.display().to_string(), "--daemonize"]);
                    if let Some(s) = &self.kmsd_socket {
                        c.arg("--socket").arg(s);
                    }
                    c
                } else {
                    let mut c = Command::new(&me);
                    c.args(self.global_args()).arg("mount");
                    c
                };
                let out = cmd.stdin(Stdio::null()).output().map_err(spawn)?;
                if !out.status.success() {
                    return Err(SuperviseError::Failed {
                        what: d.name(),
                        output: format!(
                            "{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    });
                }
                None
            }
            // `atrest serve` runs in the foreground: detach it here, in its own session.
            Daemon::ObjectEndpoint => {
                remove_endpoint_files(layout);
                let mut cmd = Command::new(&me);
                cmd.args(self.global_args())
                    .arg("serve")
                    .args(&self.endpoint_args);
                let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
                let child = plumbing::daemon::spawn_detached(&mut cmd, &log).map_err(spawn)?;
                let path = d.pid_file(layout);
                plumbing::daemon::write_pid_file(&path, child.id())
                    .map_err(|source| SuperviseError::PidFile { path, source })?;
                Some((child, log_start))
            }
        };
        // Only an answer counts: `up` never reports a daemon it did not see answer. The
        // endpoint exits at once when it cannot listen (the address is taken, the TLS
        // files are wrong): that is said then, with what it wrote, not after a timeout.
        let mut exited = false;
        let answered = wait_until(START_TIMEOUT, || {
            if let Some((child, _)) = detached.as_mut() {
                exited = matches!(child.try_wait(), Ok(Some(_)));
            }
            exited || self.answers(d)
        });
        match detached {
            _ if answered && !exited => Ok(()),
            Some((_, log_start)) if exited => {
                let _ = std::fs::remove_file(d.pid_file(layout));
                Err(SuperviseError::Failed {
                    what: d.name(),
                    output: log_since(&log, log_start),
                })
            }
            _ => Err(SuperviseError::NoAnswer {
                what: d.name(),
                secs: START_TIMEOUT.as_secs(),
                tail: plumbing::daemon::log_tail(&log, 10),
                log: log.display().to_string(),
            }),
        }
    }

    /// Stops one daemon by its pid file: SIGTERM, then SIGKILL if it does not exit.
    pub fn stop(&self, d: Daemon) -> StopReport {
        let layout = &self.layout;
        let pid_file = d.pid_file(layout);
        let report = |pid, stopped, reason, clean| StopReport {
            name: d.name(),
            pid,
            stopped,
            reason,
            clean,
        };
        let Some(pid) = read_pid(&pid_file) else {
            return report(None, false, Some("not running"), None);
        };
        if !alive(pid) {
            let _ = std::fs::remove_file(&pid_file);
            return report(None, false, Some("stale pid file removed"), None);
        }
        plumbing::daemon::signal(pid, libc::SIGTERM);
        let clean = wait_until(STOP_TIMEOUT, || !alive(pid));
        if !clean {
            tracing::warn!(pid, "{} did not exit on SIGTERM; killing it", d.name());
            plumbing::daemon::signal(pid, libc::SIGKILL);
            wait_until(Duration::from_secs(5), || !alive(pid));
        }
        let _ = std::fs::remove_file(&pid_file);
        if d == Daemon::ObjectEndpoint {
            remove_endpoint_files(layout);
        }
        report(Some(pid), true, None, Some(clean))
    }
}

/// The endpoint's address files (a killed endpoint leaves them naming a port that
/// someone else may take next).
fn remove_endpoint_files(layout: &Layout) {
    let _ = std::fs::remove_file(layout.s3_addr_file());
    let _ = std::fs::remove_file(layout.endpoint_url_file());
}

/// What a log file gained since it was `from` bytes long (at most its last 4 KiB).
fn log_since(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from)
        .unwrap_or(usize::MAX)
        .min(text.len())
        .max(text.len().saturating_sub(4096));
    String::from_utf8_lossy(&text[start..])
        .trim_end()
        .to_string()
}

/// One `Status` request on ec2.sock; any well-formed reply (a refusal too) is an answer.
fn ping_volume_service(socket: &Path) -> Result<(), crate::ec2::protocol::FrameError> {
    use crate::ec2::api::StatusRequest;
    use crate::ec2::protocol::{
        read_frame, write_frame, RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION,
    };
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(PING_TIMEOUT))?;
    stream.set_write_timeout(Some(PING_TIMEOUT))?;
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        act_as: None,
        request: StatusRequest {}.into(),
        signer: None,
    };
    write_frame(&mut stream, &env)?;
    let _: ResponseEnvelope = read_frame(&mut stream)?;
    Ok(())
}

/// Plain HTTP: an unsigned `GET /` (S3's ListBuckets, refused with a 403 and never
/// recorded); any HTTP status line back is an answer. TLS: a 5-byte record header of no
/// content type, which the endpoint's TLS layer reads whole and answers with an alert
/// record (content type 21, version 3.x, 7 bytes) before it closes: its accept loop and
/// handshakes run. (A whole HTTP request would be read only in part, and the close over
/// unread bytes is a reset that may discard the alert before it is read.)
fn ping_endpoint(url: &str, addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, PING_TIMEOUT)?;
    stream.set_read_timeout(Some(PING_TIMEOUT))?;
    stream.set_write_timeout(Some(PING_TIMEOUT))?;
    let tls = url.starts_with("https://");
    if tls {
        stream.write_all(&[0, 3, 3, 0, 1])?;
    } else {
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: atrest-supervise\r\nConnection: close\r\n\r\n"
        )?;
    }
    // At most 8 bytes, and fewer when it closes after them (an alert record is 7).
    let mut head = Vec::with_capacity(8);
    stream.take(8).read_to_end(&mut head)?;
    if (!tls && head.starts_with(b"HTTP/1.")) || (tls && head.starts_with(&[21, 3])) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an answer of the endpoint",
        ))
    }
}
