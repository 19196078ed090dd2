//! LookupEvents: one attribute filter, a time range, newest first, paged (pure over
//! events; [`lookup_dir`] adds the file reading).
//!
//! The `NextToken` is opaque to callers: base64url of `{"v":1,"t":<unix secs>,"s":<seq>,
//! "q":<query fingerprint>}`, the sort key of the last event returned. The next page
//! starts strictly after it, so pages stay stable while new events arrive (new events
//! are newer than any cursor) and every event is returned exactly once.

use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::record::TrailRecord;
use super::segment::{self, StoredEvent};
use super::TrailError;

/// Most events one page may hold (AWS's limit).
pub const MAX_RESULTS_LIMIT: i64 = 50;

/// The attributes LookupEvents can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupAttribute {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl LookupAttribute {
    pub const ALL: [LookupAttribute; 8] = [
        LookupAttribute::EventId,
        LookupAttribute::EventName,
        LookupAttribute::ReadOnly,
        LookupAttribute::Username,
        LookupAttribute::ResourceType,
        LookupAttribute::ResourceName,
        LookupAttribute::EventSource,
        LookupAttribute::AccessKeyId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupAttribute::EventId => "EventId",
            LookupAttribute::EventName => "EventName",
            LookupAttribute::ReadOnly => "ReadOnly",
            LookupAttribute::Username => "Username",
            LookupAttribute::ResourceType => "ResourceType",
            LookupAttribute::ResourceName => "ResourceName",
            LookupAttribute::EventSource => "EventSource",
            LookupAttribute::AccessKeyId => "AccessKeyId",
        }
    }
}

impl FromStr for LookupAttribute {
    type Err = LookupError;
    fn from_str(s: &str) -> Result<Self, LookupError> {
        LookupAttribute::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                LookupError::InvalidLookupAttributes(format!(
                    "AttributeKey {s:?} is not valid; use one of {}",
                    LookupAttribute::ALL.map(|a| a.as_str()).join(", ")
                ))
            })
    }
}

/// LookupEvents' errors, each with its AWS error code.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    InvalidLookupAttributes(String),
    #[error("{0}")]
    InvalidTimeRange(String),
    #[error("{0}")]
    InvalidMaxResults(String),
    #[error("{0}")]
    InvalidNextToken(String),
    #[error("cannot read the trail: {0}")]
    Trail(#[from] TrailError),
}

impl LookupError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            LookupError::InvalidLookupAttributes(_) => "InvalidLookupAttributesException",
            LookupError::InvalidTimeRange(_) => "InvalidTimeRangeException",
            LookupError::InvalidMaxResults(_) => "InvalidMaxResultsException",
            LookupError::InvalidNextToken(_) => "InvalidNextTokenException",
            LookupError::Trail(_) => "InternalFailure",
        }
    }
}

/// One LookupEvents request.
#[derive(Debug, Clone, Default)]
pub struct LookupQuery {
    pub attribute: Option<(LookupAttribute, String)>,
    /// Inclusive.
    pub start_time: Option<OffsetDateTime>,
    /// Inclusive.
    pub end_time: Option<OffsetDateTime>,
    /// 1..=50; `None` means 50.
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

impl LookupQuery {
    /// Sets the filter from `(AttributeKey, AttributeValue)` pairs: at most one, as AWS.
    pub fn with_attributes(mut self, pairs: &[(String, String)]) -> Result<Self, LookupError> {
        match pairs {
            [] => self.attribute = None,
            [(k, v)] => {
                let attr: LookupAttribute = k.parse()?;
                if v.is_empty() || v.len() > 2000 {
                    return Err(LookupError::InvalidLookupAttributes(
                        "AttributeValue must be 1 to 2000 characters".into(),
                    ));
                }
                if attr == LookupAttribute::ReadOnly && v != "true" && v != "false" {
                    return Err(LookupError::InvalidLookupAttributes(format!(
                        "ReadOnly must be true or false, not {v:?}"
                    )));
                }
                self.attribute = Some((attr, v.clone()));
            }
            _ => {
                return Err(LookupError::InvalidLookupAttributes(
                    "You cannot specify more than one lookup attribute per request".into(),
                ))
            }
        }
        Ok(self)
    }

    fn page_size(&self) -> Result<usize, LookupError> {
        match self.max_results {
            None => Ok(MAX_RESULTS_LIMIT as usize),
            Some(n) if (1..=MAX_RESULTS_LIMIT).contains(&n) => Ok(n as usize),
            Some(n) => Err(LookupError::InvalidMaxResults(format!(
                "Value {n} for MaxResults is invalid: it must be between 1 and {MAX_RESULTS_LIMIT}"
            ))),
        }
    }

    fn check_time_range(&self) -> Result<(), LookupError> {
        if let (Some(s), Some(e)) = (self.start_time, self.end_time) {
            if s > e {
                return Err(LookupError::InvalidTimeRange(
                    "Start time must be earlier than or equal to end time".into(),
                ));
            }
        }
        Ok(())
    }

    /// Ties a token to the query it was issued for.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        if let Some((a, v)) = &self.attribute {
            h.update(a.as_str());
            h.update([0]);
            h.update(v);
        }
        h.update([1]);
        h.update(format!(
            "{:?}|{:?}",
            self.start_time.map(|t| t.unix_timestamp()),
            self.end_time.map(|t| t.unix_timestamp())
        ));
        hex::encode(&h.finalize()[..8])
    }

    fn matches(&self, r: &TrailRecord) -> bool {
        if self.start_time.is_some_and(|s| r.event_time < s)
            || self.end_time.is_some_and(|e| r.event_time > e)
        {
            return false;
        }
        let Some((attr, v)) = &self.attribute else {
            return true;
        };
        match attr {
            LookupAttribute::EventId => &r.event_id == v,
            LookupAttribute::EventName => &r.event_name == v,
            LookupAttribute::ReadOnly => r.read_only.to_string() == *v,
            LookupAttribute::Username => r.user_identity.lookup_username().as_ref() == Some(v),
            LookupAttribute::ResourceType => r.resources.iter().any(|x| &x.resource_type == v),
            // The ARN, or its last component (a key ID) for convenience.
            LookupAttribute::ResourceName => r
                .resources
                .iter()
                .any(|x| &x.arn == v || x.arn.rsplit_once('/').is_some_and(|(_, id)| id == v)),
            LookupAttribute::EventSource => &r.event_source == v,
            LookupAttribute::AccessKeyId => r.user_identity.access_key_id.as_ref() == Some(v),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Token {
    v: u32,
    t: i64,
    s: u64,
    q: String,
}

fn encode_token(t: i64, s: u64, q: String) -> String {
    let json = serde_json::to_vec(&Token { v: 1, t, s, q }).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_token(token: &str, fingerprint: &str) -> Result<(i64, u64), LookupError> {
    let bad = || LookupError::InvalidNextToken("Invalid NextToken".into());
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != 1 {
        return Err(bad());
    }
    if t.q != fingerprint {
        return Err(LookupError::InvalidNextToken(
            "NextToken was issued for a different query: repeat the same lookup attributes and time range".into(),
        ));
    }
    Ok((t.t, t.s))
}

/// `Resources[]` of a LookupEvents event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupResource {
    pub resource_type: String,
    pub resource_name: String,
}

/// One event as LookupEvents returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEvent {
    pub event_id: String,
    pub event_name: String,
    /// `"true"` or `"false"`, a string as in AWS.
    pub read_only: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// `2026-11-23T10:00:00+00:00`, as the AWS CLI prints it.
    pub event_time: String,
    pub event_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub resources: Vec<LookupResource>,
    /// The record exactly as stored, as a JSON string.
    pub cloud_trail_event: String,
}

/// `EventTime` as the AWS CLI prints it: `2026-11-23T10:00:00+00:00` (UTC, whole
/// seconds).
pub fn format_event_time(unix_secs: i64) -> String {
    plumbing::awstime::rfc3339_to_cli(&plumbing::awstime::format_rfc3339(
        unix_secs.saturating_mul(1000),
    ))
}

impl LookupEvent {
    pub fn from_stored(e: &StoredEvent) -> Self {
        let r = &e.record;
        LookupEvent {
            event_id: r.event_id.clone(),
            event_name: r.event_name.clone(),
            read_only: r.read_only.to_string(),
            access_key_id: r.user_identity.access_key_id.clone(),
            event_time: format_event_time(r.event_time.unix_timestamp()),
            event_source: r.event_source.clone(),
            username: r.user_identity.lookup_username(),
            resources: r
                .resources
                .iter()
                .map(|x| LookupResource {
                    resource_type: x.resource_type.clone(),
                    resource_name: x.arn.clone(),
                })
                .collect(),
            cloud_trail_event: e.raw.clone(),
        }
    }
}

/// A LookupEvents response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupPage {
    pub events: Vec<LookupEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl From<crate::api::LookupEventsResponse> for LookupPage {
    /// A page kmsd sent, as the CLI prints it.
    fn from(r: crate::api::LookupEventsResponse) -> Self {
        LookupPage {
            events: r
                .events
                .into_iter()
                .map(|e| LookupEvent {
                    event_id: e.event_id,
                    event_name: e.event_name,
                    read_only: e.read_only,
                    access_key_id: e.access_key_id,
                    event_time: format_event_time(e.event_time.as_secs()),
                    event_source: e.event_source,
                    username: e.username,
                    resources: e
                        .resources
                        .into_iter()
                        .map(|x| LookupResource {
                            resource_type: x.resource_type,
                            resource_name: x.resource_name,
                        })
                        .collect(),
                    cloud_trail_event: e.cloud_trail_event,
                })
                .collect(),
            next_token: r.next_token,
        }
    }
}

/// Checks a query's parameters without looking at any event.
pub fn check(q: &LookupQuery) -> Result<(), LookupError> {
    q.page_size()?;
    q.check_time_range()?;
    if let Some(tok) = &q.next_token {
        decode_token(tok, &q.fingerprint())?;
    }
    Ok(())
}

/// Runs a query over `events` (any order): newest first (by eventTime, then by
/// position in the chain), one page.
pub fn lookup(events: &[StoredEvent], q: &LookupQuery) -> Result<LookupPage, LookupError> {
    let size = q.page_size()?;
    q.check_time_range()?;
    let fingerprint = q.fingerprint();
    let cursor = q
        .next_token
        .as_deref()
        .map(|t| decode_token(t, &fingerprint))
        .transpose()?;
    let key = |e: &StoredEvent| (e.record.event_time.unix_timestamp(), e.seq);
    let mut hits: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| q.matches(&e.record))
        .filter(|e| cursor.is_none_or(|c| key(e) < c))
        .collect();
    hits.sort_by_key(|e| std::cmp::Reverse(key(e)));
    let more = hits.len() > size;
    hits.truncate(size);
    let next_token = match hits.last() {
        Some(last) if more => {
            let (t, s) = key(last);
            Some(encode_token(t, s, fingerprint))
        }
        _ => None,
    };
    Ok(LookupPage {
        events: hits.into_iter().map(LookupEvent::from_stored).collect(),
        next_token,
    })
}

/// Runs a query over the trail in `dir` (a missing trail has no events).
pub fn lookup_dir(dir: &Path, q: &LookupQuery) -> Result<LookupPage, LookupError> {
    check(q)?;
    let events = segment::read_all(dir).map_err(|e| TrailError::io(dir, e))?;
    lookup(&events, q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trail::record::{UserIdentity, EC2_SOURCE};
    use time::macros::datetime;

    fn ev(seq: u64, name: &str, source: &str, secs: i64) -> StoredEvent {
        let t = datetime!(2026-11-23 10:00:00 UTC) + time::Duration::seconds(secs);
        let record = TrailRecord::api_call(
            source,
            name,
            "us-east-1",
            "111122223333",
            UserIdentity::iam_user("111122223333", "Alice", "AIDA1"),
            t,
        )
        .with_key("arn:aws:kms:us-east-1:111122223333:key/k1");
        let raw = serde_json::to_string(&record).unwrap();
        StoredEvent { seq, record, raw }
    }

    fn q() -> LookupQuery {
        LookupQuery::default()
    }

    #[test]
    fn newest_first_and_filters() {
        let events = vec![
            ev(0, "Decrypt", "kms.amazonaws.com", 0),
            ev(1, "StartInstances", EC2_SOURCE, 1),
            ev(2, "Encrypt", "kms.amazonaws.com", 1),
        ];
        let page = lookup(&events, &q()).unwrap();
        let names: Vec<_> = page.events.iter().map(|e| e.event_name.as_str()).collect();
        assert_eq!(names, ["Encrypt", "StartInstances", "Decrypt"]);
        assert!(page.next_token.is_none());
        let kms = q()
            .with_attributes(&[("EventSource".into(), "kms.amazonaws.com".into())])
            .unwrap();
        assert_eq!(lookup(&events, &kms).unwrap().events.len(), 2);
        let by_key = q()
            .with_attributes(&[("ResourceName".into(), "k1".into())])
            .unwrap();
        assert_eq!(lookup(&events, &by_key).unwrap().events.len(), 3);
        let by_user = q()
            .with_attributes(&[("Username".into(), "Alice".into())])
            .unwrap();
        assert_eq!(lookup(&events, &by_user).unwrap().events.len(), 3);
        let ro = q()
            .with_attributes(&[("ReadOnly".into(), "true".into())])
            .unwrap();
        assert_eq!(lookup(&events, &ro).unwrap().events.len(), 0);
        let timed = LookupQuery {
            start_time: Some(datetime!(2026-11-23 10:00:01 UTC)),
            ..q()
        };
        assert_eq!(lookup(&events, &timed).unwrap().events.len(), 2);
    }

    #[test]
    fn bad_parameters_have_aws_codes() {
        let e = q()
            .with_attributes(&[("Bogus".into(), "x".into())])
            .unwrap_err();
        assert_eq!(e.code(), "InvalidLookupAttributesException");
        let two = [
            ("EventName".to_string(), "a".to_string()),
            ("EventSource".to_string(), "b".to_string()),
        ];
        assert_eq!(
            q().with_attributes(&two).unwrap_err().code(),
            "InvalidLookupAttributesException"
        );
        for n in [0, 51, -1] {
            let e = lookup(
                &[],
                &LookupQuery {
                    max_results: Some(n),
                    ..q()
                },
            )
            .unwrap_err();
            assert_eq!(e.code(), "InvalidMaxResultsException");
        }
        let e = lookup(
            &[],
            &LookupQuery {
                start_time: Some(datetime!(2026-11-24 0:00 UTC)),
                end_time: Some(datetime!(2026-11-23 0:00 UTC)),
                ..q()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidTimeRangeException");
        let e = lookup(
            &[],
            &LookupQuery {
                next_token: Some("!!".into()),
                ..q()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidNextTokenException");
    }

    #[test]
    fn paging_returns_each_event_once_and_token_is_bound_to_query() {
        let events: Vec<_> = (0..7)
            .map(|i| ev(i, "Decrypt", "kms.amazonaws.com", (i / 3) as i64))
            .collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = lookup(
                &events,
                &LookupQuery {
                    max_results: Some(3),
                    next_token: token.clone(),
                    ..q()
                },
            )
            .unwrap();
            seen.extend(page.events.iter().map(|e| e.event_id.clone()));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let expected: Vec<_> = events
            .iter()
            .rev()
            .map(|e| e.record.event_id.clone())
            .collect();
        assert_eq!(seen, expected);
        let first = lookup(
            &events,
            &LookupQuery {
                max_results: Some(3),
                ..q()
            },
        )
        .unwrap();
        let other = q()
            .with_attributes(&[("EventName".into(), "Decrypt".into())])
            .unwrap();
        let e = lookup(
            &events,
            &LookupQuery {
                next_token: first.next_token,
                ..other
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidNextTokenException");
    }
}
