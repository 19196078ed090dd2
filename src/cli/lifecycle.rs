//! `atrest up`, `atrest down`, `atrest status`: the three daemons of one HOME as a unit.
//!
//! Each daemon is still startable on its own (`kmsd`, `atrest mount`, `atrest s3 serve`);
//! these verbs only start what is not answering, stop what they find, and afterwards
//! sweep for anything a crashed daemon may have left behind (a stale FUSE mount, loop
//! devices over served files, qemu guests), so `down` leaves nothing running.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plumbing::daemon::{alive, read_pid, wait_until};
use plumbing::home::Layout;
use serde_json::{json, Value};

use super::{print_json, Global};

/// How long a daemon gets to answer after being started, or to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum LifecycleError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
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
    #[error("{0}")]
    Io(String),
}

/// The three daemons, in start order (kmsd first: the others call it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Daemon {
    Kmsd,
    VolumeService,
    ObjectEndpoint,
}

impl Daemon {
    const ALL: [Daemon; 3] = [Daemon::Kmsd, Daemon::VolumeService, Daemon::ObjectEndpoint];

    fn name(self) -> &'static str {
        match self {
            Daemon::Kmsd => "kmsd",
            Daemon::VolumeService => "the volume service (atrest mount)",
            Daemon::ObjectEndpoint => "the object endpoint (atrest s3 serve)",
        }
    }

    fn pid_file(self, layout: &Layout) -> PathBuf {
        layout.run_dir().join(match self {
            Daemon::Kmsd => "kmsd.pid",
            Daemon::VolumeService => "mount.pid",
            Daemon::ObjectEndpoint => "s3.pid",
        })
    }

    fn log_file(self, layout: &Layout) -> PathBuf {
        layout.log_dir().join(match self {
            Daemon::Kmsd => "kmsd.log",
            Daemon::VolumeService => "mount.log",
            Daemon::ObjectEndpoint => "s3.log",
        })
    }

    /// Whether the daemon answers: its socket accepts a connection, or its HTTP port does.
    fn answers(self, g: &Global, layout: &Layout) -> bool {
        match self {
            Daemon::Kmsd => UnixStream::connect(g.kmsd_socket()).is_ok(),
            Daemon::VolumeService => UnixStream::connect(layout.ec2_socket()).is_ok(),
            Daemon::ObjectEndpoint => s3_addr(layout)
                .map(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
                .unwrap_or(false),
        }
    }
}

fn s3_addr(layout: &Layout) -> Option<SocketAddr> {
    fs::read_to_string(layout.s3_addr_file())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kmsd binary: beside this one (a build or an install puts them together), else PATH.
fn kmsd_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kmsd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kmsd"))
}

fn global_args(g: &Global, layout: &Layout) -> Vec<String> {
    let mut args = vec!["--home".to_string(), layout.root.display().to_string()];
    if let Some(s) = &g.socket {
        args.push("--socket".into());
        args.push(s.display().to_string());
    }
    args
}

fn start(d: Daemon, g: &Global, layout: &Layout) -> Result<(), LifecycleError> {
    for dir in [layout.root.clone(), layout.run_dir(), layout.log_dir()] {
        plumbing::durable::ensure_dir(&dir, 0o700)
            .map_err(|e| LifecycleError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let me = std::env::current_exe().map_err(|source| LifecycleError::Spawn {
        what: d.name(),
        source,
    })?;
    match d {
        // kmsd and the volume service daemonize themselves and write their pid files.
        Daemon::Kmsd | Daemon::VolumeService => {
            let mut cmd = if d == Daemon::Kmsd {
                let mut c = Command::new(kmsd_binary());
                c.args(["--home", &layout.root.display().to_string(), "--daemonize"]);
                if let Some(s) = &g.socket {
                    c.arg("--socket").arg(s);
                }
                c
            } else {
                let mut c = Command::new(&me);
                c.args(global_args(g, layout)).arg("mount");
                c
            };
            let out =
                cmd.stdin(Stdio::null())
                    .output()
                    .map_err(|source| LifecycleError::Spawn {
                        what: d.name(),
                        source,
                    })?;
            if !out.status.success() {
                return Err(LifecycleError::Failed {
                    what: d.name(),
                    output: format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                });
            }
        }
        // `atrest s3 serve` runs in the foreground: detach it here, in its own session.
        Daemon::ObjectEndpoint => {
            let _ = fs::remove_file(layout.s3_addr_file());
            let mut cmd = Command::new(&me);
            cmd.args(global_args(g, layout)).args(["s3", "serve"]);
            let child = plumbing::daemon::spawn_detached(&mut cmd, &d.log_file(layout)).map_err(
                |source| LifecycleError::Spawn {
                    what: d.name(),
                    source,
                },
            )?;
            plumbing::daemon::write_pid_file(&d.pid_file(layout), child.id())
                .map_err(|e| LifecycleError::Io(format!("cannot write the pid file: {e}")))?;
        }
    }
    if wait_until(START_TIMEOUT, || d.answers(g, layout)) {
        Ok(())
    } else {
        let log = d.log_file(layout);
        Err(LifecycleError::NoAnswer {
            what: d.name(),
            secs: START_TIMEOUT.as_secs(),
            tail: plumbing::daemon::log_tail(&log, 10),
            log: log.display().to_string(),
        })
    }
}

/// Stops one daemon by its pid file; returns what happened, for the report.
fn stop(d: Daemon, layout: &Layout) -> Value {
    let pid_file = d.pid_file(layout);
    let Some(pid) = read_pid(&pid_file) else {
        return json!({"Name": d.name(), "Stopped": false, "Reason": "not running"});
    };
    if !alive(pid) {
        let _ = fs::remove_file(&pid_file);
        return json!({"Name": d.name(), "Stopped": false, "Reason": "stale pid file removed"});
    }
    // SAFETY: plain kill(2) on a pid read from our own pid file.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let clean = wait_until(STOP_TIMEOUT, || !alive(pid));
    if !clean {
        tracing::warn!(pid, "{} did not exit on SIGTERM; killing it", d.name());
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(Duration::from_secs(5), || !alive(pid));
    }
    let _ = fs::remove_file(&pid_file);
    if d == Daemon::ObjectEndpoint {
        let _ = fs::remove_file(layout.s3_addr_file());
    }
    json!({"Name": d.name(), "Pid": pid, "Stopped": true, "Clean": clean})
}

/// Loop devices whose backing file lies under HOME (served volume files).
fn loop_devices(layout: &Layout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return out;
    };
    let root = layout.root.display().to_string();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(backing) = fs::read_to_string(e.path().join("loop/backing_file")) {
            let backing = backing.trim().to_string();
            if backing.starts_with(&root) {
                out.push((format!("/dev/{name}"), backing));
            }
        }
    }
    out.sort();
    out
}

/// qemu processes started for this HOME (their command line names a file under it).
fn guests(layout: &Layout) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let root = layout.root.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_qemu = args
            .first()
            .map(|a| a.contains("qemu-system"))
            .unwrap_or(false);
        if is_qemu && args.iter().any(|a| a.contains(&root)) {
            let volume = args
                .iter()
                .find_map(|a| {
                    a.split_whitespace()
                        .find(|w| w.starts_with("atrest.volume="))
                })
                .map(|w| w.trim_start_matches("atrest.volume=").to_string())
                .unwrap_or_default();
            out.push((pid, volume));
        }
    }
    out.sort();
    out
}

fn fuse_mounted(mountpoint: &Path) -> bool {
    let target = mountpoint.display().to_string();
    fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(target.as_str()))
        })
        .unwrap_or(false)
}

pub fn up(g: &Global) -> i32 {
    let layout = g.layout();
    let mut started = Vec::new();
    for d in Daemon::ALL {
        if d.answers(g, &layout) {
            continue;
        }
        if let Err(e) = start(d, g, &layout) {
            eprintln!("atrest up: {e}");
            return 1;
        }
        started.push(d.name());
    }
    let mut report = status_value(g, &layout);
    if let Value::Object(m) = &mut report {
        m.insert("Started".into(), json!(started));
    }
    print_json(&report);
    0
}

pub fn down(g: &Global) -> i32 {
    let layout = g.layout();
    // Reverse start order: the endpoint and the volume service still need kmsd to finish
    // cleanly (retiring grants on stop).
    let stopped: Vec<Value> = Daemon::ALL
        .iter()
        .rev()
        .map(|d| stop(*d, &layout))
        .collect();

    // Whatever a crashed daemon left behind goes too; each sweep is reported.
    let mut swept = Vec::new();
    for (pid, volume) in guests(&layout) {
        // SAFETY: kill(2) of a qemu process whose command line names this HOME.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        swept.push(json!({"Guest": pid, "Volume": volume}));
    }
    for (dev, backing) in loop_devices(&layout) {
        let ok = Command::new("losetup")
            .args(["-d", &dev])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        swept.push(json!({"LoopDevice": dev, "BackingFile": backing, "Released": ok}));
    }
    let mountpoint = layout.mount_dir();
    if fuse_mounted(&mountpoint) {
        let ok = Command::new("fusermount3")
            .arg("-uz")
            .arg(&mountpoint)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        swept.push(json!({"StaleMount": mountpoint, "Unmounted": ok}));
    }
    let leftovers = !guests(&layout).is_empty()
        || !loop_devices(&layout).is_empty()
        || fuse_mounted(&mountpoint);
    print_json(&json!({"Stopped": stopped, "Swept": swept, "Clean": !leftovers}));
    if leftovers {
        eprintln!("atrest down: something is still running; see `atrest status`");
        1
    } else {
        0
    }
}

/// What the running volume service serves, with each volume's key state (empty when it
/// is not running). This is where a key disabled while a volume is attached shows.
fn served_volumes(layout: &Layout) -> Vec<Value> {
    use crate::ec2::api::StatusRequest;
    use crate::ec2::client::Ec2Client;
    let Ok(mut c) = Ec2Client::connect(&layout.ec2_socket(), None) else {
        return Vec::new();
    };
    match c.send(StatusRequest {}) {
        // Every member, null ones too: `atrest status` shows what it does not know.
        Ok(st) => st.served.iter().map(|v| json!(v)).collect(),
        Err(_) => Vec::new(),
    }
}

fn status_value(g: &Global, layout: &Layout) -> Value {
    let daemon = |d: Daemon| {
        let pid = read_pid(&d.pid_file(layout)).filter(|p| alive(*p));
        json!({"Running": d.answers(g, layout), "Pid": pid, "Log": d.log_file(layout)})
    };
    let mut kms = daemon(Daemon::Kmsd);
    kms["Socket"] = json!(g.kmsd_socket());
    let mut vol = daemon(Daemon::VolumeService);
    vol["Socket"] = json!(layout.ec2_socket());
    vol["Mountpoint"] = json!(layout.mount_dir());
    vol["Mounted"] = json!(fuse_mounted(&layout.mount_dir()));
    vol["Served"] = json!(served_volumes(layout));
    let mut s3 = daemon(Daemon::ObjectEndpoint);
    s3["Url"] = json!(s3_addr(layout).map(|a| format!("http://{a}/")));
    json!({
        "Home": layout.root,
        "Kmsd": kms,
        "VolumeService": vol,
        "ObjectEndpoint": s3,
        "LoopDevices": loop_devices(layout)
            .into_iter()
            .map(|(d, b)| json!({"Device": d, "BackingFile": b}))
            .collect::<Vec<_>>(),
        "Guests": guests(layout)
            .into_iter()
            .map(|(p, v)| json!({"Pid": p, "Volume": v}))
            .collect::<Vec<_>>(),
    })
}

pub fn status(g: &Global) -> i32 {
    let layout = g.layout();
    let v = status_value(g, &layout);
    print_json(&v);
    // Said on stderr too, so that it is seen even when the JSON is not read.
    if let Some(served) = v["VolumeService"]["Served"].as_array() {
        for s in served {
            if let (Some(vol), Some(notice)) = (s["VolumeId"].as_str(), s["Notice"].as_str()) {
                eprintln!("atrest status: {vol}: {notice}");
            }
        }
    }
    let all_up = ["Kmsd", "VolumeService", "ObjectEndpoint"]
        .iter()
        .all(|k| v[*k]["Running"] == json!(true));
    // Like `systemctl status`: non-zero when not everything runs, so scripts can test it.
    if all_up {
        0
    } else {
        3
    }
}
