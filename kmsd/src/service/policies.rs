//! Key policies: GetKeyPolicy, PutKeyPolicy (with the lockout safety check),
//! ListKeyPolicies, and how a stored policy becomes the parsed document that
//! authorization evaluates.

use super::{Call, Caller, KeyService};
use crate::api::default_policies::default_key_policy;
pub use crate::api::DEFAULT_POLICY_NAME;
use crate::api::{
    Empty, ErrorCode, GetKeyPolicyRequest, GetKeyPolicyResponse, Handle, KmsError,
    ListKeyPoliciesRequest, ListKeyPoliciesResponse, PutKeyPolicyRequest,
};
use crate::keystore::StoredKey;
use crate::policy::lockout::check_lockout;
use crate::policy::{PolicyDocument, PolicyError};

/// The parsed key policy of a stored key: its policy, or AWS's default key policy
/// for its account when it has none (keys created before policies were stored). A
/// stored policy that does not parse (it was validated when put, so only a damaged
/// or hand-edited file) allows nothing.
pub fn parse_stored(record: &StoredKey) -> PolicyDocument {
    let text = match &record.policy {
        Some(p) => p.clone(),
        None => default_key_policy(&record.account),
    };
    PolicyDocument::parse_key_policy(&text).unwrap_or_else(|e| {
        tracing::error!(key = %record.key_id, error = %e, "stored key policy does not parse: the key allows nothing until PutKeyPolicy");
        PolicyDocument {
            version: None,
            id: None,
            statements: Vec::new(),
        }
    })
}

pub fn policy_error(e: PolicyError) -> KmsError {
    let code = match &e {
        PolicyError::Malformed(_) => ErrorCode::MalformedPolicyDocumentException,
        PolicyError::InvalidPrincipal(_) => ErrorCode::MalformedPolicyDocumentException,
        PolicyError::InvalidArn(_) => ErrorCode::InvalidArnException,
    };
    KmsError::new(code, e.to_string())
}

fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(DEFAULT_POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::not_found(format!(
            "Policy '{other}' not found: the only key policy name is \"default\""
        ))),
    }
}

/// Parses a key policy for CreateKey or PutKeyPolicy and runs AWS's lockout
/// safety check: the policy must let `caller` call PutKeyPolicy on the key later.
pub fn check_new_policy(
    caller: &Caller,
    key_arn: &str,
    text: &str,
    bypass: bool,
) -> Result<PolicyDocument, KmsError> {
    if text.is_empty() || text.len() > 32768 {
        return Err(KmsError::constraint(
            "policy",
            "Member must have length between 1 and 32768",
        ));
    }
    let doc = PolicyDocument::parse_key_policy(text).map_err(policy_error)?;
    check_lockout(&doc, &caller.principal, key_arn, &caller.policies, bypass)
        .map_err(policy_error)?;
    Ok(doc)
}

impl Handle<Call<'_>, GetKeyPolicyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetKeyPolicyRequest,
    ) -> Result<GetKeyPolicyResponse, KmsError> {
        check_policy_name(r.policy_name.as_deref())?;
        let key = self.authorized_key(cx.caller, &r.key_id, "kms:GetKeyPolicy", &mut cx.key_arn)?;
        let policy = key
            .record
            .policy
            .clone()
            .unwrap_or_else(|| default_key_policy(&key.record.account));
        Ok(GetKeyPolicyResponse {
            policy_name: DEFAULT_POLICY_NAME.into(),
            policy,
        })
    }
}

impl Handle<Call<'_>, PutKeyPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: PutKeyPolicyRequest) -> Result<Empty, KmsError> {
        check_policy_name(r.policy_name.as_deref())?;
        let caller = cx.caller;
        let (policy, bypass) = (r.policy, r.bypass_policy_lockout_safety_check);
        self.change_key(
            caller,
            &r.key_id,
            "kms:PutKeyPolicy",
            &mut cx.key_arn,
            |rec| {
                check_new_policy(caller, &rec.arn(), &policy, bypass)?;
                rec.policy = Some(policy);
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, ListKeyPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListKeyPoliciesRequest,
    ) -> Result<ListKeyPoliciesResponse, KmsError> {
        let limit = super::keys::page_limit(r.limit)?;
        self.authorized_key(cx.caller, &r.key_id, "kms:ListKeyPolicies", &mut cx.key_arn)?;
        let names = vec![DEFAULT_POLICY_NAME.to_string()];
        let (policy_names, next_marker) =
            super::keys::paginate(names, r.marker.as_deref(), limit, |n| n)?;
        Ok(ListKeyPoliciesResponse {
            truncated: next_marker.is_some(),
            policy_names,
            next_marker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture, user_with};
    use crate::protocol::*;
    use crate::protocol::{CreateKeyRequest, Request};

    fn create(f: &super::super::testing::Fixture, policy: Option<String>) -> String {
        match f
            .svc
            .handle(
                &alice(),
                Request::CreateKey(CreateKeyRequest {
                    policy,
                    ..Default::default()
                }),
            )
            .unwrap()
        {
            Response::CreateKey(m) => m.key_metadata.key_id,
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn default_policy_is_stored_and_returned() {
        let f = fixture();
        let id = create(&f, None);
        let r = f
            .svc
            .handle(
                &alice(),
                Request::GetKeyPolicy(GetKeyPolicyRequest {
                    key_id: id.clone(),
                    policy_name: None,
                }),
            )
            .unwrap();
        let Response::GetKeyPolicy(GetKeyPolicyResponse {
            policy,
            policy_name,
        }) = r
        else {
            panic!()
        };
        assert_eq!(policy_name, "default");
        assert!(policy.contains("arn:aws:iam::111122223333:root"));
        assert!(policy.contains("Enable IAM User Permissions"));
        let e = f
            .svc
            .handle(
                &alice(),
                Request::GetKeyPolicy(GetKeyPolicyRequest {
                    key_id: id,
                    policy_name: Some("other".into()),
                }),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFoundException);
    }

    #[test]
    fn put_key_policy_refuses_lockout_unless_bypassed() {
        let f = fixture();
        let id = create(&f, None);
        let other_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"kms:*","Resource":"*"}]}"#;
        let put = |bypass: bool| {
            f.svc.handle(
                &alice(),
                Request::PutKeyPolicy(PutKeyPolicyRequest {
                    key_id: id.clone(),
                    policy_name: None,
                    policy: other_only.into(),
                    bypass_policy_lockout_safety_check: bypass,
                }),
            )
        };
        let e = put(false).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedPolicyDocumentException);
        assert!(e
            .message
            .contains("will not allow you to update the key policy"));
        put(true).unwrap();
        // Now alice is locked out; bob (named directly) is not.
        let e = f
            .svc
            .handle(
                &alice(),
                Request::DescribeKey(DescribeKeyRequest {
                    key_id: id.clone(),
                    grant_tokens: vec![],
                }),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        assert!(e.message.starts_with("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:DescribeKey on resource: arn:aws:kms:us-east-1:111122223333:key/"), "{}", e.message);
        let bob = user_with("arn:aws:iam::111122223333:user/bob", &[]);
        f.svc
            .handle(
                &bob,
                Request::DescribeKey(DescribeKeyRequest {
                    key_id: id.clone(),
                    grant_tokens: vec![],
                }),
            )
            .unwrap();
        let bad = f
            .svc
            .handle(
                &bob,
                Request::PutKeyPolicy(PutKeyPolicyRequest {
                    key_id: id,
                    policy_name: None,
                    policy: "{not json".into(),
                    bypass_policy_lockout_safety_check: false,
                }),
            )
            .unwrap_err();
        assert_eq!(bad.code, ErrorCode::MalformedPolicyDocumentException);
    }
}
