//! EC2 over the EC2 Query protocol: the form is decoded per the vendored botocore
//! model ([`super::query`]) into the operation's AWS JSON input, which the volume
//! service's own operation types read ([`crate::ec2::api::Request::from_aws_json`]);
//! the request goes to ec2.sock for the verified SigV4 signer, and the typed answer,
//! as the AWS JSON the CLI prints, is written back as EC2's XML.
//!
//! ec2.sock serves the request as the signer's principal (it trusts the signer only
//! from the endpoint's uids), so the KMS calls EC2 makes for it (GenerateDataKey for a
//! new volume, CreateGrant for a launch, ...) go to kmsd via ec2.amazonaws.com on that
//! principal's behalf and land in the trail as such; EC2's own events carry the
//! signer's access key, address and user agent.
//!
//! Adding an EC2 operation over HTTP: its types and handler in `src/ec2` (the
//! `operations!` table) and its name in `OPERATIONS` of
//! `scripts/vendor-botocore-models.py` (then rerun it). Nothing here.

use base64::Engine;
use kmsd::protocol::Signer;
use serde_json::Value;

use crate::ec2::api::{Request, Response};
use crate::ec2::client::ClientError;
use crate::ec2::error::KmsCode;
use crate::ec2::protocol::{RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION};
use crate::ec2::{Ec2Code, Ec2Error};
use crate::endpoint::framed::{CallError, Pool};
use crate::endpoint::protocol::Failure;

/// Calls `action` with `input` (its AWS JSON) on ec2.sock for `signer`, through the
/// endpoint's pool of ec2.sock connections ([`crate::endpoint::framed`]: on this task,
/// a connection reused; a read-only request is sent again once if its connection closed
/// unanswered, as `Ec2Client` does); the answer as the AWS JSON its output shape is
/// written from.
pub async fn call(
    ec2: &Pool,
    action: &str,
    input: Value,
    signer: Signer,
) -> Result<Value, Failure> {
    let request = match Request::from_aws_json(action, input) {
        None => {
            return Err(Failure::UnknownOperation(format!(
                "The action {action} is not valid for this web service."
            )))
        }
        Some(Err(e)) => return Err(Failure::Ec2(input_error(&e))),
        Some(Ok(r)) => r,
    };
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        act_as: None,
        request,
        signer: Some(signer),
    };
    let reply: Result<ResponseEnvelope, _> = ec2
        .call(&env, env.request.read_only(), |payload| {
            plumbing::frame::decode_versioned(payload, PROTOCOL_VERSION)
        })
        .await;
    let response = reply
        .map_err(|e| match e {
            CallError::Connect { path, source } => ClientError::NotRunning { path, source },
            CallError::Frame(e) => ClientError::Transport(e),
        })
        .and_then(|r| r.result.map_err(ClientError::Service))
        .map_err(client_failure)?;
    Ok(wire_output(&response))
}

/// A request the operation's type does not take: a required member missing is EC2's
/// `MissingParameter`, anything else `InvalidParameterValue`.
fn input_error(e: &serde_json::Error) -> Ec2Error {
    let text = e.to_string();
    match text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(member) => Ec2Error::missing_parameter(member),
        None => Ec2Error::invalid_parameter(format!("The request is invalid: {text}")),
    }
}

fn client_failure(e: ClientError) -> Failure {
    match e {
        // kmsd no longer accepts the signer's access key (`Kms::request_principal`):
        // answered as an unknown or expired key is, in EC2's words.
        ClientError::Service(e) if e.code == Ec2Code::Kms(KmsCode::UnrecognizedClientException) => {
            Failure::UnrecognizedClient
        }
        ClientError::Service(e) if e.code == Ec2Code::Kms(KmsCode::ExpiredTokenException) => {
            Failure::ExpiredToken
        }
        ClientError::Service(e) => Failure::Ec2(e),
        ClientError::NotRunning { path, .. } => Failure::Ec2(Ec2Error::new(
            Ec2Code::ServiceUnavailable,
            format!(
                "atrest's volume service is not running (nothing listens on {}): start it \
                 with `atrest up`",
                path.display()
            ),
        )),
        other => {
            tracing::error!(error = %other, "ec2.sock call failed");
            Failure::Internal(format!("atrest's volume service is not answering: {other}"))
        }
    }
}

/// The response as EC2's wire carries it: an operation without output is an empty
/// structure (DeregisterImage's says `Return`), and GetConsoleOutput's text is base64
/// (the SDKs decode it).
fn wire_output(response: &Response) -> Value {
    let mut out = response.to_aws_json();
    if out.is_null() {
        out = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = &mut out {
        match response {
            Response::GetConsoleOutput(o) => {
                let text = base64::engine::general_purpose::STANDARD.encode(o.output.as_bytes());
                map.insert("Output".into(), Value::String(text));
            }
            Response::DeregisterImage(()) => {
                map.insert("Return".into(), Value::Bool(true));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::api::GetConsoleOutputResult;

    #[test]
    fn missing_members_and_console_output() {
        let e = Request::from_aws_json("DeleteVolume", serde_json::json!({}))
            .and_then(Result::err)
            .map(|e| input_error(&e));
        assert_eq!(
            e.map(|e| (e.code, e.message)),
            Some((
                Ec2Code::MissingParameter,
                "The request must contain the parameter VolumeId".into()
            ))
        );
        let e = Request::from_aws_json("DeleteVolume", serde_json::json!({"VolumeId": 3}))
            .and_then(Result::err)
            .map(|e| input_error(&e).code);
        assert_eq!(e, Some(Ec2Code::InvalidParameterValue));
        let out = wire_output(&Response::GetConsoleOutput(GetConsoleOutputResult {
            instance_id: "i-1".into(),
            output: "booted\n".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
        }));
        assert_eq!(out["Output"], "Ym9vdGVkCg==");
        let none = wire_output(&Response::DeleteVolume(()));
        assert_eq!(none, serde_json::json!({}));
    }

    /// What the endpoint serves is exactly what the volume service has: every EC2
    /// operation of the vendored model has a request type, and every operation of the
    /// volume service but its local ones (atrest's own names) is in the model.
    #[test]
    fn the_model_and_the_service_agree() {
        let model = crate::endpoint::protocol::model::ec2();
        for op in model.operations.keys() {
            assert!(
                Request::from_aws_json(op, serde_json::json!({})).is_some(),
                "{op} is in the model but not a volume service operation"
            );
        }
        const LOCAL: [&str; 3] = ["Attach", "Detach", "Status"];
        for op in crate::ec2::api::OPERATIONS {
            assert_eq!(
                model.operations.contains_key(*op),
                !LOCAL.contains(op),
                "{op}: rerun scripts/vendor-botocore-models.py with it in OPERATIONS"
            );
        }
    }
}
