//! The endpoint around the operations: the s3s service (host parsing, signature
//! verification, access hook) and the finishing touches every response gets. The listener
//! is the AWS endpoint's (`crate::endpoint::listener`).

use std::sync::Arc;

use s3s::path::S3Path;
use s3s::{S3Error, S3Result};

use super::super::access::{Caller, Denial};
use super::super::audit;
use super::super::auth::Keyring;
use super::super::store::Store;
use super::super::xml;
use super::call::{new_request_id, RequestId};
use super::error::{error, ApiError};
use super::operations::{self, ObjectService, Target};

/// Decides, after s3s has verified the signature from the headers and resolved the
/// operation but before it reads any request body, whether the body may be read at all:
/// an operation atrest does not serve is `NotImplemented`, and an unsigned request is let
/// through only to the operations S3's ACLs can open to anyone (the table's `anonymous`
/// column), where the handler decides with [`access`](super::super::access) from the
/// bucket's settings, still before reading a byte of the body. (s3s's default check would
/// refuse every anonymous request, public objects included.)
struct BodyGate {
    trail: Arc<audit::Trail>,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for BodyGate {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let name = cx.s3_op().name();
        let Some(op) = operations::operation(name) else {
            return Err(error(
                "NotImplemented",
                501,
                format!("{name} is not implemented by atrest"),
            ));
        };
        if op.anonymous || cx.credentials().is_some() {
            return Ok(());
        }
        let refusal = S3Error::from(ApiError::from(Denial::AccessDenied));
        if op.recorded {
            let target = match cx.s3_path() {
                S3Path::Root => Target::default(),
                S3Path::Bucket { bucket } => Target {
                    bucket: Some(bucket.to_string()),
                    key: None,
                },
                S3Path::Object { bucket, key } => Target {
                    bucket: Some(bucket.to_string()),
                    key: Some(key.to_string()),
                },
            };
            let rid = cx
                .extensions_mut()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            operations::record(
                &self.trail,
                op.name,
                &Caller::Anonymous,
                &rid,
                &target,
                Some(&refusal),
            );
        }
        Err(refusal)
    }
}

/// Requests refused from their headers before s3s sees them, because s3s would read
/// their bodies before checking a signature: browser POST uploads (s3s parses the form to
/// find the signature; atrest does not serve PostObject) and SigV4 scoped to `sts`
/// (s3s hashes the body itself; this endpoint serves S3 only).
fn refuse_before_s3s(req: &hyper::Request<s3s::Body>) -> Option<S3Error> {
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if req.method() == hyper::Method::POST
        && header(hyper::header::CONTENT_TYPE)
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    {
        return Some(error(
            "NotImplemented",
            501,
            "atrest does not accept browser-based POST uploads (PostObject)",
        ));
    }
    let auth = header(hyper::header::AUTHORIZATION);
    if auth.starts_with("AWS4-") {
        let service = auth
            .split_once("Credential=")
            .and_then(|(_, c)| c.split([',', ' ']).next())
            .and_then(|c| c.split('/').nth(3));
        if service.is_some_and(|s| s != "s3") {
            return Some(error(
                "InvalidRequest",
                400,
                "This endpoint serves S3: the credential scope must name service s3",
            ));
        }
    }
    None
}

/// Virtual-hosted-style addressing: `BUCKET.localhost[:port]` (and the AWS names); any other
/// host, IP literals included, is path-style.
struct LoopbackHost {
    domains: Vec<&'static str>,
}

impl s3s::host::S3Host for LoopbackHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        for d in &self.domains {
            if name == *d {
                return Ok(s3s::host::VirtualHost::new(*d));
            }
            if let Some(bucket) = name.strip_suffix(d).and_then(|b| b.strip_suffix('.')) {
                if !bucket.is_empty() {
                    return Ok(s3s::host::VirtualHost::new(*d).with_bucket(bucket));
                }
            }
        }
        Ok(s3s::host::VirtualHost::new(name))
    }
}

/// Builds the s3s service over a store and a keyring.
pub fn build_service(
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: audit::Trail,
) -> s3s::service::S3Service {
    build_service_with(store, keyring, trail, s3s::config::S3Config::default())
}

/// As [`build_service`], with explicit s3s settings (tests widen the clock-skew window to
/// verify AWS's dated example signatures).
pub fn build_service_with(
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: audit::Trail,
    config: s3s::config::S3Config,
) -> s3s::service::S3Service {
    let trail = Arc::new(trail);
    let mut b = s3s::service::S3ServiceBuilder::new(ObjectService::new(
        store,
        Arc::clone(&keyring),
        Arc::clone(&trail),
    ));
    b.set_auth(KeyringAuth(keyring));
    b.set_access(BodyGate { trail });
    b.set_route(super::range_header::VerifyRoute);
    b.set_host(LoopbackHost {
        domains: vec![
            "s3.localhost",
            "localhost",
            "s3.us-east-1.amazonaws.com",
            "s3.amazonaws.com",
        ],
    });
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    b.build()
}

/// `Arc<Keyring>` as the s3s auth provider.
struct KeyringAuth(Arc<Keyring>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyringAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        s3s::auth::S3Auth::get_secret_key(self.0.as_ref(), access_key).await
    }
}

/// S3's messages for errors s3s raises without one.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "AccessDenied" => "Access Denied",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidURI" => "Couldn't parse the specified URI.",
        "KeyTooLongError" => "Your key is too long",
        "InvalidRequest" => "Invalid Request",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "RequestTimeTooSkewed" => "The difference between the request time and the current time is too large.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        _ => return None,
    })
}

/// Serves one request: runs s3s, then gives every response an `x-amz-request-id` and every
/// XML error a `Message` and `RequestId`, as S3 does.
pub async fn handle(
    svc: &s3s::service::S3Service,
    req: hyper::Request<s3s::Body>,
) -> hyper::Response<s3s::Body> {
    let rid = new_request_id();
    let is_head = req.method() == hyper::Method::HEAD;
    finish_response(respond(svc, req, &rid).await, &rid, is_head)
}

/// The response s3s (or the refusals before it) gives.
async fn respond(
    svc: &s3s::service::S3Service,
    mut req: hyper::Request<s3s::Body>,
    rid: &str,
) -> hyper::Response<s3s::Body> {
    if let Some(e) = refuse_before_s3s(&req) {
        return error_response(e);
    }
    req.extensions_mut().insert(RequestId(rid.to_string()));
    // A batch delete's body is digested on its way into s3s (batch_delete.rs).
    let req = super::batch_delete::tap(req);
    // A Range header s3s would refuse is served as S3 serves it (range_header.rs).
    let req = match super::range_header::serve_rewritten(svc, req).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    match svc.call(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "s3s failed");
            let mut r = hyper::Response::new(s3s::Body::empty());
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// An S3 error as an XML response (`finish_response` adds its message and request id).
fn error_response(e: S3Error) -> hyper::Response<s3s::Body> {
    let status = e.status_code().unwrap_or(hyper::StatusCode::BAD_REQUEST);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code>{}</Error>",
        e.code().as_str(),
        e.message()
            .map(|m| format!("<Message>{}</Message>", xml::escape(m)))
            .unwrap_or_default()
    );
    let mut r = hyper::Response::new(s3s::Body::from(xml));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    r
}

fn finish_response(
    mut resp: hyper::Response<s3s::Body>,
    rid: &str,
    is_head: bool,
) -> hyper::Response<s3s::Body> {
    if let Ok(v) = hyper::header::HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    // s3s answers every HeadObject 200; S3 answers a HEAD of a range or part 206, as the GET.
    if is_head
        && resp.status() == hyper::StatusCode::OK
        && resp.headers().contains_key(hyper::header::CONTENT_RANGE)
    {
        *resp.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
    }
    // A conditional GET or HEAD answered 304 (conditions.rs) carries no body.
    if resp.status() == hyper::StatusCode::NOT_MODIFIED {
        *resp.body_mut() = s3s::Body::empty();
        resp.headers_mut().remove(hyper::header::CONTENT_LENGTH);
        resp.headers_mut().remove(hyper::header::CONTENT_TYPE);
        return resp;
    }
    if resp.status().is_success() || is_head {
        return resp;
    }
    let Some(bytes) = resp.body().bytes() else {
        return resp;
    };
    let Ok(xml) = std::str::from_utf8(&bytes) else {
        return resp;
    };
    if !xml.contains("<Error>") || !xml.ends_with("</Error>") {
        return resp;
    }
    let mut xml = xml.to_string();
    if !xml.contains("<Message>") {
        let code = xml
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        if let Some(msg) = default_message(&code) {
            let at = xml
                .find("</Code>")
                .map_or(xml.len(), |i| i + "</Code>".len());
            xml.insert_str(at, &format!("<Message>{msg}</Message>"));
        }
    }
    if !xml.contains("<RequestId>") {
        let at = xml.len() - "</Error>".len();
        xml.insert_str(at, &format!("<RequestId>{rid}</RequestId>"));
    }
    let len = xml.len();
    *resp.body_mut() = s3s::Body::from(xml);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(hyper::header::CONTENT_LENGTH, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_get_message_and_request_id() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        let mut r = hyper::Response::new(s3s::Body::from(body.to_string()));
        *r.status_mut() = hyper::StatusCode::FORBIDDEN;
        let r = finish_response(r, "ABC123", false);
        let out = String::from_utf8(r.body().bytes().unwrap().to_vec()).unwrap();
        assert!(out.contains("<Message>The request signature we calculated"));
        assert!(out.ends_with("<RequestId>ABC123</RequestId></Error>"));
        assert_eq!(r.headers()["x-amz-request-id"], "ABC123");
    }
}
