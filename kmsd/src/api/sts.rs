//! STS's GetCallerIdentity, answered by kmsd (it knows who a socket peer is).
//! Handler: `service/mod.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::{Operation, Service};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetCallerIdentityRequest {}

/// STS's `GetCallerIdentityResponse`, plus what atrest knows of a socket peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCallerIdentityResponse {
    /// The last part of the principal's ARN (the user or role session name).
    pub user_id: String,
    pub account: String,
    pub arn: String,
    /// The kernel-checked uid (atrest extension).
    pub unix_uid: u32,
    /// The principal the uid maps to (atrest extension).
    pub unix_principal: String,
    /// The service the request came via, if any (atrest extension).
    pub via: Option<String>,
}

impl Operation for GetCallerIdentityRequest {
    type Response = GetCallerIdentityResponse;
    const NAME: &'static str = "GetCallerIdentity";
    const SERVICE: Service = Service::Sts;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        Params::new().build()
    }
}
