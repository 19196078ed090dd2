//! The Query protocol (STS, IAM) and, through [`Dialect::Ec2`], EC2's variant of it:
//! driven by the operation's shapes in the vendored botocore model, so an operation
//! needs no code here.
//!
//! - [`decode`] turns a form body (`Action=AssumeRole&RoleArn=...&Tags.member.1.Key=k`,
//!   EC2's `Filter.1.Value.1=...`) into the JSON object an AWS SDK would send for the
//!   operation's input (`{"RoleArn": ..., "Tags": [{"Key": "k"}]}`), which serde then
//!   reads into the operation's typed request. It is pure and total (the fuzz target
//!   drives it): a malformed value is a [`DecodeError`], never a panic.
//! - [`encode`] writes a typed response, as JSON, in the XML the operation's output
//!   shape describes (`<XResponse xmlns=...><XResult>...</XResult><ResponseMetadata>`;
//!   EC2: `<XResponse xmlns=...><requestId>` and `item` lists). Members the model does
//!   not have (atrest's own extensions) are left out. IAM's policy documents are
//!   percent-encoded, as AWS sends them ([`URL_ENCODED_SHAPES`]).
//! - [`error`] writes an error in each dialect's shape.
//!
//! The naming rules are botocore's serializers and parsers read backwards: a member is
//! named by its `locationName` (EC2 input: `queryName`, else the capitalized
//! `locationName`); a Query list is `Name.member.N` (`Name.N` when flattened, the
//! member's own `locationName` replacing `member`), an EC2 list always `Name.N`; a map
//! is `Name.entry.N.key` / `.value`; booleans are `true`/`false`, timestamps ISO 8601,
//! blobs base64.

use std::collections::BTreeMap;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde_json::{Map, Number, Value};

use super::model::{MemberRef, Model, Shape, ShapeType};
use super::{too_large_message, Failure, Rendered, EXPIRED_TOKEN, UNRECOGNIZED};
use crate::endpoint::sigv4::AuthError;
use kmsd::protocol::ErrorCode;

/// Which variant of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// STS, IAM (`protocol: query`).
    Query,
    /// EC2 (`protocol: ec2`).
    Ec2,
}

/// How the target types spell timestamps in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampRepr {
    /// Epoch seconds (kmsd's API types).
    EpochSeconds,
    /// The ISO 8601 text as received (the EC2 API types keep EC2's strings).
    Text,
}

/// Why a form does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not `application/x-www-form-urlencoded` text.
    #[error("{0}")]
    MalformedQuery(String),
    /// No `Action`.
    #[error("Could not find operation")]
    MissingAction,
    /// An `Action` the service (as atrest serves it) does not have.
    #[error("Could not find operation {0} for version {1}")]
    InvalidAction(String, String),
    /// A parameter whose value does not fit its member's type.
    #[error("{0}")]
    InvalidParameter(String),
}

/// The most parameters one form may carry, and the deepest nesting walked.
const MAX_PARAMS: usize = 10_000;
const MAX_DEPTH: usize = 32;

/// `application/x-www-form-urlencoded` pairs (`+` is a space), decoded.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| DecodeError::MalformedQuery("The request body is not UTF-8".into()))?;
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_PARAMS {
            return Err(DecodeError::MalformedQuery(format!(
                "More than {MAX_PARAMS} parameters"
            )));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| -> Result<String, DecodeError> {
            let spaced = s.replace('+', " ");
            let bytes = crate::endpoint::sigv4::percent_decode(&spaced).ok_or_else(|| {
                DecodeError::MalformedQuery(format!("Malformed percent-encoding in '{s}'"))
            })?;
            String::from_utf8(bytes)
                .map_err(|_| DecodeError::MalformedQuery(format!("'{s}' is not UTF-8")))
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

/// A decoded request: the operation and its input as AWS JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub action: String,
    pub input: Value,
}

/// The `Action` of a form (for routing, before the operation's service is known).
pub fn action(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.as_str())
}

/// Decodes a form into the operation's name and its input as JSON, per `model`.
pub fn decode(
    model: &Model,
    dialect: Dialect,
    timestamps: TimestampRepr,
    params: &[(String, String)],
) -> Result<Decoded, DecodeError> {
    let action = action(params).ok_or(DecodeError::MissingAction)?;
    let op = model.operations.get(action).ok_or_else(|| {
        DecodeError::InvalidAction(action.to_string(), model.metadata.api_version.clone())
    })?;
    let map: BTreeMap<&str, &str> = params
        .iter()
        .filter(|(k, _)| k != "Action" && k != "Version")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let d = Decoder {
        model,
        dialect,
        timestamps,
        params: &map,
    };
    let input = match &op.input {
        Some(shape) => d
            .structure(shape, "", 0)?
            .unwrap_or_else(|| Value::Object(Map::new())),
        None => Value::Object(Map::new()),
    };
    Ok(Decoded {
        action: action.to_string(),
        input,
    })
}

struct Decoder<'a> {
    model: &'a Model,
    dialect: Dialect,
    timestamps: TimestampRepr,
    params: &'a BTreeMap<&'a str, &'a str>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Decoder<'_> {
    fn shape(&self, name: &str) -> Result<&Shape, DecodeError> {
        self.model
            .shape(name)
            .ok_or_else(|| DecodeError::InvalidParameter(format!("the model has no shape {name}")))
    }

    /// Whether any parameter is `key` or lies under `key.`.
    fn any_under(&self, key: &str) -> bool {
        let dotted = format!("{key}.");
        self.params.contains_key(key)
            || self
                .params
                .range(dotted.as_str()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&dotted))
    }

    /// The 1-based indices `N` of parameters `prefix.N[.…]`, in order.
    fn indices(&self, prefix: &str) -> Vec<u32> {
        let dotted = format!("{prefix}.");
        let mut out: Vec<u32> = self
            .params
            .range(dotted.as_str()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .filter_map(|(k, _)| {
                k[dotted.len()..]
                    .split('.')
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n >= 1)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The wire name of a structure member in a request.
    fn member_name(&self, name: &str, r: &MemberRef) -> String {
        match self.dialect {
            Dialect::Query => r.location_name.clone().unwrap_or_else(|| name.to_string()),
            Dialect::Ec2 => r
                .query_name
                .clone()
                .or_else(|| r.location_name.as_deref().map(capitalize))
                .unwrap_or_else(|| name.to_string()),
        }
    }

    fn structure(
        &self,
        shape: &str,
        prefix: &str,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::InvalidParameter(format!(
                "parameters nest deeper than {MAX_DEPTH} levels at '{prefix}'"
            )));
        }
        let s = self.shape(shape)?;
        let mut out = Map::new();
        for (name, r) in &s.members {
            let key = join(prefix, &self.member_name(name, r));
            if let Some(v) = self.value(r, &key, depth + 1)? {
                out.insert(name.clone(), v);
            }
        }
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    fn value(&self, r: &MemberRef, key: &str, depth: usize) -> Result<Option<Value>, DecodeError> {
        let s = self.shape(&r.shape)?;
        match s.kind {
            ShapeType::Structure => self.structure(&r.shape, key, depth),
            ShapeType::List => self.list(s, key, depth),
            ShapeType::Map => self.map(s, key, depth),
            _ => match self.params.get(key) {
                Some(text) => self.scalar(s.kind, key, text).map(Some),
                None => Ok(None),
            },
        }
    }

    fn list(&self, s: &Shape, key: &str, depth: usize) -> Result<Option<Value>, DecodeError> {
        let Some(member) = &s.member else {
            return Ok(None);
        };
        let prefix = match self.dialect {
            Dialect::Ec2 => key.to_string(),
            Dialect::Query if s.flattened => match &member.location_name {
                Some(n) => match key.rsplit_once('.') {
                    Some((parent, _)) => format!("{parent}.{n}"),
                    None => n.clone(),
                },
                None => key.to_string(),
            },
            Dialect::Query => format!(
                "{key}.{}",
                member.location_name.as_deref().unwrap_or("member")
            ),
        };
        if self.dialect == Dialect::Query && self.params.get(key) == Some(&"") {
            // The Query protocol's empty list: `Name=`.
            return Ok(Some(Value::Array(Vec::new())));
        }
        let mut items = Vec::new();
        for n in self.indices(&prefix) {
            let at = format!("{prefix}.{n}");
            if let Some(v) = self.value(member, &at, depth + 1)? {
                items.push(v);
            }
        }
        Ok((!items.is_empty()).then_some(Value::Array(items)))
    }

    fn map(&self, s: &Shape, key: &str, depth: usize) -> Result<Option<Value>, DecodeError> {
        let (Some(k), Some(v)) = (&s.key, &s.value) else {
            return Ok(None);
        };
        let prefix = if s.flattened {
            key.to_string()
        } else {
            format!("{key}.entry")
        };
        let kname = k.location_name.as_deref().unwrap_or("key");
        let vname = v.location_name.as_deref().unwrap_or("value");
        let mut out = Map::new();
        for n in self.indices(&prefix) {
            let at = format!("{prefix}.{n}");
            let Some(Value::String(name)) = self.value(k, &join(&at, kname), depth + 1)? else {
                return Err(DecodeError::InvalidParameter(format!(
                    "{at}.{kname} is missing or not a string"
                )));
            };
            if let Some(val) = self.value(v, &join(&at, vname), depth + 1)? {
                out.insert(name, val);
            }
        }
        if out.is_empty() && !self.any_under(key) {
            return Ok(None);
        }
        Ok(Some(Value::Object(out)))
    }

    fn scalar(&self, kind: ShapeType, key: &str, text: &str) -> Result<Value, DecodeError> {
        let bad = |what: &str| {
            DecodeError::InvalidParameter(format!(
                "Value '{text}' for parameter {key} is invalid: it must be {what}"
            ))
        };
        Ok(match kind {
            ShapeType::String | ShapeType::Blob => Value::String(text.to_string()),
            ShapeType::Integer | ShapeType::Long => Value::Number(
                text.trim()
                    .parse::<i64>()
                    .map_err(|_| bad("an integer"))?
                    .into(),
            ),
            ShapeType::Float | ShapeType::Double => {
                let f: f64 = text.trim().parse().map_err(|_| bad("a number"))?;
                Value::Number(Number::from_f64(f).ok_or_else(|| bad("a finite number"))?)
            }
            ShapeType::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(bad("true or false")),
            },
            ShapeType::Timestamp => {
                let ms = parse_timestamp(text).ok_or_else(|| bad("an ISO 8601 timestamp"))?;
                match self.timestamps {
                    TimestampRepr::Text => Value::String(text.to_string()),
                    TimestampRepr::EpochSeconds if ms % 1000 == 0 => {
                        Value::Number((ms / 1000).into())
                    }
                    TimestampRepr::EpochSeconds => Number::from_f64(ms as f64 / 1000.0)
                        .map(Value::Number)
                        .ok_or_else(|| bad("a timestamp"))?,
                }
            }
            ShapeType::Structure | ShapeType::List | ShapeType::Map => {
                return Err(bad("a structure, list or map given by its members"))
            }
        })
    }
}

/// Unix milliseconds of an ISO 8601 timestamp (`2026-11-23T09:30:00Z`, with an optional
/// fraction and offset), or of epoch seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e13).then(|| (secs * 1000.0).round() as i64);
    }
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// ISO 8601 of Unix milliseconds, as AWS writes them in XML (`2026-11-23T09:30:00Z`,
/// `.123Z` when there are milliseconds).
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:03}Z")
    }
}

/// Why a response could not be written (a response that does not fit its model:
/// a bug, answered as an internal error).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("operation {0} is not in the model")]
    UnknownOperation(String),
    #[error("the model has no shape {0}")]
    MissingShape(String),
    #[error("member {0} does not fit its shape")]
    Mismatch(String),
    #[error("cannot write XML: {0}")]
    Xml(#[from] std::io::Error),
}

type Xml = Writer<Vec<u8>>;

fn start(w: &mut Xml, name: &str, ns: Option<&str>) -> Result<(), EncodeError> {
    let mut e = BytesStart::new(name);
    if let Some(ns) = ns {
        e.push_attribute(("xmlns", ns));
    }
    w.write_event(Event::Start(e))?;
    Ok(())
}

fn end(w: &mut Xml, name: &str) -> Result<(), EncodeError> {
    w.write_event(Event::End(BytesEnd::new(name)))?;
    Ok(())
}

fn text_element(w: &mut Xml, name: &str, text: &str) -> Result<(), EncodeError> {
    start(w, name, None)?;
    w.write_event(Event::Text(BytesText::new(text)))?;
    end(w, name)
}

fn new_writer() -> Result<Xml, EncodeError> {
    let mut w = Writer::new(Vec::with_capacity(512));
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    Ok(w)
}

/// Writes operation `action`'s response `output` (its JSON, as the typed response
/// serializes) as the dialect's XML.
pub fn encode(
    model: &Model,
    dialect: Dialect,
    action: &str,
    output: &Value,
    request_id: &str,
) -> Result<Vec<u8>, EncodeError> {
    let op = model
        .operations
        .get(action)
        .ok_or_else(|| EncodeError::UnknownOperation(action.to_string()))?;
    let mut w = new_writer()?;
    let root = format!("{action}Response");
    let ns = model.namespace();
    start(&mut w, &root, Some(&ns))?;
    let enc = Encoder { model };
    match dialect {
        Dialect::Query => {
            if let Some(shape) = &op.output {
                let wrapper = op
                    .result_wrapper
                    .clone()
                    .unwrap_or_else(|| format!("{action}Result"));
                start(&mut w, &wrapper, None)?;
                enc.members(&mut w, shape, output, 0)?;
                end(&mut w, &wrapper)?;
            }
            start(&mut w, "ResponseMetadata", None)?;
            text_element(&mut w, "RequestId", request_id)?;
            end(&mut w, "ResponseMetadata")?;
        }
        Dialect::Ec2 => {
            text_element(&mut w, "requestId", request_id)?;
            match &op.output {
                Some(shape) => enc.members(&mut w, shape, output, 0)?,
                // EC2 answers an operation without output (DeleteVolume, CreateTags)
                // with `<return>true</return>`.
                None => text_element(&mut w, "return", "true")?,
            }
        }
    }
    end(&mut w, &root)?;
    Ok(w.into_inner())
}

struct Encoder<'a> {
    model: &'a Model,
}

impl Encoder<'_> {
    fn shape(&self, name: &str) -> Result<&Shape, EncodeError> {
        self.model
            .shape(name)
            .ok_or_else(|| EncodeError::MissingShape(name.to_string()))
    }

    /// The members of structure `shape` present in `value` (an object), in the
    /// model's order; null and unknown members are left out.
    fn members(
        &self,
        w: &mut Xml,
        shape: &str,
        value: &Value,
        depth: usize,
    ) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(EncodeError::Mismatch(format!("{shape}: nested too deep")));
        }
        let s = self.shape(shape)?;
        let Value::Object(obj) = value else {
            return Err(EncodeError::Mismatch(shape.to_string()));
        };
        for (name, r) in &s.members {
            match obj.get(name) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let element = r.location_name.as_deref().unwrap_or(name);
                    self.value(w, element, r, v, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn value(
        &self,
        w: &mut Xml,
        element: &str,
        r: &MemberRef,
        v: &Value,
        depth: usize,
    ) -> Result<(), EncodeError> {
        let s = self.shape(&r.shape)?;
        match s.kind {
            ShapeType::Structure => {
                start(w, element, None)?;
                self.members(w, &r.shape, v, depth)?;
                end(w, element)
            }
            ShapeType::List => {
                let Value::Array(items) = v else {
                    return Err(EncodeError::Mismatch(element.to_string()));
                };
                let Some(member) = &s.member else {
                    return Err(EncodeError::Mismatch(element.to_string()));
                };
                if s.flattened || r.flattened {
                    let name = member.location_name.as_deref().unwrap_or(element);
                    for item in items {
                        self.value(w, name, member, item, depth + 1)?;
                    }
                    Ok(())
                } else {
                    start(w, element, None)?;
                    let name = member.location_name.as_deref().unwrap_or("member");
                    for item in items {
                        self.value(w, name, member, item, depth + 1)?;
                    }
                    end(w, element)
                }
            }
            ShapeType::Map => {
                let Value::Object(entries) = v else {
                    return Err(EncodeError::Mismatch(element.to_string()));
                };
                let (Some(k), Some(val)) = (&s.key, &s.value) else {
                    return Err(EncodeError::Mismatch(element.to_string()));
                };
                let kname = k.location_name.as_deref().unwrap_or("key");
                let vname = val.location_name.as_deref().unwrap_or("value");
                let flat = s.flattened || r.flattened;
                if !flat {
                    start(w, element, None)?;
                }
                for (key, value) in entries {
                    let entry = if flat { element } else { "entry" };
                    start(w, entry, None)?;
                    text_element(w, kname, key)?;
                    self.value(w, vname, val, value, depth + 1)?;
                    end(w, entry)?;
                }
                if !flat {
                    end(w, element)?;
                }
                Ok(())
            }
            kind => {
                let text = scalar_text(kind, v, element)?;
                if URL_ENCODED_SHAPES.contains(&r.shape.as_str()) {
                    let encoded = crate::endpoint::sigv4::uri_encode(text.as_bytes(), false);
                    text_element(w, element, &encoded)
                } else {
                    text_element(w, element, &text)
                }
            }
        }
    }
}

/// String shapes AWS sends percent-encoded inside the XML: IAM's policy documents
/// (`GetUserPolicy`'s `PolicyDocument`, `PolicyVersion.Document`,
/// `Role.AssumeRolePolicyDocument`, ...), which botocore's `json_decode_policies`
/// handler, keyed on this shape name, URL-decodes and parses back into JSON.
const URL_ENCODED_SHAPES: &[&str] = &["policyDocumentType"];

fn scalar_text(kind: ShapeType, v: &Value, element: &str) -> Result<String, EncodeError> {
    let mismatch = || EncodeError::Mismatch(element.to_string());
    Ok(match (kind, v) {
        (ShapeType::Timestamp, Value::Number(n)) => {
            let secs = n.as_f64().ok_or_else(mismatch)?;
            format_timestamp((secs * 1000.0).round() as i64)
        }
        (ShapeType::Timestamp, Value::String(s)) => {
            // Already text (EC2's types): normalized to AWS's spelling when it parses.
            match parse_timestamp(s) {
                Some(ms) => format_timestamp(ms),
                None => s.clone(),
            }
        }
        (ShapeType::Boolean, Value::Bool(b)) => b.to_string(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::Bool(b)) => b.to_string(),
        _ => return Err(mismatch()),
    })
}

/// An error in the dialect's XML: Query's `<ErrorResponse><Error><Type>Sender` (or
/// `Receiver` for a server fault) `<Code><Message></Error><RequestId>`, EC2's
/// `<Response><Errors><Error><Code><Message></Error></Errors><RequestID>`.
pub fn error(
    dialect: Dialect,
    namespace: &str,
    code: &str,
    message: &str,
    server_fault: bool,
    request_id: &str,
) -> Vec<u8> {
    let write = || -> Result<Vec<u8>, EncodeError> {
        let mut w = new_writer()?;
        match dialect {
            Dialect::Query => {
                start(&mut w, "ErrorResponse", Some(namespace))?;
                start(&mut w, "Error", None)?;
                text_element(
                    &mut w,
                    "Type",
                    if server_fault { "Receiver" } else { "Sender" },
                )?;
                text_element(&mut w, "Code", code)?;
                text_element(&mut w, "Message", message)?;
                end(&mut w, "Error")?;
                text_element(&mut w, "RequestId", request_id)?;
                end(&mut w, "ErrorResponse")?;
            }
            Dialect::Ec2 => {
                start(&mut w, "Response", None)?;
                start(&mut w, "Errors", None)?;
                start(&mut w, "Error", None)?;
                text_element(&mut w, "Code", code)?;
                text_element(&mut w, "Message", message)?;
                end(&mut w, "Error")?;
                end(&mut w, "Errors")?;
                text_element(&mut w, "RequestID", request_id)?;
                end(&mut w, "Response")?;
            }
        }
        Ok(w.into_inner())
    };
    // Writing into a Vec cannot fail; keep a readable answer if it ever did.
    write().unwrap_or_else(|_| {
        format!("<ErrorResponse><Error><Code>{code}</Code></Error></ErrorResponse>").into_bytes()
    })
}

/// A failure as STS and IAM name it. A service error is named and given its status by
/// the model's error shapes (`NoSuchEntityException` is `NoSuchEntity`, 404), kmsd's
/// generic codes by their Query names (`AccessDeniedException` is `AccessDenied`).
pub fn render(model: &Model, f: &Failure) -> Rendered {
    match f {
        Failure::Auth(AuthError::Missing) => Rendered::new(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ),
        Failure::Auth(AuthError::Incomplete(m)) => Rendered::new(400, "IncompleteSignature", m),
        Failure::Auth(AuthError::Invalid(m) | AuthError::Scope(m) | AuthError::Expired(m)) => {
            Rendered::new(403, "SignatureDoesNotMatch", m)
        }
        Failure::UnrecognizedClient => Rendered::new(403, "InvalidClientTokenId", UNRECOGNIZED),
        Failure::ExpiredToken => Rendered::new(400, "ExpiredToken", EXPIRED_TOKEN),
        Failure::TooLarge { limit } => {
            Rendered::new(413, "RequestEntityTooLarge", too_large_message(*limit))
        }
        Failure::Malformed(m) => Rendered::new(400, "MalformedQueryString", m),
        Failure::UnknownOperation(m) => Rendered::new(400, "InvalidAction", m),
        Failure::InvalidParameter(m) => Rendered::new(400, "ValidationError", m),
        Failure::Service(e) => {
            if let Some((code, status)) = model.error(e.code.as_str()) {
                return Rendered::new(status, code, &e.message);
            }
            let (status, code) = match e.code {
                ErrorCode::AccessDeniedException => (403, "AccessDenied"),
                ErrorCode::ValidationException => (400, "ValidationError"),
                ErrorCode::UnrecognizedClientException => (403, "InvalidClientTokenId"),
                ErrorCode::ExpiredTokenException => (400, "ExpiredToken"),
                ErrorCode::NotFoundException => (404, "NoSuchEntity"),
                ErrorCode::AlreadyExistsException => (409, "EntityAlreadyExists"),
                ErrorCode::LimitExceededException => (409, "LimitExceeded"),
                ErrorCode::MalformedPolicyDocumentException => (400, "MalformedPolicyDocument"),
                ErrorCode::UnsupportedOperationException => (400, "UnsupportedOperation"),
                ErrorCode::KMSInternalException => (500, "InternalFailure"),
                other => (400, other.as_str()),
            };
            Rendered::new(status, code, &e.message)
        }
        Failure::Ec2(_) => super::ec2query::render(f),
        Failure::Internal(m) => Rendered::new(500, "InternalFailure", m),
    }
}

#[cfg(test)]
mod tests {
    use super::super::model;
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Vec<(String, String)> {
        parse_form(s.as_bytes()).unwrap()
    }

    #[test]
    fn assume_role_form_decodes_to_its_json_input() {
        let f = form(
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2FR&RoleSessionName=s+1\
             &DurationSeconds=900&Tags.member.1.Key=team&Tags.member.1.Value=blue&Tags.member.2.Key=env&Tags.member.2.Value=dev\
             &PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FX&TransitiveTagKeys.member.1=team",
        );
        let d = decode(
            model::sts(),
            Dialect::Query,
            TimestampRepr::EpochSeconds,
            &f,
        )
        .unwrap();
        assert_eq!(d.action, "AssumeRole");
        assert_eq!(
            d.input,
            json!({
                "RoleArn": "arn:aws:iam::111122223333:role/R",
                "RoleSessionName": "s 1",
                "DurationSeconds": 900,
                "Tags": [{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "dev"}],
                "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/X"}],
                "TransitiveTagKeys": ["team"],
            })
        );
    }

    #[test]
    fn iam_policy_documents_are_percent_encoded_in_the_xml() {
        let doc = r#"{"Sid":"a b&<c>%"}"#;
        let out = json!({"UserName": "u", "PolicyName": "p", "PolicyDocument": doc});
        let xml = encode(model::iam(), Dialect::Query, "GetUserPolicy", &out, "rid").unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(
            xml.contains(
                "<PolicyDocument>%7B%22Sid%22%3A%22a%20b%26%3Cc%3E%25%22%7D</PolicyDocument>"
            ),
            "{xml}"
        );
        // Other strings are plain XML text.
        assert!(xml.contains("<UserName>u</UserName>"), "{xml}");
    }

    #[test]
    fn ec2_lists_filters_and_location_names() {
        let f = form(
            "Action=DescribeVolumes&Version=2016-11-15&VolumeId.1=vol-1&VolumeId.2=vol-2\
             &Filter.1.Name=status&Filter.1.Value.1=available&Filter.1.Value.2=in-use&MaxResults=5&DryRun=false",
        );
        let d = decode(model::ec2(), Dialect::Ec2, TimestampRepr::Text, &f).unwrap();
        assert_eq!(
            d.input,
            json!({
                "VolumeIds": ["vol-1", "vol-2"],
                "Filters": [{"Name": "status", "Values": ["available", "in-use"]}],
                "MaxResults": 5,
                "DryRun": false,
            })
        );
    }

    #[test]
    fn bad_values_and_actions_are_errors_not_panics() {
        let sts = model::sts();
        let e = decode(
            sts,
            Dialect::Query,
            TimestampRepr::EpochSeconds,
            &form("Version=1"),
        )
        .unwrap_err();
        assert_eq!(e, DecodeError::MissingAction);
        let e = decode(
            sts,
            Dialect::Query,
            TimestampRepr::EpochSeconds,
            &form("Action=GetFederationToken"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not find operation GetFederationToken for version 2011-06-15"
        );
        let e = decode(
            sts,
            Dialect::Query,
            TimestampRepr::EpochSeconds,
            &form("Action=AssumeRole&DurationSeconds=ten"),
        )
        .unwrap_err();
        assert!(matches!(e, DecodeError::InvalidParameter(m) if m.contains("DurationSeconds")));
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(&[0xff, b'=']).is_err());
        // An empty Query list.
        let d = decode(
            sts,
            Dialect::Query,
            TimestampRepr::EpochSeconds,
            &form("Action=AssumeRole&TransitiveTagKeys="),
        )
        .unwrap();
        assert_eq!(d.input, json!({"TransitiveTagKeys": []}));
    }

    #[test]
    fn responses_are_written_per_the_output_shape() {
        let out = json!({
            "Credentials": {
                "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "s",
                "SessionToken": "t",
                "Expiration": 1_795_000_000,
            },
            "AssumedRoleUser": {"AssumedRoleId": "AROA:s", "Arn": "arn:aws:sts::111122223333:assumed-role/R/s"},
            "PackedPolicySize": null,
            "UnixUid": 0,
        });
        let xml = String::from_utf8(
            encode(model::sts(), Dialect::Query, "AssumeRole", &out, "rid-1").unwrap(),
        )
        .unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"), "{xml}");
        assert!(
            xml.contains("<Expiration>2026-11-18T11:06:40Z</Expiration>"),
            "{xml}"
        );
        assert!(xml.contains("<AccessKeyId>ASIAEXAMPLE</AccessKeyId>"));
        assert!(xml.ends_with("</AssumeRoleResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata></AssumeRoleResponse>"), "{xml}");
        assert!(!xml.contains("UnixUid") && !xml.contains("PackedPolicySize"));

        let out = json!({"Volumes": [{"VolumeId": "vol-1", "Size": 8, "Encrypted": true,
            "CreateTime": "2026-11-23T09:30:00.000Z", "Tags": [{"Key": "a", "Value": "<b>"}]}]});
        let xml = String::from_utf8(
            encode(model::ec2(), Dialect::Ec2, "DescribeVolumes", &out, "r2").unwrap(),
        )
        .unwrap();
        assert!(xml.contains("<DescribeVolumesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r2</requestId><volumeSet><item>"), "{xml}");
        assert!(
            xml.contains("<volumeId>vol-1</volumeId>")
                && xml.contains("<encrypted>true</encrypted>"),
            "{xml}"
        );
        assert!(
            xml.contains("<tagSet><item><key>a</key><value>&lt;b&gt;</value></item></tagSet>"),
            "{xml}"
        );
        assert!(
            xml.contains("<createTime>2026-11-23T09:30:00Z</createTime>"),
            "{xml}"
        );
    }

    #[test]
    fn errors_in_each_dialect() {
        let q = String::from_utf8(error(
            Dialect::Query,
            "https://sts.amazonaws.com/doc/2011-06-15/",
            "AccessDenied",
            "no & never",
            false,
            "r",
        ))
        .unwrap();
        assert!(q.ends_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no &amp; never</Message></Error><RequestId>r</RequestId></ErrorResponse>"), "{q}");
        let e = String::from_utf8(error(Dialect::Ec2, "", "AuthFailure", "m", false, "r")).unwrap();
        assert!(e.ends_with("<Response><Errors><Error><Code>AuthFailure</Code><Message>m</Message></Error></Errors><RequestID>r</RequestID></Response>"), "{e}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2026-11-23T09:30:00Z"),
            Some(1_795_426_200_000)
        );
        assert_eq!(
            parse_timestamp("2026-11-23T09:30:00.5+00:00"),
            Some(1_795_426_200_500)
        );
        assert_eq!(
            format_timestamp(1_795_426_200_500),
            "2026-11-23T09:30:00.500Z"
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
