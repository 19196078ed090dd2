//! The AWS JSON 1.1 edge: requests decoded from a KMS client's body, responses and
//! errors encoded for it, and the CLI's printout of a response.
//!
//! Decoding goes through a `serde_json::Value` first: null members are dropped (AWS
//! treats `null` as absent), members AWS has but atrest does not implement are
//! refused ([`super::Operation::UNSUPPORTED`]), and every string of the value is
//! wiped afterwards, so a base64 plaintext does not linger in freed memory. Errors
//! carry their member's path (`serde_path_to_error`) in AWS's own wording. (A direct
//! read for bodies that could not need that pass was tried in session 7 and removed:
//! the scan deciding "could not need it" cost what the pass did, 6.5k against 6.7k
//! instructions per endpoint Decrypt.)
//!
//! Encoding writes the shape straight into the output through [`SkipNulls`], a
//! serializer that leaves out the members a `Value` pass would drop (null members), in
//! the shape's field order: no tree is built (a `Value` tree built, walked and wiped
//! was 7.2k of an endpoint Decrypt's instructions; this is 4.4k).

use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::types::{with_timestamp_style, TimestampStyle};
use super::Operation;
use crate::error::{ErrorCode, KmsError};

mod skip_nulls;

use skip_nulls::SkipNulls;

/// `UnknownOperationException` for an `X-Amz-Target` operation the service (or
/// atrest) has not.
pub fn unknown_operation(operation: &str) -> KmsError {
    KmsError::new(
        ErrorCode::UnknownOperationException,
        format!("Operation {operation} is not an operation of this service atrest implements"),
    )
}

fn serialization(message: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::SerializationException, message)
}

/// Drops `null` members of every object (not array elements: those are type errors).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Overwrites every string (a base64 plaintext among them) before the value drops.
fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Object(m) => m.values_mut().for_each(wipe),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        _ => {}
    }
}

/// AWS's member path in validation messages: `keyId`, `tags.1.member.tagKey`.
fn camel(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn aws_path(path: &serde_path_to_error::Path, leaf: Option<&str>) -> String {
    use serde_path_to_error::Segment;
    let mut parts: Vec<String> = Vec::new();
    for seg in path.iter() {
        match seg {
            Segment::Map { key } => parts.push(camel(key)),
            Segment::Seq { index } => {
                parts.push(index.saturating_add(1).to_string());
                parts.push("member".into());
            }
            Segment::Enum { variant } => parts.push(camel(variant)),
            Segment::Unknown => {}
        }
    }
    if let Some(l) = leaf {
        parts.push(camel(l));
    }
    parts.join(".")
}

/// The names between backticks of a serde message (`unknown variant `X`, expected `A` or `B``).
fn backticked(msg: &str) -> Vec<&str> {
    msg.split('`').skip(1).step_by(2).collect()
}

/// Maps a decoding error to AWS's: a missing required member or a value outside
/// its enum is a `ValidationException`, anything else a `SerializationException`.
fn classify(e: serde_path_to_error::Error<serde_json::Error>) -> KmsError {
    let msg = e.inner().to_string();
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let field = backticked(rest).first().copied().unwrap_or(rest);
        return KmsError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            aws_path(e.path(), Some(field))
        ));
    }
    if msg.starts_with("unknown variant ") {
        let names = backticked(&msg);
        if let Some((value, allowed)) = names.split_first() {
            return KmsError::validation(format!(
                "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                aws_path(e.path(), None),
                allowed.join(", ")
            ));
        }
    }
    let at = aws_path(e.path(), None);
    if at.is_empty() {
        serialization(format!("Cannot read the request: {msg}"))
    } else {
        serialization(format!("Cannot read member '{at}': {msg}"))
    }
}

fn decode_value<R: Operation>(value: &mut Value) -> Result<R, KmsError> {
    if !value.is_object() {
        return Err(serialization(
            "The request body must be a JSON object of the operation's members",
        ));
    }
    drop_nulls(value);
    for path in R::UNSUPPORTED {
        let set = path
            .split('.')
            .try_fold(&*value, |v, member| v.get(member))
            .is_some_and(|v| *v != Value::Bool(false));
        if set {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!(
                    "atrest does not support the {path} parameter of {}",
                    R::NAME
                ),
            ));
        }
    }
    serde_path_to_error::deserialize::<_, R>(&*value).map_err(classify)
}

/// Decodes operation `R`'s request from an AWS JSON 1.1 body (empty means `{}`).
pub(crate) fn decode<R: Operation>(body: &[u8]) -> Result<R, KmsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        decode_through_value(b"{}")
    } else {
        decode_through_value(body)
    }
}

/// The `Value` pass: drop nulls, refuse unsupported members, decode with each error's
/// member path, wipe.
fn decode_through_value<R: Operation>(body: &[u8]) -> Result<R, KmsError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| serialization(format!("The request body is not valid JSON: {e}")))?;
    let decoded = decode_value::<R>(&mut value);
    wipe(&mut value);
    decoded
}

fn to_value_in(style: TimestampStyle, v: &impl Serialize) -> Result<Value, KmsError> {
    let mut value = with_timestamp_style(style, || serde_json::to_value(v))
        .map_err(|e| KmsError::internal(format!("cannot encode the response: {e}")))?;
    drop_nulls(&mut value);
    Ok(value)
}

/// Encodes a response (or any API shape) as AWS JSON 1.1: null members left out.
pub fn encode(v: &impl Serialize) -> Result<Vec<u8>, KmsError> {
    let mut out = Vec::with_capacity(256);
    with_timestamp_style(TimestampStyle::EpochSeconds, || {
        v.serialize(SkipNulls(&mut serde_json::Serializer::new(&mut out)))
    })
    .map_err(|e| KmsError::internal(format!("cannot encode the response: {e}")))?;
    Ok(out)
}

/// What [`encode`] wrote before it wrote directly: the `Value` pass (for the tests that
/// hold the two to the same members).
#[cfg(any(test, feature = "testing"))]
pub fn encode_through_value(v: &impl Serialize) -> Result<Value, KmsError> {
    to_value_in(TimestampStyle::EpochSeconds, v)
}

/// A response as the AWS CLI prints it: what botocore parses from AWS's JSON, with
/// null members left out and timestamps as the CLI writes them
/// (`2026-11-23T09:20:42.123000+00:00`).
pub fn to_cli_value(v: &impl Serialize) -> Result<Value, KmsError> {
    to_value_in(TimestampStyle::AwsCli, v)
}

impl KmsError {
    /// The error as an AWS JSON 1.1 body: `{"__type": CODE, "message": MESSAGE}`
    /// (sent with HTTP status 400).
    pub fn to_aws_json(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("__type".into(), Value::String(self.code.as_str().into()));
        m.insert("message".into(), Value::String(self.message.clone()));
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecryptRequest;

    #[test]
    fn nulls_are_absent_and_an_escaped_unsupported_member_is_refused() {
        let r = decode::<DecryptRequest>(br#"{"CiphertextBlob":"aGVsbG8=","KeyId":null}"#);
        assert!(r.is_ok_and(|r| r.key_id.is_none()));
        let escaped = decode::<DecryptRequest>(br#"{"CiphertextBlob":"eA==","Dry\u0052un":true}"#);
        assert_eq!(
            escaped.unwrap_err().code,
            ErrorCode::UnsupportedOperationException
        );
        assert!(
            decode::<DecryptRequest>(b"  ").is_ok(),
            "an empty body is {{}}"
        );
    }
}
