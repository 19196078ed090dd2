//! Grants in the service: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
//! RevokeGrant, and their storage. The grant model and its rules are pure code in
//! [`crate::grants`]; authorization uses grants in [`super::authz`].
//!
//! Storage: `kms/grants/<key-id>.json`, one file per key holding all its grants,
//! replaced whole with `write_atomic` (a kill -9 leaves the old or the new set). A
//! change is durable before it is acknowledged, and takes effect for every request
//! the moment it is acknowledged (no eventual consistency: a grant works at once
//! without its token, and a retired or revoked grant stops working at once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::authz::RequestContext;
use super::directory::{designates, ec2_infrastructure_arn};
use super::keys::{page_limit, paginate};
use super::{storage_error, Call, KeyEntry, KeyService};
use crate::api::{
    CreateGrantRequest, CreateGrantResponse, Empty, ErrorCode, GrantConstraints, GrantListEntry,
    Handle, KmsError, ListGrantsRequest, ListGrantsResponse, ListRetirableGrantsRequest,
    RetireGrantRequest, RevokeGrantRequest, Timestamp,
};
use crate::grants::{
    grant_id_from_token, new_grant_id, new_grant_token, retire_authority, service_region_match,
    validate_create_grant, CreateGrantInput, Grant, GrantConstraints as ModelConstraints,
    GrantRequest, RetireAuthority,
};
use crate::keystore::KeystoreError;

/// Most grants one key may have (AWS allows 50,000).
pub const MAX_GRANTS_PER_KEY: usize = 10_000;
/// Tokens remembered per grant (a Name-idempotent CreateGrant issues a new one each time).
const MAX_TOKENS_PER_GRANT: usize = 64;
const FILE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct GrantsFile {
    format: u32,
    key_id: String,
    grants: Vec<Grant>,
}

fn grants_dir(kms_dir: &Path) -> PathBuf {
    kms_dir.join("grants")
}

fn grants_path(kms_dir: &Path, key_id: &str) -> PathBuf {
    grants_dir(kms_dir).join(format!("{key_id}.json"))
}

/// Loads every key's grants; files of keys that no longer exist (a crash between
/// deleting a key and its grants) are removed.
pub(crate) fn load(
    kms_dir: &Path,
    keys: &HashMap<String, Arc<KeyEntry>>,
) -> Result<HashMap<String, Arc<Vec<Grant>>>, KeystoreError> {
    let dir = grants_dir(kms_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeystoreError::Io { path, source }
    };
    let mut out = HashMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(&dir)(e)),
    };
    for ent in entries {
        let ent = ent.map_err(io(&dir))?;
        let path = ent.path();
        let Some(key_id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue; // temp files of an interrupted write_atomic
        };
        if !keys.contains_key(&key_id) {
            tracing::warn!(path = %path.display(), "removing grants of a deleted key");
            std::fs::remove_file(&path).map_err(io(&path))?;
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let file: GrantsFile =
            serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if file.format != FILE_FORMAT || file.key_id != key_id {
            return Err(KeystoreError::Invalid {
                path,
                message: format!(
                    "format {} / key {} (expected format {FILE_FORMAT}, key {key_id})",
                    file.format, file.key_id
                ),
            });
        }
        out.insert(key_id, Arc::new(file.grants));
    }
    Ok(out)
}

fn to_wire(c: &ModelConstraints) -> GrantConstraints {
    GrantConstraints {
        encryption_context_equals: c.encryption_context_equals.clone(),
        encryption_context_subset: c.encryption_context_subset.clone(),
    }
}

fn list_entry(g: &Grant) -> GrantListEntry {
    GrantListEntry {
        key_id: g.key_arn.clone(),
        grant_id: g.grant_id.clone(),
        name: g.name.clone(),
        creation_date: Timestamp::from_secs(g.creation_date),
        grantee_principal: g.grantee_principal.clone(),
        retiring_principal: g.retiring_principal.clone(),
        issuing_account: g.issuing_account_arn(),
        operations: g
            .operations
            .iter()
            .map(|o| o.as_str().to_string())
            .collect(),
        constraints: g.constraints.as_ref().map(to_wire),
    }
}

/// A stand-in the pure validator accepts for EC2's `ACCOUNT:aws:ec2-infrastructure:ID`
/// grantee form (and `SERVICE.REGION.amazonaws.com` is already accepted).
fn validatable(p: &str) -> String {
    match ec2_infrastructure_arn(p) {
        Some(_) => p
            .split_once(':')
            .map(|(acct, _)| format!("arn:aws:iam::{acct}:root"))
            .unwrap_or_default(),
        None => p.to_string(),
    }
}

/// Validates CreateGrant input with [`validate_create_grant`], keeping the principals
/// exactly as the caller wrote them.
pub fn validate(r: &CreateGrantRequest) -> Result<GrantRequest, KmsError> {
    let input = CreateGrantInput {
        key_id: r.key_id.clone(),
        grantee_principal: validatable(&r.grantee_principal),
        retiring_principal: r.retiring_principal.as_deref().map(validatable),
        operations: r.operations.clone(),
        constraints: r.constraints.as_ref().map(|c| ModelConstraints {
            encryption_context_equals: c.encryption_context_equals.clone(),
            encryption_context_subset: c.encryption_context_subset.clone(),
        }),
        name: r.name.clone(),
        grant_tokens: r.grant_tokens.clone(),
    };
    let mut req = validate_create_grant(&input).map_err(|e| {
        let code = match e.aws_error_code() {
            "InvalidGrantTokenException" => ErrorCode::InvalidGrantTokenException,
            "AccessDeniedException" => ErrorCode::AccessDeniedException,
            _ => ErrorCode::ValidationException,
        };
        KmsError::new(code, e.to_string())
    })?;
    req.grantee_principal = r.grantee_principal.clone();
    req.retiring_principal = r.retiring_principal.clone();
    Ok(req)
}

fn check_grant_id(id: &str) -> Result<(), KmsError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(KmsError::new(
            ErrorCode::InvalidGrantIdException,
            format!("Invalid grant ID '{id}': a grant ID is 64 hexadecimal characters"),
        ))
    }
}

fn grant_not_found(key_arn: &str, id: &str) -> KmsError {
    KmsError::not_found(format!("Grant ID {id} not found for key {key_arn}"))
}

impl KeyService {
    /// Persists a key's new grant list and swaps it in. Call with `writer()` held.
    fn commit_grants(&self, key_id: &str, grants: Vec<Grant>) -> Result<(), KmsError> {
        let path = grants_path(&self.kms_dir, key_id);
        let written = if grants.is_empty() {
            match std::fs::remove_file(&path) {
                Ok(()) => plumbing::durable::sync_dir(&grants_dir(&self.kms_dir)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            let file = GrantsFile {
                format: FILE_FORMAT,
                key_id: key_id.to_string(),
                grants: grants.clone(),
            };
            serde_json::to_vec_pretty(&file)
                .map_err(std::io::Error::other)
                .and_then(|bytes| {
                    plumbing::durable::ensure_dir(&grants_dir(&self.kms_dir), 0o700)?;
                    plumbing::durable::write_atomic(&path, &bytes, 0o600)
                })
        };
        written.map_err(|source| storage_error(KeystoreError::Io { path, source }))?;
        self.apply(|s| {
            if grants.is_empty() {
                s.grants.remove(key_id);
            } else {
                s.grants.insert(key_id.to_string(), Arc::new(grants));
            }
        });
        Ok(())
    }

    /// Forgets a deleted key's grants (its file, then memory).
    pub(crate) fn drop_grants(&self, key_id: &str) -> Result<(), KmsError> {
        self.commit_grants(key_id, Vec::new())
    }
}

impl Handle<Call<'_>, CreateGrantRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreateGrantRequest,
    ) -> Result<CreateGrantResponse, KmsError> {
        let caller = cx.caller;
        let greq = validate(&r)?;
        let _w = self.writer();
        let key = self.resolve(caller, &r.key_id)?;
        cx.key_arn = Some(key.arn.clone());
        self.authorize(
            caller,
            "kms:CreateGrant",
            Some(&key),
            &RequestContext {
                encryption_context: None,
                grant_tokens: &r.grant_tokens,
                create_grant: Some(&greq),
            },
        )?;
        super::rules::check("kms:CreateGrant", &key)?;
        let key_id = key.record.key_id.clone();
        let mut grants: Vec<Grant> = self.grants_of(&key_id).as_ref().clone();
        let existing = grants.iter().position(|g| g.same_request(&key.arn, &greq));
        let index = match existing {
            Some(i) => i,
            None => {
                if grants.len() >= MAX_GRANTS_PER_KEY {
                    return Err(KmsError::new(
                        ErrorCode::LimitExceededException,
                        format!("Key {} already has {MAX_GRANTS_PER_KEY} grants", key.arn),
                    ));
                }
                let created_s = self.now_ms().div_euclid(1000);
                grants.push(Grant::from_request(
                    &greq,
                    new_grant_id(),
                    &key.arn,
                    &caller.account,
                    created_s,
                ));
                grants.len() - 1
            }
        };
        let Some(grant) = grants.get_mut(index) else {
            return Err(KmsError::internal("grant vanished while being created"));
        };
        let token = new_grant_token(&grant.grant_id)
            .map_err(|e| KmsError::internal(format!("cannot issue a grant token: {e}")))?;
        grant.grant_tokens.push(token.clone());
        if grant.grant_tokens.len() > MAX_TOKENS_PER_GRANT {
            grant.grant_tokens.remove(0);
        }
        let grant_id = grant.grant_id.clone();
        self.commit_grants(&key_id, grants)?;
        Ok(CreateGrantResponse {
            grant_id,
            grant_token: token,
        })
    }
}

impl Handle<Call<'_>, ListGrantsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListGrantsRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        let limit = page_limit(r.limit)?;
        if let Some(id) = &r.grant_id {
            check_grant_id(id)?;
        }
        let key = self.resolve(cx.caller, &r.key_id)?;
        cx.key_arn = Some(key.arn.clone());
        self.authorize(
            cx.caller,
            "kms:ListGrants",
            Some(&key),
            &RequestContext::default(),
        )?;
        let mut grants: Vec<GrantListEntry> = self
            .grants_of(&key.record.key_id)
            .iter()
            .filter(|g| r.grant_id.as_ref().is_none_or(|id| &g.grant_id == id))
            .filter(|g| {
                r.grantee_principal
                    .as_ref()
                    .is_none_or(|p| &g.grantee_principal == p)
            })
            .map(list_entry)
            .collect();
        grants.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
        let (grants, next_marker) = paginate(grants, r.marker.as_deref(), limit, |g| &g.grant_id)?;
        Ok(ListGrantsResponse {
            truncated: next_marker.is_some(),
            grants,
            next_marker,
        })
    }
}

impl Handle<Call<'_>, ListRetirableGrantsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListRetirableGrantsRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        let caller = cx.caller;
        let limit = page_limit(r.limit)?;
        if r.retiring_principal.is_empty() {
            return Err(KmsError::constraint(
                "retiringPrincipal",
                "Member must have length greater than or equal to 1",
            ));
        }
        // A trusted service asking for the grants it may retire itself (EC2 cleaning up
        // after a crash) sees them in every account, as it retires them in every account.
        let own = service_region_match(&r.retiring_principal, &caller.principal)
            || designates(&r.retiring_principal, &caller.principal)
                && caller.principal.is_service();
        if !own {
            self.authorize(
                caller,
                "kms:ListRetirableGrants",
                None,
                &RequestContext::default(),
            )?;
        }
        let state = self.read();
        let mut grants: Vec<GrantListEntry> = state
            .grants
            .values()
            .flat_map(|gs| gs.iter())
            .filter(|g| g.retiring_principal.as_deref() == Some(r.retiring_principal.as_str()))
            // Otherwise only keys of the caller's account are listed.
            .filter(|g| {
                own || crate::trail::record::account_of_arn(&g.key_arn).as_deref()
                    == Some(caller.account.as_str())
            })
            .map(list_entry)
            .collect();
        drop(state);
        grants.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
        let (grants, next_marker) = paginate(grants, r.marker.as_deref(), limit, |g| &g.grant_id)?;
        Ok(ListGrantsResponse {
            truncated: next_marker.is_some(),
            grants,
            next_marker,
        })
    }
}

impl Handle<Call<'_>, RetireGrantRequest> for KeyService {
    /// RetireGrant: by the retiring principal, by the grantee when the grant
    /// includes RetireGrant, by the issuing account's root, or by a principal of the
    /// issuing account whose policies allow `kms:RetireGrant` on the key.
    fn handle(&self, cx: &mut Call<'_>, r: RetireGrantRequest) -> Result<Empty, KmsError> {
        let caller = cx.caller;
        let _w = self.writer();
        let (key, grant_id) = match (&r.grant_token, &r.key_id, &r.grant_id) {
            (Some(token), _, _) => {
                let id = grant_id_from_token(token).map_err(|e| {
                    KmsError::new(ErrorCode::InvalidGrantTokenException, e.to_string())
                })?;
                let state = self.read();
                let found = state.grants.iter().find_map(|(key_id, gs)| {
                    gs.iter()
                        .find(|g| g.grant_id == id && g.grant_tokens.iter().any(|t| t == token))
                        .and_then(|_| state.keys.get(key_id).cloned())
                });
                drop(state);
                match found {
                    Some(k) => (k, id),
                    None => {
                        return Err(KmsError::not_found(
                            "Grant not found: the grant token names no grant (it was retired or revoked)",
                        ))
                    }
                }
            }
            (None, Some(k), Some(id)) => {
                check_grant_id(id)?;
                (self.resolve(caller, k)?, id.clone())
            }
            _ => {
                return Err(KmsError::validation(
                    "Specify a GrantToken, or both a KeyId and a GrantId",
                ))
            }
        };
        cx.key_arn = Some(key.arn.clone());
        let key_id = key.record.key_id.clone();
        let mut grants: Vec<Grant> = self.grants_of(&key_id).as_ref().clone();
        let Some(pos) = grants.iter().position(|g| g.grant_id == grant_id) else {
            return Err(grant_not_found(&key.arn, &grant_id));
        };
        let Some(grant) = grants.get(pos) else {
            return Err(grant_not_found(&key.arn, &grant_id));
        };
        let p = &caller.principal;
        let allowed = match retire_authority(grant, p, |named| designates(named, p)) {
            RetireAuthority::IssuingAccountPrincipal => self
                .authorize(
                    caller,
                    "kms:RetireGrant",
                    Some(&key),
                    &RequestContext::default(),
                )
                .is_ok(),
            authority => authority.by_grant(),
        };
        if !allowed {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "User: {} is not authorized to perform: kms:RetireGrant on resource: {} because it is not the grant's retiring principal, nor its grantee with RetireGrant, nor allowed kms:RetireGrant in the issuing account",
                    p.arn, key.arn
                ),
            ));
        }
        grants.remove(pos);
        self.commit_grants(&key_id, grants)?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, RevokeGrantRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: RevokeGrantRequest) -> Result<Empty, KmsError> {
        let grant_id = r.grant_id.as_str();
        check_grant_id(grant_id)?;
        let _w = self.writer();
        let key = self.authorized_key(cx.caller, &r.key_id, "kms:RevokeGrant", &mut cx.key_arn)?;
        let id = key.record.key_id.clone();
        let mut grants: Vec<Grant> = self.grants_of(&id).as_ref().clone();
        let before = grants.len();
        grants.retain(|g| g.grant_id != grant_id);
        if grants.len() == before {
            return Err(grant_not_found(&key.arn, grant_id));
        }
        self.commit_grants(&id, grants)?;
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture, user_with, Fixture};
    use super::*;
    use crate::protocol::*;
    use crate::protocol::{
        CreateKeyRequest, DecryptRequest, EncryptionContext, GenerateDataKeyRequest, Request,
        ViaService,
    };
    use crate::service::Caller;

    fn create_key(f: &Fixture) -> String {
        match f
            .svc
            .handle(&alice(), Request::CreateKey(CreateKeyRequest::default()))
            .unwrap()
        {
            Response::CreateKey(m) => m.key_metadata.key_id,
            r => panic!("{r:?}"),
        }
    }

    fn ctx(k: &str, v: &str) -> EncryptionContext {
        [(k.to_string(), v.to_string())].into_iter().collect()
    }

    fn encrypt_blob(f: &Fixture, key: &str, ec: &EncryptionContext) -> Vec<u8> {
        match f
            .svc
            .handle(
                &alice(),
                Request::GenerateDataKeyWithoutPlaintext(GenerateDataKeyWithoutPlaintextRequest {
                    key_id: key.into(),
                    key_spec: None,
                    number_of_bytes: Some(64),
                    encryption_context: ec.clone(),
                    grant_tokens: vec![],
                }),
            )
            .unwrap()
        {
            Response::GenerateDataKeyWithoutPlaintext(r) => r.ciphertext_blob.into_vec(),
            r => panic!("{r:?}"),
        }
    }

    fn decrypt(
        f: &Fixture,
        who: &Caller,
        blob: &[u8],
        ec: &EncryptionContext,
    ) -> Result<Response, KmsError> {
        f.svc.handle(
            who,
            Request::Decrypt(DecryptRequest {
                ciphertext_blob: blob.into(),
                encryption_context: ec.clone(),
                key_id: None,
                grant_tokens: vec![],
                encryption_algorithm: None,
            }),
        )
    }

    #[test]
    fn a_grant_allows_exactly_its_operations_within_its_constraints_until_retired() {
        let f = fixture();
        let key = create_key(&f);
        let vol = ctx("aws:ebs:id", "vol-1");
        let blob = encrypt_blob(&f, &key, &vol);
        let bob = user_with("arn:aws:iam::111122223333:user/bob", &[]);
        let e = decrypt(&f, &bob, &blob, &vol).unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        let created = f
            .svc
            .handle(
                &alice(),
                Request::CreateGrant(CreateGrantRequest {
                    key_id: key.clone(),
                    grantee_principal: bob.principal_arn.clone(),
                    retiring_principal: None,
                    operations: vec!["Decrypt".into()],
                    constraints: Some(GrantConstraints {
                        encryption_context_equals: None,
                        encryption_context_subset: Some(vol.clone()),
                    }),
                    name: None,
                    grant_tokens: vec![],
                }),
            )
            .unwrap();
        let Response::CreateGrant(CreateGrantResponse {
            grant_id,
            grant_token,
        }) = created
        else {
            panic!()
        };
        assert_eq!(grant_id.len(), 64);
        assert!(grant_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!grant_token.is_empty());
        // Works at once, without the token; only within the constraint; only Decrypt.
        decrypt(&f, &bob, &blob, &vol).unwrap();
        let other = ctx("aws:ebs:id", "vol-2");
        let blob2 = encrypt_blob(&f, &key, &other);
        assert_eq!(
            decrypt(&f, &bob, &blob2, &other).unwrap_err().code,
            ErrorCode::AccessDeniedException
        );
        let gdk = f.svc.handle(
            &bob,
            Request::GenerateDataKey(GenerateDataKeyRequest {
                key_id: key.clone(),
                key_spec: None,
                number_of_bytes: Some(32),
                encryption_context: vol.clone(),
                grant_tokens: vec![],
            }),
        );
        assert_eq!(gdk.unwrap_err().code, ErrorCode::AccessDeniedException);
        // The grantee cannot retire it (no RetireGrant, no retiring principal)...
        let e = f
            .svc
            .handle(
                &bob,
                Request::RetireGrant(RetireGrantRequest {
                    grant_token: Some(grant_token.clone()),
                    key_id: None,
                    grant_id: None,
                }),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        // ...the issuing account's admin can, and it stops working at once.
        f.svc
            .handle(
                &alice(),
                Request::RetireGrant(RetireGrantRequest {
                    grant_token: Some(grant_token),
                    key_id: None,
                    grant_id: None,
                }),
            )
            .unwrap();
        assert_eq!(
            decrypt(&f, &bob, &blob, &vol).unwrap_err().code,
            ErrorCode::AccessDeniedException
        );
        let listed = f
            .svc
            .handle(
                &alice(),
                Request::ListGrants(ListGrantsRequest {
                    key_id: key,
                    ..Default::default()
                }),
            )
            .unwrap();
        assert!(matches!(listed, Response::ListGrants(l) if l.grants.is_empty()));
    }

    #[test]
    fn ec2_infrastructure_grant_and_service_retirement() {
        let f = fixture();
        let key = create_key(&f);
        let vol = ctx("aws:ebs:id", "vol-9");
        let blob = encrypt_blob(&f, &key, &vol);
        let mut svc_user = alice();
        svc_user.via = Some(ViaService {
            service: "ec2.amazonaws.com".into(),
            on_behalf_of: Some(alice().principal_arn),
            grant_is_for_aws_resource: true,
        });
        let grantee = "111122223333:aws:ec2-infrastructure:i-0abc";
        let Response::CreateGrant(CreateGrantResponse { grant_id, .. }) = f
            .svc
            .handle(
                &svc_user,
                Request::CreateGrant(CreateGrantRequest {
                    key_id: key.clone(),
                    grantee_principal: grantee.into(),
                    retiring_principal: Some("ec2.us-east-1.amazonaws.com".into()),
                    operations: vec!["Decrypt".into()],
                    constraints: Some(GrantConstraints {
                        encryption_context_equals: None,
                        encryption_context_subset: Some(vol.clone()),
                    }),
                    name: None,
                    grant_tokens: vec![],
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        let mut infra = user_with(
            "arn:aws:sts::111122223333:assumed-role/aws:ec2-infrastructure/i-0abc",
            &[],
        );
        infra.via = Some(ViaService {
            service: "ec2.amazonaws.com".into(),
            on_behalf_of: Some(grantee.into()),
            grant_is_for_aws_resource: false,
        });
        decrypt(&f, &infra, &blob, &vol).unwrap();
        let mut ec2 = user_with("ec2.amazonaws.com", &[]);
        ec2.via = infra.via.clone();
        f.svc
            .handle(
                &ec2,
                Request::RetireGrant(RetireGrantRequest {
                    grant_token: None,
                    // A service principal has no account: it names keys by ARN.
                    key_id: Some(format!("arn:aws:kms:us-east-1:111122223333:key/{key}")),
                    grant_id: Some(grant_id),
                }),
            )
            .unwrap();
        assert!(decrypt(&f, &infra, &blob, &vol).is_err());
    }

    #[test]
    fn name_makes_create_grant_idempotent_and_grants_survive_reopen() {
        let f = fixture();
        let key = create_key(&f);
        let req = CreateGrantRequest {
            key_id: key.clone(),
            grantee_principal: "arn:aws:iam::111122223333:user/bob".into(),
            operations: vec!["Encrypt".into(), "Decrypt".into()],
            name: Some("backup".into()),
            ..Default::default()
        };
        let id = |r: Response| match r {
            Response::CreateGrant(CreateGrantResponse { grant_id, .. }) => grant_id,
            r => panic!("{r:?}"),
        };
        let a = id(f
            .svc
            .handle(&alice(), Request::CreateGrant(req.clone()))
            .unwrap());
        let b = id(f
            .svc
            .handle(&alice(), Request::CreateGrant(req.clone()))
            .unwrap());
        assert_eq!(a, b);
        let bad = f.svc.handle(
            &alice(),
            Request::CreateGrant(CreateGrantRequest {
                operations: vec!["Fly".into()],
                ..req
            }),
        );
        assert_eq!(bad.unwrap_err().code, ErrorCode::ValidationException);
        // Disabled key: DisabledException.
        f.svc
            .handle(
                &alice(),
                Request::DisableKey(DisableKeyRequest {
                    key_id: key.clone(),
                }),
            )
            .unwrap();
        let e = f
            .svc
            .handle(
                &alice(),
                Request::CreateGrant(CreateGrantRequest {
                    key_id: key.clone(),
                    grantee_principal: "arn:aws:iam::111122223333:user/carol".into(),
                    operations: vec!["Decrypt".into()],
                    ..Default::default()
                }),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DisabledException);
        let loaded = load(&f.svc.kms_dir, &f.svc.read().keys).unwrap();
        assert_eq!(loaded[&key].len(), 1);
        assert_eq!(loaded[&key][0].grant_id, a);
    }

    #[test]
    fn service_region_names() {
        let s = crate::policy::Principal::parse("ec2.amazonaws.com").unwrap();
        assert!(service_region_match("ec2.us-east-1.amazonaws.com", &s));
        assert!(!service_region_match("s3.us-east-1.amazonaws.com", &s));
        assert!(!service_region_match("ec2.amazonaws.com.evil", &s));
    }
}
