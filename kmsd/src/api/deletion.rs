//! Key deletion: ScheduleKeyDeletion, CancelKeyDeletion. Handlers: `service/deletion.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::keys::key_id_request;
use super::trail::{self, Params};
use super::types::{KeyState, Timestamp};
use super::{Operation, Service};
use plumbing::awstime::format_rfc3339;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionRequest {
    pub key_id: String,
    /// 7 to 30 (default 30).
    #[serde(default)]
    pub pending_window_in_days: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionResponse {
    /// The key ARN.
    pub key_id: String,
    pub deletion_date: Timestamp,
    pub key_state: KeyState,
    pub pending_window_in_days: i32,
}

impl Operation for ScheduleKeyDeletionRequest {
    type Response = ScheduleKeyDeletionResponse;
    const NAME: &'static str = "ScheduleKeyDeletion";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put(
                "pendingWindowInDays",
                self.pending_window_in_days.unwrap_or(30),
            )
            .build()
    }

    fn response_elements(s: &ScheduleKeyDeletionResponse) -> Value {
        json!({
            "keyId": s.key_id,
            "deletionDate": format_rfc3339(s.deletion_date.as_millis()),
            "keyState": s.key_state.as_str(),
            "pendingWindowInDays": s.pending_window_in_days,
        })
    }
}

key_id_request!(CancelKeyDeletionRequest);

/// The answer of the calls that return only the key ARN (CancelKeyDeletion,
/// RotateKeyOnDemand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdResponse {
    /// The key ARN.
    pub key_id: String,
}

impl Operation for CancelKeyDeletionRequest {
    type Response = KeyIdResponse;
    const NAME: &'static str = "CancelKeyDeletion";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }

    fn response_elements(r: &KeyIdResponse) -> Value {
        trail::key_id(&r.key_id)
    }
}
