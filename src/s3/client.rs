//! A SigV4-signing HTTP client of the object endpoint: the one code path the `atrest s3api`
//! and `atrest s3` commands use (the same requests `aws s3api --endpoint-url` would send).

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::auth::{self, AccessKey, AuthError, Payload, SigningConfig, ToSign};
use super::fetch::{self, FetchError, RawBody};

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (S3's rule).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, but `/` separates key segments in the path.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// The HTTP client's socket buffer, each way.
const IO_BUFFER: usize = 1 << 20;

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint answered with an S3 error.
    #[error("{code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error(
        "cannot reach the object endpoint at {endpoint}: {detail} (is `atrest s3 serve` running?)"
    )]
    Unreachable { endpoint: String, detail: String },
    #[error(
        "no object endpoint: {path} is missing or unreadable; start one with `atrest s3 serve`"
    )]
    NoEndpoint { path: PathBuf },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    /// Downloaded bytes that do not match the checksum the object is stored with (botocore's
    /// `FlexibleChecksumError` words), of the whole object or of one part of it.
    #[error("Expected checksum {expected} did not match calculated checksum: {computed}{}",
            part.map(|n| format!(" (part {n})")).unwrap_or_default())]
    ChecksumMismatch {
        expected: String,
        computed: String,
        part: Option<u32>,
    },
    #[error("{0}")]
    BadRequest(String),
    /// A failure of one call of a transfer made of several (`CreateMultipartUpload`,
    /// `UploadPart`, ...), named as the AWS CLI names it in `upload failed: ...`.
    #[error("{source}")]
    During {
        operation: &'static str,
        #[source]
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// Wraps a failure of `operation`, one call of a transfer made of several.
    pub fn during(operation: &'static str) -> impl Fn(ClientError) -> ClientError {
        move |e| ClientError::During {
            operation,
            source: Box::new(e),
        }
    }

    /// AWS-style error code for `report_error`.
    pub fn code(&self) -> String {
        match self {
            ClientError::During { source, .. } => source.code(),
            ClientError::Service { code, .. } => code.clone(),
            ClientError::Unreachable { .. } | ClientError::NoEndpoint { .. } => {
                "EndpointConnectionError".into()
            }
            ClientError::Auth(AuthError::Kmsd(e)) => e
                .code()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "EndpointConnectionError".into()),
            ClientError::Auth(_) => "InvalidAccessKeyId".into(),
            ClientError::Io(_) => "IOError".into(),
            ClientError::BadResponse(_) => "InvalidResponse".into(),
            ClientError::ChecksumMismatch { .. } => "FlexibleChecksumError".into(),
            ClientError::BadRequest(_) => "InvalidRequest".into(),
        }
    }

    /// The message part for `report_error`.
    pub fn message(&self) -> String {
        match self {
            ClientError::During { source, .. } => source.message(),
            ClientError::Service { message, .. } => message.clone(),
            ClientError::Auth(AuthError::Kmsd(e)) => match e.kms() {
                Some(k) => k.message.clone(),
                None => e.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// A request body.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A stream of exactly `len` bytes, sent with `UNSIGNED-PAYLOAD` (never buffered).
    Reader {
        reader: Box<dyn Read + Send + 'a>,
        len: u64,
    },
}

/// A successful response; the body is streamed.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: ResponseBody,
}

enum ResponseBody {
    Ureq(ureq::Body),
    /// From [`S3Client::get_object`]: still on the socket, ready to be spliced.
    Raw(RawBody),
}

/// A response body for a download.
pub enum BodyStream {
    /// Can move into a file with splice(2) ([`RawBody::splice_into`]).
    Spliceable(RawBody),
    Reader(Box<dyn Read + Send + 'static>),
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_reader(self) -> Box<dyn Read + Send + 'static> {
        match self.body {
            ResponseBody::Ureq(b) => Box::new(b.into_reader()),
            ResponseBody::Raw(r) => Box::new(r),
        }
    }

    pub fn into_stream(self) -> BodyStream {
        match self.body {
            ResponseBody::Ureq(b) => BodyStream::Reader(Box::new(b.into_reader())),
            ResponseBody::Raw(r) => BodyStream::Spliceable(r),
        }
    }

    /// The whole body as text (XML responses; bounded at 64 MiB).
    pub fn text(self) -> Result<String, ClientError> {
        let mut s = String::new();
        self.into_reader().take(64 << 20).read_to_string(&mut s)?;
        Ok(s)
    }
}

/// The endpoint and the credentials to sign with.
pub struct S3Client {
    endpoint: String,
    key: AccessKey,
    agent: ureq::Agent,
}

impl S3Client {
    /// Reads the endpoint address from `HOME/s3.addr` (or `$ATREST_S3_ENDPOINT`) and gets the
    /// access key of `principal` (default: the current user's) from kmsd.
    pub fn from_home(
        layout: &plumbing::home::Layout,
        principal: Option<&str>,
    ) -> Result<S3Client, ClientError> {
        let endpoint = match std::env::var("ATREST_S3_ENDPOINT") {
            Ok(e) if !e.is_empty() => e.trim_end_matches('/').to_string(),
            _ => {
                let path = layout.s3_addr_file();
                let addr = std::fs::read_to_string(&path)
                    .map_err(|_| ClientError::NoEndpoint { path: path.clone() })?;
                format!("http://{}", addr.trim())
            }
        };
        // The caller's own key (what `atrest env` prints), through kmsd: it checks that
        // this uid may act as `principal` and makes the key on first use.
        let key = auth::own_access_key(&layout.kmsd_socket(), principal)?;
        Ok(S3Client::new(endpoint, key))
    }

    pub fn new(endpoint: String, key: AccessKey) -> S3Client {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .max_redirects(0)
            // S3 errors are answers with a body to parse, not transport failures.
            .http_status_as_error(false)
            // Large socket reads and writes: a 1 GiB object in 8 KiB steps costs more
            // system time than its encryption.
            .input_buffer_size(IO_BUFFER)
            .output_buffer_size(IO_BUFFER)
            .build()
            .new_agent();
        S3Client {
            endpoint,
            key,
            agent,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The path-style URL of a bucket or object, percent-encoded as S3 canonicalizes it
    /// (what the signature covers).
    pub fn url(&self, bucket: Option<&str>, key: Option<&str>, query: &[(&str, &str)]) -> String {
        self.url_with(bucket, key, query, false)
    }

    /// The URL as sent. A key with `.` or `..` segments has its `/` sent as `%2F`: URL
    /// libraries would otherwise resolve those segments away (the endpoint decodes `%2F`, so
    /// the key and the signed canonical path are unchanged).
    fn wire_url(
        &self,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> Result<String, ClientError> {
        let dotted = key.is_some_and(|k| k.split('/').any(|seg| seg == "." || seg == ".."));
        if dotted && key.is_some_and(|k| k == "." || k == "..") {
            return Err(ClientError::BadRequest(format!(
                "the key {:?} cannot be sent in a URL; choose another key",
                key.unwrap_or_default()
            )));
        }
        Ok(self.url_with(bucket, key, query, dotted))
    }

    fn url_with(
        &self,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
        encode_slash: bool,
    ) -> String {
        let mut url = self.endpoint.clone();
        url.push('/');
        if let Some(b) = bucket {
            url.push_str(&utf8_percent_encode(b, QUERY).to_string());
            if let Some(k) = key {
                url.push('/');
                let set = if encode_slash { QUERY } else { PATH };
                url.push_str(&utf8_percent_encode(k, set).to_string());
            }
        }
        if !query.is_empty() {
            url.push('?');
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty()
                        && matches!(
                            *k,
                            "acl"
                                | "encryption"
                                | "publicAccessBlock"
                                | "ownershipControls"
                                | "uploads"
                                | "delete"
                                | "location"
                                | "versions"
                        )
                    {
                        // Sub-resources are sent bare, as the AWS CLI does (`?acl`).
                        utf8_percent_encode(k, QUERY).to_string()
                    } else {
                        format!(
                            "{}={}",
                            utf8_percent_encode(k, QUERY),
                            utf8_percent_encode(v, QUERY)
                        )
                    }
                })
                .collect();
            url.push_str(&q.join("&"));
        }
        url
    }

    /// Sends a SigV4-signed request; non-2xx answers become [`ClientError::Service`].
    pub fn send(
        &self,
        method: &str,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let mut all_headers: Vec<(String, String)> = headers.to_vec();
        let payload = match &body {
            Body::Empty => Payload::Bytes(b""),
            Body::Bytes(b) => Payload::Bytes(b),
            Body::Reader { .. } => Payload::Unsigned,
        };
        let len = match &body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Reader { len, .. } => *len,
        };
        if method == "PUT" || method == "POST" {
            all_headers.push(("content-length".into(), len.to_string()));
        }
        let (wire, all_headers) = self.signed(method, bucket, key, query, all_headers, payload)?;
        let mut req = ureq::http::Request::builder().method(method).uri(&wire);
        for (k, v) in &all_headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if matches!(body, Body::Reader { .. }) {
            // A streamed upload waits for the endpoint's go-ahead, so a request it refuses
            // up front (an unknown KMS key, Access Denied) gets that answer, not a broken
            // pipe halfway through sending the body. Not a signed header: it is hop-level.
            req = req.header("expect", "100-continue");
        }
        let unreachable = |detail: String| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        };
        let result = match body {
            Body::Empty => req.body(()).map(|r| self.agent.run(r)),
            Body::Bytes(b) => req.body(b).map(|r| self.agent.run(r)),
            Body::Reader { mut reader, .. } => req
                .body(ureq::SendBody::from_reader(&mut reader))
                .map(|r| self.agent.run(r)),
        }
        .map_err(|e| ClientError::BadRequest(format!("cannot build the request: {e}")))?;
        let r = match result {
            Ok(r) => r,
            // Only a connection that cannot be made means "is it running?"; any other
            // I/O error (reading the upload's file, a reset mid-body) is itself.
            Err(ureq::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::AddrNotAvailable
                ) =>
            {
                return Err(unreachable(e.to_string()))
            }
            Err(ureq::Error::Io(e)) => return Err(ClientError::Io(e)),
            Err(ureq::Error::ConnectionFailed) | Err(ureq::Error::HostNotFound) => {
                return Err(unreachable("connection failed".into()))
            }
            Err(e) => return Err(ClientError::BadResponse(e.to_string())),
        };
        let r = wrap(r);
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(service_error(method, r))
        }
    }

    /// The wire URL and every header to send (the caller's plus the SigV4 ones).
    fn signed(
        &self,
        method: &str,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
        mut headers: Vec<(String, String)>,
        payload: Payload<'_>,
    ) -> Result<(String, Vec<(String, String)>), ClientError> {
        let url = self.url(bucket, key, query);
        let wire = self.wire_url(bucket, key, query)?;
        let signed = auth::sign(
            &SigningConfig::s3(),
            &self.key,
            ToSign {
                method,
                url: &url,
                headers: &headers,
                payload,
                time: SystemTime::now(),
                session_token: None,
            },
        )?;
        headers.extend(signed.headers);
        Ok((wire, headers))
    }

    /// A signed GET of an object whose body is left on the socket, so a download can
    /// splice it into a file ([`BodyStream::Spliceable`]); see `fetch` for why.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Response, ClientError> {
        self.get_object_with(bucket, key, &[], Vec::new())
    }

    /// [`S3Client::get_object`] with a query (`partNumber`) and extra signed headers
    /// (`range`).
    pub fn get_object_with(
        &self,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: Vec<(String, String)>,
    ) -> Result<Response, ClientError> {
        let (wire, headers) = self.signed(
            "GET",
            Some(bucket),
            Some(key),
            query,
            headers,
            Payload::Bytes(b""),
        )?;
        let rest = wire.strip_prefix("http://").ok_or_else(|| {
            ClientError::BadRequest(format!("{} is not an http:// endpoint", self.endpoint))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (head, body) = fetch::get(authority, path, &headers).map_err(|e| match e {
            FetchError::Connect { source, .. } => ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: source.to_string(),
            },
            FetchError::Io(e) => ClientError::Io(e),
            FetchError::Head(m) => ClientError::BadResponse(m),
            FetchError::Request(m) => ClientError::BadRequest(m),
        })?;
        let r = Response {
            status: head.status,
            headers: head.headers,
            body: ResponseBody::Raw(body),
        };
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(service_error("GET", r))
        }
    }

    /// A presigned GET URL for an object, valid for `expires` (1 s to 7 days, as S3 allows).
    pub fn presign(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
    ) -> Result<String, ClientError> {
        let url = self.url(Some(bucket), Some(key), &[]);
        let wire = self.wire_url(Some(bucket), Some(key), &[])?;
        let mut cfg = SigningConfig::s3();
        cfg.presign_expires = Some(expires);
        let signed = auth::sign(
            &cfg,
            &self.key,
            ToSign {
                method: "GET",
                url: &url,
                headers: &[],
                payload: Payload::Unsigned,
                time: SystemTime::now(),
                session_token: None,
            },
        )?;
        let q: Vec<String> = signed
            .query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, QUERY),
                    utf8_percent_encode(v, QUERY)
                )
            })
            .collect();
        Ok(format!("{wire}?{}", q.join("&")))
    }
}

fn wrap(r: ureq::http::Response<ureq::Body>) -> Response {
    let (parts, body) = r.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Response {
        status: parts.status.as_u16(),
        headers,
        body: ResponseBody::Ureq(body),
    }
}

fn service_error(method: &str, r: Response) -> ClientError {
    let status = r.status;
    let request_id = r.header("x-amz-request-id").map(str::to_string);
    let mut body = String::new();
    if method != "HEAD" {
        let _ = r.into_reader().take(1 << 20).read_to_string(&mut body);
    }
    let tree = crate::s3::xml::parse(&body).ok();
    let field = |name: &str| {
        tree.as_ref()
            .and_then(|t| t.text_of(name))
            .map(str::to_string)
    };
    match field("Code") {
        Some(code) => ClientError::Service {
            status,
            code,
            message: field("Message").unwrap_or_default(),
            request_id: field("RequestId").or(request_id),
        },
        // HEAD errors have no body: the AWS CLI then reports the status, e.g. "(404) ... Not Found".
        None => ClientError::Service {
            status,
            code: status.to_string(),
            message: reason(status).to_string(),
            request_id,
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_asks_whether_the_endpoint_runs() {
        // Nothing listens on port 1 of the loopback.
        let c = S3Client::new(
            "http://127.0.0.1:1".into(),
            AccessKey {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                principal: "arn:aws:iam::111122223333:user/me".into(),
            },
        );
        let e = c
            .send("GET", Some("b"), Some("k"), &[], &[], Body::Empty)
            .err()
            .expect("nothing listens there");
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.code(), "EndpointConnectionError");
        assert!(e.to_string().contains("is `atrest s3 serve` running?"));
    }
}
