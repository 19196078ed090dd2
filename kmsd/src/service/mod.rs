//! The key service, independent of any transport.
//!
//! [`KeyService::handle`] takes a [`Caller`] (who, established by the transport) and a
//! [`Request`], and returns a [`Response`] or a [`KmsError`]. Every request, allowed or
//! refused, is recorded through the [`audit::AuditSink`] before the result is
//! returned; if recording fails, the request is refused (fail closed).
//!
//! Concurrency: keys live in an `RwLock`ed map of `Arc<KeyEntry>`; cryptographic
//! operations take the read lock only long enough to clone an `Arc`. Changes are
//! serialized by `write_lock`, persisted (fsync'd) while readers keep running, and
//! only then swapped into the map, so nothing is acknowledged before it is durable.

pub mod aliases;
pub mod audit;
pub mod authz;
pub mod crypto;
pub mod deletion;
pub mod keys;
pub mod resolve;
pub mod rotation;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use aes_gcm::Aes256Gcm;

use crate::clock::Clock;
use crate::config::Config;
use crate::keystore::{Keystore, KeystoreError, StoredAlias, StoredKey};
use crate::protocol::{KmsError, Request, RequestEnvelope, Response, ViaService};
use audit::{AuditEvent, AuditIdentity, AuditSink};

/// Who is calling, as established by the transport (never by the request body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Kernel-checked Unix uid of the peer.
    pub uid: u32,
    /// Kernel-checked pid of the peer, if known.
    pub pid: Option<i32>,
    /// The principal the uid maps to.
    pub uid_principal: String,
    /// The principal the request is evaluated as (`uid_principal`, or the `act_as`
    /// principal once admitted).
    pub principal_arn: String,
    /// The account of `principal_arn`.
    pub account: String,
    /// The service the request came through, if admitted.
    pub via: Option<ViaService>,
    /// Where the request came from, e.g. `unix:/path/kmsd.sock` (CloudTrail's
    /// `sourceIPAddress` when not via a service).
    pub source: String,
}

/// A key in memory: its stored record plus an initialized cipher per backing version.
pub struct KeyEntry {
    pub record: StoredKey,
    pub arn: String,
    /// `ciphers[v - 1]` is backing version `v`; shared between entry versions.
    pub ciphers: Arc<Vec<Aes256Gcm>>,
}

impl KeyEntry {
    pub fn new(record: StoredKey, ciphers: Arc<Vec<Aes256Gcm>>) -> Self {
        let arn = record.arn();
        KeyEntry {
            record,
            arn,
            ciphers,
        }
    }
    /// The same key with a changed record (and the same material).
    pub fn with_record(&self, record: StoredKey) -> Self {
        KeyEntry::new(record, Arc::clone(&self.ciphers))
    }
    /// The newest backing version and its cipher.
    pub fn current(&self) -> Option<(u32, &Aes256Gcm)> {
        let n = self.ciphers.len();
        let c = self.ciphers.last()?;
        Some((u32::try_from(n).ok()?, c))
    }
    /// The cipher of backing version `v`.
    pub fn version(&self, v: u32) -> Option<&Aes256Gcm> {
        let idx = (v as usize).checked_sub(1)?;
        self.ciphers.get(idx)
    }
}

/// Aliases are per account: (account, alias name).
pub type AliasKey = (String, String);

/// The in-memory view of the keystore.
#[derive(Default)]
pub struct State {
    pub keys: HashMap<String, Arc<KeyEntry>>,
    pub aliases: BTreeMap<AliasKey, StoredAlias>,
}

/// Options of a [`KeyService`].
pub struct ServiceOptions {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub audit: Arc<dyn AuditSink>,
    /// Accept `AdvanceClock` (tests only).
    pub allow_clock_control: bool,
}

/// The key service.
pub struct KeyService {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) allow_clock_control: bool,
    pub(crate) store: Keystore,
    state: RwLock<State>,
    write_lock: Mutex<()>,
}

impl KeyService {
    /// Opens the keystore in `kms_dir` and loads every key.
    pub fn open(kms_dir: &std::path::Path, opts: ServiceOptions) -> Result<Self, KeystoreError> {
        let (store, loaded) = Keystore::open(kms_dir)?;
        let mut state = State::default();
        for (record, materials) in loaded.keys {
            let ciphers = materials.iter().map(|m| crate::blob::cipher(m)).collect();
            let entry = KeyEntry::new(record, Arc::new(ciphers));
            state
                .keys
                .insert(entry.record.key_id.clone(), Arc::new(entry));
        }
        let mut dangling = false;
        for alias in loaded.aliases {
            // A crash between deleting a key and rewriting the alias file leaves
            // aliases to a key that is gone; finish that deletion here.
            if state.keys.contains_key(&alias.target_key_id) {
                state
                    .aliases
                    .insert((alias.account.clone(), alias.alias_name.clone()), alias);
            } else {
                dangling = true;
            }
        }
        if dangling {
            store.write_aliases(state.aliases.values())?;
        }
        tracing::info!(
            keys = state.keys.len(),
            aliases = state.aliases.len(),
            "keystore loaded"
        );
        Ok(KeyService {
            config: opts.config,
            clock: opts.clock,
            audit: opts.audit,
            allow_clock_control: opts.allow_clock_control,
            store,
            state: RwLock::new(state),
            write_lock: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the data is still a
        // consistent snapshot (writers swap whole entries), so keep serving.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state under the write lock (short: in-memory swaps only).
    pub(crate) fn apply<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Serializes changes: hold this while reading, persisting and applying.
    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles a request from a transport peer: admits the envelope's claims
    /// (`act_as`, `via`) and handles the request. A refused admission is audited
    /// as the peer's own identity.
    pub fn handle_envelope(
        &self,
        peer: &authz::Peer,
        env: RequestEnvelope,
    ) -> Result<Response, KmsError> {
        match authz::admit(peer, env.act_as.as_deref(), env.via.as_ref()) {
            Ok(caller) => self.handle(&caller, env.request),
            Err(e) => {
                let caller = Caller {
                    uid: peer.uid,
                    pid: peer.pid,
                    uid_principal: peer.uid_principal.clone(),
                    principal_arn: peer.uid_principal.clone(),
                    account: peer.account.clone(),
                    via: None,
                    source: peer.source.clone(),
                };
                self.audited(&caller, env.request, |_, _| Err(e))
            }
        }
    }

    /// Handles one request: dispatch, audit (fail closed), result.
    pub fn handle(&self, caller: &Caller, request: Request) -> Result<Response, KmsError> {
        self.audited(caller, request, |req, key_arn| {
            self.dispatch(caller, req, key_arn)
        })
    }

    fn audited(
        &self,
        caller: &Caller,
        request: Request,
        run: impl FnOnce(Request, &mut Option<String>) -> Result<Response, KmsError>,
    ) -> Result<Response, KmsError> {
        let event_name = request.operation();
        let read_only = audit::is_read_only(&request);
        let request_parameters = audit::request_parameters(&request);
        let mut key_arn: Option<String> = None;
        let result = run(request, &mut key_arn);
        let (response_elements, error_code, error_message) = match &result {
            Ok(resp) => (audit::response_elements(event_name, resp), None, None),
            Err(e) => (
                serde_json::Value::Null,
                Some(e.code.as_str().to_string()),
                Some(e.message.clone()),
            ),
        };
        let event = AuditEvent {
            event_name: event_name.to_string(),
            event_source: "kms.amazonaws.com".into(),
            time_ms: self.clock.now_ms(),
            request_id: uuid::Uuid::new_v4().to_string(),
            identity: AuditIdentity::from_caller(caller),
            region: self.config.region.clone(),
            request_parameters,
            response_elements,
            error_code,
            error_message,
            key_arn,
            read_only,
        };
        if let Err(e) = self.audit.record(event) {
            tracing::error!(error = %e, operation = event_name, "audit trail unavailable: refusing the request");
            return Err(KmsError::internal(
                "The request was refused because the audit trail could not record it.",
            ));
        }
        result
    }

    fn dispatch(
        &self,
        caller: &Caller,
        request: Request,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        match request {
            Request::CreateKey(r) => self.create_key(caller, r, key_arn),
            Request::DescribeKey { key_id, .. } => self.describe_key(caller, &key_id, key_arn),
            Request::ListKeys(r) => self.list_keys(caller, r),
            Request::EnableKey { key_id } => self.enable_key(caller, &key_id, key_arn),
            Request::DisableKey { key_id } => self.disable_key(caller, &key_id, key_arn),
            Request::ScheduleKeyDeletion {
                key_id,
                pending_window_in_days,
            } => self.schedule_key_deletion(caller, &key_id, pending_window_in_days, key_arn),
            Request::CancelKeyDeletion { key_id } => {
                self.cancel_key_deletion(caller, &key_id, key_arn)
            }
            Request::CreateAlias {
                alias_name,
                target_key_id,
            } => self.create_alias(caller, &alias_name, &target_key_id, key_arn),
            Request::UpdateAlias {
                alias_name,
                target_key_id,
            } => self.update_alias(caller, &alias_name, &target_key_id, key_arn),
            Request::DeleteAlias { alias_name } => self.delete_alias(caller, &alias_name, key_arn),
            Request::ListAliases(r) => self.list_aliases(caller, r, key_arn),
            Request::Encrypt(r) => self.encrypt(caller, r, key_arn),
            Request::Decrypt(r) => self.decrypt(caller, r, key_arn),
            Request::ReEncrypt(r) => self.re_encrypt(caller, r, key_arn),
            Request::GenerateDataKey(r) => self.generate_data_key(caller, r, true, key_arn),
            Request::GenerateDataKeyWithoutPlaintext(r) => {
                self.generate_data_key(caller, r, false, key_arn)
            }
            Request::EnableKeyRotation {
                key_id,
                rotation_period_in_days,
            } => self.enable_key_rotation(caller, &key_id, rotation_period_in_days, key_arn),
            Request::DisableKeyRotation { key_id } => {
                self.disable_key_rotation(caller, &key_id, key_arn)
            }
            Request::GetKeyRotationStatus { key_id } => {
                self.get_key_rotation_status(caller, &key_id, key_arn)
            }
            Request::RotateKeyOnDemand { key_id } => {
                self.rotate_key_on_demand(caller, &key_id, key_arn)
            }
            Request::ListKeyRotations { key_id } => {
                self.list_key_rotations(caller, &key_id, key_arn)
            }
            Request::UpdateKeyDescription {
                key_id,
                description,
            } => self.update_key_description(caller, &key_id, description, key_arn),
            Request::ListResourceTags { key_id } => {
                self.list_resource_tags(caller, &key_id, key_arn)
            }
            Request::AdvanceClock { seconds } => self.advance_clock(seconds),
        }
    }

    fn advance_clock(&self, seconds: u64) -> Result<Response, KmsError> {
        if !self.allow_clock_control || !self.clock.advance(seconds) {
            return Err(KmsError::new(
                crate::protocol::ErrorCode::AccessDeniedException,
                "AdvanceClock is refused: kmsd was not started with --allow-clock-control",
            ));
        }
        self.sweep();
        Ok(Response::Clock {
            now_ms: self.clock.now_ms(),
        })
    }

    /// Persists a key record and swaps it in. Call with `writer()` held, unless the
    /// key is brand new (nobody else can know its ID yet).
    pub(crate) fn commit_key(&self, entry: KeyEntry) -> Result<Arc<KeyEntry>, KmsError> {
        self.store.write_key(&entry.record).map_err(storage_error)?;
        let entry = Arc::new(entry);
        let stored = Arc::clone(&entry);
        self.apply(|s| {
            s.keys.insert(stored.record.key_id.clone(), stored);
        });
        Ok(entry)
    }
}

/// A keystore failure as the caller sees it (the detail goes to the log).
pub(crate) fn storage_error(e: KeystoreError) -> KmsError {
    tracing::error!(error = %e, "keystore write failed");
    KmsError::internal("kmsd could not write its keystore; nothing was changed")
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::clock::MovableClock;

    pub struct Fixture {
        pub _dir: tempfile::TempDir,
        pub svc: KeyService,
        pub clock: Arc<MovableClock>,
        pub sink: Arc<audit::MemoryAuditSink>,
    }

    pub fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(MovableClock::new());
        let sink = Arc::new(audit::MemoryAuditSink::default());
        let svc = KeyService::open(
            &dir.path().join("kms"),
            ServiceOptions {
                config: Config::default(),
                clock: clock.clone(),
                audit: sink.clone(),
                allow_clock_control: true,
            },
        )
        .unwrap();
        Fixture {
            _dir: dir,
            svc,
            clock,
            sink,
        }
    }

    pub fn alice() -> Caller {
        Caller {
            uid: 1000,
            pid: None,
            uid_principal: "arn:aws:iam::111122223333:user/alice".into(),
            principal_arn: "arn:aws:iam::111122223333:user/alice".into(),
            account: "111122223333".into(),
            via: None,
            source: "test".into(),
        }
    }
}
