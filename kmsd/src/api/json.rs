//! The AWS JSON 1.1 edge: requests decoded from a KMS client's body, responses and
//! errors encoded for it, and the CLI's printout of a response.
//!
//! The rules are those of a `serde_json::Value` pass, which [`decode`] makes whenever a
//! body could need it: null members are dropped (AWS treats `null` as absent), members
//! AWS has but atrest does not implement are refused
//! ([`super::Operation::UNSUPPORTED`]), and every string of the value is wiped
//! afterwards, so a base64 plaintext does not linger in freed memory. Errors carry
//! their member's path (`serde_path_to_error`) in AWS's own wording.
//!
//! Most bodies cannot need it, and every KMS call over HTTP pays for the edge (a
//! `Value` tree built, walked and wiped each way was a tenth of an endpoint Decrypt's
//! instructions), so both directions also go straight between the bytes and the
//! operation's typed shape, giving the same answers:
//! - [`decode`] reads the typed shape directly from a body that is a JSON object with no
//!   `null`, no escape (`\`) and no unsupported member's name in its bytes, and whose
//!   members the shape does not have would be accepted by the `Value` pass too (UTF-8,
//!   no exponent, bounded depth: the direct read only skips those): then the `Value`
//!   pass would drop nothing and refuse nothing, so it would decode the same shape. Any
//!   other body, and any body the direct read refuses, takes the `Value` pass, whose
//!   answer (shape or error) is the one given. Strings are read in place from the body
//!   (no escapes: no copy), so nothing is left to wipe.
//! - [`encode`] writes the shape through [`SkipNulls`], a serializer that leaves out the
//!   members the `Value` pass would drop: the same members, in the shape's field order
//!   (the `Value` pass sorted them; JSON objects are unordered).

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

/// Decodes operation `R`'s request from an AWS JSON 1.1 body (empty means `{}`):
/// directly when the `Value` pass could not decide otherwise (see the module docs),
/// else through it.
pub(crate) fn decode<R: Operation>(body: &[u8]) -> Result<R, KmsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    if is_plain::<R>(body) {
        if let Ok(r) = serde_json::from_slice::<R>(body) {
            return Ok(r);
        }
    }
    decode_through_value(body)
}

/// How deep a body read directly may nest (`serde_json` refuses past 128 when it
/// builds a `Value`, but skips a member the shape does not have at any depth).
const MAX_PLAIN_DEPTH: u32 = 64;

/// Whether `body` is a JSON object text in which the `Value` pass has nothing to do
/// and that the direct read judges as it does:
/// - no `null` outside strings (nothing to drop) and no `\` at all (every member name
///   is in the bytes as written);
/// - none of `R`'s unsupported members named (the last part of a nested path, looked
///   for anywhere: that may send a body the slow way, never a wrong one fast);
/// - and what the direct read would only skip, were it a member the shape has not,
///   is something the `Value` pass accepts: valid UTF-8, no exponent (a number out of
///   `f64`'s range), no nesting past [`MAX_PLAIN_DEPTH`].
fn is_plain<R: Operation>(body: &[u8]) -> bool {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
        || std::str::from_utf8(body).is_err()
    {
        return false;
    }
    let mut depth = 0u32;
    let mut prev = b' ';
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                // A string, to its closing quote; an escape sends the body the slow way.
                let rest = body.get(i + 1..).unwrap_or_default();
                match memchr::memchr2(b'"', b'\\', rest) {
                    Some(n) if rest.get(n) == Some(&b'"') => i += n + 1,
                    _ => return false,
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_PLAIN_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            // `null` is the only bare word with an `n`.
            b'n' | b'\\' => return false,
            b'e' | b'E' if prev.is_ascii_digit() || prev == b'.' => return false,
            _ => {}
        }
        prev = b;
        i += 1;
    }
    R::UNSUPPORTED.iter().all(|path| {
        let leaf = path.rsplit('.').next().unwrap_or(path).as_bytes();
        !memchr::memmem::find_iter(body, leaf).any(|at| {
            at.checked_sub(1).and_then(|q| body.get(q)) == Some(&b'"')
                && body.get(at + leaf.len()) == Some(&b'"')
        })
    })
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

/// Checks that [`decode`] answers `body` as the `Value` pass does (the same request,
/// or an error with the same code and message), for the fuzz target and the tests.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn check_decode<R: Operation>(body: &[u8]) {
    let fast = decode::<R>(body);
    let empty: &[u8] = b"{}";
    let slow = decode_through_value::<R>(if body.iter().all(u8::is_ascii_whitespace) {
        empty
    } else {
        body
    });
    match (fast, slow) {
        (Ok(a), Ok(b)) => assert_eq!(
            serde_json::to_value(&a).ok(),
            serde_json::to_value(&b).ok(),
            "{}: the direct decode differs from the Value pass",
            R::NAME
        ),
        (Err(a), Err(b)) => assert_eq!((a.code, a.message), (b.code, b.message)),
        (a, b) => panic!("{}: direct {a:?}, Value pass {b:?}", R::NAME),
    }
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
    use crate::api::{CreateGrantRequest, DecryptRequest, EncryptRequest};

    #[test]
    fn the_direct_decode_answers_as_the_value_pass() {
        let bodies: &[&[u8]] = &[
            b"",
            b"  ",
            br#"{"CiphertextBlob":"aGVsbG8=","KeyId":"alias/x"}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","KeyId":null}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","GrantTokens":null}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","DryRun":true}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","DryRun":false}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","Dry\u0052un":true}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","CiphertextBlob":"eA=="}"#,
            br#"["aGVsbG8="]"#,
            br#"{"CiphertextBlob":"not base64!"}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","EncryptionContext":{"a":null}}"#,
            br#"{"CiphertextBlob":"aGVsbG8=","EncryptionContext":{"a":"b"}} x"#,
            br#"{"KeyId":"k"}"#,
            br#"{"KeyId":"k","Plaintext":"aGVsbG8=","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#,
            br#"{"KeyId":"k","GranteePrincipal":"p","Operations":["Decrypt"],"Constraints":{"SourceArn":"x"}}"#,
            br#"{"KeyId":"k","GranteePrincipal":"p","Operations":["Decrypt"]}"#,
            br#"{"KeyId":"k","GranteePrincipal":"p","Operations":["Nope"]}"#,
            // What the direct read only skips, in a member the shape has not.
            b"{\"CiphertextBlob\":\"eA==\",\"Other\":\"\xff\"}",
            br#"{"CiphertextBlob":"eA==","Other":1e400}"#,
            br#"{"CiphertextBlob":"eA==","Other":1.5E3}"#,
            br#"{"CiphertextBlob":"eA==","KeyId":"a null and 1e400 in a string"}"#,
        ];
        for body in bodies {
            check_decode::<DecryptRequest>(body);
            check_decode::<EncryptRequest>(body);
            check_decode::<CreateGrantRequest>(body);
        }
        // The escaped name of an unsupported member is still refused.
        let escaped = decode::<DecryptRequest>(br#"{"CiphertextBlob":"eA==","Dry\u0052un":true}"#);
        assert_eq!(
            escaped.unwrap_err().code,
            ErrorCode::UnsupportedOperationException
        );
        assert!(is_plain::<DecryptRequest>(br#"{"CiphertextBlob":"eA=="}"#));
        assert!(is_plain::<DecryptRequest>(
            br#"{"CiphertextBlob":"bnVsbA==","KeyId":"null"}"#
        ));
        let deep = format!(
            "{{\"CiphertextBlob\":\"eA==\",\"Other\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(!is_plain::<DecryptRequest>(deep.as_bytes()));
        check_decode::<DecryptRequest>(deep.as_bytes());
        assert!(!is_plain::<DecryptRequest>(
            br#"{"CiphertextBlob":"eA==","DryRun":false}"#
        ));
    }
}
