//! Who signed a request: the endpoint's side of authentication. An access key id (and
//! session token) is resolved to its secret and principal by kmsd, which keeps them
//! (`ResolveAccessKey`, allowed only for the endpoint's uids), on every request: there
//! is no cache, so a key deleted or deactivated stops working on the next request.
//! kmsd checks the key again when the endpoint sends it a call for the signer.
//!
//! [`Kmsd`] is the endpoint's pool of kmsd.sock connections (one per concurrent call,
//! reused); calls run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{ErrorCode, Signer};
use zeroize::Zeroizing;

use super::protocol::Failure;
use super::sigv4::{self, Authorization, PathRules, RequestParts};

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

/// A request whose signature has been read and checked as far as it can be before its
/// body: its key exists and is active, its time is in the window, its scope is right.
pub struct Pending {
    pub auth: Authorization,
    principal: String,
    secret: Zeroizing<String>,
}

/// Where the request came from, for the trail.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// The first step: parse and check the signature, then resolve its key through kmsd.
pub async fn begin(
    kmsd: &Arc<Kmsd>,
    parts: &RequestParts<'_>,
    now: i64,
    service: &str,
    regions: &[&str],
) -> Result<Pending, Failure> {
    let auth = sigv4::parse(parts)?;
    auth.check(now, service, regions)?;
    let id = auth.access_key_id.clone();
    let token = auth.session_token.clone();
    let resolved = kmsd
        .with(move |c| c.resolve_access_key(&id, token.as_deref()))
        .await
        .map_err(kmsd_failure)?;
    if let Some(exp) = resolved.expiration {
        if exp.as_secs() <= now {
            return Err(Failure::ExpiredToken);
        }
    }
    let secret = String::from_utf8(resolved.secret_access_key.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| Failure::Internal("kmsd sent a secret that is not UTF-8".into()))?;
    Ok(Pending {
        auth,
        principal: resolved.principal_arn,
        secret,
    })
}

impl Pending {
    /// The second step, once the body is read: verify the signature over it.
    pub fn finish(
        self,
        parts: &RequestParts<'_>,
        body: &[u8],
        origin: &Origin,
    ) -> Result<Signer, Failure> {
        let hash = sigv4::payload_hash(body);
        self.auth
            .verify(parts, PathRules::SERVICES, &hash, &self.secret)?;
        Ok(Signer {
            access_key_id: self.auth.access_key_id,
            session_token: self.auth.session_token,
            principal_arn: self.principal,
            source_ip: origin.source_ip.clone(),
            user_agent: origin.user_agent.clone(),
        })
    }
}
