//! STS: who the caller is (`GetCallerIdentity`).

use super::{Call, Caller, KeyService};
use crate::api::{GetCallerIdentityRequest, GetCallerIdentityResponse, Handle};
use crate::iam::derived_id;
use crate::policy::PrincipalKind;
use crate::protocol::KmsError;

impl KeyService {
    /// The caller's unique id as STS gives it: a user's id (`AIDA...`), a role
    /// session's role id and session name (`AROA...:SESSION`), the root's account.
    /// Users and roles the IAM store holds have theirs; others (a Unix user's default
    /// principal) one derived from their ARN.
    pub(crate) fn unique_id(&self, caller: &Caller) -> String {
        let p = &caller.principal;
        let account = p.account.clone().unwrap_or_default();
        let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        match &p.kind {
            PrincipalKind::Root => account,
            PrincipalKind::Service { name } => name.clone(),
            PrincipalKind::User { name } => self
                .iam_read(&account, |a| a.users.get(&last(name)).map(|u| u.id.clone()))
                .unwrap_or_else(|| derived_id("AIDA", &p.arn)),
            PrincipalKind::Role { name } => self
                .iam_read(&account, |a| a.roles.get(&last(name)).map(|r| r.id.clone()))
                .unwrap_or_else(|| derived_id("AROA", &p.arn)),
            PrincipalKind::AssumedRole { role, session } => {
                let role_id = self
                    .iam_read(&account, |a| a.roles.get(&last(role)).map(|r| r.id.clone()))
                    .unwrap_or_else(|| {
                        derived_id("AROA", &format!("arn:aws:iam::{account}:role/{role}"))
                    });
                format!("{role_id}:{session}")
            }
        }
    }
}

impl Handle<Call<'_>, GetCallerIdentityRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        _r: GetCallerIdentityRequest,
    ) -> Result<GetCallerIdentityResponse, KmsError> {
        let c = cx.caller;
        Ok(GetCallerIdentityResponse {
            user_id: self.unique_id(c),
            account: c.account.clone(),
            arn: c.principal_arn.clone(),
        })
    }
}
