//! Read-ahead of plaintext for one sequential reader of an encrypted image.
//!
//! Why: a reader such as `dd bs=1M` (or a backup, or a restore reading a volume back)
//! sends one large read, waits for it, then sends the next. Each request's `pread` and
//! decryption and then its reply's copy into the reader's pages ran one after the other,
//! so on a 2-core machine one core sat idle through most of every request, and a cold
//! sequential read stayed below the plain file's (issue 17). When a large read starts
//! where the previous one ended, a worker thread reads and decrypts the next range of the
//! same size while the current reply is being copied; the next request then takes that
//! plaintext buffer by swapping it with its own (no copy).
//!
//! Coherence: a buffer is only handed out if no write to the image started since the
//! worker began reading it and none was in flight then ([`WriteCounter`]: every write
//! counts itself as started before it touches the file and as finished after). Any write
//! anywhere in the image discards the read-ahead, which is conservative and costs nothing
//! for the sequential reader this is for. So a read never returns data older than a write
//! that completed before it was issued, exactly as without read-ahead.
//!
//! Memory: at most one buffer of one request's size per image, zeroized when dropped;
//! the worker holds the cipher only through the image's own `Arc`, and dropping the image
//! stops and joins it, so the key is freed with the image as before.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use zeroize::Zeroize;

use super::xts::{Xts, TWEAK_UNIT};

/// Reads at least this large take part (the size of request a sequential reader sends
/// through FUSE is up to `max_read`, 1 MiB; small random reads never do).
pub const AHEAD_MIN: usize = 256 << 10;

/// Writes started and finished on an image, for [`ReadAhead`]'s validity check.
#[derive(Debug, Default)]
pub struct WriteCounter {
    started: AtomicU64,
    finished: AtomicU64,
}

/// One write in flight: counted finished when dropped (on every path, errors included).
#[must_use = "the write counts as in flight until the mark is dropped"]
pub struct WriteMark<'a>(&'a WriteCounter);

impl WriteCounter {
    /// Call before the write touches the file.
    pub fn begin(&self) -> WriteMark<'_> {
        self.started.fetch_add(1, Ordering::SeqCst);
        WriteMark(self)
    }
}

impl Drop for WriteMark<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the worker reads from: the image's descriptor and cipher, shared with it.
pub struct Source {
    pub file: Arc<File>,
    pub xts: Arc<Xts>,
    /// Byte offset of the payload in the file.
    pub payload: u64,
    pub sector: usize,
    pub writes: Arc<WriteCounter>,
}

struct Ready {
    offset: u64,
    len: usize,
    /// `started` when the worker began reading (and nothing was in flight).
    writes_seen: u64,
    buf: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Where the last large read ended: the next one starting there is sequential.
    last_end: Option<u64>,
    /// Asked for, not yet picked up by the worker.
    job: Option<(u64, usize)>,
    /// Being read by the worker.
    busy: Option<(u64, usize)>,
    ready: Option<Ready>,
    /// A buffer to read the next range into (the one a hit swapped out).
    spare: Vec<u8>,
    stop: bool,
}

impl Drop for State {
    fn drop(&mut self) {
        if let Some(r) = &mut self.ready {
            r.buf.zeroize();
        }
        self.spare.zeroize();
    }
}

struct Shared {
    src: Source,
    state: Mutex<State>,
    changed: Condvar,
    hits: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; the state stays consistent if something did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The read-ahead of one image. Dropping it stops and joins its worker.
pub struct ReadAhead {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl ReadAhead {
    pub fn new(src: Source) -> ReadAhead {
        ReadAhead {
            shared: Arc::new(Shared {
                src,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                hits: AtomicU64::new(0),
            }),
            worker: Mutex::new(None),
        }
    }

    /// Reads answered from the read-ahead so far (tests and diagnostics).
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// For a read of `[offset, offset + len)` (whole sectors, at least [`AHEAD_MIN`],
    /// inside a volume of `size` bytes): if that range was read ahead and is still valid,
    /// swaps its plaintext into `buf` (then `buf[..len]` holds it) and returns true.
    /// Either way, if this read continues the previous one, asks the worker for the next
    /// range of the same length.
    pub fn take(&self, buf: &mut Vec<u8>, offset: u64, len: usize, size: u64) -> bool {
        let sh = &*self.shared;
        let range = (offset, len);
        let mut st = sh.lock();
        let sequential = st.last_end == Some(offset);
        let end = offset.saturating_add(len as u64);
        st.last_end = Some(end);
        if st.job == Some(range) {
            st.job = None; // not started: reading it here is as quick as waiting for it
        }
        while st.busy == Some(range) {
            st = sh.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let mut hit = false;
        if let Some(r) = st.ready.take() {
            if r.offset == offset
                && r.len == len
                && r.writes_seen == sh.src.writes.started.load(Ordering::SeqCst)
            {
                st.spare = std::mem::replace(buf, r.buf);
                hit = true;
            } else {
                st.spare = r.buf;
            }
        }
        let next_fits = end.checked_add(len as u64).is_some_and(|e| e <= size);
        if (sequential || hit) && next_fits && st.busy.is_none() && !st.stop {
            st.job = Some((end, len));
            drop(st);
            if self.ensure_worker() {
                sh.changed.notify_all();
            } else {
                sh.lock().job = None;
            }
        }
        if hit {
            sh.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Starts the worker on first use. False if no thread could be started (then there
    /// is no read-ahead, and reads are served as before).
    fn ensure_worker(&self) -> bool {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_some() {
            return true;
        }
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("atrest-readahead".into())
            .stack_size(256 << 10)
            .spawn(move || worker(&shared))
        {
            Ok(h) => {
                *w = Some(h);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a read-ahead thread; sequential reads are served without it");
                false
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        let handle = self
            .worker
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // The worker finishes at most the range it is reading (a millisecond), then
            // drops its share of the file and cipher.
            let _ = h.join();
        }
    }
}

fn worker(sh: &Shared) {
    let src = &sh.src;
    loop {
        let (offset, len, mut buf) = {
            let mut st = sh.lock();
            let (offset, len) = loop {
                if st.stop {
                    return;
                }
                if let Some(j) = st.job.take() {
                    break j;
                }
                st = sh.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            };
            st.busy = Some((offset, len));
            (offset, len, std::mem::take(&mut st.spare))
        };
        // A write in flight now, or one starting from here on, makes this range unusable.
        let writes_seen = src.writes.started.load(Ordering::SeqCst);
        let quiet = writes_seen == src.writes.finished.load(Ordering::SeqCst);
        let ok = quiet && {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let out = &mut buf[..len];
            src.file
                .read_exact_at(out, src.payload.saturating_add(offset))
                .is_ok()
                && src
                    .xts
                    .decrypt_stored_sectors(out, src.sector, offset / TWEAK_UNIT)
                    .is_ok()
        };
        let mut st = sh.lock();
        st.busy = None;
        if ok {
            if let Some(mut old) = st.ready.take() {
                old.buf.zeroize();
            }
            st.ready = Some(Ready {
                offset,
                len,
                writes_seen,
                buf,
            });
        } else {
            // A failed read is not reported here: the request reads the range itself and
            // answers with the error.
            st.spare = buf;
        }
        drop(st);
        sh.changed.notify_all();
    }
}
