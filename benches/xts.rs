//! XTS-AES-256 throughput: `cargo bench --bench xts [-- MODE]`, run by scripts/bench-xts.sh
//! beside `openssl speed`. Prints machine-readable lines `<name> <op> MBps=<n>` (MB = 10^6
//! bytes). Modes:
//!
//! - `core` (default): one 4 KiB sector per call, each with its own tweak, on this thread;
//!   time is this thread's CPU time (what `openssl speed` divides by), so other load on the
//!   box skews neither side. `atrest-xts` is what volumes use ([`Backend::selected`]); the
//!   `candidate-*` lines are the other implementations measured for the choice
//!   (src/volume/xts/mod.rs): the portable path, and OpenSSL's EVP through the `openssl` crate.
//! - `parallel`: wall-clock throughput of 1 MiB requests (the FUSE write batch) on the whole
//!   machine: the same sectors one call each (one core), one call per 1 MiB (sectors in
//!   parallel on idle helpers), and two threads spawned per request (the alternative
//!   measured against the pool).

use std::time::Instant;

use atrest::volume::xts::{Backend, Xts};
use atrest::volume::XtsKey;

const SECTOR: usize = 4096;

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f` (which processes `bytes_per_call`) for `secs` of `clock` after a short warm-up.
fn measure(
    name: &str,
    op: &str,
    secs: f64,
    bytes_per_call: usize,
    clock: fn() -> f64,
    mut f: impl FnMut(u64),
) {
    let mut i = 0u64;
    let warm = clock();
    while clock() - warm < secs.min(0.3) {
        f(i);
        i += 1;
    }
    let start = clock();
    let mut bytes = 0u64;
    while clock() - start < secs {
        // Several calls between clock reads keeps the clock out of the measurement.
        for _ in 0..16 {
            f(i);
            i += 1;
            bytes += bytes_per_call as u64;
        }
    }
    let mbps = bytes as f64 / (clock() - start) / 1e6;
    println!("{name} {op} MBps={mbps:.0}");
}

/// dm-crypt plain64 tweak unit of 4 KiB sector `i`.
fn unit(i: u64) -> u64 {
    i * (SECTOR as u64 / 512)
}

fn core(secs: f64, key: &XtsKey) {
    let mut buf = vec![0x5au8; SECTOR];
    let cpu = thread_cpu_seconds;
    let selected = Xts::new(key);
    let portable = Xts::with_backend(key, Backend::Portable).expect("portable");
    for (name, x) in [("atrest-xts", &selected), ("candidate-portable", &portable)] {
        measure(name, "encrypt", secs, SECTOR, cpu, |i| {
            x.encrypt_sectors(&mut buf, SECTOR, unit(i)).unwrap();
        });
        measure(name, "decrypt", secs, SECTOR, cpu, |i| {
            x.decrypt_sectors(&mut buf, SECTOR, unit(i)).unwrap();
        });
    }
    println!("atrest-xts backend={}", selected.backend().name());

    // OpenSSL (the system libcrypto) through the `openssl` crate: one context per direction,
    // the tweak set per sector, as a volume needs.
    use openssl::cipher::Cipher;
    use openssl::cipher_ctx::CipherCtx;
    let mut out = vec![0u8; SECTOR];
    for (op, encrypt) in [("encrypt", true), ("decrypt", false)] {
        let mut ctx = CipherCtx::new().unwrap();
        let cipher = Cipher::aes_256_xts();
        if encrypt {
            ctx.encrypt_init(Some(cipher), Some(key.as_bytes()), None)
                .unwrap();
        } else {
            ctx.decrypt_init(Some(cipher), Some(key.as_bytes()), None)
                .unwrap();
        }
        measure("candidate-openssl-evp", op, secs, SECTOR, cpu, |i| {
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(&unit(i).to_le_bytes());
            if encrypt {
                ctx.encrypt_init(None, None, Some(&iv)).unwrap();
            } else {
                ctx.decrypt_init(None, None, Some(&iv)).unwrap();
            }
            ctx.cipher_update(&buf, Some(&mut out)).unwrap();
        });
    }
    std::hint::black_box((&buf, &out));
}

fn wall_seconds() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn parallel(secs: f64, key: &XtsKey) {
    const REQUEST: usize = 1 << 20;
    // Below the 256 KiB threshold: a piece the spawned threads encrypt serially.
    const SUB: usize = 128 << 10;
    let x = Xts::new(key);
    let src = vec![0x5au8; REQUEST];
    let mut dst = vec![0u8; REQUEST];
    let wall = wall_seconds;
    let per_request = (REQUEST / SECTOR) as u64;
    measure("one-core-4k-calls", "encrypt", secs, REQUEST, wall, |i| {
        for (k, (s, d)) in src.chunks(SECTOR).zip(dst.chunks_mut(SECTOR)).enumerate() {
            x.encrypt_sectors_into(s, d, SECTOR, unit(i * per_request + k as u64))
                .unwrap();
        }
    });
    measure(
        "parallel-1mib-requests",
        "encrypt",
        secs,
        REQUEST,
        wall,
        |i| {
            x.encrypt_sectors_into(&src, &mut dst, SECTOR, unit(i * per_request))
                .unwrap();
        },
    );
    measure(
        "parallel-1mib-requests",
        "decrypt",
        secs,
        REQUEST,
        wall,
        |i| {
            x.decrypt_sectors(&mut dst, SECTOR, unit(i * per_request))
                .unwrap();
        },
    );
    measure(
        "spawn-2-threads-per-1mib",
        "encrypt",
        secs,
        REQUEST,
        wall,
        |i| {
            let (s0, s1) = src.split_at(REQUEST / 2);
            let (d0, d1) = dst.split_at_mut(REQUEST / 2);
            std::thread::scope(|scope| {
                for (h, (half_src, half_dst)) in [(0u64, (s0, d0)), (1, (s1, d1))] {
                    let x = &x;
                    scope.spawn(move || {
                        let pieces = half_src.chunks(SUB).zip(half_dst.chunks_mut(SUB));
                        for (k, (s, d)) in pieces.enumerate() {
                            let first =
                                i * per_request + h * per_request / 2 + (k * SUB / SECTOR) as u64;
                            x.encrypt_sectors_into(s, d, SECTOR, unit(first)).unwrap();
                        }
                    });
                }
            });
        },
    );
    std::hint::black_box(&dst);
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let key = XtsKey::generate();
    // `cargo bench` passes `--bench`; the mode is the first other argument.
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "core".into());
    match mode.as_str() {
        "core" => core(secs, &key),
        "parallel" => parallel(secs, &key),
        other => {
            eprintln!("unknown mode {other} (core, parallel)");
            std::process::exit(2);
        }
    }
}
