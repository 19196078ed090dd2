//! A cache of the policy allows [`super::KeyService::authorize`] computes, so that a
//! caller repeating a call on a key (a volume decrypting its data keys, the bench's
//! Decrypt loop) does not build a policy context and match every statement again.
//!
//! Only what is sound to reuse is cached:
//! - **allows only.** A refusal is computed every time (its message, the grants that
//!   may still allow it, and grant-token checks are all per request).
//! - **by policies alone.** A grant's allow is not cached (grants may be constrained
//!   by the encryption context, and are looked up per request anyway).
//! - **unconditional policies only.** If the key policy or any of the caller's IAM
//!   policies has a `Condition`, the decision may depend on the request (encryption
//!   context, `kms:ViaService`, ...) and is not cached. Without conditions, policy
//!   evaluation reads nothing but the principal, the action, the key's ARN and account,
//!   and the documents themselves.
//!
//! An entry is keyed by the principal's ARN, the action, the key's ARN and the identity
//! of the two immutable inputs: the key policy document and the caller's IAM policy set
//! (`Arc` pointers; the entry holds both `Arc`s, so no other document can be allocated
//! at the same address while it lives). A change replaces a document rather than
//! editing it, so an entry made from the old one never matches again. On top of that,
//! every change to keys, key policies, grants, aliases, IAM or the configuration bumps
//! one generation counter ([`DecisionCache::invalidate`], called by
//! [`super::KeyService::apply`] and [`super::KeyService::set_directory`]), and an entry
//! of an older generation is never served: the cache is emptied on the next call.
//! Key state (disabled, pending deletion) is checked after authorization on every
//! call ([`super::rules::check`]), never cached. Bounded: emptied at [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::directory::Policies;
use super::Caller;
use crate::policy::PolicyDocument;

/// Entries kept before the cache is emptied (a few hundred bytes each).
pub(crate) const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub(crate) struct DecisionCache {
    generation: AtomicU64,
    table: RwLock<Table>,
    #[cfg(test)]
    pub(crate) hits: AtomicU64,
}

#[derive(Default)]
struct Table {
    /// The generation the entries belong to.
    generation: u64,
    entries: usize,
    /// By (key policy pointer, IAM policy set pointer): the allows computed from them.
    allows: HashMap<(usize, usize), Vec<Allowed>>,
}

struct Allowed {
    principal_arn: String,
    action: String,
    key_arn: String,
    /// Held so that the pointers in the key stay unique while the entry lives.
    _key_policy: Arc<PolicyDocument>,
    _policies: Policies,
}

fn pointers(key_policy: &Arc<PolicyDocument>, caller: &Caller) -> (usize, usize) {
    (
        Arc::as_ptr(key_policy) as usize,
        Arc::as_ptr(&caller.policies) as usize,
    )
}

fn conditional(doc: &PolicyDocument) -> bool {
    doc.statements.iter().any(|s| !s.conditions.is_empty())
}

impl DecisionCache {
    /// Something that authorization reads changed: no entry made before is served.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the policies were found to allow `caller` to do `action` on the key
    /// `key_arn` whose policy is `key_policy`, and nothing changed since.
    pub(crate) fn allows(
        &self,
        caller: &Caller,
        action: &str,
        key_arn: &str,
        key_policy: &Arc<PolicyDocument>,
    ) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        if table.generation != generation {
            return false;
        }
        let hit = table
            .allows
            .get(&pointers(key_policy, caller))
            .is_some_and(|list| {
                list.iter().any(|a| {
                    a.principal_arn == caller.principal.arn
                        && a.action == action
                        && a.key_arn == key_arn
                })
            });
        #[cfg(test)]
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Records that the policies allow this call, if the decision cannot depend on the
    /// request (see the module docs). `generation` is [`DecisionCache::generation`]
    /// read before the decision was computed: if a change landed since, nothing is
    /// recorded. (A decision computed from documents that a change had already replaced
    /// before that read is recorded, but never matches: its key names the replaced
    /// documents, which the entry keeps alive, while later requests carry the new ones.)
    pub(crate) fn remember(
        &self,
        generation: u64,
        caller: &Caller,
        action: &str,
        key_arn: &str,
        key_policy: &Arc<PolicyDocument>,
    ) {
        if conditional(key_policy) || caller.policies.iter().any(conditional) {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if table.generation != generation || table.entries >= MAX_ENTRIES {
            table.allows.clear();
            table.entries = 0;
            table.generation = generation;
        }
        let list = table
            .allows
            .entry(pointers(key_policy, caller))
            .or_default();
        if list.iter().any(|a| {
            a.principal_arn == caller.principal.arn && a.action == action && a.key_arn == key_arn
        }) {
            return;
        }
        list.push(Allowed {
            principal_arn: caller.principal.arn.clone(),
            action: action.to_string(),
            key_arn: key_arn.to_string(),
            _key_policy: Arc::clone(key_policy),
            _policies: Arc::clone(&caller.policies),
        });
        table.entries += 1;
    }

    /// The current generation, to pass to [`DecisionCache::remember`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::authz::Peer;
    use super::super::testing::{fixture, Fixture};
    use crate::protocol::*;

    const DEV: &str = "arn:aws:iam::111122223333:user/dev";

    /// The fixture's own uid: the lab account's administrator, who may act as any user.
    fn peer() -> Peer {
        Peer {
            uid: 0,
            pid: None,
            user: "admin".into(),
            source: "test".into(),
        }
    }

    /// One request as a connection makes it: admitted (as `act_as`) from the directory.
    fn call(f: &Fixture, act_as: Option<&str>, request: Request) -> Result<Response, KmsError> {
        f.svc.handle_envelope(
            &peer(),
            RequestEnvelope {
                version: PROTOCOL_VERSION,
                act_as: act_as.map(str::to_string),
                via: None,
                request,
                signer: None,
            },
        )
    }

    fn admin(f: &Fixture, request: Request) -> Response {
        call(f, None, request).unwrap()
    }

    fn encrypt(f: &Fixture, act_as: &str, key: &str, ec: &[(&str, &str)]) -> Result<(), ErrorCode> {
        call(
            f,
            Some(act_as),
            Request::Encrypt(EncryptRequest {
                key_id: key.into(),
                plaintext: SecretBlob::new(b"hi".to_vec()),
                encryption_context: ec
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                grant_tokens: vec![],
                encryption_algorithm: None,
            }),
        )
        .map(|_| ())
        .map_err(|e| e.code)
    }

    fn hits(f: &Fixture) -> u64 {
        f.svc.decisions.hits.load(Ordering::Relaxed)
    }

    fn create_key(f: &Fixture) -> String {
        match admin(f, Request::CreateKey(CreateKeyRequest::default())) {
            Response::CreateKey(m) => m.key_metadata.key_id,
            other => panic!("{other:?}"),
        }
    }

    fn create_user(f: &Fixture, name: &str) {
        admin(
            f,
            Request::CreateUser(CreateUserRequest {
                path: None,
                user_name: name.into(),
            }),
        );
    }

    fn put_user_policy(f: &Fixture, user: &str, document: &str) {
        admin(
            f,
            Request::PutUserPolicy(PutUserPolicyRequest {
                user_name: user.into(),
                policy_name: "use-keys".into(),
                policy_document: document.into(),
            }),
        );
    }

    const USE_KEYS: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}]}"#;

    /// `encrypt` twice allowed, the second time from the cache.
    fn allowed_and_cached(f: &Fixture, act_as: &str, key: &str) {
        encrypt(f, act_as, key, &[]).unwrap();
        let before = hits(f);
        encrypt(f, act_as, key, &[]).unwrap();
        assert_eq!(
            hits(f),
            before + 1,
            "the second call was not served from the cache"
        );
    }

    #[test]
    fn a_cached_allow_is_never_served_after_a_change_that_refuses() {
        let f = fixture();
        let key = create_key(&f);
        create_user(&f, "dev");
        put_user_policy(&f, "dev", USE_KEYS);

        // The IAM policy that allowed it is deleted: refused on the very next call.
        allowed_and_cached(&f, DEV, &key);
        admin(
            &f,
            Request::DeleteUserPolicy(DeleteUserPolicyRequest(GetUserPolicyRequest {
                user_name: "dev".into(),
                policy_name: "use-keys".into(),
            })),
        );
        assert_eq!(
            encrypt(&f, DEV, &key, &[]),
            Err(ErrorCode::AccessDeniedException)
        );

        // A key policy that denies the caller.
        put_user_policy(&f, "dev", USE_KEYS);
        allowed_and_cached(&f, DEV, &key);
        let deny = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:root"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"not-dev","Effect":"Deny","Principal":{{"AWS":"{DEV}"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#
        );
        admin(
            &f,
            Request::PutKeyPolicy(PutKeyPolicyRequest {
                key_id: key.clone(),
                policy_name: None,
                policy: deny,
                bypass_policy_lockout_safety_check: false,
            }),
        );
        assert_eq!(
            encrypt(&f, DEV, &key, &[]),
            Err(ErrorCode::AccessDeniedException)
        );

        // A disabled key.
        let key2 = create_key(&f);
        allowed_and_cached(&f, DEV, &key2);
        admin(
            &f,
            Request::DisableKey(DisableKeyRequest {
                key_id: key2.clone(),
            }),
        );
        assert_eq!(
            encrypt(&f, DEV, &key2, &[]),
            Err(ErrorCode::DisabledException)
        );

        // A revoked grant (the only thing that let `granted` in).
        let key3 = create_key(&f);
        create_user(&f, "granted");
        let granted = "arn:aws:iam::111122223333:user/granted";
        assert_eq!(
            encrypt(&f, granted, &key3, &[]),
            Err(ErrorCode::AccessDeniedException)
        );
        let Response::CreateGrant(g) = admin(
            &f,
            Request::CreateGrant(CreateGrantRequest {
                key_id: key3.clone(),
                grantee_principal: granted.into(),
                retiring_principal: None,
                operations: vec!["Encrypt".into()],
                constraints: None,
                name: None,
                grant_tokens: vec![],
            }),
        ) else {
            panic!("CreateGrant")
        };
        encrypt(&f, granted, &key3, &[]).unwrap();
        encrypt(&f, granted, &key3, &[]).unwrap();
        admin(
            &f,
            Request::RevokeGrant(RevokeGrantRequest {
                key_id: key3.clone(),
                grant_id: g.grant_id,
            }),
        );
        assert_eq!(
            encrypt(&f, granted, &key3, &[]),
            Err(ErrorCode::AccessDeniedException)
        );
    }

    #[test]
    fn a_refusal_is_not_cached_and_a_conditional_allow_is_not_reused() {
        let f = fixture();
        let key = create_key(&f);
        create_user(&f, "dev");
        // Refused, then allowed: the refusal was not kept.
        assert_eq!(
            encrypt(&f, DEV, &key, &[]),
            Err(ErrorCode::AccessDeniedException)
        );
        assert_eq!(
            encrypt(&f, DEV, &key, &[]),
            Err(ErrorCode::AccessDeniedException)
        );
        put_user_policy(&f, "dev", USE_KEYS);
        allowed_and_cached(&f, DEV, &key);

        // An allow that depends on the request is decided for each request.
        let only_a = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:purpose":"a"}}}]}"#;
        put_user_policy(&f, "dev", only_a);
        let before = hits(&f);
        encrypt(&f, DEV, &key, &[("purpose", "a")]).unwrap();
        encrypt(&f, DEV, &key, &[("purpose", "a")]).unwrap();
        assert_eq!(
            encrypt(&f, DEV, &key, &[("purpose", "b")]),
            Err(ErrorCode::AccessDeniedException)
        );
        assert_eq!(
            hits(&f),
            before,
            "a conditional allow was served from the cache"
        );
    }
}
