//! `Range` headers that s3s would refuse. s3s parses `Range` strictly and answers 400 to
//! requests S3 serves: several ranges, which S3 does not serve and so answers with the
//! whole object (200), and invalid ranges, which RFC 9110 and S3 ignore. `range.rs` reads
//! them as S3 does; a GET or HEAD carrying one is served in two passes:
//!
//! 1. the request goes through s3s as sent (the header may be signed, so only s3s can check
//!    the signature), marked [`VerifyRange`]: the [`VerifyRoute`] then answers at once,
//!    with the verified access key ([`Verified`]) and nothing else;
//! 2. the request runs again with the header rewritten (one range) or removed, without its
//!    signature, carrying [`PreVerified`] with the caller of pass 1: `call::caller` takes
//!    the caller from it. Extensions never come from the wire, so only this module can
//!    vouch for a caller that way.
//!
//! A request that fails pass 1 (bad signature, expired URL) gets that answer unchanged.

use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result};

use super::super::access::SigVersion;
use super::super::range::{self, RangeHeader};
use super::call;

/// Marks pass 1 of a request whose `Range` header needs rewriting.
#[derive(Debug, Clone)]
struct VerifyRange;

/// What pass 1 found: the access key s3s verified (`None`: an anonymous request).
#[derive(Debug, Clone)]
struct Verified {
    access_key: Option<String>,
    sig: SigVersion,
}

/// On pass 2: the caller pass 1 verified.
#[derive(Debug, Clone)]
pub struct PreVerified {
    pub access_key: Option<String>,
    pub sig: SigVersion,
}

/// The `Range` header to send on pass 2 (`Some(None)`: none), if the request needs the
/// two passes: a GET or HEAD whose `Range` s3s's strict parser refuses.
fn rewrite<B>(req: &hyper::Request<B>) -> Option<Option<String>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return None;
    }
    let mut values = req.headers().get_all(hyper::header::RANGE).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(None); // two Range headers: no single range
    }
    let strict = value
        .to_str()
        .ok()
        .is_some_and(|v| s3s::dto::Range::parse(v).is_ok());
    if strict {
        return None;
    }
    Some(match range::parse(value.as_bytes()) {
        RangeHeader::Single(r) => Some(r.to_header()),
        RangeHeader::Whole => None,
    })
}

/// The query without the parameters of a presigned signature.
fn unsigned_query(query: &str) -> String {
    const SIGNATURE: [&str; 10] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
    ];
    query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            !SIGNATURE.iter().any(|s| s.eq_ignore_ascii_case(name))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Serves `req` in the two passes if its `Range` header needs it; `None` otherwise (then
/// `req` is handed back for the ordinary path).
pub async fn serve_rewritten(
    svc: &s3s::service::S3Service,
    req: hyper::Request<Body>,
) -> Result<hyper::Response<Body>, hyper::Request<Body>> {
    let Some(new_range) = rewrite(&req) else {
        return Err(req);
    };
    let (parts, _body) = req.into_parts();
    let mut first = hyper::Request::new(Body::empty());
    *first.method_mut() = parts.method.clone();
    *first.uri_mut() = parts.uri.clone();
    *first.version_mut() = parts.version;
    *first.headers_mut() = parts.headers.clone();
    *first.extensions_mut() = parts.extensions.clone();
    first.extensions_mut().insert(VerifyRange);
    let answer = match svc.call(first).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "s3s failed");
            let mut r = hyper::Response::new(Body::empty());
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(r);
        }
    };
    let Some(verified) = answer.extensions().get::<Verified>().cloned() else {
        return Ok(answer); // refused before the route: that is the answer
    };
    let mut uri = parts.uri.path().to_string();
    if let Some(q) = parts.uri.query() {
        let q = unsigned_query(q);
        if !q.is_empty() {
            uri.push('?');
            uri.push_str(&q);
        }
    }
    let mut second = hyper::Request::new(Body::empty());
    *second.method_mut() = parts.method;
    *second.version_mut() = parts.version;
    *second.uri_mut() = uri.parse().unwrap_or(parts.uri);
    let mut headers = parts.headers;
    headers.remove(hyper::header::AUTHORIZATION);
    headers.remove(hyper::header::RANGE);
    if let Some(r) = new_range.and_then(|r| hyper::header::HeaderValue::from_str(&r).ok()) {
        headers.insert(hyper::header::RANGE, r);
    }
    *second.headers_mut() = headers;
    *second.extensions_mut() = parts.extensions;
    second.extensions_mut().insert(PreVerified {
        access_key: verified.access_key,
        sig: verified.sig,
    });
    Ok(match svc.call(second).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "s3s failed");
            let mut r = hyper::Response::new(Body::empty());
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    })
}

/// The route of pass 1: reached only once s3s has verified the request's signature.
pub struct VerifyRoute;

#[async_trait::async_trait]
impl S3Route for VerifyRoute {
    fn is_match(
        &self,
        _method: &hyper::Method,
        _uri: &hyper::Uri,
        _headers: &hyper::HeaderMap,
        extensions: &mut hyper::http::Extensions,
    ) -> bool {
        extensions.get::<VerifyRange>().is_some()
    }

    /// Anonymous requests pass too: the operation decides on pass 2, as for any request.
    async fn check_access(&self, _req: &mut S3Request<Body>) -> S3Result<()> {
        Ok(())
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        call::check_presigned_expiry(req.uri.query()).map_err(s3s::S3Error::from)?;
        let mut r = S3Response::new(Body::empty());
        r.extensions.insert(Verified {
            access_key: req.credentials.as_ref().map(|c| c.access_key.clone()),
            sig: call::sig_version(&req.headers, &req.uri),
        });
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(range: &[&str]) -> hyper::Request<()> {
        let mut b = hyper::Request::builder().method("GET").uri("/b/k");
        for r in range {
            b = b.header("range", *r);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_ranges_s3s_refuses_take_two_passes() {
        assert_eq!(rewrite(&get(&[])), None);
        assert_eq!(rewrite(&get(&["bytes=0-9"])), None);
        assert_eq!(rewrite(&get(&["bytes=-9"])), None);
        assert_eq!(rewrite(&get(&["bytes=0-1,3-4"])), Some(None));
        assert_eq!(rewrite(&get(&["bytes=9-2"])), Some(None));
        assert_eq!(rewrite(&get(&["pages=1-2"])), Some(None));
        assert_eq!(rewrite(&get(&["bytes=0-1", "bytes=2-3"])), Some(None));
        assert_eq!(
            rewrite(&get(&["bytes = 0-9 "])),
            Some(Some("bytes=0-9".to_string()))
        );
        let put = hyper::Request::builder()
            .method("PUT")
            .uri("/b/k")
            .header("range", "bytes=0-1,3-4")
            .body(())
            .unwrap();
        assert_eq!(rewrite(&put), None);
    }

    #[test]
    fn presigned_signatures_leave_the_query() {
        assert_eq!(
            unsigned_query("partNumber=2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2Fb&X-Amz-Date=1&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=ff&versionId=null"),
            "partNumber=2&versionId=null"
        );
        assert_eq!(unsigned_query("AWSAccessKeyId=A&Expires=1&Signature=s"), "");
    }
}
