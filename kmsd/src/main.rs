//! kmsd: the key management daemon. Foreground by default (as systemd expects);
//! `--daemonize` detaches, writes a pid file and logs to HOME/log/kmsd.log.

use std::io::{Read, Write};
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use clap::Parser;

use kmsd::config::Config;
use kmsd::server::{self, ServerOptions};
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

fn main() {
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
    let ready_pipe = if args.daemonize {
        match daemonize(&layout) {
            Ok(fd) => Some(fd),
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
    if let Some(mut pipe) = ready_pipe {
        let pid_file = args
            .pid_file
            .clone()
            .unwrap_or_else(|| layout.run_dir().join("kmsd.pid"));
        let written = pid_file
            .parent()
            .map(|d| plumbing::durable::ensure_dir(d, 0o755))
            .unwrap_or(Ok(()))
            .and_then(|_| {
                plumbing::durable::write_atomic(
                    &pid_file,
                    format!("{}\n", std::process::id()).as_bytes(),
                    0o644,
                )
            });
        if let Err(e) = written {
            tracing::error!(path = %pid_file.display(), error = %e, "cannot write the pid file");
            std::process::exit(1);
        }
        let _ = pipe.write_all(b"R");
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
fn reload_on_sighup(set: libc::sigset_t, service: &kmsd::service::KeyService) {
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Forks; the parent waits until the child reports it is serving (or failed) and
/// exits accordingly. Returns, in the child, the pipe to report readiness on.
fn daemonize(layout: &Layout) -> std::io::Result<std::fs::File> {
    let log_dir = layout.log_dir();
    plumbing::durable::ensure_dir(&log_dir, 0o755)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join("kmsd.log"))?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no other threads exist yet (called before any thread is started).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        // Parent: wait for the child's readiness byte.
        // SAFETY: fds[0] is the pipe's read end we own; fds[1] is closed here.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is a valid fd owned by nobody else.
        let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(1) => {
                println!("kmsd started (pid {pid})");
                std::process::exit(0)
            }
            _ => {
                eprintln!(
                    "kmsd: the daemon failed to start; see {}",
                    log_dir.join("kmsd.log").display()
                );
                std::process::exit(1)
            }
        }
    }
    // Child.
    // SAFETY: closing our copy of the read end; setsid detaches from the terminal.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    use std::os::unix::io::AsRawFd;
    let devnull = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard fds with fds we own.
    unsafe {
        libc::dup2(devnull.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    // SAFETY: fds[1] is the pipe's write end, owned only by this File from now on.
    Ok(unsafe { std::fs::File::from_raw_fd(fds[1]) })
}
