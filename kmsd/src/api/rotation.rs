//! Key rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations. Handlers: `service/rotation.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::deletion::KeyIdResponse;
use super::keys::{key_id_request, key_list_request};
use super::trail::{self, Params};
use super::types::{Empty, Timestamp};
use super::{Operation, Paginator, Service};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnableKeyRotationRequest {
    pub key_id: String,
    /// 90 to 2560 (default 365).
    #[serde(default)]
    pub rotation_period_in_days: Option<i32>,
}

impl Operation for EnableKeyRotationRequest {
    type Response = Empty;
    const NAME: &'static str = "EnableKeyRotation";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .opt("rotationPeriodInDays", self.rotation_period_in_days)
            .build()
    }
}

key_id_request!(DisableKeyRotationRequest);

impl Operation for DisableKeyRotationRequest {
    type Response = Empty;
    const NAME: &'static str = "DisableKeyRotation";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

key_id_request!(GetKeyRotationStatusRequest);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    /// The key ARN.
    pub key_id: String,
    pub rotation_period_in_days: Option<i32>,
    pub next_rotation_date: Option<Timestamp>,
    pub on_demand_rotation_start_date: Option<Timestamp>,
}

impl Operation for GetKeyRotationStatusRequest {
    type Response = GetKeyRotationStatusResponse;
    const NAME: &'static str = "GetKeyRotationStatus";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

key_id_request!(RotateKeyOnDemandRequest);

impl Operation for RotateKeyOnDemandRequest {
    type Response = KeyIdResponse;
    const NAME: &'static str = "RotateKeyOnDemand";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }

    fn response_elements(r: &KeyIdResponse) -> Value {
        trail::key_id(&r.key_id)
    }
}

key_list_request!(
    /// `Limit`: 1 to 1000 (default 100).
    ListKeyRotationsRequest
);

/// How a backing-key version came to be (AWS's `RotationType`). Append at the END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    #[serde(rename = "AUTOMATIC")]
    Automatic,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

impl RotationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationType::Automatic => "AUTOMATIC",
            RotationType::OnDemand => "ON_DEMAND",
        }
    }
}

/// One rotation (AWS's `RotationsListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationsListEntry {
    /// The key ARN.
    pub key_id: String,
    pub rotation_date: Timestamp,
    pub rotation_type: RotationType,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyRotationsResponse {
    pub rotations: Vec<RotationsListEntry>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListKeyRotationsRequest {
    type Response = ListKeyRotationsResponse;
    const NAME: &'static str = "ListKeyRotations";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["IncludeKeyMaterial"];
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Rotations"));

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}
