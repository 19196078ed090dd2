//! The kmsd binary's entry point ([`crate::run`]): arguments, daemonizing, signals
//! (SIGTERM/SIGINT stop, SIGHUP reloads), then [`crate::server`]. Foreground by default
//! (as systemd expects); `--daemonize` detaches, writes a pid file and logs to
//! HOME/log/kmsd.log.

use std::path::PathBuf;

use clap::Parser;

use crate::config::Config;
use crate::server::{self, ServerOptions};
use plumbing::home::{self, Layout};

#[derive(Debug, Parser)]
#[command(name = "kmsd", version, about = "atrest's key management daemon")]
struct Args {
    /// State directory (overrides $ATREST_HOME and $XDG_STATE_HOME/atrest).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Socket path (default HOME/kmsd.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Config file (default HOME/config.toml; a missing default is fine).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Detach from the terminal, write a pid file and log to HOME/log/kmsd.log.
    #[arg(long)]
    daemonize: bool,
    /// Pid file for --daemonize (default HOME/run/kmsd.pid).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Accept AdvanceClock requests (integration tests only: lets a client move time).
    #[arg(long)]
    allow_clock_control: bool,
}

/// Runs kmsd as its command line says, until SIGTERM or SIGINT.
pub fn main() {
    let args = Args::parse();
    let home = home::resolve(args.home.as_deref());
    let layout = Layout::new(&home);
    let (config_path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (layout.config(), false),
    };
    let config = match Config::load(&config_path, required) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsd: {e}");
            std::process::exit(2);
        }
    };
    let readiness = if args.daemonize {
        let log_dir = layout.log_dir();
        let daemonized = plumbing::durable::ensure_dir(&log_dir, 0o755)
            .and_then(|()| plumbing::daemon::daemonize("kmsd", &log_dir.join("kmsd.log")));
        match daemonized {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("kmsd: cannot daemonize: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    init_logging();
    // Key material lives in this process: no core dumps, no same-uid ptrace.
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!("cannot mark kmsd non-dumpable; core dumps may contain key material");
    }
    // SIGTERM/SIGINT are handled by this thread (sigwait below): block them before
    // any thread starts so every thread inherits the mask.
    let signals = block_termination_signals();
    // Block SIGHUP before any thread exists so every thread inherits the mask and
    // only the reload thread (sigwait) ever receives it.
    let hup = block_sighup();
    let opts = ServerOptions {
        home: home.clone(),
        socket: args.socket.clone(),
        config,
        allow_clock_control: args.allow_clock_control,
        audit: None,
        config_path: Some((config_path.clone(), required)),
    };
    let handle = match server::start(opts) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kmsd: {e}");
            std::process::exit(1);
        }
    };
    if let Some(set) = hup {
        let service = std::sync::Arc::clone(&handle.service);
        let spawned = std::thread::Builder::new()
            .name("kmsd-sighup".into())
            .spawn(move || reload_on_sighup(set, &service));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the SIGHUP thread; use `atrest kms reload-config`");
        }
    }
    if let Some(readiness) = readiness {
        let pid_file = args
            .pid_file
            .clone()
            .unwrap_or_else(|| layout.run_dir().join("kmsd.pid"));
        let written = pid_file
            .parent()
            .map(|d| plumbing::durable::ensure_dir(d, 0o755))
            .unwrap_or(Ok(()))
            .and_then(|()| plumbing::daemon::write_pid_file(&pid_file, std::process::id()));
        if let Err(e) = written {
            tracing::error!(path = %pid_file.display(), error = %e, "cannot write the pid file");
            std::process::exit(1);
        }
        readiness.ready();
    }
    let sig = wait_for_signal(&signals);
    tracing::info!(signal = sig, "kmsd shutting down");
    handle.shutdown();
}

/// Blocks SIGTERM and SIGINT in the calling thread (and threads it starts later).
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the sig* calls only write into `set`, and
    // pthread_sigmask changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals; returns its number.
fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: `set` is a valid, initialized sigset; sigwait writes `sig`.
        if unsafe { libc::sigwait(set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// Blocks SIGHUP in the calling thread (and the threads it starts later).
fn block_sighup() -> Option<libc::sigset_t> {
    // SAFETY: sigemptyset/sigaddset initialize the set we own; pthread_sigmask
    // changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            tracing::warn!("cannot block SIGHUP; reload with `atrest kms reload-config`");
            return None;
        }
        Some(set)
    }
}

/// Waits for SIGHUP and reloads the configuration each time (a bad file is
/// logged and the running configuration kept).
fn reload_on_sighup(set: libc::sigset_t, service: &crate::service::KeyService) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialized signal set; sigwait writes the signal number.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            tracing::warn!(rc, "sigwait failed; SIGHUP reload disabled");
            return;
        }
        match service.reload() {
            Ok(summary) => tracing::info!(%summary, "SIGHUP: configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration NOT reloaded; the previous one stays in force")
            }
        }
    }
}

/// `RUST_LOG` (default `info`) on stderr, through plumbing's bounded writer: kmsd.log
/// rotates at its size cap and repeated lines are rate-limited.
fn init_logging() {
    plumbing::logging::init("info", &[]);
}
