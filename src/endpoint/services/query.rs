//! STS, IAM and EC2 over the Query protocol (EC2's in its own dialect): the form is
//! decoded per the vendored botocore model into the operation's AWS JSON input, which
//! the service's operation types read (kmsd's `Request::from_aws_json_of` for STS and
//! IAM, the volume service's through [`super::ec2`]), and the typed response, as JSON,
//! is written as XML per the model. A service is one row of [`QueryService`].
//!
//! Adding an operation (STS or IAM) needs no code here:
//! 1. its request/response types and handler in kmsd (`kmsd/src/api`, its recipe), with
//!    `SERVICE = Service::Sts` or `Service::Iam` and botocore's member names;
//! 2. its name in `OPERATIONS` of `scripts/vendor-botocore-models.py` (one table line;
//!    the IAM and STS operations of issue 13 are already there), then rerun the script.
//!
//! EC2: the same two steps with the volume service's types (`src/ec2/api`).
//!
//! Routing is by the credential scope's service (`sts`, `iam`, `ec2`), else by which
//! model has the `Action`. An operation the service has not is answered
//! `InvalidAction` in the dialect's shape.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use kmsd::api::Request;
use kmsd::protocol::ErrorCode;
use serde_json::Value;

use crate::endpoint::credentials::{self, Origin};
use crate::endpoint::protocol::model::{self, Model};
use crate::endpoint::protocol::query::{self, Dialect, TimestampRepr};
use crate::endpoint::protocol::{ec2query, Failure, Rendered};
use crate::endpoint::sigv4::{AuthError, RequestParts};
use crate::endpoint::{now_secs, read_body, request_id, respond, Body, Endpoint, MAX_BODY};

/// A Query service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryService {
    Sts,
    Iam,
    Ec2,
}

impl QueryService {
    pub const ALL: [QueryService; 3] = [QueryService::Sts, QueryService::Iam, QueryService::Ec2];

    pub fn model(self) -> &'static Model {
        match self {
            QueryService::Sts => model::sts(),
            QueryService::Iam => model::iam(),
            QueryService::Ec2 => model::ec2(),
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            QueryService::Ec2 => Dialect::Ec2,
            _ => Dialect::Query,
        }
    }

    /// kmsd's service of the operations (`None`: the volume service's, EC2).
    fn api_service(self) -> Option<kmsd::api::Service> {
        match self {
            QueryService::Sts => Some(kmsd::api::Service::Sts),
            QueryService::Iam => Some(kmsd::api::Service::Iam),
            QueryService::Ec2 => None,
        }
    }

    /// The service whose credential scope this is.
    fn from_scope(scope: &str) -> Option<QueryService> {
        Self::ALL
            .into_iter()
            .find(|s| s.model().signing_name() == scope)
    }

    /// The service that has an `Action` (for an unsigned request's error).
    fn from_action(action: &str) -> Option<QueryService> {
        Self::ALL
            .into_iter()
            .find(|s| s.model().operations.contains_key(action))
    }

    fn render(self, f: &Failure) -> Rendered {
        match self.dialect() {
            Dialect::Query => query::render(self.model(), f),
            Dialect::Ec2 => ec2query::render(f),
        }
    }

    fn error_body(self, r: &Rendered, rid: &str) -> Vec<u8> {
        query::error(
            self.dialect(),
            &self.model().namespace(),
            &r.code,
            &r.message,
            r.server_fault(),
            rid,
        )
    }
}

/// Serves one Query request; `scope` is its credential scope's service, if signed.
pub async fn handle(
    ep: &Endpoint,
    rp: &RequestParts<'_>,
    headers: &hyper::HeaderMap,
    body: Incoming,
    scope: Option<&str>,
    origin: Origin,
) -> hyper::Response<Body> {
    let rid = request_id();
    let url_params = query::parse_form(rp.query.as_bytes()).unwrap_or_default();
    let service = match scope {
        Some(s) => QueryService::from_scope(s),
        None => query::action(&url_params).and_then(QueryService::from_action),
    };
    let result = match (service, scope) {
        (Some(svc), _) => serve(ep, svc, rp, headers, body, url_params, origin, &rid).await,
        (None, Some(other)) => Err(Failure::Auth(AuthError::Scope(format!(
            "Credential should be scoped to correct service: this request is for the Query protocol (sts, iam or ec2), not '{other}'."
        )))),
        (None, None) => Err(Failure::Auth(AuthError::Missing)),
    };
    let svc = service.unwrap_or(QueryService::Sts);
    match result {
        Ok(xml) => respond(200, "text/xml", xml, &rid),
        Err(f) => {
            let r = svc.render(&f);
            tracing::debug!(code = %r.code, status = r.status, "Query request refused");
            respond(r.status, "text/xml", svc.error_body(&r, &rid), &rid)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    ep: &Endpoint,
    svc: QueryService,
    rp: &RequestParts<'_>,
    headers: &hyper::HeaderMap,
    body: Incoming,
    mut params: Vec<(String, String)>,
    origin: Origin,
    rid: &str,
) -> Result<Vec<u8>, Failure> {
    let started = Instant::now();
    let model = svc.model();
    // IAM and STS are global: SDKs sign them for us-east-1 whatever their region.
    let regions = [ep.region.as_str(), "us-east-1"];
    let pending = credentials::begin(
        &ep.kmsd,
        &ep.keys,
        rp,
        now_secs(),
        model.signing_name(),
        &regions,
    )
    .await?;
    let body = read_body(headers, body, MAX_BODY).await?;
    let verified = pending.finish(rp, &body, origin).await?;
    params.extend(query::parse_form(&body).map_err(|e| Failure::Malformed(e.to_string()))?);
    let timestamps = match svc.dialect() {
        Dialect::Query => TimestampRepr::EpochSeconds,
        Dialect::Ec2 => TimestampRepr::Text,
    };
    let decoded =
        query::decode(model, svc.dialect(), timestamps, &params).map_err(|e| match e {
            query::DecodeError::InvalidParameter(m) => Failure::InvalidParameter(m),
            query::DecodeError::MalformedQuery(m) => Failure::Malformed(m),
            // EC2's words for an action it has not.
            query::DecodeError::InvalidAction(a, _) if svc == QueryService::Ec2 => {
                Failure::UnknownOperation(format!(
                    "The action {a} is not valid for this web service."
                ))
            }
            other => Failure::UnknownOperation(other.to_string()),
        })?;
    let Some(api) = svc.api_service() else {
        let decoded_at = Instant::now();
        let value = verified
            .call(|signer| super::ec2::call(&ep.ec2, &decoded.action, decoded.input, signer))
            .await?;
        let called_at = Instant::now();
        let xml = query::encode(model, svc.dialect(), &decoded.action, &value, rid)
            .map_err(|e| Failure::Internal(format!("cannot encode the response: {e}")))?;
        // Where an EC2 request's time goes on our side (bench-ec2 reads these lines to
        // tell the endpoint's service time from the client's): signature check and form
        // decoding, the ec2.sock call (the volume service's work), the XML.
        tracing::debug!(
            action = %decoded.action,
            auth_decode_us = micros(decoded_at - started),
            ec2_sock_us = micros(called_at - decoded_at),
            encode_us = micros(called_at.elapsed()),
            total_us = micros(started.elapsed()),
            "EC2 request served"
        );
        return Ok(xml);
    };
    let input = serde_json::to_vec(&decoded.input)
        .map_err(|e| Failure::Internal(format!("cannot re-encode the input: {e}")))?;
    let request =
        Request::from_aws_json_of(api, &decoded.action, &input).map_err(|e| match e.code {
            ErrorCode::UnknownOperationException => Failure::UnknownOperation(format!(
                "Could not find operation {} for version {}: atrest does not implement it",
                decoded.action, model.metadata.api_version
            )),
            _ => Failure::Service(e),
        })?;
    let response = verified.call_kmsd(&ep.kmsd, request).await?;
    let json = response
        .to_aws_json()
        .map_err(|e| Failure::Internal(format!("cannot encode the response: {}", e.message)))?;
    let value: Value = serde_json::from_slice(&json)
        .map_err(|e| Failure::Internal(format!("cannot encode the response: {e}")))?;
    query::encode(model, svc.dialect(), &decoded.action, &value, rid)
        .map_err(|e| Failure::Internal(format!("cannot encode the response: {e}")))
}

/// Microseconds, for the debug lines.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
