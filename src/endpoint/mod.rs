//! The AWS endpoint: one HTTP listener in front of every service, so the `aws` CLI,
//! boto3 and the AWS SDKs reach atrest with nothing but `AWS_ENDPOINT_URL`.
//!
//! The endpoint owns the wire, nothing else; the services stay where they are and the
//! endpoint is one more client of them that speaks for the signer:
//!
//! - [`listener`]: TCP (TLS beyond loopback), connection limits, the address file;
//! - [`route`]: which protocol and service a request is for, from its headers;
//! - [`sigv4`]: verifying SigV4 signatures (pure);
//! - [`credentials`]: resolving an access key to its secret and principal (kmsd keeps
//!   them; the endpoint keeps those that signed, kmsd re-checking each in the call)
//!   and the two-step check around reading the body;
//! - [`protocol`]: the wire formats (AWS JSON 1.1, Query, EC2 Query) and their errors;
//! - [`services`]: the services behind them: KMS and CloudTrail (JSON), STS and IAM
//!   (Query) as calls to kmsd for the signer, EC2 (EC2 Query) as calls to ec2.sock
//!   for the signer, S3 in process (`crate::s3::http`).
//!
//! Every request to a JSON or Query service goes through the same steps: route,
//! authenticate what can be before the body (signature syntax, time window, scope, the
//! key exists), read the body (refused from its `Content-Length` when over 1 MiB,
//! else read at most 1 MiB), verify the signature, decode, call kmsd with the
//! [`kmsd::protocol::Signer`], encode. Each failure is answered in the protocol's own
//! shape; unauthenticated requests cost no kmsd work beyond one lookup, no body read
//! when they are not signed, and log at debug level only. A signed request whose key
//! is kept costs one kmsd round trip: the call.
//!
//! The runtime ([`run`]) is tokio's multi-thread runtime at its default, a worker per
//! core (`TOKIO_WORKER_THREADS` overrides it, as tokio reads it), for every service on
//! the port alike. A request's task makes its kmsd and ec2.sock calls itself (no hop to
//! another thread, [`framed`]); S3's encryption, hashing and disk I/O run on the
//! blocking pool (`spawn_blocking`), never on a worker. One worker (a current-thread
//! runtime would be the same shape: every task on one thread) cuts the system calls a
//! request from 7.4 to 5.4 and the futex wake-ups to almost none (session 7, `strace -c
//! -f`), but it was not faster: with the lean driver (`scripts/bench-endpoint.sh`'s, 8
//! clients, Decrypt), interleaved rounds gave 40.8k/s with two workers against 37.3k/s
//! with one (medians of 5, session 8, load ~9), and the endpoint's CPU a request about
//! the same (15-18 us); a second worker lets the endpoint use the core kmsd and the
//! client leave idle. S3 gained nothing from one worker either (`scripts/bench-s3.sh
//! --size-mib 256`, two passes a shape, load 6-11: boto3's multipart PUT 314 and 200
//! MiB/s with two workers, 280 and 189 with one; its ranged GET 726 and 301 against 757
//! and 409: the noise of the box). So the shape is the default; a knob would have no
//! case to serve.

pub mod credentials;
pub mod framed;
pub mod listener;
pub mod protocol;
pub mod route;
pub mod services;
pub mod sigv4;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use credentials::{Kmsd, Origin};
use protocol::Failure;
use route::Route;
use sigv4::RequestParts;

/// The response body type (S3's handlers stream theirs).
pub type Body = s3s::Body;

/// The largest body a JSON or Query request may have.
pub const MAX_BODY: usize = 1 << 20;

/// What every request needs.
pub struct Endpoint {
    pub kmsd: Arc<Kmsd>,
    /// The access keys resolved for earlier requests (`credentials`).
    pub keys: credentials::Keys,
    /// The volume service's socket, pooled (EC2 requests go there for the signer).
    pub ec2: framed::Pool,
    /// The object service (`None`: S3 requests are answered `NotImplemented`).
    pub s3: Option<s3s::service::S3Service>,
    /// The region credential scopes must name (kmsd's).
    pub region: String,
}

/// A fresh request id (`x-amzn-RequestId`): a version 4 UUID from the thread's
/// generator (`Uuid::new_v4` asks the kernel for every one: a system call a request).
pub fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A response with a body and its content type.
pub fn respond(
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    rid: &str,
) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Body::from(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// Reads a body of at most `limit` bytes: refused from its `Content-Length` before a
/// byte is read, or as soon as more than `limit` bytes have come.
pub async fn read_body(
    headers: &hyper::HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, Failure> {
    let announced = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(Failure::TooLarge { limit });
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Failure::TooLarge { limit })
        }
        Err(e) => Err(Failure::Malformed(format!(
            "Cannot read the request body: {e}"
        ))),
    }
}

impl Endpoint {
    /// Serves one request from `peer`.
    pub async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<Body> {
        let (parts, body) = req.into_parts();
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let rp = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
        };
        let origin = Origin {
            source_ip: peer.ip().to_string(),
            user_agent: parts
                .headers
                .get(hyper::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let expect = ExpectContinue::of(&parts.headers);
        let mut response = match route::route(&rp) {
            Route::Json { service, target } => {
                services::json::handle(self, &rp, &parts.headers, body, service, target, origin)
                    .await
            }
            Route::Query { scope } => {
                services::query::handle(self, &rp, &parts.headers, body, scope.as_deref(), origin)
                    .await
            }
            Route::S3 => {
                drop(headers);
                services::s3::handle(self, hyper::Request::from_parts(parts, body)).await
            }
        };
        if expect.closes_after(response.status()) {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// A request that asked for `100 Continue` and may get its final answer without one.
///
/// hyper sends `100 Continue` when a handler first reads the body, and never for an
/// empty body; a request refused before its body is read gets none either. That is
/// HTTP/1.1 as written, but botocore (the `aws` CLI, boto3) then takes the status line
/// it read while waiting as that request's status and keeps it on the connection: the
/// next request on the same kept-alive connection that waits for `100 Continue` is
/// answered with the old status, its real status line is parsed as a header, and the
/// client waits for the connection to close (`aws s3 sync` of a tree with an empty file
/// failed with `'ETag'` after 30 s, one run in three). So those answers close the
/// connection, which resets botocore's state; a request whose body was read (a
/// success with a body) keeps the connection.
#[derive(Clone, Copy)]
struct ExpectContinue {
    asked: bool,
    empty_body: bool,
}

impl ExpectContinue {
    fn of(headers: &hyper::HeaderMap) -> Self {
        let asked = headers
            .get(hyper::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let empty_body = headers.get(hyper::header::TRANSFER_ENCODING).is_none()
            && headers
                .get(hyper::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        ExpectContinue { asked, empty_body }
    }

    fn closes_after(self, status: hyper::StatusCode) -> bool {
        self.asked && (self.empty_body || !status.is_success())
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] kmsd::client::site::ConfigError),
    #[error("cannot create {path}: {source}", path = .path.display())]
    Home {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the object store: {0}")]
    Store(#[source] crate::s3::store::StoreError),
    #[error("the object store is in use: an endpoint already serves this home at {url}; stop it first (atrest down)")]
    StoreInUse { url: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
}

/// How `atrest serve` runs the endpoint.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: Option<listener::TlsFiles>,
}

/// Runs the endpoint of `layout` in the foreground until SIGTERM or SIGINT.
pub fn run(
    layout: &plumbing::home::Layout,
    kmsd_socket: &std::path::Path,
    opts: ServeOptions,
) -> Result<(), StartError> {
    plumbing::durable::ensure_dir(&layout.root, 0o700).map_err(|source| StartError::Home {
        path: layout.root.clone(),
        source,
    })?;
    // The region credential scopes must name is kmsd's (the same config file).
    let config = kmsd::client::site::SiteConfig::load(&layout.config())?;
    // Refused before the store is opened (a second store would sweep the first's uploads).
    if opts.tls.is_none() && !opts.listen.ip().is_loopback() {
        return Err(listener::ListenError::NeedsTls { addr: opts.listen }.into());
    }
    let kmsd = Kmsd::new(kmsd_socket);
    let s3 = match services::s3::open(layout, &kmsd) {
        Ok(s) => s,
        Err(e @ crate::s3::store::StoreError::InUse { .. }) => {
            return Err(match listener::live_endpoint(&layout.endpoint_url_file()) {
                Some(url) => StartError::StoreInUse { url },
                None => StartError::Store(e),
            })
        }
        Err(e) => return Err(StartError::Store(e)),
    };
    let endpoint = Arc::new(Endpoint {
        kmsd,
        keys: credentials::Keys::default(),
        ec2: framed::Pool::new(&layout.ec2_socket(), crate::ec2::protocol::MAX_FRAME),
        s3: Some(s3),
        region: config.region.clone(),
    });
    // A worker per core: see the module docs for why not one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let listen = listener::ListenOptions {
        addr: opts.listen,
        tls: opts.tls,
        url_file: layout.endpoint_url_file(),
        addr_file: Some(layout.s3_addr_file()),
    };
    runtime.block_on(listener::serve(endpoint, listen, shutdown_signal()))?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let wait = |kind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = wait(SignalKind::terminate()) => {}
        () = wait(SignalKind::interrupt()) => {}
    }
}
