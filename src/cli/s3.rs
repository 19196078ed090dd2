//! `atrest s3 ...`: the object endpoint (`serve`) and the AWS CLI's high-level `aws s3`
//! commands (`cp`, `mv`, `rm`, `mb`, `rb`, `ls`, `presign`) as SigV4 clients of it. `mv` is `cp` and
//! then the source deleted, refused onto itself; `rm --recursive` lists and deletes each
//! key on its own, as the AWS CLI does. Above 8 MiB `cp` uploads in
//! parts and downloads in ranges, several at once (`s3::transfer`), as the AWS CLI does;
//! object to object it copies (CopyObject, in parts above 5 GiB), with the AWS CLI's
//! `--metadata-directive`, `--metadata` and `--content-type`. `--sse-c`/`--sse-c-key`
//! and `--checksum-algorithm` are the AWS CLI's; the headers they become are built in
//! `s3::request_options`, and the transfer sends them on every part and range. A download
//! is checked against the checksum the object is stored with (as the AWS CLI checks a
//! GET with `--checksum-mode ENABLED`, but over ranges and parts too) before the temp file
//! it fills takes the destination's name.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::s3::client::{Body, ClientError};
use crate::s3::request_options::{AnsweredChecksum, ChecksumAlgorithm, SseCustomerKey};
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
    /// Copy a local file to s3://BUCKET/KEY, an object to a local file, or an object to
    /// another object.
    Cp(Box<CpArgs>),
    /// Move a local file to s3://BUCKET/KEY, an object to a local file, or an object to
    /// another object: `cp`, then the source is deleted (as `aws s3 mv`).
    Mv(Box<CpArgs>),
    /// Delete s3://BUCKET/KEY, or with --recursive every object under s3://BUCKET[/PREFIX/].
    Rm {
        path: String,
        #[arg(long)]
        recursive: bool,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dryrun: bool,
        /// No line per object deleted.
        #[arg(long)]
        quiet: bool,
    },
    /// Make the bucket s3://BUCKET (CreateBucket).
    Mb { path: String },
    /// Remove the empty bucket s3://BUCKET; with --force every object in it first.
    Rb {
        path: String,
        #[arg(long)]
        force: bool,
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

/// `atrest s3 cp`'s arguments, named as the AWS CLI's `aws s3 cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    source: String,
    destination: String,
    /// AES256 or aws:kms (upload or copy).
    #[arg(long)]
    sse: Option<String>,
    /// KMS key for --sse aws:kms (id, alias/NAME or ARN).
    #[arg(long)]
    sse_kms_key_id: Option<String>,
    /// SSE-C: the object is (or is to be) encrypted under --sse-c-key (AES256, the only
    /// value; the default when the flag is given bare).
    #[arg(long, num_args = 0..=1, default_missing_value = "AES256")]
    sse_c: Option<String>,
    /// The customer key for --sse-c: fileb://KEYFILE (32 raw bytes) or the key itself;
    /// not base64.
    #[arg(long)]
    sse_c_key: Option<String>,
    /// SSE-C of a copy's source object (AES256; the default when given bare).
    #[arg(long, num_args = 0..=1, default_missing_value = "AES256")]
    sse_c_copy_source: Option<String>,
    /// The source object's customer key: fileb://KEYFILE or the key itself.
    #[arg(long)]
    sse_c_copy_source_key: Option<String>,
    /// CRC32, CRC32C, SHA1, SHA256 or CRC64NVME: the checksum the object is stored with
    /// (every part's, for a multipart upload).
    #[arg(long)]
    checksum_algorithm: Option<String>,
    /// The object's content type (an upload's is otherwise guessed from the file name; a
    /// copy takes it with `--metadata-directive REPLACE`).
    #[arg(long)]
    content_type: Option<String>,
    /// User metadata to store with the object, `KEY=VALUE,...` or JSON: `x-amz-meta-KEY`
    /// (a copy takes it with `--metadata-directive REPLACE`, the default when given).
    #[arg(long)]
    metadata: Option<String>,
    /// Object to object: COPY keeps the source's content type and metadata (the default
    /// without --metadata), REPLACE stores the ones given here.
    #[arg(long, value_parser = ["COPY", "REPLACE"])]
    metadata_directive: Option<String>,
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
    /// Object to object: sources larger than this many bytes are copied as UploadPartCopy
    /// parts. S3's CopyObject limit; hidden, lowered only by tests, which cannot make
    /// 5 GiB objects.
    #[arg(long, hide = true, default_value_t = transfer::MAX_COPY_OBJECT,
          value_parser = clap::value_parser!(u64).range(1..=transfer::MAX_COPY_OBJECT))]
    copy_in_parts_above: u64,
}

/// `--metadata KEY=VALUE,...` (or JSON) as `x-amz-meta-KEY` headers, in the order given.
fn metadata_headers(arg: Option<&str>) -> Result<Vec<(String, String)>, CliError> {
    let Some(arg) = arg else {
        return Ok(Vec::new());
    };
    let v = s3api::shorthand_or_json(arg)?;
    let map = v.as_object().ok_or_else(|| {
        CliError::Param(format!(
            "--metadata {arg}: expected KEY=VALUE,... or a JSON object"
        ))
    })?;
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) if !k.is_empty() => Ok((format!("x-amz-meta-{k}"), s.to_string())),
            _ => Err(CliError::Param(format!(
                "--metadata {arg}: every key needs a string value"
            ))),
        })
        .collect()
}

/// A `--sse-c`/`--sse-c-key` pair (or the copy-source one) as the AWS CLI checks it: one
/// without the other is a parameter error; the key is a blob (`fileb://PATH` or the text).
fn sse_c_pair(
    flag: &str,
    algorithm: Option<String>,
    key: Option<String>,
) -> Result<Option<SseCustomerKey>, CliError> {
    match (algorithm, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CliError::Param(format!(
            "It --{flag} is specified, --{flag}-key must be specified as well."
        ))),
        (None, Some(_)) => Err(CliError::Param(format!(
            "It --{flag}-key is specified, --{flag} must be specified as well."
        ))),
        (Some(a), Some(k)) => {
            let raw = zeroize::Zeroizing::new(s3api::blob_arg(&k)?);
            Ok(Some(SseCustomerKey::from_raw(Some(&a), &raw)))
        }
    }
}

pub fn run(g: &Global, args: S3Args) -> i32 {
    match args.command {
        S3Command::Serve { listen } => serve(g, listen),
        S3Command::Cp(a) => transfer_command(g, *a, false),
        S3Command::Mv(a) => transfer_command(g, *a, true),
        S3Command::Rm {
            path,
            recursive,
            dryrun,
            quiet,
        } => rm(g, &path, recursive, dryrun, quiet),
        S3Command::Mb { path } => bucket_command(g, &path, "make_bucket", "PUT", "CreateBucket"),
        S3Command::Rb { path, force } => {
            if force {
                if let Ok((bucket, _)) = parse_s3_url(&path) {
                    if rm(g, &format!("s3://{bucket}/"), true, false, false) != 0 {
                        eprintln!(
                            "remove_bucket failed: Unable to delete all objects in the bucket, bucket will not be deleted."
                        );
                        return super::exit::S3_FAILED;
                    }
                }
            }
            bucket_command(g, &path, "remove_bucket", "DELETE", "DeleteBucket")
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

/// `cp`, or `mv` (`cp`, then the source deleted): the AWS CLI's line for it, or its
/// failure line.
fn transfer_command(g: &Global, a: CpArgs, moving: bool) -> i32 {
    let (kind, operation) = match (
        a.source.starts_with("s3://"),
        a.destination.starts_with("s3://"),
    ) {
        (true, true) => ("copy", "CopyObject"),
        (true, false) => ("download", "GetObject"),
        _ => ("upload", "PutObject"),
    };
    let kind = if moving { "move" } else { kind };
    // What the failure line names, completed by `cp` as it resolves them.
    let mut shown = Shown {
        source: shown_location(&a.source),
        destination: shown_location(&a.destination),
    };
    let quiet = a.quiet;
    let result = if moving {
        mv(g, a, &mut shown)
    } else {
        cp(g, a, &mut shown)
    };
    match result {
        Ok(()) => {
            if !quiet {
                println!("{kind}: {} to {}", shown.source, shown.destination);
            }
            0
        }
        Err(e) => s3api::fail_transfer(
            &s3api::Transfer {
                kind,
                operation,
                source: &shown.source,
                destination: &shown.destination,
            },
            e,
        ),
    }
}

/// `mv`: refused onto itself (the delete would lose the object), else `cp` and then the
/// source deleted, only once the copy is whole.
fn mv(g: &Global, a: CpArgs, shown: &mut Shown) -> Result<(), CliError> {
    let (source, destination) = (a.source.clone(), a.destination.clone());
    if source.starts_with("s3://") && destination.starts_with("s3://") {
        let (sb, sk) = parse_s3_url(&source)?;
        let (db, mut dk) = parse_s3_url(&destination)?;
        if dk.is_empty() || dk.ends_with('/') {
            dk.push_str(sk.rsplit('/').next().unwrap_or(&sk));
        }
        if (sb, sk) == (db, dk) {
            return Err(CliError::Param(format!(
                "Cannot mv a file onto itself: {source} - {destination}"
            )));
        }
    }
    cp(g, a, shown)?;
    if source.starts_with("s3://") {
        let (bucket, key) = parse_s3_url(&source)?;
        let c = s3api::client(g)?;
        c.send("DELETE", Some(&bucket), Some(&key), &[], &[], Body::Empty)?;
    } else {
        std::fs::remove_file(&source)?;
    }
    Ok(())
}

/// `mb` and `rb`: one bucket call, its line (`make_bucket: NAME`) or its failure
/// (`make_bucket failed: s3://NAME An error occurred ...`, exit 1), as the AWS CLI's.
fn bucket_command(
    g: &Global,
    path: &str,
    kind: &str,
    method: &str,
    operation: &'static str,
) -> i32 {
    let bucket = match path.strip_prefix("s3://") {
        Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
        None => {
            return fail(
                operation,
                CliError::Param("<S3Uri>\nError: Invalid argument type".into()),
            )
        }
    };
    let r = s3api::client(g).and_then(|c| {
        c.send(method, Some(&bucket), None, &[], &[], Body::Empty)
            .map_err(CliError::from)
    });
    match r {
        Ok(_) => {
            println!("{kind}: {bucket}");
            0
        }
        Err(e) => {
            eprintln!(
                "{kind} failed: s3://{bucket} {}",
                s3api::words(operation, &e)
            );
            super::exit::S3_FAILED
        }
    }
}

/// `rm`: one object (DeleteObject, which S3 answers alike whether or not the key was
/// there), or with --recursive every object under the prefix, taken as a directory
/// (`s3://b/r` is `r/`, as the AWS CLI takes it), each deleted on its own with its own
/// line. A failed listing is fatal; a failed delete is reported and the rest go on; either
/// exits 1.
fn rm(g: &Global, path: &str, recursive: bool, dryrun: bool, quiet: bool) -> i32 {
    let fatal = |e: CliError| {
        s3api::fail_transfer(
            &s3api::Transfer {
                kind: "delete",
                operation: "ListObjectsV2",
                source: path,
                destination: "",
            },
            CliError::In {
                operation: "ListObjectsV2",
                error: Box::new(e),
            },
        )
    };
    let (bucket, key) = match parse_s3_url(path) {
        Ok(p) => p,
        Err(e) => return fail("DeleteObject", e),
    };
    let client = s3api::client(g);
    let keys = if recursive {
        let c = match &client {
            Ok(c) => c,
            Err(e) => return fatal(CliError::Param(s3api::words("ListObjectsV2", e))),
        };
        let mut prefix = key;
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        match s3api::list_all(c, &bucket, Some(&prefix), None, None, None) {
            Ok(pages) => pages
                .iter()
                .flat_map(|p| p.children_named("Contents"))
                .filter_map(|o| crate::s3::calls::own_text(o, "Key"))
                .map(str::to_string)
                .collect(),
            Err(e) => return fatal(e),
        }
    } else if key.is_empty() {
        Vec::new()
    } else {
        vec![key]
    };
    let mut code = 0;
    for k in keys {
        let url = format!("s3://{bucket}/{k}");
        if dryrun {
            println!("(dryrun) delete: {url}");
            continue;
        }
        let r = match &client {
            Ok(c) => c
                .send("DELETE", Some(&bucket), Some(&k), &[], &[], Body::Empty)
                .map(|_| ())
                .map_err(CliError::from),
            Err(e) => Err(CliError::Param(s3api::words("DeleteObject", e))),
        };
        match r {
            Ok(()) if !quiet => println!("delete: {url}"),
            Ok(()) => {}
            Err(e) => {
                eprintln!("delete failed: {url} {}", s3api::words("DeleteObject", &e));
                code = super::exit::S3_FAILED;
            }
        }
    }
    code
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

fn cp(g: &Global, a: CpArgs, shown: &mut Shown) -> Result<(), CliError> {
    let cfg = TransferConfig {
        threshold: a.multipart_threshold,
        part_size: a.multipart_chunksize,
        concurrency: a.max_concurrent_requests as usize,
    };
    let sse_c = sse_c_pair("sse-c", a.sse_c, a.sse_c_key)?;
    let source_sse_c = sse_c_pair(
        "sse-c-copy-source",
        a.sse_c_copy_source,
        a.sse_c_copy_source_key,
    )?;
    let checksum = a
        .checksum_algorithm
        .as_deref()
        .map(ChecksumAlgorithm::parse)
        .transpose()
        .map_err(|e| CliError::Param(e.to_string()))?;
    let (source, destination, quiet) = (a.source.as_str(), a.destination.as_str(), a.quiet);
    let kinds = (
        source.starts_with("s3://"),
        destination.starts_with("s3://"),
    );
    if source_sse_c.is_some() && kinds != (true, true) {
        return Err(CliError::Param(
            "--sse-c-copy-source is only supported for copy operations.".into(),
        ));
    }
    // What a new object is stored as: encryption, content type, ACL.
    let mut new_object = Vec::new();
    if let Some(s) = a.sse {
        new_object.push(("x-amz-server-side-encryption".to_string(), s));
    }
    if let Some(k) = a.sse_kms_key_id {
        new_object.push(("x-amz-server-side-encryption-aws-kms-key-id".to_string(), k));
    }
    if let Some(acl) = a.acl {
        new_object.push(("x-amz-acl".to_string(), acl));
    }
    let metadata = metadata_headers(a.metadata.as_deref())?;
    // As the AWS CLI: metadata given without a directive means REPLACE.
    let directive = a
        .metadata_directive
        .or_else(|| (!metadata.is_empty()).then(|| "REPLACE".to_string()));
    // From an object, no endpoint fails the HEAD that comes first (`fatal error: ...`, as
    // the AWS CLI says it); to one, the upload or copy itself.
    let c = s3api::client(g).map_err(|e| match kinds {
        (true, _) => CliError::In {
            operation: "HeadObject",
            error: Box::new(e),
        },
        _ => e,
    })?;
    let sse_c_headers = || sse_c.as_ref().map(|k| k.headers()).unwrap_or_default();
    match kinds {
        (false, true) => {
            let (bucket, mut key) = parse_s3_url(destination)?;
            let path = Path::new(source);
            if key.is_empty() || key.ends_with('/') {
                let name = path
                    .file_name()
                    .ok_or_else(|| CliError::Param(format!("{source} is not a file")))?;
                key.push_str(&name.to_string_lossy());
            }
            shown.destination = format!("s3://{bucket}/{key}");
            if !path.exists() {
                return Err(CliError::Param(format!(
                    "The user-provided path {source} does not exist."
                )));
            }
            let f = s3api::open_input(path)?;
            let len = f.metadata()?.len();
            let mut h = new_object;
            h.extend(metadata);
            let ct = a
                .content_type
                .unwrap_or_else(|| guess_content_type(path).to_string());
            h.push(("content-type".to_string(), ct));
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
                    cfg: &cfg,
                    progress: &tick,
                    sse_c: sse_c.as_ref(),
                    checksum,
                };
                t.upload(&f, len, &h).map(|_| ())
            } else {
                h.extend(sse_c_headers());
                if let Some(alg) = checksum {
                    h.push(alg.header_for(&f)?);
                    std::io::Seek::rewind(&mut &f)?;
                }
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
            shown.destination = shown_location(&dest.to_string_lossy());
            // With the stored checksum, if the object has one: what arrives is checked
            // against it before the file takes the destination's name.
            let mut head_headers = sse_c_headers();
            head_headers.push(("x-amz-checksum-mode".into(), "ENABLED".into()));
            let head = head_object(&c, &bucket, &key, &head_headers)?;
            let size = head
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let etag = head.header("etag").unwrap_or_default().to_string();
            let stored = AnsweredChecksum::from_headers(&head.headers)
                .map_err(|e| ClientError::BadResponse(e.to_string()))?;
            let pb = progress_bar(size, quiet);
            // A composite checksum is checked part by part, so such an object always comes
            // down in its parts.
            let composite = stored.as_ref().is_some_and(|s| s.parts.is_some());
            let result = if size > cfg.threshold || composite {
                let tick = |n: u64| {
                    if let Some(p) = &pb {
                        p.inc(n);
                    }
                };
                let t = transfer::Transfer {
                    client: &c,
                    bucket: &bucket,
                    key: &key,
                    cfg: &cfg,
                    progress: &tick,
                    sse_c: sse_c.as_ref(),
                    checksum: None,
                };
                s3api::download_with(&dest, Some(size), |f| {
                    f.set_len(size)?;
                    Ok(t.download(size, &etag, f, stored.as_ref())?)
                })
            } else {
                let r = c.get_object_with(&bucket, &key, &[], sse_c_headers())?;
                let len = r
                    .header("content-length")
                    .and_then(|v| v.parse::<u64>().ok());
                if stored.is_some() && r.header("etag") != Some(etag.as_str()) {
                    return Err(ClientError::BadResponse(format!(
                        "s3://{bucket}/{key} changed during the download (ETag {:?}, was {etag})",
                        r.header("etag")
                    ))
                    .into());
                }
                s3api::download_with(&dest, len, |f| {
                    let n = s3api::write_body(r, f, pb.as_ref())?;
                    if let Some(sum) = stored.as_ref().filter(|_| Some(n) == len) {
                        transfer::matches(
                            sum,
                            &transfer::checksum_of(sum.algorithm, f, 0, n)?,
                            None,
                        )?;
                    }
                    // A short body is reported as incomplete by download_with.
                    Ok(n)
                })
            };
            if let Some(p) = &pb {
                p.finish_and_clear();
            }
            result?;
            Ok(())
        }
        (true, true) => {
            let (src_bucket, src_key) = parse_s3_url(source)?;
            if src_key.is_empty() {
                return Err(CliError::Param(format!("{source} names no object")));
            }
            let (bucket, mut key) = parse_s3_url(destination)?;
            if key.is_empty() || key.ends_with('/') {
                key.push_str(src_key.rsplit('/').next().unwrap_or(&src_key));
            }
            shown.destination = format!("s3://{bucket}/{key}");
            let source_headers = || {
                source_sse_c
                    .as_ref()
                    .map(|k| k.copy_source_headers())
                    .unwrap_or_default()
            };
            // The source's size (read with its own key, as the AWS CLI does).
            let head = head_object(
                &c,
                &src_bucket,
                &src_key,
                &source_sse_c
                    .as_ref()
                    .map(|k| k.headers())
                    .unwrap_or_default(),
            )?;
            let size = head
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut h = new_object;
            if size > a.copy_in_parts_above {
                // Parts do not carry the source's metadata: the upload is created with what
                // CopyObject would have stored, the source's content type and metadata
                // (COPY) or the ones given (REPLACE). (The AWS CLI stores only the ones
                // given, whatever the directive.)
                if directive.as_deref() == Some("REPLACE") {
                    h.extend(a.content_type.map(|ct| ("content-type".to_string(), ct)));
                    h.extend(metadata);
                } else {
                    if let Some(ct) = head.header("content-type") {
                        h.push(("content-type".to_string(), ct.to_string()));
                    }
                    for (k, v) in &head.headers {
                        if k.to_ascii_lowercase().starts_with("x-amz-meta-") {
                            h.push((k.to_ascii_lowercase(), v.clone()));
                        }
                    }
                }
                let tick = |_: u64| {};
                let t = transfer::Transfer {
                    client: &c,
                    bucket: &bucket,
                    key: &key,
                    cfg: &cfg,
                    progress: &tick,
                    sse_c: sse_c.as_ref(),
                    checksum,
                };
                let from = transfer::CopySource {
                    bucket: &src_bucket,
                    key: &src_key,
                    sse_c: source_sse_c.as_ref(),
                };
                t.copy(&from, size, &h)?;
            } else {
                // Sent as the AWS CLI sends them; the endpoint applies them with REPLACE.
                h.extend(a.content_type.map(|ct| ("content-type".to_string(), ct)));
                h.extend(metadata);
                if let Some(d) = directive {
                    h.push(("x-amz-metadata-directive".to_string(), d));
                }
                h.push((
                    "x-amz-copy-source".to_string(),
                    transfer::copy_source_header(&src_bucket, &src_key),
                ));
                h.extend(sse_c_headers());
                h.extend(source_headers());
                if let Some(alg) = checksum {
                    h.push(("x-amz-checksum-algorithm".to_string(), alg.as_str().into()));
                }
                let r = c.send("PUT", Some(&bucket), Some(&key), &[], &h, Body::Empty)?;
                // CopyObject can fail after its 200 status line: the error is the body.
                transfer::parse_xml(r)?;
            }
            Ok(())
        }
        (false, false) => Err(CliError::Param(
            "cp copies a local file to s3://BUCKET/KEY, or an object to a file or another object"
                .into(),
        )),
    }
}

/// HEAD of an object before a download or copy: a failure is HeadObject's, as the AWS CLI
/// reports it (`An error occurred (403) when calling the HeadObject operation: Forbidden`),
/// a missing object in its words: `Key "KEY" does not exist`.
fn head_object(
    c: &crate::s3::client::S3Client,
    bucket: &str,
    key: &str,
    headers: &[(String, String)],
) -> Result<crate::s3::client::Response, CliError> {
    c.send("HEAD", Some(bucket), Some(key), &[], headers, Body::Empty)
        .map_err(|e| {
            let e = match e {
                ClientError::Service {
                    status: 404,
                    code,
                    request_id,
                    ..
                } => ClientError::Service {
                    status: 404,
                    code,
                    message: format!("Key \"{key}\" does not exist"),
                    request_id,
                },
                e => e,
            };
            CliError::In {
                operation: "HeadObject",
                error: Box::new(e.into()),
            }
        })
}

/// The source and destination a transfer's lines name, as the AWS CLI names them.
struct Shown {
    source: String,
    destination: String,
}

/// A location as the AWS CLI prints it in `upload:`/`download:` lines and their failures:
/// an `s3://` URL as given, a local path relative to the current directory (`./f.txt`,
/// `../x/f.txt`), as its `relative_path` makes it.
fn shown_location(s: &str) -> String {
    if s.starts_with("s3://") || s == "-" {
        return s.to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => relative_path(&cwd, Path::new(s)),
        Err(_) => s.to_string(),
    }
}

/// Python's `os.path.join(os.path.relpath(dirname(p), cwd), basename(p))`, lexically: the
/// directory of `p` made absolute and normalized (`.` and `..` folded, no symlinks
/// followed), walked to from `cwd`.
fn relative_path(cwd: &Path, p: &Path) -> String {
    use std::path::Component;
    let abs = cwd.join(p);
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
        }
    }
    let Some(name) = parts.pop() else {
        return p.display().to_string();
    };
    let base: Vec<&std::ffi::OsStr> = cwd
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let common = parts.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for n in &parts[common..] {
        out.push(n);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out.push(name);
    out.display().to_string()
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

    #[test]
    fn local_paths_are_shown_relative_to_the_current_directory_as_the_aws_cli_shows_them() {
        let cwd = Path::new("/tmp/w/d");
        let rel = |p: &str| relative_path(cwd, Path::new(p));
        assert_eq!(rel("f.txt"), "./f.txt");
        assert_eq!(rel("./a/f.txt"), "a/f.txt");
        assert_eq!(rel("/tmp/w/d/a/f.txt"), "a/f.txt");
        assert_eq!(rel("/nonexistent/dir/x"), "../../../nonexistent/dir/x");
        assert_eq!(rel("../e/f"), "../e/f");
        assert_eq!(rel("/tmp/w/f"), "../f");
    }
}
