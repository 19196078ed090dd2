//! kmsd: the key management daemon (the library's [`kmsd::run`]).
//!
//! The daemon keeps the system's allocator (glibc malloc). mimalloc (crate `mimalloc`
//! 0.1.52, as `#[global_allocator]` here) was measured against it (issue 16, session 8;
//! 8 Decrypt clients, default trail class, other builds running alongside):
//! instructions per Decrypt 85.4k -> 83.3k (-2.5%, `scripts/bench-kmsd-cost.sh` with
//! `BENCH_REF_KMSD`), but interleaved throughput 0.98x-1.00x of glibc's
//! (`scripts/bench-kmsd.sh` with `BENCH_REF_KMSD`), the allocator's share of kmsd's CPU
//! samples unchanged (`perf record -e cpu-clock`: malloc/free 6.0% with glibc, 6.2%
//! with mimalloc; most of kmsd's time is the kernel's: sockets, wake-ups), and 40-45 MB
//! of RSS instead of 26 MB across repeated runs of 1 to 64 connections. Not worth a C
//! dependency; try again only if allocation grows on the request path.

fn main() {
    kmsd::run();
}
