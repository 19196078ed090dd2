//! The kmsd client library, used by the CLI and by the volume and object services.
//!
//! A [`KmsClient`] owns one connection, guarded by a mutex: its methods take `&self`,
//! so an `Arc<KmsClient>` can be shared between threads (calls are then serialized
//! on that connection). For parallel calls give each thread its own client:
//! `Clone` makes a client with the same settings and its own connection, opened on
//! first use. After a transport error the connection is dropped and the next call
//! reconnects; a request is never retried automatically.

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

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
    fn open(path: &Path) -> Result<Conn, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Unreachable {
            path: path.to_path_buf(),
            home: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            source,
        })?;
        let w = stream
            .try_clone()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer: BufWriter::with_capacity(16 * 1024, w),
            buf: Vec::with_capacity(1024),
        })
    }

    fn round_trip(&mut self, env: &RequestEnvelope) -> Result<ResponseEnvelope, FrameError> {
        write_frame(&mut self.writer, env, &mut self.buf)?;
        read_frame_bytes(&mut self.reader, &mut self.buf)?;
        decode_response(&self.buf)
    }
}

/// Whether a kmsd serves at `path`: it answers a ping (an empty frame, never audited)
/// within `timeout`. A process that still holds the socket while it is being killed
/// accepts the connection but never answers, so this is the liveness test, not `connect`.
pub fn ping(path: &Path, timeout: std::time::Duration) -> Result<(), ClientError> {
    let mut conn = Conn::open(path)?;
    let transport = |e: std::io::Error| ClientError::Transport(e.to_string());
    for s in [conn.reader.get_ref(), conn.writer.get_ref()] {
        s.set_read_timeout(Some(timeout)).map_err(transport)?;
        s.set_write_timeout(Some(timeout)).map_err(transport)?;
    }
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
    conn: Mutex<Option<Conn>>,
}

impl Clone for KmsClient {
    /// Same socket and identity claims; a new connection, opened on first use.
    fn clone(&self) -> Self {
        KmsClient {
            path: self.path.clone(),
            act_as: self.act_as.clone(),
            via: self.via.clone(),
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

fn unexpected(operation: &'static str, r: Response) -> ClientError {
    ClientError::UnexpectedResponse {
        operation,
        got: r.kind().to_string(),
    }
}

/// The size of a data key: a `KeySpec` or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeySize {
    Spec(DataKeySpec),
    Bytes(u32),
}

impl KmsClient {
    /// Connects to kmsd's socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let conn = Conn::open(&path)?;
        Ok(KmsClient {
            path,
            act_as: None,
            via: None,
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

    /// Sends every request as coming via an AWS-shaped service.
    pub fn via(mut self, via: ViaService) -> Self {
        self.via = Some(via);
        self
    }

    /// Sends one request and waits for its reply.
    pub fn call(&self, request: Request) -> Result<Response, ClientError> {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: self.act_as.clone(),
            via: self.via.clone(),
            request,
        };
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Conn::open(&self.path)?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(ClientError::Transport("no connection".into()));
        };
        match conn.round_trip(&env) {
            Ok(reply) => reply.result.map_err(ClientError::Kms),
            Err(e) => {
                // The stream may be mid-frame: never reuse it.
                *guard = None;
                Err(ClientError::Transport(e.to_string()))
            }
        }
    }

    pub fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, ClientError> {
        match self.call(Request::CreateKey(req))? {
            Response::KeyMetadata(m) => Ok(m),
            r => Err(unexpected("CreateKey", r)),
        }
    }

    pub fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, ClientError> {
        match self.call(Request::DescribeKey {
            key_id: key_id.into(),
            grant_tokens: vec![],
        })? {
            Response::KeyMetadata(m) => Ok(m),
            r => Err(unexpected("DescribeKey", r)),
        }
    }

    /// Every key of the caller's account (follows the pages).
    pub fn list_keys(&self) -> Result<Vec<KeyListEntry>, ClientError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            match self.call(Request::ListKeys(ListKeysRequest {
                limit: Some(1000),
                marker: marker.take(),
            }))? {
                Response::ListKeys {
                    keys, next_marker, ..
                } => {
                    out.extend(keys);
                    match next_marker {
                        Some(m) => marker = Some(m),
                        None => return Ok(out),
                    }
                }
                r => return Err(unexpected("ListKeys", r)),
            }
        }
    }

    fn expect_empty(&self, op: &'static str, req: Request) -> Result<(), ClientError> {
        match self.call(req)? {
            Response::Empty => Ok(()),
            r => Err(unexpected(op, r)),
        }
    }

    pub fn enable_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "EnableKey",
            Request::EnableKey {
                key_id: key_id.into(),
            },
        )
    }

    pub fn disable_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "DisableKey",
            Request::DisableKey {
                key_id: key_id.into(),
            },
        )
    }

    pub fn update_key_description(
        &self,
        key_id: &str,
        description: &str,
    ) -> Result<(), ClientError> {
        self.expect_empty(
            "UpdateKeyDescription",
            Request::UpdateKeyDescription {
                key_id: key_id.into(),
                description: description.into(),
            },
        )
    }

    pub fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<ScheduleKeyDeletionResponse, ClientError> {
        match self.call(Request::ScheduleKeyDeletion {
            key_id: key_id.into(),
            pending_window_in_days,
        })? {
            Response::ScheduleKeyDeletion(s) => Ok(s),
            r => Err(unexpected("ScheduleKeyDeletion", r)),
        }
    }

    /// Returns the key ARN.
    pub fn cancel_key_deletion(&self, key_id: &str) -> Result<String, ClientError> {
        match self.call(Request::CancelKeyDeletion {
            key_id: key_id.into(),
        })? {
            Response::KeyId { key_id } => Ok(key_id),
            r => Err(unexpected("CancelKeyDeletion", r)),
        }
    }

    pub fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "CreateAlias",
            Request::CreateAlias {
                alias_name: alias_name.into(),
                target_key_id: target_key_id.into(),
            },
        )
    }

    pub fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "UpdateAlias",
            Request::UpdateAlias {
                alias_name: alias_name.into(),
                target_key_id: target_key_id.into(),
            },
        )
    }

    pub fn delete_alias(&self, alias_name: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "DeleteAlias",
            Request::DeleteAlias {
                alias_name: alias_name.into(),
            },
        )
    }

    /// Every alias of the caller's account, or only those of `key_id`.
    pub fn list_aliases(&self, key_id: Option<&str>) -> Result<Vec<AliasListEntry>, ClientError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            match self.call(Request::ListAliases(ListAliasesRequest {
                key_id: key_id.map(str::to_string),
                limit: Some(1000),
                marker: marker.take(),
            }))? {
                Response::ListAliases {
                    aliases,
                    next_marker,
                    ..
                } => {
                    out.extend(aliases);
                    match next_marker {
                        Some(m) => marker = Some(m),
                        None => return Ok(out),
                    }
                }
                r => return Err(unexpected("ListAliases", r)),
            }
        }
    }

    pub fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
    ) -> Result<EncryptResponse, ClientError> {
        match self.call(Request::Encrypt(EncryptRequest {
            key_id: key_id.into(),
            plaintext: Zeroizing::new(plaintext.to_vec()),
            encryption_context: encryption_context.clone(),
            grant_tokens: vec![],
            encryption_algorithm: None,
        }))? {
            Response::Encrypt(e) => Ok(e),
            r => Err(unexpected("Encrypt", r)),
        }
    }

    /// Decrypts; `key_id`, if given, must name the key the blob was made with.
    pub fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        encryption_context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, ClientError> {
        self.decrypt_request(DecryptRequest {
            ciphertext_blob: ciphertext_blob.to_vec(),
            encryption_context: encryption_context.clone(),
            key_id: key_id.map(str::to_string),
            grant_tokens: vec![],
            encryption_algorithm: None,
        })
    }

    /// Decrypt with every option (grant tokens, algorithm).
    pub fn decrypt_request(&self, req: DecryptRequest) -> Result<DecryptResponse, ClientError> {
        match self.call(Request::Decrypt(req))? {
            Response::Decrypt(d) => Ok(d),
            r => Err(unexpected("Decrypt", r)),
        }
    }

    pub fn re_encrypt(&self, req: ReEncryptRequest) -> Result<ReEncryptResponse, ClientError> {
        match self.call(Request::ReEncrypt(req))? {
            Response::ReEncrypt(r) => Ok(r),
            r => Err(unexpected("ReEncrypt", r)),
        }
    }

    fn gdk_request(
        key_id: &str,
        size: DataKeySize,
        ctx: &EncryptionContext,
    ) -> GenerateDataKeyRequest {
        let (key_spec, number_of_bytes) = match size {
            DataKeySize::Spec(s) => (Some(s), None),
            DataKeySize::Bytes(n) => (None, Some(n)),
        };
        GenerateDataKeyRequest {
            key_id: key_id.into(),
            key_spec,
            number_of_bytes,
            encryption_context: ctx.clone(),
            grant_tokens: vec![],
        }
    }

    pub fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        encryption_context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, ClientError> {
        match self.call(Request::GenerateDataKey(Self::gdk_request(
            key_id,
            size,
            encryption_context,
        )))? {
            Response::GenerateDataKey(g) => Ok(g),
            r => Err(unexpected("GenerateDataKey", r)),
        }
    }

    pub fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        size: DataKeySize,
        encryption_context: &EncryptionContext,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse, ClientError> {
        match self.call(Request::GenerateDataKeyWithoutPlaintext(Self::gdk_request(
            key_id,
            size,
            encryption_context,
        )))? {
            Response::GenerateDataKeyWithoutPlaintext(g) => Ok(g),
            r => Err(unexpected("GenerateDataKeyWithoutPlaintext", r)),
        }
    }

    pub fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), ClientError> {
        self.expect_empty(
            "EnableKeyRotation",
            Request::EnableKeyRotation {
                key_id: key_id.into(),
                rotation_period_in_days,
            },
        )
    }

    pub fn disable_key_rotation(&self, key_id: &str) -> Result<(), ClientError> {
        self.expect_empty(
            "DisableKeyRotation",
            Request::DisableKeyRotation {
                key_id: key_id.into(),
            },
        )
    }

    pub fn get_key_rotation_status(&self, key_id: &str) -> Result<KeyRotationStatus, ClientError> {
        match self.call(Request::GetKeyRotationStatus {
            key_id: key_id.into(),
        })? {
            Response::KeyRotationStatus(s) => Ok(s),
            r => Err(unexpected("GetKeyRotationStatus", r)),
        }
    }

    /// Returns the key ARN.
    pub fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, ClientError> {
        match self.call(Request::RotateKeyOnDemand {
            key_id: key_id.into(),
        })? {
            Response::KeyId { key_id } => Ok(key_id),
            r => Err(unexpected("RotateKeyOnDemand", r)),
        }
    }

    pub fn list_key_rotations(&self, key_id: &str) -> Result<Vec<RotationEntry>, ClientError> {
        match self.call(Request::ListKeyRotations {
            key_id: key_id.into(),
        })? {
            Response::ListKeyRotations { rotations } => Ok(rotations),
            r => Err(unexpected("ListKeyRotations", r)),
        }
    }

    pub fn list_resource_tags(&self, key_id: &str) -> Result<Vec<Tag>, ClientError> {
        match self.call(Request::ListResourceTags {
            key_id: key_id.into(),
        })? {
            Response::ListResourceTags { tags } => Ok(tags),
            r => Err(unexpected("ListResourceTags", r)),
        }
    }

    /// Moves kmsd's clock forward (only if it runs with `--allow-clock-control`);
    /// returns its new time in Unix milliseconds. kmsd sweeps right after.
    pub fn advance_clock(&self, seconds: u64) -> Result<i64, ClientError> {
        match self.call(Request::AdvanceClock { seconds })? {
            Response::Clock { now_ms } => Ok(now_ms),
            r => Err(unexpected("AdvanceClock", r)),
        }
    }

    /// CreateGrant; returns `(grant_id, grant_token)`.
    pub fn create_grant(&self, req: CreateGrantRequest) -> Result<(String, String), ClientError> {
        match self.call(Request::CreateGrant(req))? {
            Response::CreateGrant {
                grant_id,
                grant_token,
            } => Ok((grant_id, grant_token)),
            r => Err(unexpected("CreateGrant", r)),
        }
    }

    /// One page of ListGrants: `(grants, next_marker)`.
    pub fn list_grants(
        &self,
        req: ListGrantsRequest,
    ) -> Result<(Vec<GrantListEntry>, Option<String>), ClientError> {
        match self.call(Request::ListGrants(req))? {
            Response::ListGrants {
                grants,
                next_marker,
                ..
            } => Ok((grants, next_marker)),
            r => Err(unexpected("ListGrants", r)),
        }
    }

    /// One page of ListRetirableGrants: `(grants, next_marker)`.
    pub fn list_retirable_grants(
        &self,
        req: ListRetirableGrantsRequest,
    ) -> Result<(Vec<GrantListEntry>, Option<String>), ClientError> {
        match self.call(Request::ListRetirableGrants(req))? {
            Response::ListGrants {
                grants,
                next_marker,
                ..
            } => Ok((grants, next_marker)),
            r => Err(unexpected("ListRetirableGrants", r)),
        }
    }

    pub fn retire_grant(&self, req: RetireGrantRequest) -> Result<(), ClientError> {
        match self.call(Request::RetireGrant(req))? {
            Response::Empty => Ok(()),
            r => Err(unexpected("RetireGrant", r)),
        }
    }

    pub fn revoke_grant(&self, key_id: &str, grant_id: &str) -> Result<(), ClientError> {
        match self.call(Request::RevokeGrant {
            key_id: key_id.into(),
            grant_id: grant_id.into(),
        })? {
            Response::Empty => Ok(()),
            r => Err(unexpected("RevokeGrant", r)),
        }
    }

    /// The key's policy document (policy name `default`).
    pub fn get_key_policy(&self, key_id: &str) -> Result<String, ClientError> {
        match self.call(Request::GetKeyPolicy {
            key_id: key_id.into(),
            policy_name: None,
        })? {
            Response::KeyPolicy { policy, .. } => Ok(policy),
            r => Err(unexpected("GetKeyPolicy", r)),
        }
    }

    pub fn put_key_policy(
        &self,
        key_id: &str,
        policy: &str,
        bypass_policy_lockout_safety_check: bool,
    ) -> Result<(), ClientError> {
        match self.call(Request::PutKeyPolicy {
            key_id: key_id.into(),
            policy_name: None,
            policy: policy.into(),
            bypass_policy_lockout_safety_check,
        })? {
            Response::Empty => Ok(()),
            r => Err(unexpected("PutKeyPolicy", r)),
        }
    }

    pub fn list_key_policies(&self, key_id: &str) -> Result<Vec<String>, ClientError> {
        match self.call(Request::ListKeyPolicies {
            key_id: key_id.into(),
        })? {
            Response::ListKeyPolicies { policy_names, .. } => Ok(policy_names),
            r => Err(unexpected("ListKeyPolicies", r)),
        }
    }

    /// Records a service's own event in the trail (the client must be set up
    /// `via` that service, from a uid the config trusts as it); returns its eventID.
    pub fn record_event(&self, req: RecordEventRequest) -> Result<String, ClientError> {
        match self.call(Request::RecordEvent(req))? {
            Response::EventRecorded { event_id } => Ok(event_id),
            r => Err(unexpected("RecordEvent", r)),
        }
    }

    /// LookupEvents; returns AWS's response JSON text.
    pub fn lookup_events(&self, req: LookupEventsRequest) -> Result<String, ClientError> {
        match self.call(Request::LookupEvents(req))? {
            Response::LookupEvents { page_json } => Ok(page_json),
            r => Err(unexpected("LookupEvents", r)),
        }
    }

    /// Asks kmsd to re-read its configuration (as SIGHUP does); returns a summary.
    pub fn reload_config(&self) -> Result<String, ClientError> {
        match self.call(Request::ReloadConfig)? {
            Response::ConfigReloaded { summary } => Ok(summary),
            r => Err(unexpected("ReloadConfig", r)),
        }
    }

    /// Who kmsd evaluates this client's requests as.
    pub fn get_caller_identity(&self) -> Result<CallerIdentity, ClientError> {
        match self.call(Request::GetCallerIdentity)? {
            Response::CallerIdentity(c) => Ok(c),
            r => Err(unexpected("GetCallerIdentity", r)),
        }
    }
}
