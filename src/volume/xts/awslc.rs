//! The fast XTS path: AWS-LC's `EVP_aes_256_xts` through `aws-lc-sys` (statically linked,
//! built from source by the crate, no system library involved).
//!
//! AWS-LC picks its XTS code at run time from the CPU: a VAES + VPCLMULQDQ + AVX-512 kernel
//! (`aesni-xts-avx512.pl`) where the CPU has all of those (and AVX512-VBMI2), the AES-NI
//! kernel (`aesni-x86_64.pl`, six blocks in flight) elsewhere on x86-64, and its generic
//! code otherwise.
//!
//! # One context per thread at a time
//!
//! An `EVP_CIPHER_CTX` holds the current tweak (IV), so two threads cannot share one. Each
//! [`AwsLcXts`] keeps a small pool of context pairs (one keyed for encryption, one for
//! decryption: AES decryption needs the inverted key schedule): a call takes a pair for all
//! its sectors and gives it back, so the pool grows to the number of threads that ever ran at
//! once on this key (the FUSE threads plus the sector helpers) and no further.
//!
//! # Where the key goes
//!
//! `EVP_CipherInit_ex` reads the 64-byte key once per context and keeps only the two expanded
//! AES key schedules, in the context's `cipher_data` (heap, `OPENSSL_malloc`). AWS-LC's
//! `EVP_CIPHER_CTX_free` calls `OPENSSL_free` on it, which `OPENSSL_cleanse`s the whole
//! allocation before freeing it, then wipes and frees the context itself (which holds only
//! the tweak). The raw key stays in this struct's [`XtsKey`] (boxed, zeroized on drop), to
//! key new contexts when the pool grows. So dropping an [`AwsLcXts`] wipes every copy.

use std::ffi::c_int;
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use aws_lc_sys as ffi;

use super::{Dir, XtsError};
use crate::volume::key::XtsKey;

/// Context pairs kept for reuse; more are freed when given back (never reached in practice:
/// one per thread that ran at the same time).
const MAX_IDLE: usize = 64;

/// One owned `EVP_CIPHER_CTX` keyed for aes-256-xts.
struct Ctx(NonNull<ffi::EVP_CIPHER_CTX>);

// SAFETY: an EVP_CIPHER_CTX has no thread affinity; it is only ever used by one thread at a
// time (it is moved out of the pool, used, and moved back).
unsafe impl Send for Ctx {}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: we own the context (allocated by EVP_CIPHER_CTX_new) and free it once.
        // AWS-LC wipes the key schedule and the context before freeing them.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.0.as_ptr()) }
    }
}

/// The first error on this thread's AWS-LC error queue (which is then cleared).
fn library_error(op: &'static str) -> XtsError {
    // SAFETY: ERR_get_error only reads and pops this thread's error queue.
    let code = unsafe { ffi::ERR_get_error() };
    let mut buf = [0u8; 160];
    // SAFETY: ERR_error_string_n writes at most buf.len() bytes, NUL-terminated.
    unsafe { ffi::ERR_error_string_n(code, buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    // SAFETY: only reads and clears this thread's error queue.
    unsafe { ffi::ERR_clear_error() };
    XtsError::Library {
        op,
        reason: String::from_utf8_lossy(&buf[..end]).into_owned(),
    }
}

impl Ctx {
    fn new(key: &XtsKey, dir: Dir) -> Result<Ctx, XtsError> {
        // SAFETY: plain allocation; NULL is handled.
        let raw = unsafe { ffi::EVP_CIPHER_CTX_new() };
        let ctx = Ctx(NonNull::new(raw).ok_or_else(|| library_error("EVP_CIPHER_CTX_new"))?);
        let key = key.as_bytes();
        // SAFETY: ctx is a fresh context; EVP_aes_256_xts takes a 64-byte key and we pass a
        // pointer to exactly 64 bytes that outlive the call (the key is expanded, not kept).
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                ctx.0.as_ptr(),
                ffi::EVP_aes_256_xts(),
                ptr::null_mut(),
                key.as_ptr(),
                ptr::null(),
                c_int::from(matches!(dir, Dir::Encrypt)),
            )
        };
        if ok != 1 {
            return Err(library_error("EVP_CipherInit_ex"));
        }
        Ok(ctx)
    }

    /// One data unit: `src` -> `dst`, both exactly `len` bytes (16 <= len <= 16 MiB, a
    /// multiple of 16, checked by the parent module); `dst` may be `src` (in place).
    ///
    /// # Safety
    /// `src` and `dst` must each be valid for `len` bytes and either be the same pointer or
    /// not overlap.
    unsafe fn unit(
        &mut self,
        src: *const u8,
        dst: *mut u8,
        len: usize,
        unit: u64,
    ) -> Result<(), XtsError> {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&unit.to_le_bytes());
        let in_len = c_int::try_from(len).map_err(|_| XtsError::BadSectorSize(len))?;
        // SAFETY: a keyed context; a NULL cipher and key with an IV only set the tweak of the
        // next data unit (AWS-LC copies the 16 bytes), enc = -1 keeps the direction.
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                self.0.as_ptr(),
                ptr::null(),
                ptr::null_mut(),
                ptr::null(),
                iv.as_ptr(),
                -1,
            )
        };
        if ok != 1 {
            return Err(library_error("EVP_CipherInit_ex (tweak)"));
        }
        let mut out_len: c_int = 0;
        // SAFETY: the caller guarantees src/dst are valid for len bytes and identical or
        // disjoint; XTS has block size 1, so EVP writes exactly len bytes, all at once.
        let ok = unsafe { ffi::EVP_CipherUpdate(self.0.as_ptr(), dst, &mut out_len, src, in_len) };
        if ok != 1 || out_len != in_len {
            return Err(library_error("EVP_CipherUpdate"));
        }
        Ok(())
    }
}

/// A context for each direction, used together by one thread at a time.
struct Pair {
    enc: Ctx,
    dec: Ctx,
}

/// One XTS key on AWS-LC: the key (to key new contexts) and the idle context pairs.
pub(super) struct AwsLcXts {
    key: XtsKey,
    idle: Mutex<Vec<Pair>>,
}

/// A pair taken from the pool; given back on drop unless an error poisoned it.
pub(super) struct Lease<'a> {
    owner: &'a AwsLcXts,
    pair: Option<Pair>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(pair) = self.pair.take() {
            let mut idle = self.owner.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(pair);
            }
        }
    }
}

impl Lease<'_> {
    fn run(
        &mut self,
        dir: Dir,
        f: impl FnOnce(&mut Ctx) -> Result<(), XtsError>,
    ) -> Result<(), XtsError> {
        let Some(pair) = self.pair.as_mut() else {
            return Err(XtsError::Library {
                op: "context",
                reason: "context lost after an earlier failure".into(),
            });
        };
        let ctx = match dir {
            Dir::Encrypt => &mut pair.enc,
            Dir::Decrypt => &mut pair.dec,
        };
        let r = f(ctx);
        if r.is_err() {
            // A context that failed mid-operation is not reused.
            self.pair = None;
        }
        r
    }

    /// One data unit in place.
    pub(super) fn crypt(&mut self, data: &mut [u8], unit: u64, dir: Dir) -> Result<(), XtsError> {
        let len = data.len();
        let p = data.as_mut_ptr();
        // SAFETY: in place: the same valid pointer for input and output, len bytes.
        self.run(dir, |ctx| unsafe { ctx.unit(p, p, len, unit) })
    }

    /// One data unit encrypted from `src` into `dst` (same length, checked by the parent).
    pub(super) fn encrypt_into(
        &mut self,
        src: &[u8],
        dst: &mut [u8],
        unit: u64,
    ) -> Result<(), XtsError> {
        debug_assert_eq!(src.len(), dst.len());
        let len = src.len().min(dst.len());
        // SAFETY: `&[u8]` and `&mut [u8]` never overlap; both are valid for len bytes.
        self.run(Dir::Encrypt, |ctx| unsafe {
            ctx.unit(src.as_ptr(), dst.as_mut_ptr(), len, unit)
        })
    }
}

impl AwsLcXts {
    /// Keys one context pair at once, so a key AWS-LC refuses fails here, not on first use.
    pub(super) fn new(key: &XtsKey) -> Result<Self, XtsError> {
        let pair = Self::new_pair(key)?;
        Ok(AwsLcXts {
            key: key.clone(),
            idle: Mutex::new(vec![pair]),
        })
    }

    fn new_pair(key: &XtsKey) -> Result<Pair, XtsError> {
        Ok(Pair {
            enc: Ctx::new(key, Dir::Encrypt)?,
            dec: Ctx::new(key, Dir::Decrypt)?,
        })
    }

    /// A context pair for this thread's call: an idle one, or a new one keyed now.
    pub(super) fn lease(&self) -> Result<Lease<'_>, XtsError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let pair = match pooled {
            Some(p) => p,
            None => Self::new_pair(&self.key)?,
        };
        Ok(Lease {
            owner: self,
            pair: Some(pair),
        })
    }
}
