//! Sectors in parallel: one large request spread over the cores that are idle.
//!
//! A small pool of helper threads (one fewer than the CPUs this process may run on), started
//! on the first large request and kept for the life of the process. A request of
//! [`PARALLEL_MIN`] bytes or more is cut into pieces of [`PIECE`] bytes; the calling thread
//! works through the pieces itself and *offers* the same job to helpers, which take pieces
//! from the same counter until none is left. Nothing ever waits in a queue:
//!
//! - **"When the others are idle"** means: a helper is offered the job only if it is parked
//!   (not working for another request), and only as many helpers as there are CPUs not
//!   already doing sector crypto in this process: every XTS call (on a FUSE thread, a
//!   snapshot copy, or a helper) counts itself in [`Busy`] while it runs. With 8 FUSE threads
//!   busy on random 4 KiB I/O, a sequential 1 MiB request finds no spare CPU and runs on its
//!   own thread exactly as before; alone on the machine, it uses every core.
//! - The caller never waits for a helper to *start*: when it has taken the last piece, it
//!   withdraws the offer from every helper that has not picked it up yet, and waits only for
//!   helpers that are inside a piece (a piece of 64 KiB is ~5-20 us of AES).
//!
//! The pool is ours rather than rayon's because rayon's scoped jobs make the caller wait
//! for every spawned task, including one still queued behind another request, which is
//! the opposite of "only if idle"; and a thread spawned per request costs ~30 us, as much as
//! the AES of 256 KiB. Measured in `benches/xts.rs` (`parallel` lines).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Requests at least this large are spread over idle cores.
pub const PARALLEL_MIN: usize = 256 << 10;
/// Bytes of one piece: a multiple of 4096 (whole sectors of any size atrest uses).
pub const PIECE: usize = 64 << 10;

/// Sector-crypto calls running right now in this process (callers and helpers).
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Counts the current thread in [`BUSY`] until dropped.
pub(super) struct Busy(());

impl Busy {
    pub(super) fn enter() -> Busy {
        BUSY.fetch_add(1, Ordering::Relaxed);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The work of one request: `run(i)` for every piece `i` in `0..pieces`, each exactly once.
struct Job {
    next: AtomicUsize,
    pieces: usize,
    /// The caller's closure with its lifetime erased: see the SAFETY argument in [`run`].
    work: *const (dyn Fn(usize) + Sync + 'static),
    /// Helpers that picked the job up and have not finished yet.
    inside: Mutex<usize>,
    left: Condvar,
    panicked: AtomicBool,
}

// SAFETY: `work` points to a `Sync` closure, so calling it from several threads at once is
// allowed; the pointer is only dereferenced while the closure is alive (see `run`).
unsafe impl Send for Job {}
// SAFETY: as above; every other field is Sync.
unsafe impl Sync for Job {}

impl Job {
    /// Takes pieces until none is left. Returns false if a piece panicked.
    ///
    /// # Safety
    /// `self.work` must still point to a live closure.
    unsafe fn work_through(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.pieces {
                return;
            }
            // SAFETY: guaranteed by the caller.
            let work = unsafe { &*self.work };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// What a helper is doing.
enum Slot {
    /// Parked, free to be offered a job.
    Idle,
    /// Offered a job it has not picked up yet (the caller may still withdraw it).
    Offered(Arc<Job>),
    /// Working on a job.
    Busy,
}

struct Helper {
    slot: Mutex<Slot>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Pool {
    helpers: Vec<Arc<Helper>>,
    cpus: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// CPUs this process may use, and how many of them one request may use
/// (`ATREST_XTS_THREADS`, default all; 1 turns sector parallelism off).
fn cpus() -> (usize, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_request = std::env::var("ATREST_XTS_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(cpus)
        .min(cpus);
    (cpus, per_request)
}

impl Pool {
    fn start() -> Pool {
        let (cpus, per_request) = cpus();
        let mut helpers = Vec::new();
        for n in 0..per_request.saturating_sub(1) {
            let helper = Arc::new(Helper {
                slot: Mutex::new(Slot::Idle),
                wake: Condvar::new(),
            });
            let h = Arc::clone(&helper);
            let spawned = std::thread::Builder::new()
                .name(format!("atrest-xts-{n}"))
                .stack_size(256 << 10)
                .spawn(move || helper_main(&h));
            match spawned {
                Ok(_) => helpers.push(helper),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start an XTS helper thread; large requests use fewer cores");
                    break;
                }
            }
        }
        tracing::debug!(helpers = helpers.len(), cpus, "XTS sector helpers started");
        Pool { helpers, cpus }
    }
}

/// Marks this thread as an I/O flusher (`PR_SET_IO_FLUSHER`, best effort: it needs
/// `CAP_SYS_RESOURCE`). Helpers encrypt for the FUSE threads, which serve loop-device
/// writeback; a helper that allocates (a new AWS-LC context) must not recurse into that
/// writeback under memory pressure, exactly like the FUSE threads themselves.
fn set_io_flusher() {
    const PR_SET_IO_FLUSHER: libc::c_int = 57;
    // SAFETY: prctl with integer arguments only; failure leaves the thread as it was.
    unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1 as libc::c_ulong, 0, 0, 0) };
}

fn helper_main(me: &Helper) {
    set_io_flusher();
    loop {
        let job = {
            let mut slot = lock(&me.slot);
            loop {
                // Taken out and put back unless it is an offer, all under the slot lock, so
                // no one sees the Busy placeholder of a slot that was not offered.
                match std::mem::replace(&mut *slot, Slot::Busy) {
                    Slot::Offered(job) => {
                        // Counted inside before the slot lock is released: a caller that
                        // then finds this slot Busy knows to wait for us.
                        *lock(&job.inside) += 1;
                        break job;
                    }
                    other => *slot = other,
                }
                slot = me.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        {
            let _busy = Busy::enter();
            // SAFETY: we picked the job up while it was offered, and registered in `inside`
            // under the slot lock; the caller does not return (so the closure stays alive)
            // until `inside` is back to zero.
            unsafe { job.work_through() };
        }
        {
            let mut inside = lock(&job.inside);
            *inside -= 1;
            if *inside == 0 {
                job.left.notify_all();
            }
        }
        // The closure may be gone from here on; only the Arc'd Job itself is touched.
        drop(job);
        *lock(&me.slot) = Slot::Idle;
    }
}

/// Withdraws the offers and waits for the helpers inside the job, even if the caller's own
/// pieces panicked (the closure must outlive every helper's use of it).
struct Finish<'a> {
    job: &'a Arc<Job>,
    offered: Vec<&'a Helper>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        for h in &self.offered {
            let mut slot = lock(&h.slot);
            if matches!(&*slot, Slot::Offered(j) if Arc::ptr_eq(j, self.job)) {
                *slot = Slot::Idle;
            }
        }
        let mut inside = lock(&self.job.inside);
        while *inside > 0 {
            inside = self
                .job
                .left
                .wait(inside)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Runs `work(i)` for every `i` in `0..pieces`: on this thread, and on helpers if some are
/// idle and CPUs are free (see the module docs). Returns when every piece is done. A panic
/// in a piece run by a helper is re-raised here.
pub(super) fn run(pieces: usize, work: &(dyn Fn(usize) + Sync)) {
    let pool = POOL.get_or_init(Pool::start);
    // CPUs not doing sector crypto right now, this thread (counted in BUSY) excluded.
    let free = pool.cpus.saturating_sub(BUSY.load(Ordering::Relaxed));
    let want = free.min(pieces.saturating_sub(1)).min(pool.helpers.len());
    if want == 0 {
        for i in 0..pieces {
            work(i);
        }
        return;
    }
    // SAFETY: the lifetime is erased so helpers can hold the pointer; `Finish` below does not
    // let this function return (or unwind) before every offer is withdrawn and every helper
    // that picked the job up has left it, so no one dereferences it after `work` is gone.
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        std::mem::transmute::<
            *const (dyn Fn(usize) + Sync + '_),
            *const (dyn Fn(usize) + Sync + 'static),
        >(work as *const _)
    };
    let job = Arc::new(Job {
        next: AtomicUsize::new(0),
        pieces,
        work: erased,
        inside: Mutex::new(0),
        left: Condvar::new(),
        panicked: AtomicBool::new(false),
    });
    let mut finish = Finish {
        job: &job,
        offered: Vec::with_capacity(want),
    };
    for h in &pool.helpers {
        if finish.offered.len() == want {
            break;
        }
        let mut slot = lock(&h.slot);
        if matches!(*slot, Slot::Idle) {
            *slot = Slot::Offered(Arc::clone(&job));
            h.wake.notify_one();
            finish.offered.push(h);
        }
    }
    // SAFETY: `work` is alive for this whole call.
    unsafe { job.work_through() };
    drop(finish);
    // Not input-driven: a piece panics only on a bug, and the caller's own thread would have
    // panicked the same way had it run that piece itself.
    if job.panicked.load(Ordering::Relaxed) {
        panic!("an XTS sector piece panicked on a helper thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_runs_exactly_once() {
        for pieces in [0usize, 1, 2, 3, 16, 257] {
            let hits: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
            run(pieces, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{pieces} pieces"
            );
        }
    }

    #[test]
    fn many_callers_at_once() {
        std::thread::scope(|s| {
            for t in 0..6 {
                s.spawn(move || {
                    for round in 0..200 {
                        let pieces = 1 + (t * 7 + round) % 20;
                        let sum = AtomicUsize::new(0);
                        run(pieces, &|i| {
                            sum.fetch_add(i + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), pieces * (pieces + 1) / 2);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_piece_panics_the_caller() {
        for bad in [0usize, 7] {
            let r = std::panic::catch_unwind(|| {
                run(8, &|i| {
                    if i == bad {
                        panic!("piece {i}");
                    }
                })
            });
            assert!(r.is_err(), "piece {bad}");
        }
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        run(8, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }
}
