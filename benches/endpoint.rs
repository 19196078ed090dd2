//! The measuring half of `scripts/bench-endpoint.sh` (issue 13): KMS Decrypt/s and
//! latency percentiles with N concurrent clients, each its own client and keep-alive
//! connection, through
//!
//! - `sdk`: the AWS SDK for Rust (`aws-sdk-kms` at its defaults) against an HTTP
//!   endpoint (atrest's or moto's: the same client code for both), or
//! - `socket`: kmsd's own client over kmsd.sock (the path the endpoint adds HTTP to).
//!
//! Each run makes its own key and ciphertext first (through the same target), warms every
//! client with one Decrypt, then lets all of them loop for `--seconds` and prints one JSON
//! line: `{"ops_per_s", "p50_ms", "p99_ms", "ops", "errors", "first_error"}`. The script
//! interleaves the targets over rounds and prints medians and ratios.
//!
//! Usage: `endpoint sdk --url URL --access-key-id ID --secret-access-key S [--clients 8]
//! [--seconds 3]` or `endpoint socket --socket PATH [--clients 8] [--seconds 3]`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    target: Target,
    /// Concurrent clients, each with its own connection.
    #[arg(long, global = true, default_value_t = 8)]
    clients: usize,
    /// How long every client loops.
    #[arg(long, global = true, default_value_t = 3.0)]
    seconds: f64,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// The AWS SDK for Rust against an HTTP endpoint.
    Sdk {
        #[arg(long)]
        url: String,
        #[arg(long)]
        access_key_id: String,
        #[arg(long)]
        secret_access_key: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// kmsd's own client over its socket.
    Socket {
        #[arg(long)]
        socket: std::path::PathBuf,
    },
}

/// What all clients of one run did.
#[derive(Default)]
struct Tally {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.lat_us.extend(other.lat_us);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn failed(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    fn print(mut self, elapsed: f64) {
        self.lat_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.lat_us.is_empty() {
                return f64::NAN;
            }
            let i = ((self.lat_us.len() - 1) as f64 * p).round() as usize;
            f64::from(self.lat_us[i]) / 1000.0
        };
        let out = serde_json::json!({
            "ops": self.lat_us.len(),
            "ops_per_s": self.lat_us.len() as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": self.errors,
            "first_error": self.first_error,
        });
        println!("{out}");
    }
}

fn micros(t0: Instant) -> u32 {
    u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)
}

fn sdk(url: &str, id: &str, secret: &str, region: &str, clients: usize, seconds: f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = || {
        let conf = aws_sdk_kms::Config::builder()
            .endpoint_url(url)
            .region(aws_sdk_kms::config::Region::new(region.to_string()))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                id, secret, None, None, "bench",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    };
    rt.block_on(async {
        let setup = client();
        let key = setup
            .create_key()
            .description("bench-endpoint")
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("KeyMetadata")
            .key_id()
            .to_string();
        let blob = setup
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![7u8; 32]))
            .send()
            .await
            .expect("Encrypt")
            .ciphertext_blob
            .expect("CiphertextBlob");
        let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (c, blob, start) = (client(), blob.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    if let Err(e) = c.decrypt().ciphertext_blob(blob.clone()).send().await {
                        t.failed(e);
                    }
                    start.wait().await;
                    let end = Instant::now() + Duration::from_secs_f64(seconds);
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        let r = c.decrypt().ciphertext_blob(blob.clone()).send().await;
                        match r {
                            Ok(_) => t.lat_us.push(micros(t0)),
                            Err(e) => t.failed(aws_sdk_kms::error::DisplayErrorContext(e)),
                        }
                    }
                    t
                })
            })
            .collect();
        start.wait().await;
        let t0 = Instant::now();
        let mut all = Tally::default();
        for task in tasks {
            match task.await {
                Ok(t) => all.add(t),
                Err(e) => all.failed(e),
            }
        }
        all.print(t0.elapsed().as_secs_f64());
    });
}

fn socket(path: &std::path::Path, clients: usize, seconds: f64) {
    let setup = kmsd::client::KmsClient::connect(path).expect("connect kmsd");
    let key = setup
        .create_key(kmsd::protocol::CreateKeyRequest::default())
        .expect("CreateKey")
        .key_id;
    let ctx = kmsd::protocol::EncryptionContext::default();
    let blob = setup
        .encrypt(&key, &[7u8; 32], &ctx)
        .expect("Encrypt")
        .ciphertext_blob
        .to_vec();
    let blob = Arc::new(blob);
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (blob, start, ctx) = (Arc::clone(&blob), Arc::clone(&start), ctx.clone());
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let mut t = Tally::default();
                let c = match kmsd::client::KmsClient::connect(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        t.failed(e);
                        start.wait();
                        return t;
                    }
                };
                if let Err(e) = c.decrypt(&blob, &ctx, None) {
                    t.failed(e);
                }
                start.wait();
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    match c.decrypt(&blob, &ctx, None) {
                        Ok(_) => t.lat_us.push(micros(t0)),
                        Err(e) => t.failed(e),
                    }
                }
                t
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let mut all = Tally::default();
    for th in threads {
        match th.join() {
            Ok(t) => all.add(t),
            Err(_) => all.failed("a client thread panicked"),
        }
    }
    all.print(t0.elapsed().as_secs_f64());
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else reaches here without the script.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    match &cli.target {
        Target::Sdk {
            url,
            access_key_id,
            secret_access_key,
            region,
        } => sdk(
            url,
            access_key_id,
            secret_access_key,
            region,
            cli.clients,
            cli.seconds,
        ),
        Target::Socket { socket: path } => socket(path, cli.clients, cli.seconds),
    }
}
