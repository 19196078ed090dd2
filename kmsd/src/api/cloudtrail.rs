//! CloudTrail's LookupEvents over the trail kmsd writes. Handler:
//! `service/events.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::trail::Params;
use super::types::Timestamp;
use super::{Operation, Service};
use plumbing::awstime::format_rfc3339;

/// One filter (AWS's `LookupAttribute`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupAttribute {
    pub attribute_key: String,
    pub attribute_value: String,
}

impl LookupAttribute {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        LookupAttribute {
            attribute_key: key.into(),
            attribute_value: value.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsRequest {
    /// At most one, as in AWS.
    #[serde(default)]
    pub lookup_attributes: Vec<LookupAttribute>,
    /// Inclusive.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// Inclusive.
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    /// 1 to 50 (default 50).
    #[serde(default)]
    pub max_results: Option<i32>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `Resources[]` of an event (AWS's `Resource`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    pub resource_type: String,
    pub resource_name: String,
}

/// One event (AWS's `Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    pub event_id: String,
    pub event_name: String,
    /// `"true"` or `"false"`, a string as in AWS.
    pub read_only: String,
    pub access_key_id: Option<String>,
    pub event_time: Timestamp,
    pub event_source: String,
    pub username: Option<String>,
    pub resources: Vec<Resource>,
    /// The record exactly as stored, as a JSON string.
    pub cloud_trail_event: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsResponse {
    pub events: Vec<Event>,
    pub next_token: Option<String>,
}

impl Operation for LookupEventsRequest {
    type Response = LookupEventsResponse;
    const NAME: &'static str = "LookupEvents";
    const SERVICE: Service = Service::CloudTrail;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["EventCategory"];

    fn request_parameters(&self) -> Value {
        let attributes = (!self.lookup_attributes.is_empty()).then(|| {
            self.lookup_attributes
                .iter()
                .map(|a| json!({"attributeKey": a.attribute_key, "attributeValue": a.attribute_value}))
                .collect::<Vec<_>>()
        });
        Params::new()
            .opt("lookupAttributes", attributes)
            .opt(
                "startTime",
                self.start_time.map(|t| format_rfc3339(t.as_millis())),
            )
            .opt(
                "endTime",
                self.end_time.map(|t| format_rfc3339(t.as_millis())),
            )
            .opt("maxResults", self.max_results)
            .build()
    }
}
