//! `atrest s3api ...`: the AWS CLI's `aws s3api` verbs, as a SigV4 client of the object
//! endpoint (`atrest s3 serve`). Output is the AWS CLI's JSON, through the shared
//! `--query`/`--output` ([`super::output`]); errors are AWS-style with a non-zero exit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::s3::calls::{own_text, Listing, ObjectId};
use crate::s3::client::{Body, BodyStream, ClientError, Response, S3Client};
use crate::s3::request_options::{checksum_fields, ChecksumAlgorithm, SseCustomerKey};
use crate::s3::xml::{self, Node};

use super::{report_error, Global};

/// AWS CLI's exit code for a parameter error.
pub(crate) const EXIT_PARAM: i32 = super::exit::PARAM;
/// AWS CLI's exit code when the endpoint cannot be reached.
pub(crate) const EXIT_UNREACHABLE: i32 = super::exit::OTHER;

#[derive(Debug, clap::Args)]
pub struct S3apiArgs {
    #[command(subcommand)]
    pub command: S3apiCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum S3apiCommand {
    /// Create a bucket (SSE-S3 default encryption, all Block Public Access on, ACLs disabled).
    CreateBucket {
        #[arg(long)]
        bucket: String,
        /// BucketOwnerEnforced (default), BucketOwnerPreferred or ObjectWriter.
        #[arg(long)]
        object_ownership: Option<String>,
        #[arg(long)]
        acl: Option<String>,
    },
    /// List your buckets.
    ListBuckets,
    /// Delete an empty bucket.
    DeleteBucket {
        #[arg(long)]
        bucket: String,
    },
    /// Set a bucket's default encryption.
    PutBucketEncryption {
        #[arg(long)]
        bucket: String,
        /// JSON (inline or file://PATH): {"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"alias/MyKMSKey"},"BucketKeyEnabled":true}]}
        #[arg(long)]
        server_side_encryption_configuration: String,
    },
    /// Show a bucket's default encryption.
    GetBucketEncryption {
        #[arg(long)]
        bucket: String,
    },
    /// Reset a bucket's default encryption to SSE-S3.
    DeleteBucketEncryption {
        #[arg(long)]
        bucket: String,
    },
    /// Set Block Public Access.
    PutPublicAccessBlock {
        #[arg(long)]
        bucket: String,
        /// `BlockPublicAcls=false,IgnorePublicAcls=false,BlockPublicPolicy=false,RestrictPublicBuckets=false` or JSON.
        #[arg(long)]
        public_access_block_configuration: String,
    },
    /// Show Block Public Access.
    GetPublicAccessBlock {
        #[arg(long)]
        bucket: String,
    },
    /// Remove a bucket's Block Public Access configuration (nothing is blocked then).
    DeletePublicAccessBlock {
        #[arg(long)]
        bucket: String,
    },
    /// Set Object Ownership.
    PutBucketOwnershipControls {
        #[arg(long)]
        bucket: String,
        /// `Rules=[{ObjectOwnership=BucketOwnerPreferred}]` or JSON.
        #[arg(long)]
        ownership_controls: String,
    },
    /// Show Object Ownership.
    GetBucketOwnershipControls {
        #[arg(long)]
        bucket: String,
    },
    /// Upload an object.
    PutObject {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        /// File to upload (empty object if omitted).
        #[arg(long)]
        body: Option<PathBuf>,
        #[command(flatten)]
        new_object: NewObjectArgs,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        checksum: ChecksumArgs,
    },
    /// Download an object (or a byte range or part of it) to OUTFILE.
    GetObject {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        span: SpanArgs,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        mode: ChecksumModeArgs,
        outfile: PathBuf,
    },
    /// Show an object's metadata (or a byte range's or part's).
    HeadObject {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        span: SpanArgs,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        mode: ChecksumModeArgs,
    },
    /// Copy an object (within or across buckets; onto itself with --metadata-directive
    /// REPLACE), re-encrypted as asked.
    CopyObject {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        /// SOURCEBUCKET/SOURCEKEY.
        #[arg(long)]
        copy_source: String,
        /// COPY (the source's metadata, the default) or REPLACE (the request's).
        #[arg(long)]
        metadata_directive: Option<String>,
        #[command(flatten)]
        new_object: NewObjectArgs,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        source_key: CopySourceKeyArgs,
        #[command(flatten)]
        checksum: ChecksumArgs,
    },
    /// List objects (ListObjectsV2): every page, or one with --max-keys or
    /// --continuation-token, as the AWS CLI does.
    ListObjectsV2 {
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        start_after: Option<String>,
        #[arg(long)]
        continuation_token: Option<String>,
        /// Each entry with its Owner.
        #[arg(long)]
        fetch_owner: bool,
    },
    /// List objects (ListObjects, v1): every page, or one with --max-keys or --marker.
    ListObjects {
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        marker: Option<String>,
    },
    /// List object versions (ListObjectVersions): every page, or one with --max-keys,
    /// --key-marker or --version-id-marker.
    ListObjectVersions {
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        key_marker: Option<String>,
        #[arg(long)]
        version_id_marker: Option<String>,
    },
    /// Show the region a bucket is in (null for us-east-1).
    GetBucketLocation {
        #[arg(long)]
        bucket: String,
    },
    /// Delete an object.
    DeleteObject {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
    },
    /// Delete up to 1000 objects in one request (DeleteObjects).
    DeleteObjects {
        #[arg(long)]
        bucket: String,
        /// `Objects=[{Key=a},{Key=b,VersionId=v}],Quiet=true` or JSON (inline or file://PATH).
        #[arg(long)]
        delete: String,
    },
    /// Set an object's canned ACL.
    PutObjectAcl {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        acl: String,
    },
    /// Show an object's ACL.
    GetObjectAcl {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
    },
    /// Set a bucket's canned ACL.
    PutBucketAcl {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        acl: String,
    },
    /// Show a bucket's ACL.
    GetBucketAcl {
        #[arg(long)]
        bucket: String,
    },
    #[command(flatten)]
    Multipart(super::s3api_multipart::MultipartCommand),
}

/// What every listing takes.
#[derive(Debug, Default, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub prefix: Option<String>,
    #[arg(long)]
    pub delimiter: Option<String>,
    /// At most this many entries, in one page (no further pages are asked).
    #[arg(long, allow_negative_numbers = true)]
    pub max_keys: Option<i64>,
    /// `url`: names come back URL-encoded, and are printed so.
    #[arg(long)]
    pub encoding_type: Option<String>,
    /// Page size asked of the endpoint (1 to 1000) when every page is listed.
    #[arg(long, allow_negative_numbers = true)]
    pub page_size: Option<i64>,
}

impl ListArgs {
    /// The query every listing shares, and the page size (`max-keys`) when all pages
    /// are asked for.
    fn query(&self, one_page: bool) -> Result<Vec<(&'static str, String)>, CliError> {
        let mut q = Vec::new();
        if let Some(p) = &self.prefix {
            q.push(("prefix", p.clone()));
        }
        if let Some(d) = &self.delimiter {
            q.push(("delimiter", d.clone()));
        }
        if let Some(e) = &self.encoding_type {
            q.push(("encoding-type", e.clone()));
        }
        if one_page {
            if let Some(n) = self.max_keys {
                q.push(("max-keys", n.to_string()));
            }
        } else if let Some(n) = self.page_size {
            let n = u32::try_from(n).map_err(|_| {
                CliError::Client(ClientError::Service {
                    status: 400,
                    code: "InvalidArgument".into(),
                    message: "Provided max-keys not an integer or within integer range".into(),
                    request_id: None,
                })
            })?;
            q.push(("max-keys", n.clamp(1, 1000).to_string()));
        }
        Ok(q)
    }
}

/// What PutObject and CreateMultipartUpload say about the new object.
#[derive(Debug, Default, clap::Args)]
pub struct NewObjectArgs {
    #[arg(long)]
    pub content_type: Option<String>,
    /// AES256 or aws:kms.
    #[arg(long)]
    pub server_side_encryption: Option<String>,
    /// Key id, alias (alias/NAME) or ARN for aws:kms.
    #[arg(long)]
    pub ssekms_key_id: Option<String>,
    #[arg(long)]
    pub bucket_key_enabled: bool,
    #[arg(long)]
    pub acl: Option<String>,
    /// `k1=v1,k2=v2` or JSON: stored as x-amz-meta-*.
    #[arg(long)]
    pub metadata: Option<String>,
}

impl NewObjectArgs {
    /// The request headers that say it.
    pub(crate) fn headers(self) -> Result<Vec<(String, String)>, CliError> {
        let mut h = Vec::new();
        if let Some(t) = self.content_type {
            h.push(("content-type".to_string(), t));
        }
        if let Some(s) = self.server_side_encryption {
            h.push(("x-amz-server-side-encryption".to_string(), s));
        }
        if let Some(k) = self.ssekms_key_id {
            h.push(("x-amz-server-side-encryption-aws-kms-key-id".to_string(), k));
        }
        if self.bucket_key_enabled {
            h.push((
                "x-amz-server-side-encryption-bucket-key-enabled".to_string(),
                "true".into(),
            ));
        }
        if let Some(a) = self.acl {
            h.push(("x-amz-acl".to_string(), a));
        }
        if let Some(m) = self.metadata {
            let v = shorthand_or_json(&m)?;
            for (k, val) in v.as_object().into_iter().flatten() {
                let val = val
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| val.to_string());
                h.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), val));
            }
        }
        Ok(h)
    }
}

/// SSE-C: the customer key of the object a request writes or reads, as the AWS CLI's
/// `aws s3api` takes it. Without `--sse-customer-key-md5` the key is raw (text or
/// `fileb://KEYFILE`) and is sent base64 with its MD5, as botocore does; with it, both
/// are sent as given (the key then base64).
#[derive(Debug, Default, clap::Args)]
pub struct CustomerKeyArgs {
    /// AES256.
    #[arg(long)]
    pub sse_customer_algorithm: Option<String>,
    #[arg(long)]
    pub sse_customer_key: Option<String>,
    #[arg(long = "sse-customer-key-md5")]
    pub sse_customer_key_md5: Option<String>,
}

impl CustomerKeyArgs {
    pub(crate) fn key(self) -> Result<Option<SseCustomerKey>, CliError> {
        customer_key(
            self.sse_customer_algorithm,
            self.sse_customer_key,
            self.sse_customer_key_md5,
        )
    }

    /// The `x-amz-server-side-encryption-customer-*` headers (none without a key).
    pub(crate) fn headers(self) -> Result<Vec<(String, String)>, CliError> {
        Ok(self.key()?.map(|k| k.headers()).unwrap_or_default())
    }
}

/// SSE-C of a copy's source: `--copy-source-sse-customer-algorithm|key|key-md5`.
#[derive(Debug, Default, clap::Args)]
pub struct CopySourceKeyArgs {
    #[arg(long)]
    pub copy_source_sse_customer_algorithm: Option<String>,
    #[arg(long)]
    pub copy_source_sse_customer_key: Option<String>,
    #[arg(long = "copy-source-sse-customer-key-md5")]
    pub copy_source_sse_customer_key_md5: Option<String>,
}

impl CopySourceKeyArgs {
    /// The `x-amz-copy-source-server-side-encryption-customer-*` headers.
    pub(crate) fn headers(self) -> Result<Vec<(String, String)>, CliError> {
        Ok(customer_key(
            self.copy_source_sse_customer_algorithm,
            self.copy_source_sse_customer_key,
            self.copy_source_sse_customer_key_md5,
        )?
        .map(|k| k.copy_source_headers())
        .unwrap_or_default())
    }
}

/// The key botocore would send for these three parameters (none if no key is given; an
/// algorithm or MD5 alone is sent for the endpoint to refuse, as S3 does).
fn customer_key(
    algorithm: Option<String>,
    key: Option<String>,
    md5: Option<String>,
) -> Result<Option<SseCustomerKey>, CliError> {
    Ok(match (key, md5) {
        (None, None) if algorithm.is_none() => None,
        (Some(k), None) => {
            let raw = zeroize::Zeroizing::new(blob_arg(&k)?);
            Some(SseCustomerKey::from_raw(algorithm.as_deref(), &raw))
        }
        (k, m) => {
            let k =
                zeroize::Zeroizing::new(k.map(|k| arg_text(&k)).transpose()?.unwrap_or_default());
            Some(SseCustomerKey::given(
                algorithm.as_deref(),
                &k,
                &m.unwrap_or_default(),
            ))
        }
    })
}

/// `--checksum-algorithm`: the checksum a body is sent and stored with.
#[derive(Debug, Default, clap::Args)]
pub struct ChecksumArgs {
    /// CRC32, CRC32C, SHA1, SHA256 or CRC64NVME.
    #[arg(long)]
    pub checksum_algorithm: Option<String>,
}

impl ChecksumArgs {
    pub(crate) fn algorithm(&self) -> Result<Option<ChecksumAlgorithm>, CliError> {
        self.checksum_algorithm
            .as_deref()
            .map(ChecksumAlgorithm::parse)
            .transpose()
            .map_err(|e| CliError::Param(e.to_string()))
    }

    /// The checksum header of the file `body` (its first read; the upload is the second).
    pub(crate) fn header_for(
        &self,
        body: Option<&File>,
    ) -> Result<Vec<(String, String)>, CliError> {
        Ok(match (self.algorithm()?, body) {
            (None, _) => Vec::new(),
            (Some(a), Some(f)) => {
                let h = a.header_for(f)?;
                std::io::Seek::rewind(&mut &*f)?;
                vec![h]
            }
            (Some(a), None) => vec![a.header_for(std::io::empty())?],
        })
    }
}

/// `--checksum-mode ENABLED`: the answer carries the object's stored checksum.
#[derive(Debug, Default, clap::Args)]
pub struct ChecksumModeArgs {
    /// ENABLED.
    #[arg(long)]
    pub checksum_mode: Option<String>,
}

impl ChecksumModeArgs {
    fn headers(self) -> Vec<(String, String)> {
        self.checksum_mode
            .map(|m| vec![("x-amz-checksum-mode".to_string(), m)])
            .unwrap_or_default()
    }
}

/// Which bytes of an object a read asks for.
#[derive(Debug, Default, clap::Args)]
pub struct SpanArgs {
    /// `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-COUNT`.
    #[arg(long)]
    pub range: Option<String>,
    /// One part of a multipart object (1 to 10000).
    #[arg(long)]
    pub part_number: Option<u32>,
}

impl SpanArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        self.part_number
            .map(|n| vec![("partNumber", n.to_string())])
            .unwrap_or_default()
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.range
            .iter()
            .map(|r| ("range".to_string(), r.clone()))
            .collect()
    }
}

/// A failure of one CLI operation.
#[derive(Debug)]
pub(crate) enum CliError {
    Client(ClientError),
    Param(String),
    /// A failure of one call a command makes besides its own operation, reported under
    /// that call's name (`aws s3 cp` reports a failed HEAD as HeadObject).
    In {
        operation: &'static str,
        error: Box<CliError>,
    },
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Client(ClientError::Io(e))
    }
}

/// Prints the error as the AWS CLI does and returns its exit code.
pub(crate) fn fail(operation: &str, e: CliError) -> i32 {
    match e {
        CliError::In { operation, error } => fail(operation, *error),
        // In the AWS CLI's words: the message alone, after a blank line.
        CliError::Param(msg) => {
            eprintln!("\n{msg}");
            EXIT_PARAM
        }
        CliError::Client(
            e @ (ClientError::Unreachable { .. } | ClientError::NoEndpoint { .. }),
        ) => {
            eprintln!("\n{e}");
            EXIT_UNREACHABLE
        }
        CliError::Client(e) => report_error(operation, &e.code(), &e.message()),
    }
}

/// What a high-level `s3` transfer was when it failed, for the AWS CLI's failure line:
/// `upload failed: ./f.txt to s3://b/k An error occurred (...) when calling ...`.
pub(crate) struct Transfer<'a> {
    /// `upload`, `download` or `copy`.
    pub kind: &'static str,
    /// The operation a failure of the transfer itself is reported under.
    pub operation: &'static str,
    pub source: &'a str,
    pub destination: &'a str,
}

/// An error in the AWS CLI's words: a service's `An error occurred (Code) when calling
/// the Op operation: message`, anything else (the endpoint unreachable, a local file,
/// a checksum) its own text.
pub(crate) fn words(operation: &str, e: &CliError) -> String {
    match e {
        CliError::In { operation, error } => words(operation, error),
        CliError::Param(msg) => msg.clone(),
        CliError::Client(e) => client_words(operation, e),
    }
}

fn client_words(operation: &str, e: &ClientError) -> String {
    match e {
        ClientError::During { operation, source } => client_words(operation, source),
        ClientError::Service { .. } | ClientError::Auth(_) => {
            super::service_error_words(operation, &e.code(), &e.message())
        }
        e => e.to_string(),
    }
}

/// Prints a failed high-level `s3` transfer as the AWS CLI does and returns its exit
/// code: a parameter error as [`fail`]; a failure before the transfer starts (the HEAD of
/// its source) `fatal error: ...`; one of the transfer itself `KIND failed: SRC to DST
/// ...`; either exits 1, as every failed transfer of `aws s3` does.
pub(crate) fn fail_transfer(t: &Transfer<'_>, e: CliError) -> i32 {
    match &e {
        CliError::Param(_) => fail(t.operation, e),
        CliError::In { .. } => {
            eprintln!("fatal error: {}", words(t.operation, &e));
            super::exit::S3_FAILED
        }
        CliError::Client(_) => {
            eprintln!(
                "{} failed: {} to {} {}",
                t.kind,
                t.source,
                t.destination,
                words(t.operation, &e)
            );
            super::exit::S3_FAILED
        }
    }
}

pub(crate) fn client(g: &Global) -> Result<S3Client, CliError> {
    Ok(S3Client::from_home(&g.layout(), g.act_as.as_deref())?)
}

fn operation_name(c: &S3apiCommand) -> &'static str {
    use S3apiCommand::*;
    match c {
        CreateBucket { .. } => "CreateBucket",
        ListBuckets => "ListBuckets",
        DeleteBucket { .. } => "DeleteBucket",
        PutBucketEncryption { .. } => "PutBucketEncryption",
        GetBucketEncryption { .. } => "GetBucketEncryption",
        DeleteBucketEncryption { .. } => "DeleteBucketEncryption",
        PutPublicAccessBlock { .. } => "PutPublicAccessBlock",
        GetPublicAccessBlock { .. } => "GetPublicAccessBlock",
        DeletePublicAccessBlock { .. } => "DeletePublicAccessBlock",
        PutBucketOwnershipControls { .. } => "PutBucketOwnershipControls",
        GetBucketOwnershipControls { .. } => "GetBucketOwnershipControls",
        PutObject { .. } => "PutObject",
        GetObject { .. } => "GetObject",
        HeadObject { .. } => "HeadObject",
        CopyObject { .. } => "CopyObject",
        ListObjectsV2 { .. } => "ListObjectsV2",
        ListObjects { .. } => "ListObjects",
        ListObjectVersions { .. } => "ListObjectVersions",
        GetBucketLocation { .. } => "GetBucketLocation",
        DeleteObject { .. } => "DeleteObject",
        DeleteObjects { .. } => "DeleteObjects",
        PutObjectAcl { .. } => "PutObjectAcl",
        GetObjectAcl { .. } => "GetObjectAcl",
        PutBucketAcl { .. } => "PutBucketAcl",
        GetBucketAcl { .. } => "GetBucketAcl",
        Multipart(m) => m.operation_name(),
    }
}

pub fn run(g: &Global, args: S3apiArgs) -> i32 {
    let op = operation_name(&args.command);
    match execute(g, args.command) {
        Ok(Some(v)) => g.output.emit(op, &v),
        Ok(None) => 0,
        Err(e) => fail(op, e),
    }
}

fn execute(g: &Global, cmd: S3apiCommand) -> Result<Option<Value>, CliError> {
    use S3apiCommand::*;
    let c = client(g)?;
    let none: &[(String, String)] = &[];
    match cmd {
        CreateBucket {
            bucket,
            object_ownership,
            acl,
        } => {
            let mut h = Vec::new();
            if let Some(o) = object_ownership {
                h.push(("x-amz-object-ownership".to_string(), o));
            }
            if let Some(a) = acl {
                h.push(("x-amz-acl".to_string(), a));
            }
            let r = c.send("PUT", Some(&bucket), None, &[], &h, Body::Empty)?;
            let loc = r
                .header("location")
                .map(str::to_string)
                .unwrap_or(format!("/{bucket}"));
            Ok(Some(json!({ "Location": loc })))
        }
        ListBuckets => {
            let doc = xml_of(c.send("GET", None, None, &[], none, Body::Empty)?)?;
            let buckets: Vec<Value> = doc
                .child("Buckets")
                .map(|b| {
                    b.children_named("Bucket")
                        .map(|b| {
                            json!({
                                "Name": b.text_of("Name").unwrap_or_default(),
                                "CreationDate": plumbing::awstime::rfc3339_to_cli(b.text_of("CreationDate").unwrap_or_default()),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut out = json!({ "Buckets": buckets });
            if let Some(o) = doc.child("Owner") {
                out["Owner"] = owner_json(o);
            }
            Ok(Some(out))
        }
        DeleteBucket { bucket } => {
            c.send("DELETE", Some(&bucket), None, &[], none, Body::Empty)?;
            Ok(None)
        }
        PutBucketEncryption {
            bucket,
            server_side_encryption_configuration,
        } => {
            let cfg = json_arg(&server_side_encryption_configuration)?;
            let body = encryption_xml(&cfg)?;
            c.send(
                "PUT",
                Some(&bucket),
                None,
                &[("encryption", "")],
                &[("content-type".into(), "application/xml".into())],
                Body::Bytes(body.as_bytes()),
            )?;
            Ok(None)
        }
        GetBucketEncryption { bucket } => {
            let doc = xml_of(c.send(
                "GET",
                Some(&bucket),
                None,
                &[("encryption", "")],
                none,
                Body::Empty,
            )?)?;
            let rules: Vec<Value> = doc
                .children_named("Rule")
                .map(|r| {
                    let mut by_default = Map::new();
                    if let Some(d) = r.child("ApplyServerSideEncryptionByDefault") {
                        if let Some(a) = d.text_of("SSEAlgorithm") {
                            by_default.insert("SSEAlgorithm".into(), json!(a));
                        }
                        if let Some(k) = d.text_of("KMSMasterKeyID") {
                            by_default.insert("KMSMasterKeyID".into(), json!(k));
                        }
                    }
                    json!({
                        "ApplyServerSideEncryptionByDefault": by_default,
                        "BucketKeyEnabled": r.text_of("BucketKeyEnabled") == Some("true"),
                    })
                })
                .collect();
            Ok(Some(
                json!({ "ServerSideEncryptionConfiguration": { "Rules": rules } }),
            ))
        }
        DeleteBucketEncryption { bucket } => {
            c.send(
                "DELETE",
                Some(&bucket),
                None,
                &[("encryption", "")],
                none,
                Body::Empty,
            )?;
            Ok(None)
        }
        PutPublicAccessBlock {
            bucket,
            public_access_block_configuration,
        } => {
            let v = shorthand_or_json(&public_access_block_configuration)?;
            let mut body = String::from("<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
            for name in [
                "BlockPublicAcls",
                "IgnorePublicAcls",
                "BlockPublicPolicy",
                "RestrictPublicBuckets",
            ] {
                if let Some(val) = v.get(name) {
                    let b = bool_of(val)
                        .ok_or_else(|| CliError::Param(format!("{name} must be true or false")))?;
                    body.push_str(&format!("<{name}>{b}</{name}>"));
                }
            }
            if let Some(k) = v.as_object().and_then(|o| {
                o.keys()
                    .find(|k| {
                        ![
                            "BlockPublicAcls",
                            "IgnorePublicAcls",
                            "BlockPublicPolicy",
                            "RestrictPublicBuckets",
                        ]
                        .contains(&k.as_str())
                    })
                    .cloned()
            }) {
                return Err(CliError::Param(format!(
                    "unknown parameter in PublicAccessBlockConfiguration: {k}"
                )));
            }
            body.push_str("</PublicAccessBlockConfiguration>");
            c.send(
                "PUT",
                Some(&bucket),
                None,
                &[("publicAccessBlock", "")],
                &[("content-type".into(), "application/xml".into())],
                Body::Bytes(body.as_bytes()),
            )?;
            Ok(None)
        }
        GetPublicAccessBlock { bucket } => {
            let doc = xml_of(c.send(
                "GET",
                Some(&bucket),
                None,
                &[("publicAccessBlock", "")],
                none,
                Body::Empty,
            )?)?;
            let mut cfg = Map::new();
            for name in [
                "BlockPublicAcls",
                "IgnorePublicAcls",
                "BlockPublicPolicy",
                "RestrictPublicBuckets",
            ] {
                cfg.insert(name.into(), json!(doc.text_of(name) == Some("true")));
            }
            Ok(Some(json!({ "PublicAccessBlockConfiguration": cfg })))
        }
        DeletePublicAccessBlock { bucket } => {
            c.send(
                "DELETE",
                Some(&bucket),
                None,
                &[("publicAccessBlock", "")],
                none,
                Body::Empty,
            )?;
            Ok(None)
        }
        PutBucketOwnershipControls {
            bucket,
            ownership_controls,
        } => {
            let v = shorthand_or_json(&ownership_controls)?;
            let ownership = v
                .get("Rules")
                .and_then(|r| r.get(0))
                .and_then(|r| r.get("ObjectOwnership"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CliError::Param(
                        "--ownership-controls needs Rules=[{ObjectOwnership=VALUE}]".into(),
                    )
                })?;
            let body = format!(
                "<OwnershipControls xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ObjectOwnership>{}</ObjectOwnership></Rule></OwnershipControls>",
                xml::escape(ownership)
            );
            c.send(
                "PUT",
                Some(&bucket),
                None,
                &[("ownershipControls", "")],
                &[("content-type".into(), "application/xml".into())],
                Body::Bytes(body.as_bytes()),
            )?;
            Ok(None)
        }
        GetBucketOwnershipControls { bucket } => {
            let doc = xml_of(c.send(
                "GET",
                Some(&bucket),
                None,
                &[("ownershipControls", "")],
                none,
                Body::Empty,
            )?)?;
            let rules: Vec<Value> = doc
                .children_named("Rule")
                .map(|r| json!({ "ObjectOwnership": r.text_of("ObjectOwnership").unwrap_or_default() }))
                .collect();
            Ok(Some(json!({ "OwnershipControls": { "Rules": rules } })))
        }
        PutObject {
            bucket,
            key,
            body,
            new_object,
            customer_key,
            checksum,
        } => {
            let mut h = new_object.headers()?;
            h.extend(customer_key.headers()?);
            let r = match body {
                Some(path) => {
                    let f = open_input(&path)?;
                    let len = f.metadata()?.len();
                    h.extend(checksum.header_for(Some(&f))?);
                    c.send(
                        "PUT",
                        Some(&bucket),
                        Some(&key),
                        &[],
                        &h,
                        Body::Reader {
                            reader: Box::new(f),
                            len,
                        },
                    )?
                }
                None => {
                    h.extend(checksum.header_for(None)?);
                    c.send("PUT", Some(&bucket), Some(&key), &[], &h, Body::Empty)?
                }
            };
            Ok(Some(written_fields(&r)))
        }
        GetObject {
            bucket,
            key,
            span,
            customer_key,
            mode,
            outfile,
        } => {
            let query = span.query();
            let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut h = span.headers();
            h.extend(customer_key.headers()?);
            h.extend(mode.headers());
            let r = c.get_object_with(&bucket, &key, &q, h)?;
            let out = object_fields(&r);
            let expected = r
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok());
            download(r, &outfile, expected, None)?;
            Ok(Some(out))
        }
        HeadObject {
            bucket,
            key,
            span,
            customer_key,
            mode,
        } => {
            let query = span.query();
            let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut h = span.headers();
            h.extend(customer_key.headers()?);
            h.extend(mode.headers());
            let r = c.send("HEAD", Some(&bucket), Some(&key), &q, &h, Body::Empty)?;
            Ok(Some(object_fields(&r)))
        }
        CopyObject {
            bucket,
            key,
            copy_source,
            metadata_directive,
            new_object,
            customer_key,
            source_key,
            checksum,
        } => {
            let mut h = new_object.headers()?;
            h.push((
                "x-amz-copy-source".to_string(),
                super::s3api_multipart::copy_source_header(&copy_source)?,
            ));
            if let Some(d) = metadata_directive {
                h.push(("x-amz-metadata-directive".to_string(), d));
            }
            h.extend(customer_key.headers()?);
            h.extend(source_key.headers()?);
            if let Some(a) = checksum.algorithm()? {
                h.push(("x-amz-checksum-algorithm".to_string(), a.as_str().into()));
            }
            let r = c.send("PUT", Some(&bucket), Some(&key), &[], &h, Body::Empty)?;
            let head = sse_fields(&r, json!({}));
            let doc = crate::s3::transfer::parse_xml(r)?;
            let mut result = Map::new();
            result.insert(
                "ETag".into(),
                json!(doc.text_of("ETag").unwrap_or_default()),
            );
            result.insert(
                "LastModified".into(),
                json!(plumbing::awstime::rfc3339_to_cli(
                    doc.text_of("LastModified").unwrap_or_default()
                )),
            );
            result.extend(checksum_members(&doc));
            let mut out = json!({ "CopyObjectResult": result });
            if let (Some(o), Value::Object(e)) = (out.as_object_mut(), head) {
                o.extend(e);
            }
            Ok(Some(out))
        }
        ListObjectsV2 {
            bucket,
            list,
            start_after,
            continuation_token,
            fetch_owner,
        } => {
            let one_page = list.max_keys.is_some() || continuation_token.is_some();
            let mut q = list.query(one_page)?;
            if let Some(t) = continuation_token {
                q.push(("continuation-token", t));
            }
            if let Some(s) = start_after {
                q.push(("start-after", s));
            }
            if fetch_owner {
                q.push(("fetch-owner", "true".into()));
            }
            listing(&c, &bucket, Listing::V2, &q, one_page)
        }
        ListObjects {
            bucket,
            list,
            marker,
        } => {
            let one_page = list.max_keys.is_some() || marker.is_some();
            let mut q = list.query(one_page)?;
            if let Some(m) = marker {
                q.push(("marker", m));
            }
            listing(&c, &bucket, Listing::V1, &q, one_page)
        }
        ListObjectVersions {
            bucket,
            list,
            key_marker,
            version_id_marker,
        } => {
            let one_page =
                list.max_keys.is_some() || key_marker.is_some() || version_id_marker.is_some();
            let mut q = list.query(one_page)?;
            if let Some(m) = key_marker {
                q.push(("key-marker", m));
            }
            if let Some(m) = version_id_marker {
                q.push(("version-id-marker", m));
            }
            listing(&c, &bucket, Listing::Versions, &q, one_page)
        }
        GetBucketLocation { bucket } => Ok(Some(
            json!({ "LocationConstraint": c.bucket_location(&bucket)? }),
        )),
        DeleteObject { bucket, key } => {
            c.send("DELETE", Some(&bucket), Some(&key), &[], none, Body::Empty)?;
            Ok(None)
        }
        DeleteObjects { bucket, delete } => {
            let (objects, quiet) = delete_arg(&delete)?;
            let doc = c.delete_objects(&bucket, &objects, quiet)?;
            Ok(non_empty(delete_result_json(&doc)))
        }
        PutObjectAcl { bucket, key, acl } => {
            c.send(
                "PUT",
                Some(&bucket),
                Some(&key),
                &[("acl", "")],
                &[("x-amz-acl".into(), acl)],
                Body::Empty,
            )?;
            Ok(None)
        }
        GetObjectAcl { bucket, key } => {
            let doc = xml_of(c.send(
                "GET",
                Some(&bucket),
                Some(&key),
                &[("acl", "")],
                none,
                Body::Empty,
            )?)?;
            Ok(Some(acl_json(&doc)))
        }
        PutBucketAcl { bucket, acl } => {
            c.send(
                "PUT",
                Some(&bucket),
                None,
                &[("acl", "")],
                &[("x-amz-acl".into(), acl)],
                Body::Empty,
            )?;
            Ok(None)
        }
        GetBucketAcl { bucket } => {
            let doc = xml_of(c.send(
                "GET",
                Some(&bucket),
                None,
                &[("acl", "")],
                none,
                Body::Empty,
            )?)?;
            Ok(Some(acl_json(&doc)))
        }
        Multipart(m) => super::s3api_multipart::execute(&c, m),
    }
}

/// Every page of a ListObjectsV2, following continuation tokens.
pub(crate) fn list_all(
    c: &S3Client,
    bucket: &str,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    page_size: Option<u32>,
) -> Result<Vec<Node>, CliError> {
    let page_size = page_size.map(|p| p.clamp(1, 1000).to_string());
    let mut q: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = prefix {
        q.push(("prefix", p));
    }
    if let Some(d) = delimiter {
        q.push(("delimiter", d));
    }
    if let Some(s) = start_after {
        q.push(("start-after", s));
    }
    if let Some(n) = &page_size {
        q.push(("max-keys", n));
    }
    Ok(c.list_pages(bucket, Listing::V2, &q)?)
}

/// A listing as the AWS CLI prints it. One page (`one_page`: the caller named a page by
/// its size or marker, which turns the CLI's paginator off) is the whole answer; every
/// page is their entries together, with `RequestCharged` and the last page's `Prefix`.
fn listing(
    c: &S3Client,
    bucket: &str,
    kind: Listing,
    query: &[(&'static str, String)],
    one_page: bool,
) -> Result<Option<Value>, CliError> {
    let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if one_page {
        return Ok(Some(page_json(&c.list_page(bucket, kind, &q)?)));
    }
    let pages = c.list_pages(bucket, kind, &q)?;
    let mut out = Map::new();
    for p in &pages {
        for (k, v) in page_json(p).as_object().into_iter().flatten() {
            if let (Some(Value::Array(all)), Value::Array(more)) = (out.get_mut(k), v) {
                all.extend(more.iter().cloned());
            } else if v.is_array() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("RequestCharged".into(), Value::Null);
    let prefix = pages
        .last()
        .and_then(|p| own_text(p, "Prefix"))
        .unwrap_or_default();
    out.insert("Prefix".into(), json!(prefix));
    Ok(Some(Value::Object(out)))
}

/// One listing page's XML as the AWS CLI's JSON: its entries (`Contents`, `Version`,
/// `DeleteMarker`, `CommonPrefixes`) as lists, counts as numbers, flags as booleans.
fn page_json(doc: &Node) -> Value {
    let mut out = Map::new();
    for c in &doc.children {
        let (name, v) = match c.name.as_str() {
            "Contents" | "CommonPrefixes" => (c.name.clone(), entry_json(c)),
            "Version" => ("Versions".to_string(), entry_json(c)),
            "DeleteMarker" => ("DeleteMarkers".to_string(), entry_json(c)),
            "IsTruncated" => {
                out.insert(c.name.clone(), json!(c.text == "true"));
                continue;
            }
            "MaxKeys" | "KeyCount" => {
                out.insert(c.name.clone(), number_or_text(&c.text));
                continue;
            }
            _ => {
                out.insert(c.name.clone(), json!(c.text));
                continue;
            }
        };
        match out.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(a) => a.push(v),
            other => *other = Value::Array(vec![v]),
        }
    }
    Value::Object(out)
}

/// One listed object, version, delete marker or common prefix.
fn entry_json(e: &Node) -> Value {
    let mut out = Map::new();
    for c in &e.children {
        let v = match c.name.as_str() {
            "Size" => number_or_text(&c.text),
            "IsLatest" => json!(c.text == "true"),
            "LastModified" => json!(plumbing::awstime::rfc3339_to_cli(&c.text)),
            "Owner" => owner_json(c),
            "ChecksumAlgorithm" => {
                if let Some(Value::Array(a)) = out.get_mut("ChecksumAlgorithm") {
                    a.push(json!(c.text));
                    continue;
                }
                json!([c.text])
            }
            _ => json!(c.text),
        };
        out.insert(c.name.clone(), v);
    }
    Value::Object(out)
}

fn number_or_text(t: &str) -> Value {
    t.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(t))
}

/// `--delete` of `delete-objects`: the objects it names and whether it is quiet.
fn delete_arg(s: &str) -> Result<(Vec<ObjectId>, bool), CliError> {
    let v = shorthand_or_json(s)?;
    let objects = v.get("Objects").and_then(Value::as_array).ok_or_else(|| {
        CliError::Param("Missing required parameter in Delete: \"Objects\"".into())
    })?;
    let objects = objects
        .iter()
        .map(|o| {
            let key = o.get("Key").and_then(Value::as_str).ok_or_else(|| {
                CliError::Param("Missing required parameter in Delete.Objects[]: \"Key\"".into())
            })?;
            Ok(ObjectId {
                key: key.to_string(),
                version_id: o
                    .get("VersionId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let quiet = match v.get("Quiet") {
        None => false,
        Some(q) => {
            bool_of(q).ok_or_else(|| CliError::Param("Quiet must be true or false".into()))?
        }
    };
    Ok((objects, quiet))
}

/// A DeleteResult as the AWS CLI prints it: `Deleted` and `Errors`, each only if any.
fn delete_result_json(doc: &Node) -> Value {
    let deleted: Vec<Value> = doc
        .children_named("Deleted")
        .map(|d| {
            let mut m = Map::new();
            for f in ["Key", "VersionId", "DeleteMarkerVersionId"] {
                if let Some(t) = own_text(d, f) {
                    m.insert(f.into(), json!(t));
                }
            }
            if let Some(t) = own_text(d, "DeleteMarker") {
                m.insert("DeleteMarker".into(), json!(t == "true"));
            }
            Value::Object(m)
        })
        .collect();
    let errors: Vec<Value> = doc
        .children_named("Error")
        .map(|e| {
            let mut m = Map::new();
            for f in ["Key", "VersionId", "Code", "Message"] {
                if let Some(t) = own_text(e, f) {
                    m.insert(f.into(), json!(t));
                }
            }
            Value::Object(m)
        })
        .collect();
    let mut out = Map::new();
    if !deleted.is_empty() {
        out.insert("Deleted".into(), Value::Array(deleted));
    }
    if !errors.is_empty() {
        out.insert("Errors".into(), Value::Array(errors));
    }
    Value::Object(out)
}

/// The AWS CLI prints nothing for an answer with nothing in it.
fn non_empty(v: Value) -> Option<Value> {
    (!v.as_object().is_some_and(Map::is_empty)).then_some(v)
}

pub(crate) fn xml_of(r: Response) -> Result<Node, CliError> {
    let text = r.text()?;
    xml::parse(&text).map_err(|e| CliError::Client(ClientError::BadResponse(e.to_string())))
}

fn owner_json(o: &Node) -> Value {
    json!({
        "DisplayName": o.text_of("DisplayName").unwrap_or_default(),
        "ID": o.text_of("ID").unwrap_or_default(),
    })
}

fn acl_json(doc: &Node) -> Value {
    let grants: Vec<Value> = doc
        .child("AccessControlList")
        .map(|l| {
            l.children_named("Grant")
                .map(|g| {
                    let mut grantee = Map::new();
                    if let Some(ge) = g.child("Grantee") {
                        for f in ["DisplayName", "ID", "URI"] {
                            if let Some(v) = ge.text_of(f) {
                                grantee.insert(f.into(), json!(v));
                            }
                        }
                        let ty = if grantee.contains_key("URI") { "Group" } else { "CanonicalUser" };
                        grantee.insert("Type".into(), json!(ty));
                    }
                    json!({ "Grantee": grantee, "Permission": g.text_of("Permission").unwrap_or_default() })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Map::new();
    if let Some(o) = doc.child("Owner") {
        out.insert("Owner".into(), owner_json(o));
    }
    out.insert("Grants".into(), Value::Array(grants));
    Value::Object(out)
}

pub(crate) fn sse_fields(r: &Response, mut out: Value) -> Value {
    if let Some(s) = r.header("x-amz-server-side-encryption") {
        out["ServerSideEncryption"] = json!(s);
    }
    if let Some(k) = r.header("x-amz-server-side-encryption-aws-kms-key-id") {
        out["SSEKMSKeyId"] = json!(k);
    }
    if r.header("x-amz-server-side-encryption-bucket-key-enabled") == Some("true") {
        out["BucketKeyEnabled"] = json!(true);
    }
    if let Some(a) = r.header("x-amz-server-side-encryption-customer-algorithm") {
        out["SSECustomerAlgorithm"] = json!(a);
    }
    if let Some(m) = r.header("x-amz-server-side-encryption-customer-key-md5") {
        out["SSECustomerKeyMD5"] = json!(m);
    }
    out
}

/// The `ChecksumCRC32`... and `ChecksumType` elements of an XML answer (CopyObject,
/// UploadPartCopy, CompleteMultipartUpload), as the AWS CLI's JSON shows them.
pub(crate) fn checksum_members(doc: &Node) -> Map<String, Value> {
    let mut out = Map::new();
    for alg in crate::s3::checksum::ALGORITHMS {
        let m = format!("Checksum{alg}");
        if let Some(v) = doc.text_of(&m) {
            out.insert(m, json!(v));
        }
    }
    if let Some(t) = doc.text_of("ChecksumType") {
        out.insert("ChecksumType".into(), json!(t));
    }
    out
}

/// What PutObject and UploadPart answer: the ETag, checksums and encryption.
pub(crate) fn written_fields(r: &Response) -> Value {
    let mut out = Map::new();
    out.insert("ETag".into(), json!(r.header("etag").unwrap_or_default()));
    for (k, v) in checksum_fields(&r.headers) {
        out.insert(k, json!(v));
    }
    sse_fields(r, Value::Object(out))
}

/// GetObject/HeadObject fields in the AWS CLI's order.
fn object_fields(r: &Response) -> Value {
    let mut out = Map::new();
    if let Some(v) = r.header("accept-ranges") {
        out.insert("AcceptRanges".into(), json!(v));
    }
    if let Some(v) = r.header("last-modified") {
        out.insert(
            "LastModified".into(),
            json!(plumbing::awstime::http_date_to_cli(v)),
        );
    }
    if let Some(v) = r
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        out.insert("ContentLength".into(), json!(v));
    }
    for (k, v) in checksum_fields(&r.headers) {
        out.insert(k, json!(v));
    }
    if let Some(v) = r.header("etag") {
        out.insert("ETag".into(), json!(v));
    }
    if let Some(v) = r.header("content-range") {
        out.insert("ContentRange".into(), json!(v));
    }
    if let Some(v) = r.header("content-type") {
        out.insert("ContentType".into(), json!(v));
    }
    if let Some(v) = r
        .header("x-amz-mp-parts-count")
        .and_then(|v| v.parse::<u64>().ok())
    {
        out.insert("PartsCount".into(), json!(v));
    }
    let mut v = sse_fields(r, Value::Object(out));
    let meta: BTreeMap<String, String> = r
        .headers
        .iter()
        .filter_map(|(k, val)| {
            k.to_ascii_lowercase()
                .strip_prefix("x-amz-meta-")
                .map(|m| (m.to_string(), val.clone()))
        })
        .collect();
    v["Metadata"] = json!(meta);
    v
}

fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Reads `file://PATH` arguments, as the AWS CLI does.
fn arg_text(s: &str) -> Result<String, CliError> {
    match s.strip_prefix("file://") {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| CliError::Param(format!("cannot read {p}: {e}")))
        }
        None => Ok(s.to_string()),
    }
}

/// A blob argument as the AWS CLI reads one: `fileb://PATH` is the file's bytes,
/// `file://PATH` its text, anything else the argument's own bytes.
pub(crate) fn blob_arg(s: &str) -> Result<Vec<u8>, CliError> {
    match s.strip_prefix("fileb://") {
        Some(p) => std::fs::read(p).map_err(|e| CliError::Param(format!("cannot read {p}: {e}"))),
        None => Ok(arg_text(s)?.into_bytes()),
    }
}

pub(crate) fn json_arg(s: &str) -> Result<Value, CliError> {
    let text = arg_text(s)?;
    serde_json::from_str(&text).map_err(|e| CliError::Param(format!("invalid JSON: {e}")))
}

/// JSON, or the AWS CLI's shorthand syntax: `K=V,K2=V2`, `K=[{A=B},{C=D}]`.
pub(crate) fn shorthand_or_json(s: &str) -> Result<Value, CliError> {
    let text = arg_text(s)?;
    plumbing::shorthand::parse(text.trim()).map_err(|e| CliError::Param(e.to_string()))
}

/// `ServerSideEncryptionConfiguration` JSON → the XML PutBucketEncryption takes.
fn encryption_xml(cfg: &Value) -> Result<String, CliError> {
    let rules = cfg
        .get("Rules")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            CliError::Param(
                "--server-side-encryption-configuration needs a non-empty \"Rules\" list".into(),
            )
        })?;
    let mut x = String::from(
        "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
    );
    for r in rules {
        x.push_str("<Rule>");
        if let Some(d) = r.get("ApplyServerSideEncryptionByDefault") {
            let alg = d
                .get("SSEAlgorithm")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CliError::Param("ApplyServerSideEncryptionByDefault needs SSEAlgorithm".into())
                })?;
            x.push_str("<ApplyServerSideEncryptionByDefault>");
            x.push_str(&format!(
                "<SSEAlgorithm>{}</SSEAlgorithm>",
                xml::escape(alg)
            ));
            if let Some(k) = d.get("KMSMasterKeyID").and_then(Value::as_str) {
                x.push_str(&format!(
                    "<KMSMasterKeyID>{}</KMSMasterKeyID>",
                    xml::escape(k)
                ));
            }
            x.push_str("</ApplyServerSideEncryptionByDefault>");
        }
        if let Some(b) = r.get("BucketKeyEnabled") {
            let b = bool_of(b)
                .ok_or_else(|| CliError::Param("BucketKeyEnabled must be true or false".into()))?;
            x.push_str(&format!("<BucketKeyEnabled>{b}</BucketKeyEnabled>"));
        }
        x.push_str("</Rule>");
    }
    x.push_str("</ServerSideEncryptionConfiguration>");
    Ok(x)
}

pub(crate) fn open_input(path: &Path) -> Result<File, CliError> {
    File::open(path).map_err(|e| CliError::Param(format!("cannot open {}: {e}", path.display())))
}

/// Streams a GET body into `dest` through a temp file renamed into place only once every
/// byte arrived, so a failed or tampered download never leaves a partial file behind.
/// A new, unpredictable temp file beside the destination. `create_new` never follows a
/// symlink or reuses a file someone planted under the name, which matters in shared
/// directories such as /tmp.
fn create_partial(dir: &Path, name: &std::ffi::OsStr) -> Result<(File, PathBuf), CliError> {
    let mut last = None;
    for _ in 0..16 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".atrest-partial.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .read(true) // a download's checksum is read back from it
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::other("no free temp file name"))
        .into())
}

pub(crate) fn download(
    r: Response,
    dest: &Path,
    expected: Option<u64>,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<u64, CliError> {
    download_with(dest, expected, |f| write_body(r, f, progress))
}

/// Writes a GET body into `f`; returns its length.
pub(crate) fn write_body(
    r: Response,
    f: &mut File,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<u64, CliError> {
    Ok(match r.into_stream() {
        BodyStream::Spliceable(raw) => raw.splice_into(f, |done| {
            if let Some(p) = progress {
                p.set_position(done);
            }
        })?,
        BodyStream::Reader(reader) => copy_body(reader, f, progress)?,
    })
}

/// Fills a new temp file beside `dest` with `fill` (which returns the bytes it wrote) and
/// renames it to `dest` only once `expected` bytes are there, so a failed or tampered
/// download never leaves a partial file behind.
pub(crate) fn download_with(
    dest: &Path,
    expected: Option<u64>,
    fill: impl FnOnce(&mut File) -> Result<u64, CliError>,
) -> Result<u64, CliError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| CliError::Param(format!("{} is not a file name", dest.display())))?;
    let (mut f, tmp) = create_partial(dir, name)?;
    let result = (|| {
        let total = fill(&mut f)?;
        if let Some(e) = expected {
            if e != total {
                return Err(CliError::Client(ClientError::BadResponse(format!(
                    "connection closed after {total} of {e} bytes: the download is incomplete"
                ))));
            }
        }
        // Like the AWS CLI, no fsync: a download is a copy, not atrest's state. The rename
        // still means the file appears only once complete.
        drop(f);
        std::fs::rename(&tmp, dest)?;
        Ok(total)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Bytes per read of a download body.
const DOWNLOAD_BUFFER: usize = 1 << 20;

/// Copies `reader` into `out`. One thread: a reader and a writer thread measured the same
/// here (the endpoint needs the other core), and the kernel copies dominate either way.
fn copy_body(
    mut reader: Box<dyn Read + Send>,
    out: &mut File,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<u64, CliError> {
    let mut buf = vec![0u8; DOWNLOAD_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        crate::pagecache::write_all(out, &buf[..n])?;
        total += n as u64;
        if let Some(p) = progress {
            p.set_position(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_copy_is_exact_and_fails_on_read_or_write_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 * DOWNLOAD_BUFFER + 12345) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let path = dir.path().join("out");
        let mut f = File::create(&path).unwrap();
        let n = copy_body(Box::new(std::io::Cursor::new(data.clone())), &mut f, None).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);

        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                let n = buf.len().min(self.0).min(4096);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut f = File::create(dir.path().join("bad")).unwrap();
        let e = copy_body(Box::new(Failing(5 * DOWNLOAD_BUFFER / 2)), &mut f, None);
        assert!(
            e.is_err_and(|e| matches!(e, CliError::Client(ClientError::Io(ref io)) if io.to_string() == "connection reset")),
            "a read error must fail the download"
        );
        // A full disk fails it too (and returns: no thread left waiting).
        let mut full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let e = copy_body(Box::new(std::io::Cursor::new(data)), &mut full, None);
        assert!(e.is_err(), "a write error must fail the download");
    }

    #[test]
    fn shorthand_parses_aws_cli_forms() {
        let v = shorthand_or_json("BlockPublicAcls=false,IgnorePublicAcls=true").unwrap();
        assert_eq!(
            v,
            json!({"BlockPublicAcls": "false", "IgnorePublicAcls": "true"})
        );
        let v = shorthand_or_json("Rules=[{ObjectOwnership=BucketOwnerPreferred}]").unwrap();
        assert_eq!(
            v,
            json!({"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
        );
        let v = shorthand_or_json(r#"{"Rules":[{"ObjectOwnership":"ObjectWriter"}]}"#).unwrap();
        assert_eq!(v["Rules"][0]["ObjectOwnership"], "ObjectWriter");
        assert!(shorthand_or_json("nonsense").is_err());
        assert!(shorthand_or_json("Rules=[{A=B}").is_err());
    }

    #[test]
    fn encryption_json_becomes_s3_xml() {
        let cfg = json!({"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"alias/MyKMSKey"},"BucketKeyEnabled":true}]});
        let x = encryption_xml(&cfg).unwrap();
        assert!(x.contains(
            "<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/MyKMSKey</KMSMasterKeyID>"
        ));
        assert!(x.contains("<BucketKeyEnabled>true</BucketKeyEnabled>"));
        assert!(encryption_xml(&json!({"Rules": []})).is_err());
    }
}
