//! IAM's `CreateAccessKey`, `ListAccessKeys`, `UpdateAccessKey` and `DeleteAccessKey`:
//! a user's keys in kmsd's access-key store (the AWS endpoint's), at most two per user
//! as in AWS. A deleted or inactive key fails the next request signed with it.

use super::iam::{limit, no_such};
use super::{Call, Caller, KeyService};
use crate::api::{
    AccessKey, AccessKeyMetadata, CreateAccessKeyRequest, CreateAccessKeyResponse,
    DeleteAccessKeyRequest, Empty, Handle, ListAccessKeysRequest, ListAccessKeysResponse,
    Timestamp, UpdateAccessKeyRequest,
};
use crate::credentials::{AccessKeyStatus, KeyOrigin};
use crate::iam::names::{self, check_max_items, check_name, page};
use crate::policy::PrincipalKind;
use crate::protocol::{ErrorCode, KmsError};

/// Access keys one user may have.
const KEYS_PER_USER: usize = 2;

fn status(s: AccessKeyStatus) -> String {
    match s {
        AccessKeyStatus::Active => "Active".into(),
        AccessKeyStatus::Inactive => "Inactive".into(),
    }
}

fn store_failed(e: crate::credentials::AccessKeysError) -> KmsError {
    tracing::error!(error = %e, "access key store write failed");
    KmsError::new(
        ErrorCode::ServiceFailure,
        "kmsd could not write its access keys; nothing was changed",
    )
}

impl KeyService {
    /// The user an access-key call is about (`UserName`, or the caller's own user),
    /// its ARN, and the account, once `action` is authorized on it.
    fn key_owner(
        &self,
        caller: &Caller,
        user_name: Option<&str>,
        action: &str,
    ) -> Result<(String, String), KmsError> {
        let account = self.iam_account(caller)?;
        let (name, own) = match (user_name, &caller.principal.kind) {
            (Some(n), _) => (n.to_string(), false),
            (None, PrincipalKind::User { name }) => {
                (name.rsplit('/').next().unwrap_or(name).to_string(), true)
            }
            (None, _) => {
                return Err(KmsError::new(
                    ErrorCode::ValidationError,
                    format!(
                        "Must specify userName when calling with non-User credentials ({})",
                        caller.principal_arn
                    ),
                ))
            }
        };
        check_name("userName", &name, 64)?;
        let stored = self.iam_read(&account, |a| a.users.get(&name).map(|u| u.path.clone()));
        let arn = match stored {
            Some(path) => names::arn(&account, "user", &path, &name),
            // The caller's own principal is a user whether or not IAM made it.
            None if own => caller.principal_arn.clone(),
            None => return Err(no_such("user", &name)),
        };
        self.authorize_iam(caller, action, &arn)?;
        Ok((name, arn))
    }

    /// Whether user `arn` has access keys (DeleteUser refuses then).
    pub(crate) fn has_access_keys(&self, arn: &str) -> bool {
        !self.access_keys.for_principal(arn).is_empty()
    }
}

impl Handle<Call<'_>, CreateAccessKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreateAccessKeyRequest,
    ) -> Result<CreateAccessKeyResponse, KmsError> {
        let (name, arn) =
            self.key_owner(cx.caller, r.user_name.as_deref(), "iam:CreateAccessKey")?;
        if self.access_keys.for_principal(&arn).len() >= KEYS_PER_USER {
            return Err(limit("AccessKeysPerUser", KEYS_PER_USER));
        }
        let k = self
            .access_keys
            .create(&self.store, &arn, KeyOrigin::Iam, self.now_ms())
            .map_err(store_failed)?;
        Ok(CreateAccessKeyResponse {
            access_key: AccessKey {
                user_name: name,
                access_key_id: k.record.access_key_id.clone(),
                status: status(k.record.status),
                secret_access_key: k.secret.clone(),
                create_date: Timestamp::from_millis(k.record.create_date_ms),
            },
        })
    }
}

impl Handle<Call<'_>, ListAccessKeysRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListAccessKeysRequest,
    ) -> Result<ListAccessKeysResponse, KmsError> {
        let max = check_max_items(r.max_items)?;
        let (name, arn) =
            self.key_owner(cx.caller, r.user_name.as_deref(), "iam:ListAccessKeys")?;
        let mut all: Vec<AccessKeyMetadata> = self
            .access_keys
            .for_principal(&arn)
            .iter()
            .map(|k| AccessKeyMetadata {
                user_name: name.clone(),
                access_key_id: k.record.access_key_id.clone(),
                status: status(k.record.status),
                create_date: Timestamp::from_millis(k.record.create_date_ms),
            })
            .collect();
        all.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
        let (access_key_metadata, next) =
            page(all, |k| k.access_key_id.as_str(), r.marker.as_deref(), max)?;
        Ok(ListAccessKeysResponse {
            access_key_metadata,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

/// IAM's answer for a key id the user has not.
fn key_not_found(access_key_id: &str) -> KmsError {
    KmsError::new(
        ErrorCode::NoSuchEntity,
        format!("The Access Key with id {access_key_id} cannot be found."),
    )
}

impl KeyService {
    /// Checks that `access_key_id` is a key of the user `user_name` names (or the
    /// caller's own), once `action` is authorized on that user.
    fn owned_key(
        &self,
        caller: &Caller,
        user_name: Option<&str>,
        access_key_id: &str,
        action: &str,
    ) -> Result<(), KmsError> {
        let (_, arn) = self.key_owner(caller, user_name, action)?;
        match self.access_keys.get(access_key_id) {
            Some(k) if k.record.principal == arn => Ok(()),
            _ => Err(key_not_found(access_key_id)),
        }
    }
}

impl Handle<Call<'_>, DeleteAccessKeyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteAccessKeyRequest) -> Result<Empty, KmsError> {
        self.owned_key(
            cx.caller,
            r.user_name.as_deref(),
            &r.access_key_id,
            "iam:DeleteAccessKey",
        )?;
        if !self
            .access_keys
            .delete(&r.access_key_id)
            .map_err(store_failed)?
        {
            return Err(key_not_found(&r.access_key_id));
        }
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, UpdateAccessKeyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: UpdateAccessKeyRequest) -> Result<Empty, KmsError> {
        let status = match r.status.as_str() {
            "Active" => AccessKeyStatus::Active,
            "Inactive" => AccessKeyStatus::Inactive,
            other => {
                return Err(KmsError::new(
                    ErrorCode::ValidationError,
                    format!(
                        "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                    ),
                ))
            }
        };
        self.owned_key(
            cx.caller,
            r.user_name.as_deref(),
            &r.access_key_id,
            "iam:UpdateAccessKey",
        )?;
        if !self
            .access_keys
            .set_status(&r.access_key_id, status)
            .map_err(store_failed)?
        {
            return Err(key_not_found(&r.access_key_id));
        }
        Ok(Empty {})
    }
}
