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
//! here. S3 does not use the kept keys (a request such as ListBuckets may never reach
//! kmsd), so its key source asks kmsd every time. A signature that does not verify
//! against a kept secret is checked once more against kmsd's current one; kept
//! entries are dropped after [`KEPT_FOR`] whatever happens, so a secret changed under
//! the same id (a config-declared `[[access_keys]]` entry edited and reloaded) stops
//! verifying within that time. Only keys that signed a verified request are kept, and
//! at most [`MAX_KEPT`]: unauthenticated traffic cannot fill the table.
//!
//! [`Kmsd`] is the endpoint's pool of kmsd.sock connections (one per concurrent call,
//! reused); calls run on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmsd::api::Timestamp;
use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{ErrorCode, Signer};
use zeroize::Zeroizing;

use super::protocol::Failure;
use super::sigv4::{self, Authorization, PathRules, RequestParts, SigningKey};

/// A pool of kmsd connections.
pub struct Kmsd {
    socket: PathBuf,
    idle: Mutex<Vec<KmsClient>>,
}

/// How many idle connections the pool keeps.
const MAX_IDLE: usize = 64;

impl Kmsd {
    pub fn new(socket: &Path) -> Arc<Kmsd> {
        Arc::new(Kmsd {
            socket: socket.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `f` with a connection (blocking).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&KmsClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let client = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(c) => c,
            None => KmsClient::connect(&self.socket)?,
        };
        let out = f(&client);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
        out
    }

    /// Runs `f` with a connection, on the blocking pool.
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&KmsClient) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        let pool = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || pool.blocking(f)).await;
        joined.unwrap_or_else(|e| Err(ClientError::Transport(format!("kmsd call aborted: {e}"))))
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
    principal: String,
    secret: Zeroizing<String>,
    /// When temporary credentials expire.
    expiration: Option<Timestamp>,
    /// The signing key of the scope (`date/region/service`) last verified.
    signing: Mutex<Option<(String, Arc<SigningKey>)>>,
    at: Instant,
}

impl Resolved {
    /// The signing key for `auth`'s scope, derived once per scope.
    fn signing_key(&self, auth: &Authorization) -> Arc<SigningKey> {
        let scope = auth.key_scope();
        let mut kept = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, k)) = kept.as_ref() {
            if *s == scope {
                return Arc::clone(k);
            }
        }
        let key = Arc::new(auth.signing_key(&self.secret));
        *kept = Some((scope, Arc::clone(&key)));
        key
    }
}

/// An access key id and the session token it came with.
type KeyId = (String, Option<String>);

/// The access keys the endpoint has resolved (see the module docs).
#[derive(Default)]
pub struct Keys {
    kept: Mutex<HashMap<KeyId, Arc<Resolved>>>,
}

impl Keys {
    fn get(&self, id: &KeyId) -> Option<Arc<Resolved>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.get(id) {
            Some(r) if r.at.elapsed() < KEPT_FOR => Some(Arc::clone(r)),
            Some(_) => {
                kept.remove(id);
                None
            }
            None => None,
        }
    }

    fn keep(&self, id: KeyId, resolved: Arc<Resolved>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT && !kept.contains_key(&id) {
            kept.retain(|_, r| r.at.elapsed() < KEPT_FOR);
            if kept.len() >= MAX_KEPT {
                // Still full of live keys: start again (each costs one lookup).
                kept.clear();
            }
        }
        kept.insert(id, resolved);
    }

    /// Drops `signer`'s key if `failure` says kmsd no longer accepts it.
    pub fn forget_if_refused(&self, signer: &(String, Option<String>), failure: &Failure) {
        if matches!(failure, Failure::UnrecognizedClient | Failure::ExpiredToken) {
            self.forget(signer);
        }
    }

    fn forget(&self, id: &KeyId) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// A request whose signature has been read and checked as far as it can be before its
/// body: its key exists and is active, its time is in the window, its scope is right.
pub struct Pending<'a> {
    pub auth: Authorization,
    resolved: Arc<Resolved>,
    /// Whether `resolved` was kept from an earlier request (not asked of kmsd now).
    kept: bool,
    kmsd: &'a Arc<Kmsd>,
    keys: &'a Keys,
}

/// Where the request came from, for the trail.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// Asks kmsd for an access key's secret and principal.
async fn resolve(kmsd: &Arc<Kmsd>, id: &KeyId, now: i64) -> Result<Arc<Resolved>, Failure> {
    let (key, token) = id.clone();
    let r = kmsd
        .with(move |c| c.resolve_access_key(&key, token.as_deref()))
        .await
        .map_err(kmsd_failure)?;
    if let Some(exp) = r.expiration {
        if exp.as_secs() <= now {
            return Err(Failure::ExpiredToken);
        }
    }
    let secret = String::from_utf8(r.secret_access_key.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| Failure::Internal("kmsd sent a secret that is not UTF-8".into()))?;
    Ok(Arc::new(Resolved {
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
    kmsd: &'a Arc<Kmsd>,
    keys: &'a Keys,
    parts: &RequestParts<'_>,
    now: i64,
    service: &str,
    regions: &[&str],
) -> Result<Pending<'a>, Failure> {
    let auth = sigv4::parse(parts)?;
    auth.check(now, service, regions)?;
    let id = (auth.access_key_id.clone(), auth.session_token.clone());
    let (resolved, kept) = match keys.get(&id) {
        Some(r) => (r, true),
        None => (resolve(kmsd, &id, now).await?, false),
    };
    if resolved.expiration.is_some_and(|exp| exp.as_secs() <= now) {
        keys.forget(&id);
        return Err(Failure::ExpiredToken);
    }
    Ok(Pending {
        auth,
        resolved,
        kept,
        kmsd,
        keys,
    })
}

impl Pending<'_> {
    /// The second step, once the body is read: verify the signature over it; a key
    /// whose signature verifies is kept for the next request.
    pub async fn finish(
        self,
        parts: &RequestParts<'_>,
        body: &[u8],
        origin: &Origin,
    ) -> Result<Signer, Failure> {
        let hash = sigv4::payload_hash(body);
        let id = (
            self.auth.access_key_id.clone(),
            self.auth.session_token.clone(),
        );
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
                self.keys.forget(&id);
                resolved = resolve(self.kmsd, &id, crate::endpoint::now_secs()).await?;
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
            self.keys.keep(id, Arc::clone(&resolved));
        }
        Ok(Signer {
            access_key_id: self.auth.access_key_id,
            session_token: self.auth.session_token,
            principal_arn: resolved.principal.clone(),
            source_ip: origin.source_ip.clone(),
            user_agent: origin.user_agent.clone(),
        })
    }
}
