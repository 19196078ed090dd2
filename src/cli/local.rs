//! Local verbs that have no AWS counterpart: up, down, status, mount, attach, detach.

use std::path::PathBuf;

use serde_json::json;

use super::{report_error, Global};
use crate::ec2::api::{AttachRequest, DetachRequest};
use crate::ec2::daemon;
use crate::ec2::Ec2Error;
use crate::supervise::Supervisor;

#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Starts kmsd, the volume service and the AWS endpoint (127.0.0.1:4566 unless
    /// --listen says otherwise) for this HOME, whatever is not already answering, and
    /// shows where each runs.
    Up {
        #[command(flatten)]
        listen: super::serve::ListenArgs,
    },
    /// Stops all three and sweeps what a crash may have left (stale mount, loop devices,
    /// qemu guests).
    Down,
    /// Shows what runs where: sockets, mountpoint, object URL, loop devices, guests.
    /// Exits 3 when not everything runs.
    Status,
    /// Runs the volume service: the FUSE mount (MOUNTPOINT/<instance>/<device>),
    /// ec2.sock, instances. Daemonizes unless --foreground.
    Mount {
        /// Default HOME/mnt.
        mountpoint: Option<PathBuf>,
        #[arg(long)]
        foreground: bool,
        /// Drills: when a key is disabled or scheduled for deletion, drop the data keys
        /// it wraps at once (further I/O fails with EKEYREVOKED) instead of letting
        /// attached volumes work until detached, as AWS does.
        #[arg(long)]
        strict_revocation: bool,
    },
    /// Attaches a volume to this machine (the `local` instance) and prints its path.
    Attach {
        volume_id: String,
        /// Also bind it to a loop device and print that.
        #[arg(long = "loop")]
        loop_device: bool,
    },
    /// Detaches a volume from this machine (releasing its loop device).
    Detach {
        volume_id: String,
        /// Even while the file or loop device is in use.
        #[arg(long)]
        force: bool,
    },
    /// Internal: binds or releases a loop device in a short-lived child process, for
    /// the volume service, which must never open the files it serves itself.
    #[command(name = "loop-helper", hide = true)]
    LoopHelper {
        #[command(subcommand)]
        op: LoopHelperOp,
    },
}

/// What `atrest loop-helper` does (see `atrest::loopdev::helper`).
#[derive(Debug, clap::Subcommand)]
pub enum LoopHelperOp {
    /// Binds FILE to a free loop device; prints it and the bound file's identity (JSON).
    Attach {
        file: PathBuf,
        #[arg(long)]
        direct_io: bool,
        #[arg(long)]
        read_only: bool,
        #[arg(long)]
        autoclear: bool,
        #[arg(long)]
        block_size: Option<u32>,
    },
    /// Releases DEVICE if it still holds the file identified by --backing-dev/--backing-ino.
    Detach {
        device: PathBuf,
        #[arg(long)]
        backing_dev: u64,
        #[arg(long)]
        backing_ino: u64,
    },
}

pub fn run(g: &Global, c: LocalCommand) -> i32 {
    match c {
        LocalCommand::Up { listen } => up(g, &listen),
        LocalCommand::Down => down(g),
        LocalCommand::Status => status(g),
        LocalCommand::Mount {
            mountpoint,
            foreground,
            strict_revocation,
        } => mount(g, mountpoint, foreground, strict_revocation),
        LocalCommand::Attach {
            volume_id,
            loop_device,
        } => match super::ec2::Ec2Conn::new(g).send(AttachRequest {
            volume_id,
            loop_device,
        }) {
            Ok(r) => {
                match r.loop_device {
                    Some(l) => println!("{l}"),
                    None => println!("{}", r.path.display()),
                }
                0
            }
            Err(e) => report_error("Attach", e.code.as_str(), &e.message),
        },
        LocalCommand::LoopHelper { op } => loop_helper(op),
        LocalCommand::Detach { volume_id, force } => {
            match super::ec2::Ec2Conn::new(g).send(DetachRequest { volume_id, force }) {
                Ok(_) => 0,
                Err(e) => report_error("Detach", e.code.as_str(), &e.message),
            }
        }
    }
}

fn supervisor(g: &Global) -> Supervisor {
    Supervisor::new(g.layout(), g.socket.clone())
}

/// Prints a report through `--output`/`--query` (JSON by default: the reports
/// serialize to what these verbs always printed); `verb` titles a table.
fn print_report(g: &Global, verb: &str, report: &impl serde::Serialize) -> i32 {
    match serde_json::to_value(report) {
        Ok(v) => g.output.emit(verb, &v),
        Err(e) => {
            eprintln!("atrest: cannot print the report: {e}");
            super::exit::OTHER
        }
    }
}

fn up(g: &Global, listen: &super::serve::ListenArgs) -> i32 {
    match supervisor(g)
        .with_endpoint_args(listen.endpoint_args())
        .up()
    {
        Ok(report) => {
            // An endpoint that was already running stays where it is: say so when that
            // is not where this `up` asked for.
            if let Some((url, bound)) = crate::supervise::daemons::endpoint_url(&g.layout()) {
                let asked = listen.listen;
                if asked.port() != 0 && asked != bound {
                    eprintln!("atrest up: the AWS endpoint already runs at {url}, not {asked}; `atrest down` first to move it");
                }
            }
            print_report(g, "Up", &report)
        }
        Err(e) => {
            eprintln!("atrest up: {e}");
            1
        }
    }
}

fn down(g: &Global) -> i32 {
    let report = supervisor(g).down();
    let printed = print_report(g, "Down", &report);
    if report.clean {
        printed
    } else {
        eprintln!("atrest down: something is still running; see `atrest status`");
        1
    }
}

fn status(g: &Global) -> i32 {
    let status = supervisor(g).status();
    print_report(g, "Status", &status);
    // Said on stderr too, so that it is seen even when the JSON is not read.
    if let Some(problem) = status.kmsd.trail.as_ref().and_then(|t| t.problem.as_ref()) {
        eprintln!("atrest status: kmsd refuses every request until its trail recovers: {problem}");
    }
    for s in &status.volume_service.served {
        if let Some(notice) = &s.notice {
            eprintln!("atrest status: {}: {notice}", s.volume_id);
        }
    }
    // Like `systemctl status`: non-zero when not everything runs, so scripts can test it.
    if status.all_running() {
        0
    } else {
        3
    }
}

/// The child side of [`crate::loopdev::helper`]: one line on stdout, exit 0; or the
/// error on stderr, exit 1.
fn loop_helper(op: LoopHelperOp) -> i32 {
    use crate::loopdev::{helper, BackingId, LoopOptions};
    let result = match op {
        LoopHelperOp::Attach {
            file,
            direct_io,
            read_only,
            autoclear,
            block_size,
        } => helper::child_attach(
            &file,
            &LoopOptions {
                direct_io,
                read_only,
                block_size,
                autoclear,
            },
        ),
        LoopHelperOp::Detach {
            device,
            backing_dev,
            backing_ino,
        } => helper::child_detach(
            &device,
            BackingId {
                dev: backing_dev,
                ino: backing_ino,
            },
        ),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("atrest loop-helper: {e}");
            1
        }
    }
}

fn mount(
    g: &Global,
    mountpoint: Option<PathBuf>,
    foreground: bool,
    strict_revocation: bool,
) -> i32 {
    let layout = g.layout();
    let mp = mountpoint.unwrap_or_else(|| layout.mount_dir());
    if foreground || std::env::var_os(daemon::CHILD_ENV).is_some() {
        return match daemon::run_foreground(layout, &mp, strict_revocation) {
            Ok(()) => 0,
            Err(e) => {
                let e = Ec2Error::from(e);
                report_error("Mount", e.code.as_str(), &e.message)
            }
        };
    }
    let mut args = vec!["--home".to_string(), layout.root.display().to_string()];
    if let Some(s) = &g.socket {
        args.push("--socket".into());
        args.push(s.display().to_string());
    }
    args.push("mount".into());
    args.push(mp.display().to_string());
    args.push("--foreground".into());
    if strict_revocation {
        args.push("--strict-revocation".into());
    }
    match daemon::spawn_background(&layout, &args) {
        Ok(pid) => g.output.emit(
            "Mount",
            &json!({"Mountpoint": mp, "Pid": pid, "Log": daemon::log_file(&layout)}),
        ),
        Err(e) => {
            let e = Ec2Error::from(e);
            report_error("Mount", e.code.as_str(), &e.message)
        }
    }
}
