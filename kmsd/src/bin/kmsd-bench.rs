//! kmsd-bench: GenerateDataKey and Decrypt throughput and latency against a running
//! kmsd, with 1 and N concurrent clients (one connection each).
//!
//! `kmsd-bench --socket HOME/kmsd.sock [--seconds 3] [--clients 1,8]`
//! (scripts/bench-kmsd.sh starts a release kmsd on a temp home and runs this).

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

use kmsd::client::{DataKeySize, KmsClient};
use kmsd::protocol::{CreateKeyRequest, DataKeySpec, EncryptionContext};

/// The target: Decrypt with 8 clients.
const TARGET_OPS: f64 = 100_000.0;
const TARGET_P99_US: f64 = 1_000.0;

#[derive(Debug, Parser)]
#[command(
    name = "kmsd-bench",
    about = "Benchmark kmsd's GenerateDataKey and Decrypt"
)]
struct Args {
    #[arg(long)]
    socket: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Client counts to measure, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    clients: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    GenerateDataKey,
    Decrypt,
}

struct Result_ {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    max_us: f64,
    errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

fn run(
    base: &KmsClient,
    key_id: &str,
    blobs: &Arc<Vec<Vec<u8>>>,
    op: Op,
    clients: usize,
    seconds: f64,
) -> Result_ {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let ctx: EncryptionContext = [("bench".to_string(), "kmsd".to_string())].into();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let c = base.clone();
            let key_id = key_id.to_string();
            let blobs = Arc::clone(blobs);
            let barrier = Arc::clone(&barrier);
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                // Warm the connection before the clock starts.
                let _ = c.describe_key(&key_id);
                let mut lat_ns: Vec<u32> = Vec::with_capacity(1 << 20);
                let mut errors = 0u64;
                barrier.wait();
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let mut n = i;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = match op {
                        Op::GenerateDataKey => c
                            .generate_data_key(
                                &key_id,
                                DataKeySize::Spec(DataKeySpec::Aes256),
                                &ctx,
                            )
                            .is_ok(),
                        Op::Decrypt => {
                            let b = &blobs[n % blobs.len()];
                            c.decrypt(b, &ctx, None).is_ok()
                        }
                    };
                    n += 1;
                    if !ok {
                        errors += 1;
                    }
                    lat_ns.push(u32::try_from(t0.elapsed().as_nanos()).unwrap_or(u32::MAX));
                }
                (lat_ns, errors)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        if let Ok((l, e)) = t.join() {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let total_ns: f64 = all.iter().map(|&n| f64::from(n)).sum();
    Result_ {
        ops_per_s: all.len() as f64 / elapsed,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
        mean_us: if all.is_empty() {
            0.0
        } else {
            total_ns / all.len() as f64 / 1000.0
        },
        max_us: all.last().map(|&n| f64::from(n) / 1000.0).unwrap_or(0.0),
        errors,
    }
}

fn main() {
    let args = Args::parse();
    let client = match KmsClient::connect(&args.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmsd-bench: {e}");
            std::process::exit(1);
        }
    };
    let key = match client.create_key(CreateKeyRequest {
        description: Some("kmsd-bench".into()),
        ..Default::default()
    }) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("kmsd-bench: CreateKey failed: {e}");
            std::process::exit(1);
        }
    };
    let ctx: EncryptionContext = [("bench".to_string(), "kmsd".to_string())].into();
    let mut blobs = Vec::new();
    for _ in 0..256 {
        match client.generate_data_key_without_plaintext(
            &key.key_id,
            DataKeySize::Spec(DataKeySpec::Aes256),
            &ctx,
        ) {
            Ok(g) => blobs.push(g.ciphertext_blob.into_vec()),
            Err(e) => {
                eprintln!("kmsd-bench: GenerateDataKeyWithoutPlaintext failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let blobs = Arc::new(blobs);
    println!(
        "{:<16} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10} {:>6}",
        "operation", "clients", "ops/s", "p50 (us)", "p99 (us)", "mean (us)", "max (us)", "errors"
    );
    let mut decrypt_at_8 = None;
    for &n in &args.clients {
        for op in [Op::GenerateDataKey, Op::Decrypt] {
            let r = run(&client, &key.key_id, &blobs, op, n, args.seconds);
            println!(
                "{:<16} {:>7} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>6}",
                format!("{op:?}"),
                n,
                r.ops_per_s,
                r.p50_us,
                r.p99_us,
                r.mean_us,
                r.max_us,
                r.errors
            );
            if op == Op::Decrypt && n == 8 {
                decrypt_at_8 = Some(r);
            }
        }
    }
    if let Some(r) = decrypt_at_8 {
        println!(
            "target: Decrypt with 8 clients >= {TARGET_OPS:.0} ops/s and p99 < {TARGET_P99_US:.0} us \
             -> {:.0} ops/s = {:.2}x target; p99 {:.1} us = {:.2}x the limit ({} on {} CPUs)",
            r.ops_per_s,
            r.ops_per_s / TARGET_OPS,
            r.p99_us,
            r.p99_us / TARGET_P99_US,
            if r.ops_per_s >= TARGET_OPS && r.p99_us < TARGET_P99_US {
                "MET"
            } else {
                "NOT MET"
            },
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
    }
}
