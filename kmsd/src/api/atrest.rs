//! atrest's own calls on kmsd's socket (no AWS counterpart): AdvanceClock,
//! ReloadConfig, RecordEvent. Handlers: `service/mod.rs`, `service/events.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::types::Timestamp;
use super::{Operation, Service};

/// Moves kmsd's clock forward (tests and drills; refused unless kmsd runs with
/// `--allow-clock-control`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvanceClockRequest {
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvanceClockResponse {
    /// The daemon's time after the move.
    pub now: Timestamp,
}

impl Operation for AdvanceClockRequest {
    type Response = AdvanceClockResponse;
    const NAME: &'static str = "AdvanceClock";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new().put("seconds", self.seconds).build()
    }
}

/// Re-reads kmsd's configuration (as SIGHUP does).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadConfigRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReloadConfigResponse {
    /// A short summary, e.g. `3 uid rule(s), 6 IAM user(s)/role(s) with policies`.
    pub reloaded: String,
}

impl Operation for ReloadConfigRequest {
    type Response = ReloadConfigResponse;
    const NAME: &'static str = "ReloadConfig";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new().build()
    }
}

/// An event a trusted service records (its `eventSource` must be a service the
/// peer is trusted as). JSON parts travel as text: postcard cannot carry free-form
/// JSON values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordEventRequest {
    /// `ec2.amazonaws.com`, `s3.amazonaws.com`.
    pub event_source: String,
    /// `StartInstances`, `PutObject`, ...
    pub event_name: String,
    /// The principal the service served (default: the caller as admitted).
    #[serde(default)]
    pub principal: Option<String>,
    /// CloudTrail `requestParameters` as a JSON object text (`None`: null).
    #[serde(default)]
    pub request_parameters_json: Option<String>,
    /// CloudTrail `responseElements` as a JSON object text (`None`: null).
    #[serde(default)]
    pub response_elements_json: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    /// `(type, ARN)`: `("AWS::EC2::Instance", "arn:aws:ec2:us-east-1:111122223333:instance/i-1")`.
    #[serde(default)]
    pub resources: Vec<(String, String)>,
    /// `userAgent` (default `atrest-cli`).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// `sourceIPAddress` of the service's own caller (e.g. an HTTP client address).
    #[serde(default)]
    pub source_ip_address: Option<String>,
    /// The access key the caller signed with (S3), for `userIdentity.accessKeyId`.
    #[serde(default)]
    pub access_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordEventResponse {
    /// The event's ID in the trail.
    pub event_id: String,
}

impl Operation for RecordEventRequest {
    type Response = RecordEventResponse;
    const NAME: &'static str = "RecordEvent";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = false;

    /// Only when refused: a recorded service event is its own record.
    fn request_parameters(&self) -> Value {
        Params::new()
            .put("eventSource", &self.event_source)
            .put("eventName", &self.event_name)
            .build()
    }
}
