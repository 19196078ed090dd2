//! The kmsd client library, used by the CLI and by the volume and object services.
//!
//! A [`KmsClient`] owns one connection, guarded by a mutex: its methods take `&self`,
//! so an `Arc<KmsClient>` can be shared between threads (calls are then serialized
//! on that connection). For parallel calls give each thread its own client:
//! `Clone` makes a client with the same settings and its own connection, opened on
//! first use. After a transport error the connection is dropped and the next call
//! reconnects. A request is retried (once, on a new connection) only when kmsd had
//! closed the connection before it was sent (an idle or evicted connection: the write
//! fails with `EPIPE`), never once it may have been received.
//!
//! [`site`]: the settings of `HOME/config.toml` the other services share with kmsd
//! (region, account, socket mode).

pub mod site;

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::protocol::*;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// kmsd is not running (or not at this path).
    #[error("cannot reach kmsd at {path}: is it running? start it with `kmsd --home {home}` or `atrest up` ({source})")]
    Unreachable {
        path: PathBuf,
        home: PathBuf,
        source: std::io::Error,
    },
    /// kmsd answered with an AWS-style error.
    #[error("{0}")]
    Kms(#[from] KmsError),
    /// The connection broke or kmsd sent something unreadable.
    #[error("kmsd connection failed: {0}")]
    Transport(String),
    /// kmsd answered with a response of the wrong kind.
    #[error("kmsd sent an unexpected {got} response to {operation}")]
    UnexpectedResponse {
        operation: &'static str,
        got: String,
    },
}

impl ClientError {
    /// kmsd's socket at `path` refused the connection or is missing; the message names the
    /// home to start kmsd on.
    pub fn unreachable(path: &Path, source: std::io::Error) -> ClientError {
        ClientError::Unreachable {
            path: path.to_path_buf(),
            home: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            source,
        }
    }
}

impl ClientError {
    /// The AWS error, if kmsd sent one.
    pub fn kms(&self) -> Option<&KmsError> {
        match self {
            ClientError::Kms(e) => Some(e),
            _ => None,
        }
    }
    /// The AWS error code, if kmsd sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.kms().map(|e| e.code)
    }
}

struct Conn {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects; with `timeout`, every read and write on the connection is bounded by it.
    fn open(path: &Path, timeout: Option<std::time::Duration>) -> Result<Conn, ClientError> {
        let stream =
            UnixStream::connect(path).map_err(|source| ClientError::unreachable(path, source))?;
        let transport = |e: std::io::Error| ClientError::Transport(e.to_string());
        if timeout.is_some() {
            // One socket underneath: the clone shares these options.
            stream.set_read_timeout(timeout).map_err(transport)?;
            stream.set_write_timeout(timeout).map_err(transport)?;
        }
        let w = stream.try_clone().map_err(transport)?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer: BufWriter::with_capacity(16 * 1024, w),
            buf: Vec::with_capacity(1024),
        })
    }

    fn round_trip(&mut self, env: &RequestEnvelope) -> Result<ResponseEnvelope, Trip> {
        if let Err(e) = write_frame(&mut self.writer, env, &mut self.buf) {
            let closed_by_kmsd = matches!(&e, FrameError::Io(io) if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ));
            if !closed_by_kmsd {
                return Err(Trip::Failed(e));
            }
            // kmsd closed the connection before reading the request. It may have said
            // why first (a refusal at its connection cap): that is the answer.
            if read_frame_bytes(&mut self.reader, &mut self.buf).is_ok() {
                if let Ok(reply) = decode_response(&self.buf) {
                    return Ok(reply);
                }
            }
            return Err(Trip::NotSent(e));
        }
        read_frame_bytes(&mut self.reader, &mut self.buf).map_err(Trip::Failed)?;
        decode_response(&self.buf).map_err(Trip::Failed)
    }
}

/// How a round trip failed.
enum Trip {
    /// kmsd had closed the connection: the request was not received.
    NotSent(FrameError),
    /// Anything else: the request may have been received.
    Failed(FrameError),
}

/// Whether a kmsd serves at `path`: it answers a ping (an empty frame, never audited)
/// within `timeout`. A process that still holds the socket while it is being killed
/// accepts the connection but never answers, so this is the liveness test, not `connect`.
pub fn ping(path: &Path, timeout: std::time::Duration) -> Result<(), ClientError> {
    let mut conn = Conn::open(path, Some(timeout))?;
    let transport = |e: std::io::Error| ClientError::Transport(e.to_string());
    plumbing::frame::write_ping(&mut conn.writer).map_err(transport)?;
    read_frame_bytes(&mut conn.reader, &mut conn.buf)
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    // An empty frame back, or (from a kmsd that predates pings) a readable refusal.
    if plumbing::frame::is_ping(&conn.buf) || decode_response(&conn.buf).is_ok() {
        Ok(())
    } else {
        Err(ClientError::Transport(
            "kmsd answered a ping with garbage".into(),
        ))
    }
}

/// A connection to kmsd plus who to act as.
pub struct KmsClient {
    path: PathBuf,
    act_as: Option<String>,
    via: Option<ViaService>,
    /// Bound on each read and write (none: wait as long as kmsd takes).
    timeout: Option<std::time::Duration>,
    conn: Mutex<Option<Conn>>,
}

impl Clone for KmsClient {
    /// Same socket and identity claims; a new connection, opened on first use.
    fn clone(&self) -> Self {
        KmsClient {
            path: self.path.clone(),
            act_as: self.act_as.clone(),
            via: self.via.clone(),
            timeout: self.timeout,
            conn: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("path", &self.path)
            .field("act_as", &self.act_as)
            .field("via", &self.via)
            .finish()
    }
}

/// The size of a data key: a `KeySpec` or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySize {
    Spec(DataKeySpec),
    Bytes(u32),
}

impl DataKeySize {
    /// `(KeySpec, NumberOfBytes)`; a count past `i32::MAX` is sent as `i32::MAX`,
    /// which kmsd refuses as over 1024.
    fn members(self) -> (Option<DataKeySpec>, Option<i32>) {
        match self {
            DataKeySize::Spec(s) => (Some(s), None),
            DataKeySize::Bytes(n) => (None, Some(i32::try_from(n).unwrap_or(i32::MAX))),
        }
    }
}

impl KmsClient {
    /// Connects to kmsd's socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let conn = Conn::open(&path, None)?;
        Ok(KmsClient {
            path,
            act_as: None,
            via: None,
            timeout: None,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends every request as principal `arn` (kmsd checks the config allows it).
    pub fn acting_as(mut self, arn: impl Into<String>) -> Self {
        self.act_as = Some(arn.into());
        self
    }

    /// Connects to kmsd's socket with every read and write bounded by `timeout`, for
    /// callers that must not wait on a kmsd that accepts but does not answer.
    pub fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: std::time::Duration,
    ) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let conn = Conn::open(&path, Some(timeout))?;
        Ok(KmsClient {
            path,
            act_as: None,
            via: None,
            timeout: Some(timeout),
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Sends every request as coming via an AWS-shaped service.
    pub fn via(mut self, via: ViaService) -> Self {
        self.via = Some(via);
        self
    }

    /// Sends one request and waits for its reply.
    pub fn call(&self, request: Request) -> Result<Response, ClientError> {
        self.round_trip(RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: self.act_as.clone(),
            via: self.via.clone(),
            request,
            signer: None,
        })
    }

    /// Sends one request for a SigV4 signer the AWS endpoint has verified (only the
    /// endpoint's uids may; the client's `act_as` and `via` are not sent).
    pub fn call_signed(&self, request: Request, signer: Signer) -> Result<Response, ClientError> {
        self.round_trip(RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: None,
            via: None,
            request,
            signer: Some(signer),
        })
    }

    fn round_trip(&self, env: RequestEnvelope) -> Result<Response, ClientError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut retried = false;
        loop {
            if guard.is_none() {
                *guard = Some(Conn::open(&self.path, self.timeout)?);
            }
            let Some(conn) = guard.as_mut() else {
                return Err(ClientError::Transport("no connection".into()));
            };
            match conn.round_trip(&env) {
                Ok(reply) => return reply.result.map_err(ClientError::Kms),
                Err(e) => {
                    // The stream may be mid-frame: never reuse it.
                    *guard = None;
                    match e {
                        // kmsd closed an idle connection: send it on a new one.
                        Trip::NotSent(_) if !retried => retried = true,
                        Trip::NotSent(e) | Trip::Failed(e) => {
                            return Err(ClientError::Transport(e.to_string()))
                        }
                    }
                }
            }
        }
    }

    /// Sends one typed request and returns its typed response.
    pub fn send<R: Variant>(&self, request: R) -> Result<R::Response, ClientError> {
        R::from_response(self.call(request.into_request())?).map_err(|got| {
            ClientError::UnexpectedResponse {
                operation: R::NAME,
                got: got.to_string(),
            }
        })
    }

    pub fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, ClientError> {
        Ok(self.send(req)?.key_metadata)
    }

    pub fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, ClientError> {
        let req = DescribeKeyRequest {
            key_id: key_id.into(),
            grant_tokens: vec![],
        };
        Ok(self.send(req)?.key_metadata)
    }

    /// Every key of the caller's account (follows the pages).
    pub fn list_keys(&self) -> Result<Vec<KeyListEntry>, ClientError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.send(ListKeysRequest {
                limit: Some(1000),
                marker: marker.take(),
            })?;
            out.extend(page.keys);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    pub fn enable_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.send(EnableKeyRequest::new(key_id)).map(drop)
    }

    pub fn disable_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.send(DisableKeyRequest::new(key_id)).map(drop)
    }

    pub fn update_key_description(
        &self,
        key_id: &str,
        description: &str,
    ) -> Result<(), ClientError> {
        self.send(UpdateKeyDescriptionRequest {
            key_id: key_id.into(),
            description: description.into(),
        })
        .map(drop)
    }

    pub fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<i32>,
    ) -> Result<ScheduleKeyDeletionResponse, ClientError> {
        self.send(ScheduleKeyDeletionRequest {
            key_id: key_id.into(),
            pending_window_in_days,
        })
    }

    /// Returns the key ARN.
    pub fn cancel_key_deletion(&self, key_id: &str) -> Result<String, ClientError> {
        Ok(self.send(CancelKeyDeletionRequest::new(key_id))?.key_id)
    }

    pub fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), ClientError> {
        self.send(CreateAliasRequest {
            alias_name: alias_name.into(),
            target_key_id: target_key_id.into(),
        })
        .map(drop)
    }

    pub fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), ClientError> {
        self.send(UpdateAliasRequest {
            alias_name: alias_name.into(),
            target_key_id: target_key_id.into(),
        })
        .map(drop)
    }

    pub fn delete_alias(&self, alias_name: &str) -> Result<(), ClientError> {
        self.send(DeleteAliasRequest {
            alias_name: alias_name.into(),
        })
        .map(drop)
    }

    /// Every alias of the caller's account, or only those of `key_id`.
    pub fn list_aliases(&self, key_id: Option<&str>) -> Result<Vec<AliasListEntry>, ClientError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.send(ListAliasesRequest {
                key_id: key_id.map(str::to_string),
                limit: Some(1000),
                marker: marker.take(),
            })?;
            out.extend(page.aliases);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    pub fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
    ) -> Result<EncryptResponse, ClientError> {
        self.send(EncryptRequest {
            key_id: key_id.into(),
            plaintext: SecretBlob::new(plaintext.to_vec()),
            encryption_context: encryption_context.clone(),
            grant_tokens: vec![],
            encryption_algorithm: None,
        })
    }

    /// Decrypts; `key_id`, if given, must name the key the blob was made with.
    pub fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        encryption_context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, ClientError> {
        self.send(DecryptRequest {
            ciphertext_blob: ciphertext_blob.into(),
            encryption_context: encryption_context.clone(),
            key_id: key_id.map(str::to_string),
            grant_tokens: vec![],
            encryption_algorithm: None,
        })
    }

    /// Decrypt with every option (grant tokens, algorithm).
    pub fn decrypt_request(&self, req: DecryptRequest) -> Result<DecryptResponse, ClientError> {
        self.send(req)
    }

    pub fn re_encrypt(&self, req: ReEncryptRequest) -> Result<ReEncryptResponse, ClientError> {
        self.send(req)
    }

    pub fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        encryption_context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, ClientError> {
        let (key_spec, number_of_bytes) = size.members();
        self.send(GenerateDataKeyRequest {
            key_id: key_id.into(),
            key_spec,
            number_of_bytes,
            encryption_context: encryption_context.clone(),
            grant_tokens: vec![],
        })
    }

    pub fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        size: DataKeySize,
        encryption_context: &EncryptionContext,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse, ClientError> {
        let (key_spec, number_of_bytes) = size.members();
        self.send(GenerateDataKeyWithoutPlaintextRequest {
            key_id: key_id.into(),
            key_spec,
            number_of_bytes,
            encryption_context: encryption_context.clone(),
            grant_tokens: vec![],
        })
    }

    pub fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<i32>,
    ) -> Result<(), ClientError> {
        self.send(EnableKeyRotationRequest {
            key_id: key_id.into(),
            rotation_period_in_days,
        })
        .map(drop)
    }

    pub fn disable_key_rotation(&self, key_id: &str) -> Result<(), ClientError> {
        self.send(DisableKeyRotationRequest::new(key_id)).map(drop)
    }

    pub fn get_key_rotation_status(
        &self,
        key_id: &str,
    ) -> Result<GetKeyRotationStatusResponse, ClientError> {
        self.send(GetKeyRotationStatusRequest::new(key_id))
    }

    /// Returns the key ARN.
    pub fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, ClientError> {
        Ok(self.send(RotateKeyOnDemandRequest::new(key_id))?.key_id)
    }

    /// The key's rotations (first page: up to 1000).
    pub fn list_key_rotations(&self, key_id: &str) -> Result<Vec<RotationsListEntry>, ClientError> {
        let req = ListKeyRotationsRequest {
            key_id: key_id.into(),
            limit: Some(1000),
            marker: None,
        };
        Ok(self.send(req)?.rotations)
    }

    /// The key's tags (first page: up to 50, all a key can have).
    pub fn list_resource_tags(&self, key_id: &str) -> Result<Vec<Tag>, ClientError> {
        let req = ListResourceTagsRequest {
            key_id: key_id.into(),
            limit: None,
            marker: None,
        };
        Ok(self.send(req)?.tags)
    }

    /// Moves kmsd's clock forward (only if it runs with `--allow-clock-control`);
    /// returns its new time in Unix milliseconds. kmsd sweeps right after.
    pub fn advance_clock(&self, seconds: u64) -> Result<i64, ClientError> {
        Ok(self.send(AdvanceClockRequest { seconds })?.now.as_millis())
    }

    /// CreateGrant; returns `(grant_id, grant_token)`.
    pub fn create_grant(&self, req: CreateGrantRequest) -> Result<(String, String), ClientError> {
        let r = self.send(req)?;
        Ok((r.grant_id, r.grant_token))
    }

    /// One page of ListGrants: `(grants, next_marker)`.
    pub fn list_grants(
        &self,
        req: ListGrantsRequest,
    ) -> Result<(Vec<GrantListEntry>, Option<String>), ClientError> {
        let r = self.send(req)?;
        Ok((r.grants, r.next_marker))
    }

    /// One page of ListRetirableGrants: `(grants, next_marker)`.
    pub fn list_retirable_grants(
        &self,
        req: ListRetirableGrantsRequest,
    ) -> Result<(Vec<GrantListEntry>, Option<String>), ClientError> {
        let r = self.send(req)?;
        Ok((r.grants, r.next_marker))
    }

    pub fn retire_grant(&self, req: RetireGrantRequest) -> Result<(), ClientError> {
        self.send(req).map(drop)
    }

    pub fn revoke_grant(&self, key_id: &str, grant_id: &str) -> Result<(), ClientError> {
        self.send(RevokeGrantRequest {
            key_id: key_id.into(),
            grant_id: grant_id.into(),
        })
        .map(drop)
    }

    /// The key's policy document (policy name `default`).
    pub fn get_key_policy(&self, key_id: &str) -> Result<String, ClientError> {
        let req = GetKeyPolicyRequest {
            key_id: key_id.into(),
            policy_name: None,
        };
        Ok(self.send(req)?.policy)
    }

    pub fn put_key_policy(
        &self,
        key_id: &str,
        policy: &str,
        bypass_policy_lockout_safety_check: bool,
    ) -> Result<(), ClientError> {
        self.send(PutKeyPolicyRequest {
            key_id: key_id.into(),
            policy_name: None,
            policy: policy.into(),
            bypass_policy_lockout_safety_check,
        })
        .map(drop)
    }

    pub fn list_key_policies(&self, key_id: &str) -> Result<Vec<String>, ClientError> {
        let req = ListKeyPoliciesRequest {
            key_id: key_id.into(),
            limit: None,
            marker: None,
        };
        Ok(self.send(req)?.policy_names)
    }

    /// Records a service's own event in the trail (the client must be set up
    /// `via` that service, from a uid the config trusts as it); returns its eventID.
    pub fn record_event(&self, req: RecordEventRequest) -> Result<String, ClientError> {
        Ok(self.send(req)?.event_id)
    }

    /// LookupEvents: one page.
    pub fn lookup_events(
        &self,
        req: LookupEventsRequest,
    ) -> Result<LookupEventsResponse, ClientError> {
        self.send(req)
    }

    /// Asks kmsd to re-read its configuration (as SIGHUP does); returns a summary.
    pub fn reload_config(&self) -> Result<String, ClientError> {
        Ok(self.send(ReloadConfigRequest {})?.reloaded)
    }

    /// The caller's own access key for the AWS endpoint (`atrest env`), made on first
    /// use.
    pub fn ensure_access_key(&self) -> Result<EnsureAccessKeyResponse, ClientError> {
        self.send(EnsureAccessKeyRequest {})
    }

    /// An access key's secret and principal (the AWS endpoint's uids only).
    pub fn resolve_access_key(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<ResolveAccessKeyResponse, ClientError> {
        self.send(ResolveAccessKeyRequest {
            access_key_id: access_key_id.into(),
            session_token: session_token.map(str::to_string),
        })
    }

    /// kmsd's trail and listener state (`atrest status`); recorded nowhere.
    pub fn status(&self) -> Result<StatusResponse, ClientError> {
        self.send(StatusRequest {})
    }

    /// Who kmsd evaluates this client's requests as.
    pub fn get_caller_identity(&self) -> Result<GetCallerIdentityResponse, ClientError> {
        self.send(GetCallerIdentityRequest {})
    }

    /// Who local uid `uid` is, its `--as` claim checked as kmsd checks its own callers'
    /// (this client's own uid, or any uid when the config trusts this one as a service).
    pub fn resolve_caller(
        &self,
        uid: u32,
        act_as: Option<&str>,
    ) -> Result<ResolveCallerResponse, ClientError> {
        self.send(ResolveCallerRequest {
            uid,
            act_as: act_as.map(str::to_string),
            signer: None,
        })
    }

    /// Who the SigV4 `signer` of a request endpoint uid `uid` sent is: its principal,
    /// once kmsd has checked that the signer's access key still authenticates as it
    /// (`UnrecognizedClientException` if deleted or inactive, `ExpiredTokenException`
    /// past its session), and whether `uid` is trusted as the AWS endpoint at all
    /// (if not, the key is not looked at and the answer is the uid's own principal).
    pub fn resolve_signer(
        &self,
        uid: u32,
        signer: &crate::protocol::Signer,
    ) -> Result<ResolveCallerResponse, ClientError> {
        self.send(ResolveCallerRequest {
            uid,
            act_as: None,
            signer: Some(signer.clone()),
        })
    }
}
