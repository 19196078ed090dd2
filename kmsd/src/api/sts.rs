//! STS, answered by kmsd (it knows who a caller is, and issues role sessions), with
//! botocore's STS model's member names (`botocore/data/sts/2011-06-15/service-2.json`).
//! Handlers: `service/sts.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::{Operation, Service};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetCallerIdentityRequest {}

/// STS's `GetCallerIdentityResponse`: exactly AWS's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCallerIdentityResponse {
    /// The principal's unique id: a user's `AIDA...`, a role session's
    /// `AROA...:SESSION`, the root's account id.
    pub user_id: String,
    pub account: String,
    pub arn: String,
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
