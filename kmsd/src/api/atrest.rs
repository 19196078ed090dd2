//! atrest's own calls on kmsd's socket (no AWS counterpart): AdvanceClock,
//! ReloadConfig, RecordEvent, Status, ResolveCaller. Handlers: `service/mod.rs`,
//! `service/events.rs`, `service/authz.rs` (ResolveCaller) (Status: answered by the
//! listener, `server.rs`, without a trail record).

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

/// kmsd's own state for `atrest status`: the trail's sync mode and health, and
/// kmsd.sock's connections. Answered by the listener without a trail record (it uses no
/// key and shows nothing of keys, policies or events), so it answers while the trail
/// refuses every other request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusResponse {
    pub pid: u32,
    /// `None` when kmsd keeps no trail (an in-process test sink).
    #[serde(default)]
    pub trail: Option<TrailStatus>,
    pub connections: ConnectionStatus,
}

/// The trail as its writer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrailStatus {
    /// `interval` or `every-event` (config `[trail] sync`).
    pub sync: String,
    /// The group-sync interval with `interval`.
    #[serde(default)]
    pub sync_interval_ms: Option<u64>,
    /// Why requests are refused now (no space, a failed fdatasync); `None` when all is
    /// well.
    #[serde(default)]
    pub problem: Option<String>,
    /// Events written, `write(2)` groups and fdatasyncs since kmsd started.
    pub events: u64,
    pub writes: u64,
    pub syncs: u64,
    /// The most recent fdatasync's duration.
    pub last_sync_micros: u64,
}

/// kmsd.sock's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionStatus {
    /// Connections open now, and the most served at once.
    pub open: u64,
    pub max: u64,
    /// Since start: refused at the cap, closed for sending no request in time, closed
    /// after idling, closed to make room for a new connection.
    pub refused: u64,
    pub first_frame_timeouts: u64,
    pub idle_timeouts: u64,
    pub evicted: u64,
}

impl Operation for StatusRequest {
    type Response = StatusResponse;
    const NAME: &'static str = "Status";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        Params::new().build()
    }
}

/// Who a local Unix uid is, as kmsd admits it: the uid's own principal, or the one its
/// `--as` claim names if the config lets it act as that (a role becomes a session of
/// it, as kmsd's own callers do). For the services that serve local callers on a
/// socket of their own (the volume service): they answer a caller as the principal
/// kmsd would evaluate it as, and refuse an `--as` kmsd would refuse, without reading
/// kmsd's configuration themselves. A peer may ask about its own uid; about another
/// uid only if the config trusts it as a service (`[[uids]] services`). Recorded in
/// the trail only when refused (the service's own call is recorded itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolveCallerRequest {
    pub uid: u32,
    /// The principal ARN the caller asked to act as (`--as`).
    #[serde(default)]
    pub act_as: Option<String>,
    /// The SigV4 signer of a request the AWS endpoint (uid `uid`) sent: when the uid
    /// is trusted as the endpoint, kmsd checks that the signer's access key still
    /// authenticates as `principal_arn` (not deleted, not inactive, its session not
    /// expired) and answers with that principal; otherwise the request is refused as
    /// an unknown or expired key is. The endpoint keeps access keys it has resolved,
    /// so this is where a key deleted since is refused, in the same round trip.
    #[serde(default)]
    pub signer: Option<crate::protocol::Signer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolveCallerResponse {
    /// The principal the uid's requests are evaluated as.
    pub principal_arn: String,
    /// The account of `principal_arn`.
    pub account: String,
    /// Whether the config trusts the uid as the AWS endpoint (`[kmsd] endpoint_uids`),
    /// whose requests may speak for a SigV4 signer: the volume service takes a signer
    /// from such a uid only, as kmsd does.
    pub trusted_as_endpoint: bool,
}

impl Operation for ResolveCallerRequest {
    type Response = ResolveCallerResponse;
    const NAME: &'static str = "ResolveCaller";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("uid", self.uid)
            .put("actAs", &self.act_as)
            .put(
                "accessKeyId",
                self.signer.as_ref().map(|s| s.access_key_id.as_str()),
            )
            .build()
    }
}
