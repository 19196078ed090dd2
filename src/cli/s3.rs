//! `atrest s3 ...`: the object endpoint (`serve`) and the AWS CLI's high-level `aws s3`
//! commands (`cp`, `ls`, `presign`) as SigV4 clients of it. Above 8 MiB `cp` uploads in
//! parts and downloads in ranges, several at once (`s3::transfer`), as the AWS CLI does.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::s3::client::Body;
use crate::s3::transfer::{self, TransferConfig};

use super::s3api::{self, fail, CliError};
use super::Global;

/// Show a progress bar for transfers at least this large (on a terminal).
const PROGRESS_MIN: u64 = 8 << 20;

#[derive(Debug, clap::Args)]
pub struct S3Args {
    #[command(subcommand)]
    pub command: S3Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum S3Command {
    /// Run the AWS endpoint (S3 and every other service, SigV4) on loopback: `atrest
    /// serve` with a free port by default.
    Serve {
        /// Address to listen on; port 0 picks a free port. The address is written to
        /// HOME/s3.addr and the URL to HOME/endpoint.url.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Copy a local file to s3://BUCKET/KEY or an object to a local file.
    Cp {
        source: String,
        destination: String,
        /// AES256 or aws:kms (upload).
        #[arg(long)]
        sse: Option<String>,
        /// KMS key for --sse aws:kms (id, alias/NAME or ARN).
        #[arg(long)]
        sse_kms_key_id: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
        #[arg(long)]
        acl: Option<String>,
        /// No progress or summary line.
        #[arg(long)]
        quiet: bool,
        /// Files and objects larger than this many bytes move in parts, several at once.
        #[arg(long, default_value_t = TransferConfig::default().threshold)]
        multipart_threshold: u64,
        /// Bytes per part or range (at least 5 MiB; grown for files needing over 10000).
        #[arg(long, default_value_t = TransferConfig::default().part_size,
              value_parser = clap::value_parser!(u64).range(5 * 1024 * 1024..))]
        multipart_chunksize: u64,
        /// Parts or ranges in flight at once.
        #[arg(long, default_value_t = TransferConfig::default().concurrency as u64,
              value_parser = clap::value_parser!(u64).range(1..=64))]
        max_concurrent_requests: u64,
    },
    /// List buckets, or the objects under s3://BUCKET[/PREFIX].
    Ls {
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    /// Print a presigned GET URL for s3://BUCKET/KEY.
    Presign {
        path: String,
        /// Seconds the URL stays valid (1 to 604800).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
    },
}

pub fn run(g: &Global, args: S3Args) -> i32 {
    match args.command {
        S3Command::Serve { listen } => serve(g, listen),
        S3Command::Cp {
            source,
            destination,
            sse,
            sse_kms_key_id,
            content_type,
            acl,
            quiet,
            multipart_threshold,
            multipart_chunksize,
            max_concurrent_requests,
        } => {
            let cfg = TransferConfig {
                threshold: multipart_threshold,
                part_size: multipart_chunksize,
                concurrency: max_concurrent_requests as usize,
            };
            let op = if source.starts_with("s3://") {
                "GetObject"
            } else {
                "PutObject"
            };
            match cp(
                g,
                &source,
                &destination,
                sse,
                sse_kms_key_id,
                content_type,
                acl,
                quiet,
                &cfg,
            ) {
                Ok(()) => 0,
                Err(e) => fail(op, e),
            }
        }
        S3Command::Ls { path, recursive } => match ls(g, path.as_deref(), recursive) {
            Ok(()) => 0,
            Err(e) => fail("ListObjectsV2", e),
        },
        S3Command::Presign { path, expires_in } => match presign(g, &path, expires_in) {
            Ok(url) => {
                println!("{url}");
                0
            }
            Err(e) => fail("Presign", e),
        },
    }
}

/// `atrest s3 serve`: the AWS endpoint (S3 and every other service on one port), as
/// `atrest serve`, defaulting to any free loopback port.
fn serve(g: &Global, listen: SocketAddr) -> i32 {
    super::serve::run(g, crate::endpoint::ServeOptions { listen, tls: None })
}

/// Splits `s3://BUCKET/KEY` (KEY may be empty).
fn parse_s3_url(s: &str) -> Result<(String, String), CliError> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| CliError::Param(format!("{s} is not an s3://BUCKET/KEY path")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CliError::Param(format!("{s} names no bucket")));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn progress_bar(len: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || len < PROGRESS_MIN || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style);
    }
    Some(pb)
}

#[allow(clippy::too_many_arguments)]
fn cp(
    g: &Global,
    source: &str,
    destination: &str,
    sse: Option<String>,
    sse_kms_key_id: Option<String>,
    content_type: Option<String>,
    acl: Option<String>,
    quiet: bool,
    cfg: &TransferConfig,
) -> Result<(), CliError> {
    let c = s3api::client(g)?;
    match (
        source.starts_with("s3://"),
        destination.starts_with("s3://"),
    ) {
        (false, true) => {
            let (bucket, mut key) = parse_s3_url(destination)?;
            let path = Path::new(source);
            if key.is_empty() || key.ends_with('/') {
                let name = path
                    .file_name()
                    .ok_or_else(|| CliError::Param(format!("{source} is not a file")))?;
                key.push_str(&name.to_string_lossy());
            }
            let f = s3api::open_input(path)?;
            let len = f.metadata()?.len();
            let mut h = Vec::new();
            if let Some(s) = sse {
                h.push(("x-amz-server-side-encryption".to_string(), s));
            }
            if let Some(k) = sse_kms_key_id {
                h.push(("x-amz-server-side-encryption-aws-kms-key-id".to_string(), k));
            }
            let ct = content_type.unwrap_or_else(|| guess_content_type(path).to_string());
            h.push(("content-type".to_string(), ct));
            if let Some(a) = acl {
                h.push(("x-amz-acl".to_string(), a));
            }
            let pb = progress_bar(len, quiet);
            let r = if len > cfg.threshold {
                let tick = |n: u64| {
                    if let Some(p) = &pb {
                        p.inc(n);
                    }
                };
                let t = transfer::Transfer {
                    client: &c,
                    bucket: &bucket,
                    key: &key,
                    cfg,
                    progress: &tick,
                };
                t.upload(&f, len, &h).map(|_| ())
            } else {
                let reader: Box<dyn std::io::Read + Send> = match &pb {
                    Some(p) => Box::new(p.wrap_read(f)),
                    None => Box::new(f),
                };
                c.send(
                    "PUT",
                    Some(&bucket),
                    Some(&key),
                    &[],
                    &h,
                    Body::Reader { reader, len },
                )
                .map(|_| ())
            };
            if let Some(p) = &pb {
                p.finish_and_clear();
            }
            r?;
            if !quiet {
                println!("upload: {source} to s3://{bucket}/{key}");
            }
            Ok(())
        }
        (true, false) => {
            let (bucket, key) = parse_s3_url(source)?;
            if key.is_empty() {
                return Err(CliError::Param(format!("{source} names no object")));
            }
            let mut dest = PathBuf::from(destination);
            if dest.is_dir() || destination.ends_with('/') {
                let name = key.rsplit('/').next().unwrap_or(&key);
                dest = dest.join(name);
            }
            let head = c.send("HEAD", Some(&bucket), Some(&key), &[], &[], Body::Empty)?;
            let size = head
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let etag = head.header("etag").unwrap_or_default().to_string();
            let pb = progress_bar(size, quiet);
            let result = if size > cfg.threshold {
                let tick = |n: u64| {
                    if let Some(p) = &pb {
                        p.inc(n);
                    }
                };
                let t = transfer::Transfer {
                    client: &c,
                    bucket: &bucket,
                    key: &key,
                    cfg,
                    progress: &tick,
                };
                s3api::download_with(&dest, Some(size), |f| {
                    f.set_len(size)?;
                    Ok(t.download(size, &etag, f)?)
                })
            } else {
                let r = c.get_object(&bucket, &key)?;
                let len = r
                    .header("content-length")
                    .and_then(|v| v.parse::<u64>().ok());
                s3api::download(r, &dest, len, pb.as_ref())
            };
            if let Some(p) = &pb {
                p.finish_and_clear();
            }
            result?;
            if !quiet {
                println!("download: s3://{bucket}/{key} to {}", dest.display());
            }
            Ok(())
        }
        _ => Err(CliError::Param(
            "cp copies between a local file and s3://BUCKET/KEY (one side each)".into(),
        )),
    }
}

fn guess_content_type(p: &Path) -> &'static str {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        _ => "binary/octet-stream",
    }
}

fn ls(g: &Global, path: Option<&str>, recursive: bool) -> Result<(), CliError> {
    let c = s3api::client(g)?;
    let date = |s: &str| {
        plumbing::awstime::rfc3339_to_cli(s)
            .replace('T', " ")
            .replace("+00:00", "")
    };
    let Some(path) = path.filter(|p| *p != "s3://") else {
        let doc = s3api::xml_of(c.send("GET", None, None, &[], &[], Body::Empty)?)?;
        if let Some(bs) = doc.child("Buckets") {
            for b in bs.children_named("Bucket") {
                println!(
                    "{} {}",
                    date(b.text_of("CreationDate").unwrap_or_default()),
                    b.text_of("Name").unwrap_or_default()
                );
            }
        }
        return Ok(());
    };
    let (bucket, prefix) = parse_s3_url(path)?;
    let delimiter = (!recursive).then_some("/");
    let pages = s3api::list_all(&c, &bucket, Some(&prefix), delimiter, None, None)?;
    for p in &pages {
        for cp in p.children_named("CommonPrefixes") {
            let full = cp.text_of("Prefix").unwrap_or_default();
            let shown = if recursive {
                full
            } else {
                full.strip_prefix(prefix.as_str()).unwrap_or(full)
            };
            println!("{:>30} {shown}", "PRE");
        }
        for o in p.children_named("Contents") {
            let key = o.text_of("Key").unwrap_or_default();
            let shown = if recursive {
                key
            } else {
                key.strip_prefix(prefix.as_str()).unwrap_or(key)
            };
            println!(
                "{} {:>10} {shown}",
                date(o.text_of("LastModified").unwrap_or_default()),
                o.text_of("Size").unwrap_or("0")
            );
        }
    }
    Ok(())
}

fn presign(g: &Global, path: &str, expires_in: u64) -> Result<String, CliError> {
    if !(1..=604_800).contains(&expires_in) {
        return Err(CliError::Param(format!(
            "--expires-in {expires_in}: must be between 1 and 604800 seconds (7 days)"
        )));
    }
    let (bucket, key) = parse_s3_url(path)?;
    if key.is_empty() {
        return Err(CliError::Param(format!("{path} names no object")));
    }
    let c = s3api::client(g)?;
    c.presign(&bucket, &key, Duration::from_secs(expires_in))
        .map_err(CliError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        let ok = |s: &str| parse_s3_url(s).ok();
        assert_eq!(ok("s3://b/k/x.png"), Some(("b".into(), "k/x.png".into())));
        assert_eq!(ok("s3://b"), Some(("b".into(), String::new())));
        assert!(ok("s3:///k").is_none());
        assert!(ok("/tmp/x").is_none());
    }
}
