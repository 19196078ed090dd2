//! KMS and CloudTrail over AWS JSON 1.1: the operation types are kmsd's
//! (`kmsd::api`), which decode themselves from the body and encode their responses;
//! the service's row in [`JsonService`] (target prefix, signing name) is all that
//! differs between the two.

use hyper::body::Incoming;
use kmsd::api::Request;
use kmsd::protocol::ErrorCode;

use crate::endpoint::credentials::{self, Origin};
use crate::endpoint::protocol::{json, Failure};
use crate::endpoint::route::JsonService;
use crate::endpoint::sigv4::RequestParts;
use crate::endpoint::{now_secs, read_body, request_id, respond, Body, Endpoint, MAX_BODY};

/// Serves one JSON 1.1 request (`service` None: a target prefix atrest does not serve).
pub async fn handle(
    ep: &Endpoint,
    rp: &RequestParts<'_>,
    headers: &hyper::HeaderMap,
    body: Incoming,
    service: Option<JsonService>,
    target: &str,
    origin: Origin,
) -> hyper::Response<Body> {
    let rid = request_id();
    match serve(ep, rp, headers, body, service, target, origin).await {
        Ok(out) => respond(200, json::CONTENT_TYPE, out, &rid),
        Err(f) => {
            let r = json::render(&f);
            tracing::debug!(target, code = %r.code, status = r.status, "JSON request refused");
            respond(r.status, json::CONTENT_TYPE, json::error_body(&r), &rid)
        }
    }
}

async fn serve(
    ep: &Endpoint,
    rp: &RequestParts<'_>,
    headers: &hyper::HeaderMap,
    body: Incoming,
    service: Option<JsonService>,
    target: &str,
    origin: Origin,
) -> Result<Vec<u8>, Failure> {
    // The router chose the service by this prefix; stripping it again keeps the slice safe
    // even if the two ever disagree.
    let Some((service, operation)) =
        service.and_then(|s| Some((s, target.strip_prefix(s.target_prefix())?)))
    else {
        return Err(Failure::UnknownOperation(format!(
            "atrest does not serve the operation {target}: it serves KMS (TrentService.*) and CloudTrail LookupEvents over AWS JSON 1.1"
        )));
    };
    let pending = credentials::begin(
        &ep.kmsd,
        &ep.keys,
        rp,
        now_secs(),
        service.signing_name(),
        &[ep.region.as_str()],
    )
    .await?;
    let body = read_body(headers, body, MAX_BODY).await?;
    let verified = pending.finish(rp, &body, origin).await?;
    let request = Request::from_aws_json_of(service.api_service(), operation, &body).map_err(
        |e| match e.code {
            ErrorCode::UnknownOperationException => Failure::UnknownOperation(e.message),
            _ => Failure::Service(e),
        },
    )?;
    let response = verified.call_kmsd(&ep.kmsd, request).await?;
    response
        .to_aws_json()
        .map_err(|e| Failure::Internal(format!("cannot encode the response: {}", e.message)))
}
