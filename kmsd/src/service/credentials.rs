//! Access keys as the AWS endpoint and `atrest env` use them: authenticating an access
//! key id (+ session token) to its principal, handing its secret to the endpoint
//! (and to nobody else), admitting a request the endpoint sends for a signer, and the
//! caller's own key for `atrest env`. The store itself: [`crate::credentials`].

use super::authz::{self, Peer};
use super::directory::Directory;
use super::{Call, Caller, KeyService};
use crate::api::{
    EnsureAccessKeyRequest, EnsureAccessKeyResponse, Handle, ResolveAccessKeyRequest,
    ResolveAccessKeyResponse, SecretBlob, Timestamp,
};
use crate::credentials::{AccessKeyStatus, KeyOrigin, KeyOwner};
use crate::policy::PrincipalKind;
use crate::protocol::{ErrorCode, KmsError, RequestEnvelope, Signer};

/// An access key kmsd has authenticated.
pub struct Authenticated {
    pub principal: String,
    /// The Unix user it was made for, if it is that user's own (`atrest env`).
    pub owner: Option<KeyOwner>,
    pub secret: zeroize::Zeroizing<String>,
    /// When temporary credentials expire.
    pub expiration: Option<Timestamp>,
}

impl KeyService {
    /// The principal and secret of an access key: a key of the store (active), or one
    /// the config declares (`[[access_keys]]`). With a session token, the temporary
    /// credentials it carries. Unknown, inactive or forged:
    /// `UnrecognizedClientException`.
    pub fn authenticate(
        &self,
        dir: &Directory,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<Authenticated, KmsError> {
        if let Some(token) = session_token {
            return self.authenticate_session(access_key_id, token);
        }
        if let Some(k) = self.access_keys.get(access_key_id) {
            if k.record.status != AccessKeyStatus::Active {
                return Err(KmsError::unrecognized_client());
            }
            return Ok(Authenticated {
                principal: k.record.principal.clone(),
                owner: k.record.owner.clone(),
                secret: k.secret.clone(),
                expiration: None,
            });
        }
        match dir
            .access_keys()
            .iter()
            .find(|k| k.access_key_id == access_key_id)
        {
            Some(k) => Ok(Authenticated {
                principal: k.principal.clone(),
                owner: None,
                secret: zeroize::Zeroizing::new(k.secret_access_key.clone()),
                expiration: None,
            }),
            None => Err(KmsError::unrecognized_client()),
        }
    }

    /// Temporary credentials (`ASIA...` + `x-amz-security-token`): the session STS
    /// `AssumeRole` sealed into the token (`service/sts.rs`).
    fn authenticate_session(
        &self,
        access_key_id: &str,
        token: &str,
    ) -> Result<Authenticated, KmsError> {
        self.open_session(access_key_id, token)
    }

    /// ResolveAccessKey, for the endpoint's uids only.
    pub(crate) fn resolve_access_key(
        &self,
        caller: &Caller,
        r: &ResolveAccessKeyRequest,
    ) -> Result<ResolveAccessKeyResponse, KmsError> {
        let dir = self.directory();
        if caller.signer.is_some()
            || caller.via.is_some()
            || !dir.is_endpoint(caller.uid, &caller.user)
        {
            return Err(not_the_endpoint(caller.uid, &caller.user));
        }
        let a = self.authenticate(&dir, &r.access_key_id, r.session_token.as_deref())?;
        Ok(ResolveAccessKeyResponse {
            access_key_id: r.access_key_id.clone(),
            secret_access_key: SecretBlob::new(a.secret.as_bytes().to_vec()),
            principal_arn: a.principal,
            expiration: a.expiration,
        })
    }

    /// The [`Caller`] of a request the endpoint sends for `signer`: only from the
    /// endpoint's uids, with neither `act_as` nor `via`, and only while the signer's
    /// key still authenticates as the principal the endpoint resolved.
    pub(crate) fn admit_signer(
        &self,
        dir: &Directory,
        peer: &Peer,
        env: &RequestEnvelope,
        signer: Signer,
    ) -> Result<Caller, KmsError> {
        if env.act_as.is_some() || env.via.is_some() {
            return Err(KmsError::validation(
                "a request for a SigV4 signer cannot also act as someone or come via a service",
            ));
        }
        if !dir.is_endpoint(peer.uid, &peer.user) {
            return Err(not_the_endpoint(peer.uid, &peer.user));
        }
        let a = self.check_signer_key(dir, &signer)?;
        authz::admit_signed(dir, peer, &a.principal, a.owner.as_ref(), signer)
    }

    /// The signer's access key as it stands now: still known and active, its session
    /// not expired, and authenticating as the principal the endpoint resolved it to.
    /// One in-memory lookup: the endpoint keeps the keys it has resolved, and this is
    /// what refuses a key deleted or deactivated since, on its very next request.
    pub(crate) fn check_signer_key(
        &self,
        dir: &Directory,
        signer: &Signer,
    ) -> Result<Authenticated, KmsError> {
        let a = self.authenticate(dir, &signer.access_key_id, signer.session_token.as_deref())?;
        if let Some(exp) = a.expiration {
            if exp.as_millis() <= self.now_ms() {
                return Err(KmsError::new(
                    ErrorCode::ExpiredTokenException,
                    "The security token included in the request is expired",
                ));
            }
        }
        if a.principal != signer.principal_arn {
            // The key was deleted and its id reused, or the endpoint is confused:
            // either way it is not the key that signed.
            return Err(KmsError::unrecognized_client());
        }
        Ok(a)
    }
}

fn not_the_endpoint(uid: u32, user: &str) -> KmsError {
    KmsError::new(
        ErrorCode::AccessDeniedException,
        format!(
            "uid {uid} ({user}) is not trusted as the AWS endpoint: only the uids the kmsd config lists in [kmsd] endpoint_uids may resolve access keys or speak for a signer"
        ),
    )
}

impl Handle<Call<'_>, ResolveAccessKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ResolveAccessKeyRequest,
    ) -> Result<ResolveAccessKeyResponse, KmsError> {
        self.resolve_access_key(cx.caller, &r)
    }
}

impl Handle<Call<'_>, EnsureAccessKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        _r: EnsureAccessKeyRequest,
    ) -> Result<EnsureAccessKeyResponse, KmsError> {
        let c = cx.caller;
        if c.signer.is_some() || c.via.is_some() {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                "EnsureAccessKey is for a Unix user's own principal (atrest env), not for a request made through a service",
            ));
        }
        if matches!(c.principal.kind, PrincipalKind::Service { .. }) {
            return Err(KmsError::validation(format!(
                "{} is a service principal: it has no access keys",
                c.principal_arn
            )));
        }
        let owner = KeyOwner {
            uid: c.uid,
            user: c.user.clone(),
        };
        let (key, created) = self
            .access_keys
            .ensure(
                &self.store,
                &c.principal_arn,
                KeyOrigin::Env,
                Some(owner),
                self.now_ms(),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "access key store write failed");
                KmsError::internal("kmsd could not write its access keys; nothing was changed")
            })?;
        Ok(EnsureAccessKeyResponse {
            access_key_id: key.record.access_key_id.clone(),
            secret_access_key: SecretBlob::new(key.secret.as_bytes().to_vec()),
            principal_arn: key.record.principal.clone(),
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture};
    use super::*;
    use crate::api::{ListKeysRequest, Request, Response};

    fn peer(uid: u32, user: &str) -> Peer {
        Peer {
            uid,
            pid: None,
            user: user.into(),
            source: "test".into(),
        }
    }

    fn envelope(request: Request, signer: Option<Signer>) -> RequestEnvelope {
        RequestEnvelope {
            version: crate::protocol::PROTOCOL_VERSION,
            act_as: None,
            via: None,
            request,
            signer,
        }
    }

    fn signer(id: &str, principal: &str) -> Signer {
        Signer {
            access_key_id: id.into(),
            session_token: None,
            principal_arn: principal.into(),
            source_ip: "192.0.2.7".into(),
            user_agent: Some("aws-cli/1.46.3".into()),
        }
    }

    #[test]
    fn only_the_endpoint_resolves_and_signed_calls_act_as_the_keys_principal() {
        let f = fixture();
        // The embedded config gives the lab's role administrator rights.
        let me = super::super::testing::user_with(
            "arn:aws:iam::111122223333:role/voclabs",
            &[super::super::testing::ADMIN],
        );
        let key = match f
            .svc
            .handle(&me, Request::EnsureAccessKey(EnsureAccessKeyRequest {}))
            .unwrap()
        {
            Response::EnsureAccessKey(k) => k,
            other => panic!("{other:?}"),
        };
        assert!(key.created);
        let id = key.access_key_id.clone();
        let resolve = Request::ResolveAccessKey(ResolveAccessKeyRequest {
            access_key_id: id.clone(),
            session_token: None,
        });
        // uid 0 is kmsd's own uid in the fixture: the endpoint.
        match f
            .svc
            .handle_envelope(&peer(0, "root"), envelope(resolve.clone(), None))
            .unwrap()
        {
            Response::ResolveAccessKey(r) => {
                assert_eq!(r.principal_arn, me.principal_arn);
                assert_eq!(r.secret_access_key, key.secret_access_key);
            }
            other => panic!("{other:?}"),
        }
        f.sink.take();
        let e = f
            .svc
            .handle_envelope(&peer(1000, "bob"), envelope(resolve, None))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        assert!(e.message.contains("endpoint_uids"), "{e}");
        let refused = f.sink.take();
        assert_eq!(refused.len(), 1, "a refused lookup is recorded");

        // A signed call: evaluated as the key's principal, recorded with the signer.
        let list = Request::ListKeys(ListKeysRequest::default());
        let s = signer(&id, &me.principal_arn);
        f.svc
            .handle_envelope(&peer(0, "root"), envelope(list.clone(), Some(s.clone())))
            .unwrap();
        let ev = f.sink.take().pop().unwrap();
        assert_eq!(ev.identity.principal_arn, me.principal_arn);
        assert_eq!(ev.source_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(ev.user_agent.as_deref(), Some("aws-cli/1.46.3"));
        assert_eq!(ev.access_key_id.as_deref(), Some(id.as_str()));
        // Not from a uid that is not the endpoint.
        let e = f
            .svc
            .handle_envelope(&peer(1000, "bob"), envelope(list.clone(), Some(s.clone())))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        // A principal that is not the key's, an unknown key, a deleted key.
        let wrong = signer(&id, "arn:aws:iam::111122223333:user/mallory");
        let e = f
            .svc
            .handle_envelope(&peer(0, "root"), envelope(list.clone(), Some(wrong)))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
        assert!(f.svc.access_keys.delete(&id).unwrap());
        let e = f
            .svc
            .handle_envelope(&peer(0, "root"), envelope(list, Some(s)))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
        assert_eq!(
            e.message,
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn env_keys_are_made_once_per_principal() {
        let f = fixture();
        let me = alice();
        let first = match f
            .svc
            .handle(&me, Request::EnsureAccessKey(EnsureAccessKeyRequest {}))
            .unwrap()
        {
            Response::EnsureAccessKey(k) => k,
            other => panic!("{other:?}"),
        };
        let second = match f
            .svc
            .handle(&me, Request::EnsureAccessKey(EnsureAccessKeyRequest {}))
            .unwrap()
        {
            Response::EnsureAccessKey(k) => k,
            other => panic!("{other:?}"),
        };
        assert!(first.created && !second.created);
        assert_eq!(first.access_key_id, second.access_key_id);
        let events = f.sink.take();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_name, "EnsureAccessKey");
        assert!(!events[0].response_elements.to_string().contains("Secret"));
    }

    #[test]
    fn inactive_keys_and_unknown_tokens_do_not_authenticate() {
        let f = fixture();
        let dir = f.svc.directory();
        let k = f
            .svc
            .access_keys
            .create(
                &f.svc.store,
                "arn:aws:iam::111122223333:user/a",
                KeyOrigin::Iam,
                0,
            )
            .unwrap();
        let id = k.record.access_key_id.clone();
        assert!(f.svc.authenticate(&dir, &id, None).is_ok());
        let e = f.svc.authenticate(&dir, &id, Some("token")).err().unwrap();
        assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
        f.svc
            .access_keys
            .set_status(&id, AccessKeyStatus::Inactive)
            .unwrap();
        let e = f.svc.authenticate(&dir, &id, None).err().unwrap();
        assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
        let e = f
            .svc
            .authenticate(&dir, "AKIANOSUCHKEY0000000", None)
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
    }
}
