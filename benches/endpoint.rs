//! The measuring half of `scripts/bench-endpoint.sh` (issue 13): KMS Decrypt/s and
//! latency percentiles with N concurrent clients, each its own client and keep-alive
//! connection, through
//!
//! - `sdk`: the AWS SDK for Rust (`aws-sdk-kms` at its defaults) against an HTTP
//!   endpoint (atrest's or moto's: the same client code for both), or
//! - `lean`: a bare hyper HTTP/1.1 client, one keep-alive connection per client, that
//!   signs every request anew (the signature is real and the endpoint verifies it) and
//!   sends AWS JSON 1.1 it writes itself: the endpoint's cost with as little client CPU as
//!   a real signed client can have, which on a 2-core machine the SDK's client would
//!   otherwise take from the endpoint it measures. Like the AWS SDKs, the driver keeps
//!   its SigV4 signing key (`kSigning`, derived from the secret, the day, the region and
//!   the service) for the day it is valid, and derives it again when the day changes: a
//!   request costs the canonical request, its hash and one HMAC, not five HMACs. The key
//!   and the final HMAC come from the `aws-sigv4` crate (`sign::v4`); the canonical
//!   request of the driver's one request shape is written here, and checked when each
//!   client connects against the crate's own `http_request::sign` of the same request at
//!   the same instant (the two must give the same `Authorization`). That cache is the
//!   client's business only: the endpoint's verifier derives the key anew for every
//!   request and keeps nothing derived from a secret beyond the call. Or
//! - `socket`: kmsd's own client over kmsd.sock (the path the endpoint adds HTTP to).
//!
//! Each run makes its own key and ciphertext first (through the same target), warms every
//! client with one Decrypt, then lets all of them loop for `--seconds` and prints one JSON
//! line: `{"ops_per_s", "p50_ms", "p99_ms", "ops", "errors", "first_error",
//! "cpu_us_per_op"}`, the last the driver's own CPU (user + system, every thread) over
//! the timed loop, a Decrypt. The script interleaves the targets over rounds, adds the
//! servers' CPU a Decrypt, and prints medians and ratios.
//!
//! Usage: `endpoint sdk|lean --url URL --access-key-id ID --secret-access-key S
//! [--clients 8] [--seconds 3]` or `endpoint socket --socket PATH [--clients 8]
//! [--seconds 3]`.

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
    /// A bare hyper client signing with `aws-sigv4` against an HTTP endpoint.
    Lean {
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

    fn print(mut self, elapsed: f64, cpu_s: f64) {
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
            "cpu_us_per_op": if self.lat_us.is_empty() { f64::NAN } else { cpu_s * 1e6 / self.lat_us.len() as f64 },
        });
        println!("{out}");
    }
}

/// Releases the waiting client tasks at once, then adds up and prints their tallies.
async fn gather(start: &tokio::sync::Barrier, tasks: Vec<tokio::task::JoinHandle<Tally>>) {
    start.wait().await;
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => all.add(t),
            Err(e) => all.failed(e),
        }
    }
    all.print(t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
}

/// This process's CPU time so far (user + system, all threads), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
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
        gather(&start, tasks).await;
    });
}

/// The lean driver's client: one kept-alive HTTP/1.1 connection; every request is
/// signed anew, with the day's signing key kept ([`DaySigner`]).
struct Lean {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: String,
    signer: DaySigner,
}

/// SigV4 (header signing, `kms`) of the driver's one request shape: `POST /` with the
/// headers `content-type`, `host`, `x-amz-date` and `x-amz-target`, all signed, as
/// `aws_sigv4::http_request::sign` signs it at its default settings. The signing key is
/// kept for its day, as the AWS SDKs keep theirs.
struct DaySigner {
    access_key_id: String,
    secret: String,
    region: String,
    /// The day (`YYYYMMDD`) the kept key is for, and the key.
    key: Option<(String, Vec<u8>)>,
}

/// The headers a signature adds: `x-amz-date` and `authorization`.
struct Signed {
    amz_date: String,
    authorization: String,
}

impl DaySigner {
    const SIGNED_HEADERS: &'static str = "content-type;host;x-amz-date;x-amz-target";

    fn sign(
        &mut self,
        at: std::time::SystemTime,
        host: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Signed, String> {
        use sha2::Digest as _;
        let t = time::OffsetDateTime::from(at);
        let amz_date = t
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| format!("x-amz-date: {e}"))?;
        let day = &amz_date[..8];
        let creq = format!(
            "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\nx-amz-date:{amz_date}\n\
             x-amz-target:{target}\n\n{}\n{}",
            Self::SIGNED_HEADERS,
            hex::encode(sha2::Sha256::digest(body)),
        );
        let scope = format!("{day}/{}/kms/aws4_request", self.region);
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(sha2::Sha256::digest(creq.as_bytes()))
        );
        let key = match &self.key {
            Some((d, k)) if d == day => k,
            _ => {
                let k = aws_sigv4::sign::v4::generate_signing_key(
                    &self.secret,
                    at,
                    &self.region,
                    "kms",
                );
                &self.key.insert((day.to_string(), k.as_ref().to_vec())).1
            }
        };
        let signature = aws_sigv4::sign::v4::calculate_signature(key, sts.as_bytes());
        Ok(Signed {
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
                self.access_key_id,
                Self::SIGNED_HEADERS
            ),
            amz_date,
        })
    }

    /// The same request signed by `aws_sigv4::http_request::sign` at `at`, for the check.
    fn sign_with_crate(
        &self,
        at: std::time::SystemTime,
        host: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Signed, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let identity: aws_smithy_runtime_api::client::identity::Identity =
            aws_credential_types::Credentials::new(
                &self.access_key_id,
                &self.secret,
                None,
                None,
                "bench-lean",
            )
            .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("kms")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let url = format!("http://{host}/");
        let headers = [
            ("host", host),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target),
        ];
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("signable request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("sign: {e}"))?
            .into_parts();
        let get = |name: &str| {
            instructions
                .headers()
                .find(|h| h.0.eq_ignore_ascii_case(name))
                .map(|h| h.1.to_string())
                .ok_or_else(|| format!("aws-sigv4 gave no {name} header"))
        };
        Ok(Signed {
            amz_date: get("x-amz-date")?,
            authorization: get("authorization")?,
        })
    }

    /// Fails unless this signer and `aws-sigv4` sign a request alike.
    fn check(&mut self, host: &str) -> Result<(), String> {
        let at = std::time::SystemTime::now();
        let (target, body) = ("TrentService.Decrypt", br#"{"CiphertextBlob":"AAAA"}"#);
        let ours = self.sign(at, host, target, body)?;
        let theirs = self.sign_with_crate(at, host, target, body)?;
        if ours.amz_date != theirs.amz_date || ours.authorization != theirs.authorization {
            return Err(format!(
                "the driver's signature differs from aws-sigv4's: {} at {} against {} at {}",
                ours.authorization, ours.amz_date, theirs.authorization, theirs.amz_date
            ));
        }
        Ok(())
    }
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

impl Lean {
    async fn connect(url: &str, id: &str, secret: &str, region: &str) -> Result<Lean, String> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("the lean driver speaks plain HTTP only, not {url}"))?
            .trim_end_matches('/')
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let mut signer = DaySigner {
            access_key_id: id.to_string(),
            secret: secret.to_string(),
            region: region.to_string(),
            key: None,
        };
        signer.check(&host)?;
        Ok(Lean {
            sender,
            host,
            signer,
        })
    }

    /// One KMS call: `TrentService.{operation}` with a JSON body; the answer's body.
    async fn call(&mut self, operation: &str, body: bytes::Bytes) -> Result<bytes::Bytes, String> {
        use http_body_util::BodyExt;
        let target = format!("TrentService.{operation}");
        let signed = self
            .signer
            .sign(std::time::SystemTime::now(), &self.host, &target, &body)?;
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/")
            .header("host", self.host.as_str())
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", target)
            .header("x-amz-date", signed.amz_date)
            .header("authorization", signed.authorization)
            .body(http_body_util::Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("{operation}: {e}"))?;
        let status = resp.status();
        let out = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{operation} body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{operation}: HTTP {status}: {}",
                String::from_utf8_lossy(&out)
            ));
        }
        Ok(out)
    }

    /// One Decrypt of the request body `body`, checked: a 200 with `plaintext` in it.
    async fn decrypt(&mut self, body: &bytes::Bytes, plaintext: &str) -> Result<(), String> {
        let out = self.call("Decrypt", body.clone()).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| format!("Decrypt: not JSON: {e}"))?;
        if v["Plaintext"] == plaintext {
            Ok(())
        } else {
            Err(format!("Decrypt: wrong plaintext in {v}"))
        }
    }

    /// One call whose answer is JSON.
    async fn json(
        &mut self,
        operation: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let out = self.call(operation, body.to_string().into()).await?;
        serde_json::from_slice(&out).map_err(|e| format!("{operation}: not JSON: {e}"))
    }
}

fn lean(url: &str, id: &str, secret: &str, region: &str, clients: usize, seconds: f64) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // One thread: the driver's CPU is what this mode keeps small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut setup = Lean::connect(url, id, secret, region)
            .await
            .expect("connect");
        let key = setup
            .json(
                "CreateKey",
                serde_json::json!({"Description": "bench-endpoint"}),
            )
            .await
            .expect("CreateKey");
        let key = key["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("KeyMetadata.KeyId")
            .to_string();
        let plaintext = b64.encode([7u8; 32]);
        let blob = setup
            .json(
                "Encrypt",
                serde_json::json!({"KeyId": key, "Plaintext": plaintext}),
            )
            .await
            .expect("Encrypt");
        let decrypt = bytes::Bytes::from(
            serde_json::json!({"CiphertextBlob": blob["CiphertextBlob"]}).to_string(),
        );
        let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (decrypt, start, plaintext) =
                    (decrypt.clone(), Arc::clone(&start), plaintext.clone());
                let (url, id, secret, region) = (
                    url.to_string(),
                    id.to_string(),
                    secret.to_string(),
                    region.to_string(),
                );
                tokio::spawn(async move {
                    let mut t = Tally::default();
                    let mut c = match Lean::connect(&url, &id, &secret, &region).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            t.failed(e);
                            None
                        }
                    };
                    if let Some(c) = c.as_mut() {
                        if let Err(e) = c.decrypt(&decrypt, &plaintext).await {
                            t.failed(e);
                        }
                    }
                    start.wait().await;
                    let Some(mut c) = c else { return t };
                    let end = Instant::now() + Duration::from_secs_f64(seconds);
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        match c.decrypt(&decrypt, &plaintext).await {
                            Ok(()) => t.lat_us.push(micros(t0)),
                            Err(e) => t.failed(e),
                        }
                    }
                    t
                })
            })
            .collect();
        gather(&start, tasks).await;
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
    let c0 = cpu_seconds();
    let mut all = Tally::default();
    for th in threads {
        match th.join() {
            Ok(t) => all.add(t),
            Err(_) => all.failed("a client thread panicked"),
        }
    }
    all.print(t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
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
        Target::Lean {
            url,
            access_key_id,
            secret_access_key,
            region,
        } => lean(
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
