//! AES-XTS-256 sector encryption, byte-compatible with dm-crypt `aes-xts-plain64`.
//!
//! Every sector is one IEEE 1619 data unit under the volume's 64-byte key (bytes 0..32
//! encrypt the data, 32..64 the tweak). Sectors are whole multiples of 16 bytes (512 or
//! 4096), so ciphertext stealing never applies.
//!
//! # Tweaks
//!
//! dm-crypt `plain64` counts in 512-byte units whatever the sector size (unless
//! `iv_large_sectors`), so the sector at payload byte offset `o` uses tweak `o / 512`, as a
//! 64-bit little-endian number padded with zeros to 16 bytes.
//!
//! # Two implementations, chosen once per process
//!
//! - [`Backend::AwsLc`] (the default): AWS-LC's `EVP_aes_256_xts` through `aws-lc-sys`
//!   ([`awslc`]). AWS-LC has an XTS kernel for VAES + VPCLMULQDQ + AVX-512 and uses it where
//!   the CPU has them, AES-NI elsewhere.
//! - [`Backend::Portable`]: pure Rust on the RustCrypto `aes` crate ([`portable`]).
//!
//! [`Backend::selected`] decides on first use: `ATREST_XTS=portable` forces the portable
//! path; otherwise AWS-LC is used if it passes a known-answer check against the portable
//! path (a 4096-byte and a 512-byte sector, both directions, tweaks above 2^32), and the
//! portable path is used, with a warning, if AWS-LC fails to set up a context or disagrees.
//! The two produce the same bytes: `tests/volume_xts.rs` runs the IEEE 1619 vectors and the
//! OpenSSL and `xts-mode` oracles against both, and the OpenSSL cross-check of a written
//! image (`tests/xts_openssl_check.py`) and the golden image run on the default path.
//!
//! # Why AWS-LC (measured)
//!
//! `cargo bench --bench xts` (`scripts/bench-xts.sh`), one 4096-byte sector per call with its
//! own tweak, one core, MB/s per CPU-second, AMD EPYC (Zen 4: VAES, VPCLMULQDQ, AVX-512),
//! 2026-05, same run:
//!
//! | candidate | encrypt | decrypt |
//! |---|---|---|
//! | AWS-LC `EVP_aes_256_xts` (aws-lc-sys 0.47, AVX-512 VAES kernel) | 11 859-12 050 | 12 018-12 026 |
//! | OpenSSL 3.0.19 EVP via the `openssl` crate, tweak set per sector | 5 843-5 927 | 5 855-5 921 |
//! | `openssl speed -evp aes-256-xts -bytes 4096` (one tweak for every call: the reference) | 6 310-6 647 | |
//! | portable (this crate's pure-Rust path on `aes` with AES-NI) | 3 705-3 756 | 3 710-3 713 |
//!
//! OpenSSL 3.0 (Debian 12's, what the `openssl` crate links) has no VAES XTS kernel: it
//! runs AES-NI six blocks at a time, and setting a new tweak per sector through its provider
//! layer costs another ~10%, so it would sit at 0.9x of its own `speed` figure. AWS-LC's
//! AVX-512 kernel is twice as fast, setting the tweak costs a memcpy, and the library is
//! built from source by `aws-lc-sys` and linked statically: no system package, no
//! version skew. `aws-lc-rs` wraps AWS-LC too but has no XTS API, hence the raw EVP calls
//! (six `unsafe` calls in [`awslc`], each with its SAFETY argument). Keys: see [`awslc`]
//! for what AWS-LC copies and how it is wiped.
//!
//! # Sectors in parallel
//!
//! A request of 256 KiB or more is cut into 64 KiB pieces that this thread and idle helper
//! threads encrypt at once ([`parallel`], which says what "idle" means); smaller requests,
//! such as random 4 KiB I/O, run on the calling thread only.

mod awslc;
pub mod parallel;
mod portable;

use std::sync::{Mutex, OnceLock};

use self::awslc::AwsLcXts;
use self::parallel::{Busy, PARALLEL_MIN, PIECE};
use self::portable::PortableXts;
use super::key::XtsKey;

pub use self::portable::{mul_alpha, mul_alpha8};

/// Bytes per XTS tweak unit in dm-crypt's `plain64` IV mode.
pub const TWEAK_UNIT: u64 = 512;

const BLOCK: usize = 16;
/// Largest data unit: IEEE 1619-2018 allows at most 2^20 blocks (AWS-LC enforces it).
const MAX_DATA_UNIT: usize = BLOCK << 20;

/// A buffer that is not a whole number of sectors, a sector size XTS cannot use, or a
/// failure inside the crypto library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XtsError {
    #[error("XTS sector size {0} is not a multiple of 16 bytes between 16 bytes and 16 MiB")]
    BadSectorSize(usize),
    #[error("XTS buffer of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    PartialSector { len: usize, sector_size: usize },
    /// AWS-LC refused an operation (out of memory, or a bug): the request fails, nothing
    /// half-encrypted is written by the callers.
    #[error("XTS library call {op} failed: {reason}")]
    Library { op: &'static str, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Encrypt,
    Decrypt,
}

/// Which implementation does the AES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AWS-LC's `EVP_aes_256_xts` (VAES/AVX-512 or AES-NI kernels).
    AwsLc,
    /// Pure Rust (`aes` crate).
    Portable,
}

/// Environment variable that forces a backend: `portable`, or `auto` (the default).
pub const BACKEND_ENV: &str = "ATREST_XTS";

/// A [`BACKEND_ENV`] value that names no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {BACKEND_ENV} value {0:?} (expected auto or portable)")]
pub struct UnknownBackend(pub String);

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::AwsLc => "aws-lc",
            Backend::Portable => "portable",
        }
    }

    /// What a value of [`BACKEND_ENV`] asks for: `Some(Portable)` for `portable`, `None`
    /// (the fastest that works) for unset, empty, `auto` or `aws-lc`. Anything else is
    /// reported by [`Backend::selected`] and treated as `auto`.
    pub fn requested(value: Option<&str>) -> Result<Option<Backend>, UnknownBackend> {
        match value.map(str::trim) {
            None | Some("" | "auto" | "aws-lc") => Ok(None),
            Some("portable") => Ok(Some(Backend::Portable)),
            Some(other) => Err(UnknownBackend(other.to_string())),
        }
    }

    /// The backend of this process, decided on first use (see the module docs).
    pub fn selected() -> Backend {
        static SELECTED: OnceLock<Backend> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let value = std::env::var(BACKEND_ENV).ok();
            let wanted = Backend::requested(value.as_deref()).unwrap_or_else(|bad| {
                tracing::warn!("{bad}; using auto");
                None
            });
            let chosen = match wanted {
                Some(b) => b,
                None => match self_test() {
                    Ok(()) => Backend::AwsLc,
                    Err(e) => {
                        tracing::warn!(error = %e, "AWS-LC XTS is unavailable; using the portable (slower) implementation");
                        Backend::Portable
                    }
                },
            };
            tracing::debug!(backend = chosen.name(), "XTS implementation");
            chosen
        })
    }
}

/// Known-answer check of AWS-LC against the portable path, both directions.
fn self_test() -> Result<(), XtsError> {
    let mut k = [0u8; 64];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let key = XtsKey::from_bytes(&k).map_err(|e| XtsError::Library {
        op: "self-test key",
        reason: e.to_string(),
    })?;
    let fast = Xts::with_backend(&key, Backend::AwsLc)?;
    let reference = Xts::with_backend(&key, Backend::Portable)?;
    for (sector, unit) in [(4096usize, 0x0123_4567_89ab_cdefu64), (512, 0x1_0000_0001)] {
        let plain: Vec<u8> = (0..2 * sector).map(|i| (i * 31 + 5) as u8).collect();
        let mut a = plain.clone();
        let mut b = plain.clone();
        fast.encrypt_sectors(&mut a, sector, unit)?;
        reference.encrypt_sectors(&mut b, sector, unit)?;
        let mut c = vec![0u8; plain.len()];
        fast.encrypt_sectors_into(&plain, &mut c, sector, unit)?;
        let same_ciphertext = a == b && a == c;
        fast.decrypt_sectors(&mut b, sector, unit)?;
        if !same_ciphertext || b != plain {
            return Err(XtsError::Library {
                op: "self-test",
                reason: format!(
                    "AWS-LC disagrees with the portable path on a {sector}-byte sector"
                ),
            });
        }
    }
    Ok(())
}

enum Engine {
    AwsLc(AwsLcXts),
    /// Boxed: two expanded AES keys are ~2 KB, and an `Xts` moves around.
    Portable(Box<PortableXts>),
}

/// The sector cipher of one XTS key. Safe to use from many threads at once.
pub struct Xts {
    engine: Engine,
}

/// Checks that `len` bytes are whole sectors of a usable size; the tweak units each
/// sector advances (dm-crypt counts in 512-byte units whatever the sector size).
fn units_per_sector(len: usize, sector_size: usize) -> Result<u64, XtsError> {
    if sector_size == 0 || sector_size % BLOCK != 0 || sector_size > MAX_DATA_UNIT {
        return Err(XtsError::BadSectorSize(sector_size));
    }
    if len % sector_size != 0 {
        return Err(XtsError::PartialSector { len, sector_size });
    }
    Ok((sector_size as u64) / TWEAK_UNIT.min(sector_size as u64))
}

/// Where a run of sectors starts and how its tweaks advance.
#[derive(Clone, Copy)]
struct Run {
    sector_size: usize,
    first_unit: u64,
    units_per_sector: u64,
}

impl Run {
    fn new(len: usize, sector_size: usize, first_unit: u64) -> Result<Run, XtsError> {
        Ok(Run {
            sector_size,
            first_unit,
            units_per_sector: units_per_sector(len, sector_size)?,
        })
    }

    /// Tweak unit of sector `k` of the run (wrapping, as dm-crypt's u64 sector number).
    fn unit(&self, k: usize) -> u64 {
        self.first_unit
            .wrapping_add((k as u64).wrapping_mul(self.units_per_sector))
    }

    /// The sub-run starting at byte `offset` (a multiple of the sector size).
    fn at(&self, offset: usize) -> Run {
        Run {
            first_unit: self.unit(offset / self.sector_size),
            ..*self
        }
    }

    /// Whether a buffer of `len` bytes is worth spreading over several cores.
    fn parallel(&self, len: usize) -> bool {
        len >= PARALLEL_MIN && PIECE % self.sector_size == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` over `pieces` on this thread and idle helpers; the first error wins.
fn in_parallel<T: Send>(
    pieces: Vec<T>,
    f: &(dyn Fn(usize, &mut T) -> Result<(), XtsError> + Sync),
) -> Result<(), XtsError> {
    // Each piece is taken exactly once, so these locks are never contended: they only turn
    // "this piece is mine now" into something the compiler can check.
    let cells: Vec<Mutex<T>> = pieces.into_iter().map(Mutex::new).collect();
    let first_err = Mutex::new(None);
    parallel::run(cells.len(), &|i| {
        let mut piece = lock(&cells[i]);
        if let Err(e) = f(i, &mut piece) {
            lock(&first_err).get_or_insert(e);
        }
    });
    first_err
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(Ok(()), Err)
}

impl Xts {
    /// The cipher of `key` on [`Backend::selected`]. If AWS-LC cannot key a context for it
    /// (out of memory), this key uses the portable path, with a warning.
    pub fn new(key: &XtsKey) -> Self {
        let backend = Backend::selected();
        match Xts::with_backend(key, backend) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "AWS-LC cannot key an XTS context; this volume uses the portable implementation");
                Xts {
                    engine: Engine::Portable(Box::new(PortableXts::new(key))),
                }
            }
        }
    }

    /// The cipher of `key` on a given backend (tests and benchmarks run both).
    pub fn with_backend(key: &XtsKey, backend: Backend) -> Result<Self, XtsError> {
        let engine = match backend {
            Backend::AwsLc => Engine::AwsLc(AwsLcXts::new(key)?),
            Backend::Portable => Engine::Portable(Box::new(PortableXts::new(key))),
        };
        Ok(Xts { engine })
    }

    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::AwsLc(_) => Backend::AwsLc,
            Engine::Portable(_) => Backend::Portable,
        }
    }

    /// Sectors of `buf` in place, one after the other on this thread. With `holes_are_zero`,
    /// an all-zero sector is left as is (it is a never-written hole: see docs/FORMAT.md).
    fn crypt_serial(
        &self,
        buf: &mut [u8],
        run: Run,
        dir: Dir,
        holes_are_zero: bool,
    ) -> Result<(), XtsError> {
        let sectors = buf.chunks_exact_mut(run.sector_size).enumerate();
        let skip = |s: &[u8]| holes_are_zero && is_zero(s);
        match &self.engine {
            Engine::AwsLc(x) => {
                let mut lease = x.lease()?;
                for (k, sector) in sectors {
                    if !skip(sector) {
                        lease.crypt(sector, run.unit(k), dir)?;
                    }
                }
            }
            Engine::Portable(x) => {
                for (k, sector) in sectors {
                    if !skip(sector) {
                        x.crypt(sector, run.unit(k), dir);
                    }
                }
            }
        }
        Ok(())
    }

    fn encrypt_serial(&self, src: &[u8], dst: &mut [u8], run: Run) -> Result<(), XtsError> {
        let sectors = src
            .chunks_exact(run.sector_size)
            .zip(dst.chunks_exact_mut(run.sector_size))
            .enumerate();
        match &self.engine {
            Engine::AwsLc(x) => {
                let mut lease = x.lease()?;
                for (k, (s, d)) in sectors {
                    lease.encrypt_into(s, d, run.unit(k))?;
                }
            }
            Engine::Portable(x) => {
                for (k, (s, d)) in sectors {
                    x.encrypt_into(s, d, run.unit(k));
                }
            }
        }
        Ok(())
    }

    fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
        dir: Dir,
        holes_are_zero: bool,
    ) -> Result<(), XtsError> {
        let run = Run::new(buf.len(), sector_size, first_unit)?;
        let _busy = Busy::enter();
        if !run.parallel(buf.len()) {
            return self.crypt_serial(buf, run, dir, holes_are_zero);
        }
        in_parallel(buf.chunks_mut(PIECE).collect(), &|i, piece| {
            self.crypt_serial(piece, run.at(i * PIECE), dir, holes_are_zero)
        })
    }

    /// Encrypts whole sectors of `src` into `dst` (same length), leaving `src` untouched;
    /// sector `k` uses tweak `first_unit + k * sector_size / 512`. Same ciphertext as
    /// [`Xts::encrypt_sectors`] on a copy, without the copy.
    pub fn encrypt_sectors_into(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        if dst.len() != src.len() {
            return Err(XtsError::PartialSector {
                len: src.len().max(dst.len()),
                sector_size,
            });
        }
        let run = Run::new(src.len(), sector_size, first_unit)?;
        let _busy = Busy::enter();
        if !run.parallel(src.len()) {
            return self.encrypt_serial(src, dst, run);
        }
        let pieces: Vec<(&[u8], &mut [u8])> =
            src.chunks(PIECE).zip(dst.chunks_mut(PIECE)).collect();
        in_parallel(pieces, &|i, (s, d)| {
            self.encrypt_serial(s, d, run.at(i * PIECE))
        })
    }

    /// Encrypts one XTS data unit (any whole number of 16-byte blocks up to 16 MiB) with
    /// tweak value `tweak`, as IEEE 1619 defines it; used by the test vectors.
    pub fn encrypt_data_unit(&self, data: &mut [u8], tweak: u64) -> Result<(), XtsError> {
        self.crypt_sectors(data, data.len().max(BLOCK), tweak, Dir::Encrypt, false)
    }

    /// Inverse of [`Xts::encrypt_data_unit`].
    pub fn decrypt_data_unit(&self, data: &mut [u8], tweak: u64) -> Result<(), XtsError> {
        self.crypt_sectors(data, data.len().max(BLOCK), tweak, Dir::Decrypt, false)
    }

    /// Encrypts whole sectors in place; sector `k` of `buf` uses tweak
    /// `first_unit + k * sector_size / 512`.
    pub fn encrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Encrypt, false)
    }

    /// Decrypts whole sectors in place (plain XTS, no hole rule).
    pub fn decrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Decrypt, false)
    }

    /// Decrypts sectors as stored in a volume payload: a sector whose ciphertext is all
    /// zeros is a never-written hole and reads as plaintext zeros (see docs/FORMAT.md).
    pub fn decrypt_stored_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Decrypt, true)
    }
}

/// True if every byte is zero. Stops at the first 256-byte group that is not (real
/// ciphertext almost always fails in the first group, so the hole check costs nearly
/// nothing on written sectors); each group is OR-reduced word-wide, so it vectorizes.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut groups = buf.chunks_exact(256);
    for g in &mut groups {
        let mut acc = 0u128;
        for c in g.chunks_exact(BLOCK) {
            let mut a = [0u8; BLOCK];
            a.copy_from_slice(c);
            acc |= u128::from_ne_bytes(a);
        }
        if acc != 0 {
            return false;
        }
    }
    groups.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(key: &XtsKey) -> [Xts; 2] {
        [
            Xts::with_backend(key, Backend::AwsLc).unwrap(),
            Xts::with_backend(key, Backend::Portable).unwrap(),
        ]
    }

    #[test]
    fn round_trip_and_rejects_partial_sectors() {
        for x in both(&XtsKey::generate()) {
            let mut buf: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
            let orig = buf.clone();
            x.encrypt_sectors(&mut buf, 4096, 8).unwrap();
            assert_ne!(buf, orig);
            x.decrypt_sectors(&mut buf, 4096, 8).unwrap();
            assert_eq!(buf, orig);
            assert_eq!(
                x.encrypt_sectors(&mut buf[..100], 512, 0),
                Err(XtsError::PartialSector {
                    len: 100,
                    sector_size: 512
                })
            );
            assert_eq!(
                x.encrypt_sectors(&mut buf, 100, 0),
                Err(XtsError::BadSectorSize(100))
            );
            assert_eq!(
                x.encrypt_sectors(&mut buf, 0, 0),
                Err(XtsError::BadSectorSize(0))
            );
            let mut huge = vec![0u8; MAX_DATA_UNIT + BLOCK];
            assert_eq!(
                x.encrypt_data_unit(&mut huge, 0),
                Err(XtsError::BadSectorSize(MAX_DATA_UNIT + BLOCK))
            );
        }
    }

    #[test]
    fn encrypt_into_equals_in_place() {
        for x in both(&XtsKey::generate()) {
            // 2 MiB covers the parallel path (>= 256 KiB) with a piece boundary inside.
            for (ss, n) in [(512usize, 3usize), (4096, 3), (512, 4096), (4096, 512)] {
                let src: Vec<u8> = (0..ss * n).map(|i| (i * 7 + 3) as u8).collect();
                let mut in_place = src.clone();
                x.encrypt_sectors(&mut in_place, ss, 40).unwrap();
                let mut into = vec![0xAAu8; src.len()];
                x.encrypt_sectors_into(&src, &mut into, ss, 40).unwrap();
                assert_eq!(into, in_place, "{ss} x {n}");
            }
            let mut short = vec![0u8; 4096];
            assert!(x
                .encrypt_sectors_into(&[0u8; 8192], &mut short, 4096, 0)
                .is_err());
        }
    }

    /// A large buffer (split into pieces on several threads) equals the same sectors done
    /// one request at a time, for both backends and both directions.
    #[test]
    fn parallel_equals_serial() {
        let key = XtsKey::generate();
        for x in both(&key) {
            for ss in [512usize, 4096] {
                let len = PARALLEL_MIN * 4 + PIECE / 2; // pieces of unequal length at the end
                let plain: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
                let mut big = plain.clone();
                x.encrypt_sectors(&mut big, ss, 1 << 40).unwrap();
                let mut small = plain.clone();
                for (k, s) in small.chunks_mut(ss).enumerate() {
                    x.encrypt_sectors(s, ss, (1 << 40) + (k * ss / 512) as u64)
                        .unwrap();
                }
                assert_eq!(big, small, "{:?} {ss}", x.backend());
                x.decrypt_sectors(&mut big, ss, 1 << 40).unwrap();
                assert_eq!(big, plain);
            }
        }
    }

    #[test]
    fn backends_agree() {
        let key = XtsKey::generate();
        let [a, p] = both(&key);
        let plain: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 5 + 9) as u8).collect();
        for ss in [512usize, 4096] {
            let mut x = plain.clone();
            let mut y = plain.clone();
            a.encrypt_sectors(&mut x, ss, u64::MAX - 3).unwrap();
            p.encrypt_sectors(&mut y, ss, u64::MAX - 3).unwrap();
            assert_eq!(x, y);
            p.decrypt_stored_sectors(&mut x, ss, u64::MAX - 3).unwrap();
            assert_eq!(x, plain);
        }
    }

    #[test]
    fn zero_ciphertext_reads_as_zero_only_with_hole_rule() {
        for x in both(&XtsKey::generate()) {
            let mut a = vec![0u8; 512];
            x.decrypt_stored_sectors(&mut a, 512, 3).unwrap();
            assert!(is_zero(&a));
            x.decrypt_sectors(&mut a, 512, 3).unwrap();
            assert!(!is_zero(&a));
            // A hole between written sectors, in a buffer large enough to run in parallel.
            let mut v = vec![1u8; PARALLEL_MIN * 2];
            x.encrypt_sectors(&mut v, 4096, 0).unwrap();
            v[PIECE + 4096..PIECE + 8192].fill(0);
            x.decrypt_stored_sectors(&mut v, 4096, 0).unwrap();
            assert!(is_zero(&v[PIECE + 4096..PIECE + 8192]));
            assert!(v[..PIECE + 4096].iter().all(|&b| b == 1));
            assert!(v[PIECE + 8192..].iter().all(|&b| b == 1));
        }
    }

    #[test]
    fn is_zero_checks_every_byte() {
        let mut b = vec![0u8; 4099];
        assert!(is_zero(&b));
        for i in [0usize, 15, 16, 255, 256, 4095, 4096, 4098] {
            b[i] = 1;
            assert!(!is_zero(&b), "{i}");
            b[i] = 0;
        }
        assert!(is_zero(&[]));
    }

    #[test]
    fn backend_requests() {
        assert_eq!(Backend::requested(None), Ok(None));
        assert_eq!(Backend::requested(Some("auto")), Ok(None));
        assert_eq!(Backend::requested(Some(" aws-lc ")), Ok(None));
        assert_eq!(Backend::requested(Some("")), Ok(None));
        assert_eq!(
            Backend::requested(Some("portable")),
            Ok(Some(Backend::Portable))
        );
        assert_eq!(
            Backend::requested(Some("fast")),
            Err(UnknownBackend("fast".to_string()))
        );
    }

    #[test]
    fn aws_lc_passes_its_self_test() {
        self_test().unwrap();
    }
}
