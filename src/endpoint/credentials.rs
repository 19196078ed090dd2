//! Who signed a request: the endpoint's side of authentication. An access key id (and
//! session token) is resolved to its secret and principal by kmsd, which keeps them
//! (`ResolveAccessKey`, allowed only for the endpoint's uids).
//!
//! [`Keys`] keeps what kmsd answered, for keys that have signed a request that
//! verified, with the SigV4 signing key of the scope they last signed for (a key
//! derivation is four HMACs), so a request costs one kmsd round trip (the call
//! itself), not two. That is safe because every request authenticated from a kept
//! key goes on to kmsd or the volume service carrying its [`Signer`], and kmsd checks
//! the signer's access key then, in memory, in that same round trip (`admit_signer`
//! for kmsd's own calls, `ResolveCaller` for the volume service's): a key deleted or
//! deactivated since is refused on its very next request, and that refusal drops it
//! here ([`Verified::call`], the one place calls for a signer are made). S3 does not
//! use the kept keys (a request such as ListBuckets may never reach kmsd), so its key
//! source asks kmsd every time. A signature that does not verify against a kept secret
//! is checked once more against kmsd's current one; kept entries are dropped after
//! [`KEPT_FOR`] whatever happens, so a secret changed under the same id (a
//! config-declared `[[access_keys]]` entry edited and reloaded) stops verifying within
//! that time. Only keys that signed a verified request are kept, and at most
//! [`MAX_KEPT`]: unauthenticated traffic cannot fill the table.
//!
//! [`Kmsd`] is the endpoint's pool of kmsd.sock connections (one per concurrent call,
//! reused: [`super::framed`]). The JSON and Query services call through it
//! asynchronously, on the task that serves the request; S3's key source, which `s3s`
//! calls synchronously, has its own blocking connections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmsd::api::{Request, Response, Timestamp};
use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{ErrorCode, RequestEnvelope, ResolveAccessKeyResponse, Signer};
use zeroize::Zeroizing;

use super::framed::{CallError, Pool, MAX_IDLE};
use super::protocol::Failure;
use super::sigv4::{self, Authorization, PathRules, RequestParts, SigningKey};

/// A pool of kmsd connections.
pub struct Kmsd {
    /// Connections for the services' calls (async: [`super::framed`]).
    pool: Pool,
    /// Connections for S3's key source (blocking).
    idle_blocking: Mutex<Vec<KmsClient>>,
}

impl Kmsd {
    pub fn new(socket: &Path) -> Arc<Kmsd> {
        Arc::new(Kmsd {
            pool: Pool::new(socket, kmsd::protocol::MAX_FRAME),
            idle_blocking: Mutex::new(Vec::new()),
        })
    }

    pub fn socket(&self) -> &Path {
        self.pool.socket()
    }

    /// Runs `f` with a connection (blocking: for callers outside the runtime's tasks).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&KmsClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let pooled = self
            .idle_blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let client = match pooled {
            Some(c) => c,
            None => KmsClient::connect(self.socket())?,
        };
        let out = f(&client);
        let mut idle = self.idle_blocking.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
        out
    }

    /// Sends one request and waits for its reply, on a pooled connection (the pool's
    /// rules: [`super::framed`]; a request to kmsd is never sent twice).
    async fn call(&self, env: RequestEnvelope) -> Result<Response, ClientError> {
        let reply = self
            .pool
            .call(&env, false, kmsd::protocol::decode_response)
            .await
            .map_err(|e| match e {
                CallError::Connect { path, source } => ClientError::unreachable(&path, source),
                CallError::Frame(e) => ClientError::Transport(e.to_string()),
            })?;
        reply.result.map_err(ClientError::Kms)
    }

    /// Calls `request` for a SigV4 signer this endpoint has verified.
    pub async fn call_signed(
        &self,
        request: Request,
        signer: Signer,
    ) -> Result<Response, ClientError> {
        self.call(RequestEnvelope {
            version: kmsd::protocol::PROTOCOL_VERSION,
            act_as: None,
            via: None,
            request,
            signer: Some(signer),
        })
        .await
    }

    /// Asks kmsd for an access key's secret and principal.
    async fn resolve_access_key(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<ResolveAccessKeyResponse, ClientError> {
        use kmsd::api::Variant;
        let request = kmsd::protocol::ResolveAccessKeyRequest {
            access_key_id: access_key_id.into(),
            session_token: session_token.map(str::to_string),
        };
        let response = self
            .call(RequestEnvelope {
                version: kmsd::protocol::PROTOCOL_VERSION,
                act_as: None,
                via: None,
                request: request.into_request(),
                signer: None,
            })
            .await?;
        kmsd::protocol::ResolveAccessKeyRequest::from_response(response).map_err(|got| {
            ClientError::UnexpectedResponse {
                operation: <kmsd::protocol::ResolveAccessKeyRequest as kmsd::api::Operation>::NAME,
                got: got.to_string(),
            }
        })
    }
}

/// A kmsd failure as the client sees it: kmsd's AWS error, or an internal error
/// (kmsd unreachable).
pub fn kmsd_failure(e: ClientError) -> Failure {
    match e {
        ClientError::Kms(k) if k.code == ErrorCode::UnrecognizedClientException => {
            Failure::UnrecognizedClient
        }
        ClientError::Kms(k) if k.code == ErrorCode::ExpiredTokenException => Failure::ExpiredToken,
        ClientError::Kms(k) => Failure::Service(k),
        other => {
            tracing::error!(error = %other, "kmsd call failed");
            Failure::Internal(format!("atrest's key service is not answering: {other}"))
        }
    }
}

/// How long a resolved access key is kept.
pub const KEPT_FOR: Duration = Duration::from_secs(60);
/// How many resolved access keys are kept at most.
pub const MAX_KEPT: usize = 1024;

/// An access key (and session token) as kmsd resolved it.
struct Resolved {
    access_key_id: String,
    session_token: Option<String>,
    principal: String,
    secret: Zeroizing<String>,
    /// When temporary credentials expire.
    expiration: Option<Timestamp>,
    /// The signing key of the scope last verified.
    signing: Mutex<Option<Arc<SigningKey>>>,
    at: Instant,
}

impl Resolved {
    /// The signing key for `auth`'s scope, derived once per scope.
    fn signing_key(&self, auth: &Authorization) -> Arc<SigningKey> {
        let mut kept = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kept.as_ref().filter(|k| auth.is_scope_of(k)) {
            return Arc::clone(k);
        }
        let key = Arc::new(auth.signing_key(&self.secret));
        *kept = Some(Arc::clone(&key));
        key
    }

    /// Refuses temporary credentials past their expiry.
    fn check_live(&self, now: i64) -> Result<(), Failure> {
        match self.expiration {
            Some(exp) if exp.as_secs() <= now => Err(Failure::ExpiredToken),
            _ => Ok(()),
        }
    }
}

/// The access keys the endpoint has resolved (see the module docs), by access key id
/// (an entry is used only with the session token it was resolved with).
#[derive(Default)]
pub struct Keys {
    kept: Mutex<HashMap<String, Arc<Resolved>>>,
}

impl Keys {
    fn get(&self, auth: &Authorization) -> Option<Arc<Resolved>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(auth.access_key_id.as_str())
            .filter(|r| r.session_token == auth.session_token && r.at.elapsed() < KEPT_FOR)
            .map(Arc::clone)
    }

    fn keep(&self, resolved: &Arc<Resolved>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT && !kept.contains_key(&resolved.access_key_id) {
            kept.retain(|_, r| r.at.elapsed() < KEPT_FOR);
            if kept.len() >= MAX_KEPT {
                // Still full of live keys: start again (each costs one lookup).
                kept.clear();
            }
        }
        kept.insert(resolved.access_key_id.clone(), Arc::clone(resolved));
    }

    /// Drops `resolved` if it is still the entry kept for its key.
    fn forget(&self, resolved: &Arc<Resolved>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept
            .get(&resolved.access_key_id)
            .is_some_and(|r| Arc::ptr_eq(r, resolved))
        {
            kept.remove(&resolved.access_key_id);
        }
    }
}

/// A request whose signature has been read and checked as far as it can be before its
/// body: its key exists and is active, its time is in the window, its scope is right.
pub struct Pending<'a> {
    auth: Authorization,
    resolved: Arc<Resolved>,
    /// Whether `resolved` was kept from an earlier request (not asked of kmsd now).
    kept: bool,
    kmsd: &'a Kmsd,
    keys: &'a Keys,
}

/// Where the request came from, for the trail.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// Asks kmsd for the secret and principal of `auth`'s access key.
async fn resolve(kmsd: &Kmsd, auth: &Authorization) -> Result<Arc<Resolved>, Failure> {
    let r = kmsd
        .resolve_access_key(&auth.access_key_id, auth.session_token.as_deref())
        .await
        .map_err(kmsd_failure)?;
    let secret = String::from_utf8(r.secret_access_key.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| Failure::Internal("kmsd sent a secret that is not UTF-8".into()))?;
    Ok(Arc::new(Resolved {
        access_key_id: auth.access_key_id.clone(),
        session_token: auth.session_token.clone(),
        principal: r.principal_arn,
        secret,
        expiration: r.expiration,
        signing: Mutex::new(None),
        at: Instant::now(),
    }))
}

/// The first step: parse and check the signature, then find its key: kept, or
/// resolved through kmsd.
pub async fn begin<'a>(
    kmsd: &'a Kmsd,
    keys: &'a Keys,
    parts: &RequestParts<'_>,
    now: i64,
    service: &str,
    regions: &[&str],
) -> Result<Pending<'a>, Failure> {
    let auth = sigv4::parse(parts)?;
    auth.check(now, service, regions)?;
    let (resolved, kept) = match keys.get(&auth) {
        Some(r) => (r, true),
        None => (resolve(kmsd, &auth).await?, false),
    };
    if let Err(e) = resolved.check_live(now) {
        keys.forget(&resolved);
        return Err(e);
    }
    Ok(Pending {
        auth,
        resolved,
        kept,
        kmsd,
        keys,
    })
}

impl<'a> Pending<'a> {
    /// The second step, once the body is read: verify the signature over it; a key
    /// whose signature verifies is kept for the next request.
    pub async fn finish(
        self,
        parts: &RequestParts<'_>,
        body: &[u8],
        origin: Origin,
    ) -> Result<Verified<'a>, Failure> {
        let hash = sigv4::payload_hash(body);
        let mut resolved = self.resolved;
        let mut fresh = !self.kept;
        let verified = self.auth.verify_with(
            parts,
            PathRules::SERVICES,
            &hash,
            &resolved.signing_key(&self.auth),
        );
        match verified {
            Ok(()) => {}
            Err(_) if self.kept => {
                // The kept secret may be stale: kmsd's current one decides.
                self.keys.forget(&resolved);
                resolved = resolve(self.kmsd, &self.auth).await?;
                resolved.check_live(crate::endpoint::now_secs())?;
                fresh = true;
                self.auth.verify_with(
                    parts,
                    PathRules::SERVICES,
                    &hash,
                    &resolved.signing_key(&self.auth),
                )?;
            }
            Err(e) => return Err(e.into()),
        }
        if fresh {
            self.keys.keep(&resolved);
        }
        let Authorization {
            access_key_id,
            session_token,
            ..
        } = self.auth;
        Ok(Verified {
            signer: Signer {
                access_key_id,
                session_token,
                principal_arn: resolved.principal.clone(),
                source_ip: origin.source_ip,
                user_agent: origin.user_agent,
            },
            resolved,
            keys: self.keys,
        })
    }
}

/// A request whose signature verified: who signed it, ready to be called for.
pub struct Verified<'a> {
    signer: Signer,
    resolved: Arc<Resolved>,
    keys: &'a Keys,
}

impl Verified<'_> {
    /// Makes the request's call for its signer. A refusal that says kmsd no longer
    /// accepts the signer's key (deleted, deactivated, expired) drops it from the kept
    /// keys, so the next request asks kmsd again.
    pub async fn call<T, F>(self, call: impl FnOnce(Signer) -> F) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        let out = call(self.signer).await;
        if let Err(Failure::UnrecognizedClient | Failure::ExpiredToken) = &out {
            self.keys.forget(&self.resolved);
        }
        out
    }

    /// [`call`](Self::call) for a KMS-protocol request (KMS, STS, IAM, CloudTrail): kmsd
    /// answers it for the signer.
    pub async fn call_kmsd(self, kmsd: &Kmsd, request: Request) -> Result<Response, Failure> {
        self.call(|signer| async {
            kmsd.call_signed(request, signer)
                .await
                .map_err(kmsd_failure)
        })
        .await
    }
}
