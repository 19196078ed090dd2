//! Running a guest under qemu: the command line, the KVM probe with TCG fallback,
//! spawning, waiting for the guest's line, and stopping (ACPI power-off, then QMP
//! `quit`, then SIGKILL).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::console::{self, ConsoleState, ReadyLine, TAIL_LINES};
use super::loopdev::LoopDevice;
use super::profile::{Accel, BootProfile};
use super::BootError;

/// The emulator we run.
pub const QEMU: &str = "qemu-system-x86_64";
/// How often we look at the console and the process while waiting.
const POLL: Duration = Duration::from_millis(20);
/// How long a guest that printed its failure line gets to power itself off.
const FAILED_GUEST_GRACE: Duration = Duration::from_secs(5);
/// How often [`Guest::stop`] presses the power button again.
const POWERDOWN_REPEAT: Duration = Duration::from_secs(1);
/// How long qemu gets to exit after QMP `quit`.
const QUIT_GRACE: Duration = Duration::from_secs(3);
/// Longest a KVM probe may take. A working KVM prints the kernel banner (early printk)
/// within a fraction of a second; a broken nested KVM either resets the guest at once
/// or spins without output (seen here with `-cpu host`), so silence means TCG.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// What qemu prints on stderr when KVM accepted the VM but cannot run it (`failed to set
/// MSR` is a nested KVM that aborts qemu, exit 134, before the guest runs).
const KVM_FAILURE_MARKERS: [&str; 4] = [
    "KVM internal error",
    "failed to initialize kvm",
    "Could not access KVM kernel module",
    "failed to set MSR",
];
/// Unix socket paths are limited to 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 100;

/// How a disk is handed to qemu, by what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    /// A block device (a loop device): O_DIRECT (`cache=none`), so the host does not
    /// cache the same blocks twice (loop device and backing file).
    BlockDevice,
    /// A regular file on a file system that takes O_DIRECT: `cache=none` as well
    /// (measured a little faster than the page cache for the demo guest).
    DirectFile,
    /// A regular file on a file system without O_DIRECT (tmpfs, FUSE without direct
    /// I/O): the host page cache (`cache=writeback`).
    File,
}

impl DiskKind {
    pub fn of(disk: &Path) -> Result<Self, BootError> {
        let bad = |reason: String| BootError::BadPath {
            what: "disk",
            path: disk.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(disk).map_err(|e| bad(e.to_string()))?;
        if meta.file_type().is_block_device() {
            Ok(DiskKind::BlockDevice)
        } else if meta.is_file() {
            use std::os::unix::fs::OpenOptionsExt;
            let direct = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(disk)
                .is_ok();
            Ok(if direct {
                DiskKind::DirectFile
            } else {
                DiskKind::File
            })
        } else {
            Err(bad("neither a block device nor a regular file".into()))
        }
    }
}

/// Everything the qemu command line depends on.
#[derive(Debug, Clone)]
pub struct QemuArgs<'a> {
    pub profile: &'a BootProfile,
    /// The resolved accelerator (never [`Accel::Auto`]).
    pub accel: Accel,
    pub disk: &'a Path,
    pub disk_kind: DiskKind,
    pub cmdline: &'a str,
    pub console_log: &'a Path,
    pub qmp_socket: &'a Path,
}

/// qemu's option syntax doubles commas inside values.
fn escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// The qemu arguments for booting a guest. Pure, so it is unit-tested.
pub fn command_args(a: &QemuArgs<'_>) -> Vec<OsString> {
    let cache = match a.disk_kind {
        DiskKind::BlockDevice | DiskKind::DirectFile => "cache=none,aio=threads",
        DiskKind::File => "cache=writeback,aio=threads",
    };
    let cpu = match a.accel {
        Accel::Kvm => "host",
        Accel::Tcg | Accel::Auto => "qemu64",
    };
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |s: &str| args.push(OsString::from(s));
    for s in [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ] {
        push(s);
    }
    push("-machine");
    push("pc");
    push("-accel");
    push(a.accel.qemu_name());
    push("-cpu");
    push(cpu);
    push("-smp");
    push("1");
    push("-m");
    push(&a.profile.memory_mib.to_string());
    push("-kernel");
    args.push(a.profile.kernel.clone().into_os_string());
    let mut push = |s: &str| args.push(OsString::from(s));
    push("-initrd");
    args.push(a.profile.initrd.clone().into_os_string());
    let mut push = |s: &str| args.push(OsString::from(s));
    push("-append");
    push(a.cmdline);
    push("-drive");
    push(&format!(
        "file={},format=raw,if=virtio,{cache}",
        escape(a.disk)
    ));
    push("-chardev");
    push(&format!("file,id=console,path={}", escape(a.console_log)));
    push("-serial");
    push("chardev:console");
    push("-chardev");
    push(&format!(
        "socket,id=qmp,path={},server=on,wait=off",
        escape(a.qmp_socket)
    ));
    push("-mon");
    push("chardev=qmp,mode=control");
    args
}

// --- accelerator choice -------------------------------------------------------------------

/// Per-process result of the KVM probe (None: not run yet).
static KVM_PROBE: Mutex<Option<bool>> = Mutex::new(None);
/// Set when KVM failed a real boot after the probe passed: use TCG from then on.
static KVM_BROKEN: AtomicBool = AtomicBool::new(false);

/// Resolves [`Accel::Auto`]: KVM if a probe guest really runs under it, else TCG.
/// The probe always concludes: anything but a guest that prints under KVM (no usable
/// `/dev/kvm`, qemu missing, qemu aborting or failing under `-accel kvm`, silence) means
/// "no KVM, use TCG". The verdict is remembered for the process (a working KVM answers
/// in well under a second; a broken one costs up to 3 s, once). Concurrent callers wait
/// for one probe.
pub fn resolve_accel(profile: &BootProfile) -> Accel {
    match profile.accel {
        Accel::Kvm => Accel::Kvm,
        Accel::Tcg => Accel::Tcg,
        Accel::Auto => {
            if KVM_BROKEN.load(Ordering::Relaxed) {
                return Accel::Tcg;
            }
            let mut cached = lock(&KVM_PROBE);
            let works = *cached.get_or_insert_with(|| probe_kvm(profile) == Probe::Works);
            if works {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        }
    }
}

/// What this process decided about KVM for [`Accel::Auto`] guests: `Some(true)` while
/// guests run under KVM, `Some(false)` once the probe, or a real boot after it, found KVM
/// unusable; `None` before the first `Auto` guest.
pub fn kvm_probe_result() -> Option<bool> {
    let probed = *lock(&KVM_PROBE);
    probed.map(|works| works && !KVM_BROKEN.load(Ordering::Relaxed))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Works,
    Broken,
}

/// Boots `profile`'s kernel under KVM with no disk and watches it: a working KVM gets
/// the kernel to print its banner on the serial port; a broken nested KVM resets the
/// guest at once (qemu exits 0 without a banner, `-no-reboot`), spins silently
/// (timeout), reports an internal error on stderr or aborts (`failed to set MSR`, exit
/// 134). Any of these, and qemu failing in any other way under `-accel kvm`, is "no KVM":
/// if qemu cannot run at all, the TCG launch that follows reports why.
fn probe_kvm(profile: &BootProfile) -> Probe {
    let started = Instant::now();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        tracing::info!("no usable /dev/kvm: guests run under TCG");
        return Probe::Broken;
    }
    let child = Command::new(QEMU)
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-machine", "pc", "-accel", "kvm"])
        .args(["-cpu", "host", "-m", "128"])
        .arg("-kernel")
        .arg(&profile.kernel)
        .arg("-initrd")
        .arg(&profile.initrd)
        .arg("-append")
        .arg("console=ttyS0 earlyprintk=serial,ttyS0 atrest.probe panic=-1")
        .args(["-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("KVM probe: cannot run {QEMU}: {e}: guests run under TCG");
            return Probe::Broken;
        }
    };
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let booted = |out: &Arc<Mutex<Vec<u8>>>| {
        let stdout = text_of(out);
        stdout.contains("Linux version") || stdout.contains(console::PROBE_OK)
    };
    let verdict = loop {
        if booted(&out) {
            break Probe::Works;
        }
        if KVM_FAILURE_MARKERS
            .iter()
            .any(|m| text_of(&err).contains(m))
        {
            break Probe::Broken;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // Let the readers drain what qemu wrote just before it exited.
                std::thread::sleep(POLL);
                if booted(&out) {
                    break Probe::Works;
                }
                tracing::info!(
                    "KVM probe: qemu under -accel kvm ended ({status}) without booting: {}",
                    text_of(&err).trim()
                );
                break Probe::Broken;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("KVM probe: cannot watch qemu: {e}");
                break Probe::Broken;
            }
        }
        if started.elapsed() > PROBE_TIMEOUT {
            break Probe::Broken;
        }
        std::thread::sleep(POLL);
    };
    let _ = child.kill();
    let _ = child.wait();
    tracing::info!(
        ?verdict,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "KVM probe finished"
    );
    verdict
}

/// Reads a pipe to the end on a thread, into a shared buffer.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut pipe) = pipe {
        let sink = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                lock(&sink).extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        });
    }
    buf
}

fn text_of(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&lock(buf)).into_owned()
}

/// Locks a mutex, ignoring poisoning (the data are plain buffers and process handles).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// --- the guest ------------------------------------------------------------------------------

/// How [`Guest::stop`] ended the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// qemu had already exited.
    AlreadyStopped,
    /// The guest powered itself off after the ACPI power button.
    PoweredOff,
    /// The guest ignored the power button; qemu quit on QMP `quit`.
    Quit,
    /// qemu was killed.
    Killed,
}

#[derive(Debug)]
struct Process {
    child: Child,
    accel: Accel,
    status: Option<ExitStatus>,
    /// Whether this is the TCG retry after KVM failed.
    relaunched: bool,
}

/// A running (or finished) qemu guest. Methods take `&self`, so one guest can be
/// waited on and stopped from different threads (share it in an `Arc`). Dropping a
/// guest that still runs kills qemu; dropping it detaches the loop device it owns.
#[derive(Debug)]
pub struct Guest {
    profile: BootProfile,
    disk: PathBuf,
    disk_kind: DiskKind,
    cmdline: String,
    console_log: PathBuf,
    stderr_log: PathBuf,
    qmp_socket: PathBuf,
    started: Instant,
    process: Mutex<Process>,
    /// The loop device this guest boots from, when it attached one itself.
    loop_device: Mutex<Option<LoopDevice>>,
}

static SOCKET_SEQ: AtomicU64 = AtomicU64::new(0);

/// `<log>.<suffix>` next to the console log.
fn sibling(console_log: &Path, suffix: &str) -> PathBuf {
    let mut s = console_log.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BootError {
    let context = context.into();
    move |source| BootError::Io { context, source }
}

/// What [`launch`] needs besides the accelerator.
struct LaunchSpec<'a> {
    profile: &'a BootProfile,
    disk: &'a Path,
    disk_kind: DiskKind,
    cmdline: &'a str,
    console_log: &'a Path,
    stderr_log: &'a Path,
    qmp_socket: &'a Path,
}

/// Spawns qemu. The console log is truncated first so a previous boot's line is
/// never mistaken for this one's.
fn launch(spec: &LaunchSpec<'_>, accel: Accel) -> Result<Process, BootError> {
    let _ = std::fs::remove_file(spec.qmp_socket);
    std::fs::File::create(spec.console_log)
        .map_err(io_err(format!("creating {}", spec.console_log.display())))?;
    let stderr = std::fs::File::create(spec.stderr_log)
        .map_err(io_err(format!("creating {}", spec.stderr_log.display())))?;
    let stdout = stderr
        .try_clone()
        .map_err(io_err(format!("opening {}", spec.stderr_log.display())))?;
    let args = command_args(&QemuArgs {
        profile: spec.profile,
        accel,
        disk: spec.disk,
        disk_kind: spec.disk_kind,
        cmdline: spec.cmdline,
        console_log: spec.console_log,
        qmp_socket: spec.qmp_socket,
    });
    let child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| BootError::Spawn {
            program: QEMU,
            source,
        })?;
    tracing::info!(
        pid = child.id(),
        %accel,
        disk = %spec.disk.display(),
        "qemu started"
    );
    Ok(Process {
        child,
        accel,
        status: None,
        relaunched: false,
    })
}

impl Guest {
    /// Starts qemu booting `profile` from `disk` (a block device or a raw image file),
    /// telling the guest it boots `volume_id` (`atrest.volume=` on its command line).
    /// The serial console goes to `console_log` (truncated first), qemu's own messages
    /// to `<console_log>.qemu`, and the QMP socket is `<console_log>.qmp` (a temp path
    /// if that is too long for a socket). Returns once qemu runs; see
    /// [`Guest::wait_for_ready`].
    pub fn start(
        profile: &BootProfile,
        disk: &Path,
        volume_id: &str,
        console_log: &Path,
    ) -> Result<Guest, BootError> {
        Self::start_inner(profile, disk, volume_id, console_log, None)
    }

    /// Binds `file` to a loop device (`losetup --find --show`, with `--direct-io=on`
    /// when `direct_io`) and boots from it. The loop device belongs to the guest: it is
    /// detached once qemu has exited (after [`Guest::stop`], a failed boot, or drop).
    pub fn start_on_loop(
        profile: &BootProfile,
        file: &Path,
        volume_id: &str,
        console_log: &Path,
        direct_io: bool,
    ) -> Result<Guest, BootError> {
        // Refuse bad input before touching a loop device.
        profile.validate()?;
        profile.cmdline(volume_id)?;
        let device = LoopDevice::attach(file, direct_io)?;
        let path = device.path().to_path_buf();
        Self::start_inner(profile, &path, volume_id, console_log, Some(device))
    }

    fn start_inner(
        profile: &BootProfile,
        disk: &Path,
        volume_id: &str,
        console_log: &Path,
        loop_device: Option<LoopDevice>,
    ) -> Result<Guest, BootError> {
        profile.validate()?;
        let cmdline = profile.cmdline(volume_id)?;
        for (what, path) in [("kernel", &profile.kernel), ("initrd", &profile.initrd)] {
            std::fs::File::open(path).map_err(|e| BootError::BadPath {
                what,
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        let disk_kind = DiskKind::of(disk)?;
        if let Some(dir) = console_log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let mut qmp_socket = sibling(console_log, "qmp");
        if qmp_socket.as_os_str().len() > MAX_SOCKET_PATH {
            let n = SOCKET_SEQ.fetch_add(1, Ordering::Relaxed);
            qmp_socket =
                std::env::temp_dir().join(format!("atrest-qmp-{}-{n}.sock", std::process::id()));
        }
        let stderr_log = sibling(console_log, "qemu");
        let accel = resolve_accel(profile);
        let started = Instant::now();
        let process = launch(
            &LaunchSpec {
                profile,
                disk,
                disk_kind,
                cmdline: &cmdline,
                console_log,
                stderr_log: &stderr_log,
                qmp_socket: &qmp_socket,
            },
            accel,
        )?;
        Ok(Guest {
            profile: profile.clone(),
            disk: disk.to_path_buf(),
            disk_kind,
            cmdline,
            console_log: console_log.to_path_buf(),
            stderr_log,
            qmp_socket,
            started,
            process: Mutex::new(process),
            loop_device: Mutex::new(loop_device),
        })
    }

    /// qemu's process ID.
    pub fn pid(&self) -> u32 {
        lock(&self.process).child.id()
    }

    /// The accelerator qemu runs with (after the Auto probe and any fallback).
    pub fn accel(&self) -> Accel {
        lock(&self.process).accel
    }

    /// The disk qemu boots from (the loop device when [`Guest::start_on_loop`] made one).
    pub fn disk(&self) -> &Path {
        &self.disk
    }

    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// The guest's console output so far.
    pub fn console_output(&self) -> String {
        console::console_output(&self.console_log)
    }

    /// Time since qemu was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether qemu still runs.
    pub fn is_running(&self) -> bool {
        self.poll_exit().is_none()
    }

    /// qemu's exit status once it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.poll_exit()
    }

    fn poll_exit(&self) -> Option<ExitStatus> {
        let mut p = lock(&self.process);
        if p.status.is_none() {
            if let Ok(Some(status)) = p.child.try_wait() {
                p.status = Some(status);
            }
        }
        p.status
    }

    /// Waits up to `timeout` for qemu to exit (e.g. the guest powered itself off);
    /// returns its exit status if it has. Detaches the guest's loop device then.
    pub fn wait_for_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        if self.wait_exit(timeout) {
            self.release();
        }
        self.exit_status()
    }

    /// Waits up to `timeout` for qemu to exit; true if it has.
    fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.poll_exit().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    fn kill(&self) {
        let mut p = lock(&self.process);
        if p.status.is_none() {
            let _ = p.child.kill();
            if let Ok(status) = p.child.wait() {
                p.status = Some(status);
            }
        }
    }

    /// Once qemu has exited: detach our loop device and remove the QMP socket.
    fn release(&self) {
        drop(lock(&self.loop_device).take());
        let _ = std::fs::remove_file(&self.qmp_socket);
    }

    fn console_text(&self) -> String {
        // The ready line comes early; a guest flooding its console must not make us
        // read unbounded amounts every poll.
        console::read_tail(&self.console_log, 4 * 1024 * 1024)
            .map(|b| console::clean(&b))
            .unwrap_or_default()
    }

    fn console_tail(&self) -> String {
        console::tail(&self.console_text(), TAIL_LINES)
    }

    fn stderr_text(&self) -> String {
        console::read_tail(&self.stderr_log, 64 * 1024)
            .map(|b| console::clean(&b))
            .unwrap_or_default()
    }

    /// Waits until the guest prints its identifying line (then the instance is
    /// `running`). Errors: the guest's own failure line ([`BootError::GuestFailed`],
    /// qemu is then gone), qemu exiting first ([`BootError::QemuExited`]), or the
    /// timeout ([`BootError::Timeout`], qemu left running: call [`Guest::stop`]).
    ///
    /// With [`Accel::Auto`], a KVM that passed the probe but fails this boot (qemu
    /// exits without a word, or reports a KVM internal error) is marked broken for the
    /// process and the guest is started again under TCG, once.
    pub fn wait_for_ready(&self, timeout: Duration) -> Result<ReadyLine, BootError> {
        let deadline = Instant::now() + timeout;
        loop {
            match console::scan(&self.console_text()) {
                ConsoleState::Ready(line) => {
                    tracing::info!(
                        elapsed_ms = self.started.elapsed().as_millis() as u64,
                        line = %line.line,
                        "guest ready"
                    );
                    return Ok(line);
                }
                ConsoleState::Failed(reason) => {
                    // The guest powers itself off after its failure line.
                    if !self.wait_exit(FAILED_GUEST_GRACE) {
                        self.kill();
                    }
                    self.release();
                    return Err(BootError::GuestFailed {
                        reason,
                        console_tail: self.console_tail(),
                    });
                }
                ConsoleState::Booting => {}
            }
            let exited = self.poll_exit();
            let kvm_failed = self.accel() == Accel::Kvm
                && KVM_FAILURE_MARKERS
                    .iter()
                    .any(|m| self.stderr_text().contains(m));
            if exited.is_some() || kvm_failed {
                // qemu may have written the line just before exiting.
                match console::scan(&self.console_text()) {
                    ConsoleState::Booting => {}
                    _ => continue,
                }
                if self.retry_under_tcg(kvm_failed)? {
                    continue;
                }
                self.kill();
                self.release();
                let status = self
                    .exit_status()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "killed".into());
                return Err(BootError::QemuExited {
                    status,
                    stderr_tail: console::tail(&self.stderr_text(), TAIL_LINES),
                    console_tail: self.console_tail(),
                });
            }
            if Instant::now() >= deadline {
                return Err(BootError::Timeout {
                    waited: timeout,
                    console_tail: self.console_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// After qemu failed under an automatically chosen KVM: mark KVM broken and start
    /// again under TCG. Returns whether it relaunched.
    fn retry_under_tcg(&self, kvm_failed: bool) -> Result<bool, BootError> {
        let mut p = lock(&self.process);
        let silent =
            console::clean(&console::read_tail(&self.console_log, 1024).unwrap_or_default())
                .trim()
                .is_empty();
        if self.profile.accel != Accel::Auto
            || p.accel != Accel::Kvm
            || p.relaunched
            || !(kvm_failed || silent)
        {
            return Ok(false);
        }
        tracing::warn!("KVM failed this boot after passing the probe: retrying under TCG");
        KVM_BROKEN.store(true, Ordering::Relaxed);
        if p.status.is_none() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let mut next = launch(
            &LaunchSpec {
                profile: &self.profile,
                disk: &self.disk,
                disk_kind: self.disk_kind,
                cmdline: &self.cmdline,
                console_log: &self.console_log,
                stderr_log: &self.stderr_log,
                qmp_socket: &self.qmp_socket,
            },
            Accel::Tcg,
        )?;
        next.relaunched = true;
        *p = next;
        Ok(true)
    }

    /// Stops the guest: ACPI power button (QMP `system_powerdown`) and up to `timeout`
    /// for the guest to power off; then QMP `quit`; then SIGKILL. Once qemu is gone the
    /// loop device (if the guest owns one) is detached.
    pub fn stop(&self, timeout: Duration) -> Result<StopOutcome, BootError> {
        if self.poll_exit().is_some() {
            self.release();
            return Ok(StopOutcome::AlreadyStopped);
        }
        // Press the button again every second: a press that comes while the guest is
        // still booting (before its init watches the button) is lost, as on hardware.
        let deadline = Instant::now() + timeout;
        loop {
            if let Err(e) = self.qmp("system_powerdown") {
                tracing::warn!("system_powerdown failed: {e}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait_exit(left.min(POWERDOWN_REPEAT)) {
                self.release();
                return Ok(StopOutcome::PoweredOff);
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tracing::warn!(
            pid = self.pid(),
            "guest ignored the power button: quitting qemu"
        );
        if let Err(e) = self.qmp("quit") {
            tracing::debug!("quit: {e}");
        }
        if self.wait_exit(QUIT_GRACE) {
            self.release();
            return Ok(StopOutcome::Quit);
        }
        tracing::warn!(pid = self.pid(), "qemu ignored quit: killing it");
        self.kill();
        self.release();
        Ok(StopOutcome::Killed)
    }

    /// Runs one QMP command without arguments and returns its `return` value.
    pub fn qmp(&self, command: &str) -> Result<serde_json::Value, BootError> {
        let stream = connect_qmp(&self.qmp_socket)?;
        let mut reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|e| BootError::Qmp(format!("socket: {e}")))?,
        );
        let mut writer = stream;
        read_qmp_line(&mut reader)?; // greeting
        qmp_exchange(&mut reader, &mut writer, "qmp_capabilities")?;
        qmp_exchange(&mut reader, &mut writer, command)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            tracing::warn!(
                pid = self.pid(),
                "guest dropped while running: killing qemu"
            );
            self.kill();
        }
        self.release();
    }
}

fn connect_qmp(path: &Path) -> Result<UnixStream, BootError> {
    // qemu creates the socket before the guest starts; allow a moment right after spawn.
    let deadline = Instant::now() + Duration::from_secs(2);
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(BootError::Qmp(format!(
                    "cannot connect to {}: {e}",
                    path.display()
                )))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    };
    let timeout = Some(Duration::from_secs(3));
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(|e| BootError::Qmp(format!("socket: {e}")))?;
    Ok(stream)
}

/// Largest QMP line we accept.
const MAX_QMP_LINE: u64 = 1024 * 1024;

fn read_qmp_line(reader: &mut impl BufRead) -> Result<serde_json::Value, BootError> {
    let mut line = String::new();
    let n = reader
        .take(MAX_QMP_LINE)
        .read_line(&mut line)
        .map_err(|e| BootError::Qmp(format!("read: {e}")))?;
    if n == 0 {
        return Err(BootError::Qmp("qemu closed the QMP connection".into()));
    }
    serde_json::from_str(&line).map_err(|e| BootError::Qmp(format!("bad reply {line:?}: {e}")))
}

fn qmp_exchange(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    command: &str,
) -> Result<serde_json::Value, BootError> {
    let request = serde_json::json!({ "execute": command }).to_string() + "\n";
    writer
        .write_all(request.as_bytes())
        .map_err(|e| BootError::Qmp(format!("write {command}: {e}")))?;
    loop {
        let reply = read_qmp_line(reader)?;
        if let Some(ret) = reply.get("return") {
            return Ok(ret.clone());
        }
        if let Some(err) = reply.get("error") {
            return Err(BootError::Qmp(format!("{command}: {err}")));
        }
        // Anything else is an asynchronous event: skip it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_for(kind: DiskKind, accel: Accel) -> Vec<String> {
        let profile = BootProfile::demo_guest(Path::new("/g"));
        command_args(&QemuArgs {
            profile: &profile,
            accel,
            disk: Path::new("/dev/loop7"),
            disk_kind: kind,
            cmdline: "console=ttyS0 atrest.volume=vol-1",
            console_log: Path::new("/run/i-1/console,log"),
            qmp_socket: Path::new("/run/i-1/qmp"),
        })
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn guest_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Guest>();
    }

    #[test]
    fn block_device_gets_o_direct_virtio() {
        let args = args_for(DiskKind::BlockDevice, Accel::Tcg);
        assert_eq!(
            after(&args, "-drive"),
            ["file=/dev/loop7,format=raw,if=virtio,cache=none,aio=threads"]
        );
        assert_eq!(after(&args, "-accel"), ["tcg"]);
        assert_eq!(after(&args, "-m"), ["256"]);
        assert_eq!(after(&args, "-kernel"), ["/g/vmlinuz"]);
        assert_eq!(after(&args, "-initrd"), ["/g/initrd.img"]);
        assert_eq!(
            after(&args, "-append"),
            ["console=ttyS0 atrest.volume=vol-1"]
        );
        assert!(args.iter().any(|a| a == "-no-reboot"));
    }

    #[test]
    fn file_disk_uses_page_cache_and_kvm_uses_host_cpu() {
        let args = args_for(DiskKind::File, Accel::Kvm);
        assert!(after(&args, "-drive")[0].ends_with("cache=writeback,aio=threads"));
        assert_eq!(after(&args, "-accel"), ["kvm"]);
        assert_eq!(after(&args, "-cpu"), ["host"]);
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let args = args_for(DiskKind::File, Accel::Tcg);
        assert_eq!(
            after(&args, "-chardev")[0],
            "file,id=console,path=/run/i-1/console,,log"
        );
    }

    #[test]
    fn qmp_exchange_skips_events_and_reports_errors() {
        let replies = "{\"event\":\"POWERDOWN\"}\n{\"return\":{}}\n{\"error\":{\"class\":\"GenericError\"}}\n";
        let mut reader = std::io::Cursor::new(replies.as_bytes());
        let mut sent = Vec::new();
        assert_eq!(
            qmp_exchange(&mut reader, &mut sent, "system_powerdown").unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            String::from_utf8(sent.clone()).unwrap(),
            "{\"execute\":\"system_powerdown\"}\n"
        );
        assert!(matches!(
            qmp_exchange(&mut reader, &mut sent, "quit"),
            Err(BootError::Qmp(m)) if m.contains("GenericError")
        ));
        assert!(matches!(
            qmp_exchange(&mut reader, &mut sent, "quit"),
            Err(BootError::Qmp(m)) if m.contains("closed")
        ));
    }

    #[test]
    fn disk_kind_refuses_directories_and_missing_paths() {
        assert!(matches!(
            DiskKind::of(Path::new("/")),
            Err(BootError::BadPath { .. })
        ));
        assert!(DiskKind::of(Path::new("/nonexistent/disk")).is_err());
        let exe = std::env::current_exe().unwrap();
        assert!(matches!(
            DiskKind::of(&exe),
            Ok(DiskKind::File | DiskKind::DirectFile)
        ));
    }
}
