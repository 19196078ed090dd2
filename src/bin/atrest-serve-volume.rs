//! Bench and test tool: serves one volume image through the atrest FUSE mount until
//! SIGINT/SIGTERM, without kmsd. The data key is random (`--create`) or read as 128 hex
//! digits from stdin (`--key-stdin`), and lives only in this process's memory.
//! The production path (key from kmsd, instances and attachments) is `atrest mount`.
//!
//! Prints `READY <path-of-served-file>` on stdout once the file can be opened.

// Nothing read from a user, a file, a socket or the environment may panic
// (docs/SECURITY.md): outside tests, an unwrap() or expect() fails clippy.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use atrest::mount::{
    daemon, Access, BlockDevice, DeviceError, Mount, MountError, MountOptions, PlainFile,
};
use atrest::volume::{KeyError, VolumeError, VolumeHeaderParams, VolumeImage, XtsKey};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Serve one volume image through the atrest FUSE mount (bench/test tool)")]
struct Args {
    /// Directory to mount on.
    #[arg(long)]
    mountpoint: PathBuf,
    /// Volume image (or plain file with --plain).
    #[arg(long)]
    image: PathBuf,
    /// Create the image first, encrypted with a fresh random key, of this many bytes.
    #[arg(long)]
    create: Option<u64>,
    /// Read the 64-byte XTS key as 128 hex digits from the first line of stdin.
    #[arg(long)]
    key_stdin: bool,
    /// Serve an existing unencrypted file as is (baseline for measurements).
    #[arg(long)]
    plain: bool,
    #[arg(long, default_value = "vol-0bench0000000000")]
    volume_id: String,
    #[arg(long, default_value = "i-0bench0000000000")]
    instance: String,
    #[arg(long, default_value = "xvda")]
    device: String,
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long)]
    max_write: Option<u32>,
    #[arg(long)]
    writeback_cache: bool,
    /// Serve through the kernel page cache instead of `FOPEN_DIRECT_IO` (the default)
    #[arg(long)]
    page_cache: bool,
    #[arg(long)]
    strict_revocation: bool,
}

/// Why the volume could not be served.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Plain(#[from] DeviceError),
    #[error("reading key from stdin: {0}")]
    ReadKey(#[source] std::io::Error),
    #[error("key on stdin is not hex: {0}")]
    KeyNotHex(#[source] hex::FromHexError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("an existing encrypted image needs --key-stdin")]
    NoKey,
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("cannot handle SIGINT/SIGTERM: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Mount(#[from] MountError),
}

fn device(args: &Args) -> Result<Arc<dyn BlockDevice>, ServeError> {
    if args.plain {
        return Ok(Arc::new(PlainFile::open(&args.image)?));
    }
    let key = if args.key_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(ServeError::ReadKey)?;
        let bytes =
            zeroize::Zeroizing::new(hex::decode(line.trim()).map_err(ServeError::KeyNotHex)?);
        XtsKey::from_bytes(&bytes)?
    } else if args.create.is_some() {
        XtsKey::generate()
    } else {
        return Err(ServeError::NoKey);
    };
    if let Some(size) = args.create {
        let params = VolumeHeaderParams::encrypted(
            args.volume_id.clone(),
            size,
            "arn:aws:kms:local:000000000000:key/bench",
            vec![0u8; 32],
        );
        VolumeImage::create(&args.image, &params)?;
    }
    // Tracked, as atrest serves volumes: a snapshot of the image afterwards reads only
    // the chunks written here.
    let img = VolumeImage::open_tracked(&args.image, Some(key))?;
    Ok(Arc::new(img))
}

fn run(args: Args) -> Result<(), ServeError> {
    let mut signals = daemon::TerminationSignals::install().map_err(ServeError::Signals)?;
    let dev = device(&args)?;
    let mut opts = MountOptions::new(&args.mountpoint);
    opts.access = Access::All;
    opts.writeback_cache = args.writeback_cache;
    opts.direct_io = !args.page_cache;
    opts.strict_revocation = args.strict_revocation;
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    if let Some(m) = args.max_write {
        opts.max_write = m;
    }
    let handle = Mount::start(opts)?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let path = handle.add(&args.instance, &args.device, dev, uid, gid, &args.volume_id)?;
    println!("READY {}", path.display());
    let _ = std::io::stdout().flush();
    let sig = signals.wait();
    tracing::info!(signal = ?sig, "unmounting");
    match handle.unmount() {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "clean unmount refused; detaching lazily");
            Ok(handle.unmount_forced()?)
        }
    }
}

fn main() -> ExitCode {
    atrest::logging::init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atrest-serve-volume: {e}");
            ExitCode::FAILURE
        }
    }
}
