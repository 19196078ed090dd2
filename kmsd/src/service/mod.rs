//! The key service, independent of any transport.
//!
//! [`KeyService::handle`] takes a [`Caller`] (who, established by the transport) and a
//! [`Request`], and returns a [`Response`] or a [`KmsError`]. Every request, allowed or
//! refused, is recorded through the [`audit::AuditSink`] before the result is
//! returned; if the sink cannot record, the request is refused before any key is used,
//! and if recording fails afterwards, the reply is refused (fail closed).
//!
//! Concurrency: keys live in an `RwLock`ed map of `Arc<KeyEntry>`; cryptographic
//! operations take the read lock only long enough to clone an `Arc`. Changes are
//! serialized by `write_lock`, persisted (fsync'd) while readers keep running, and
//! only then swapped into the map, so nothing is acknowledged before it is durable.

pub mod aliases;
pub mod audit;
pub mod authz;
pub mod credentials;
pub mod crypto;
pub(crate) mod decisions;
pub mod deletion;
pub mod directory;
pub mod events;
pub mod grants;
pub mod iam;
pub mod iam_access_keys;
pub mod iam_policies;
pub mod keys;
pub mod managed;
pub mod policies;
pub mod resolve;
pub mod rotation;
pub mod rules;
pub mod sts;
#[cfg(test)]
mod trail_golden;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use aes_gcm::Aes256Gcm;

use crate::api::{
    AdvanceClockRequest, AdvanceClockResponse, ConnectionStatus, Handle, StatusRequest,
    StatusResponse, Timestamp, TrailStatus,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::AccessKeyStore;
use crate::grants::Grant;
use crate::iam::store::{IamStore, IamStoreError};
use crate::keystore::{Keystore, KeystoreError, StoredAlias, StoredKey};
use crate::policy::{PolicyDocument, Principal};
use crate::protocol::{KmsError, Request, RequestEnvelope, Response, Signer, ViaService};
use audit::{AuditEvent, AuditIdentity, AuditSink};
use directory::{Directory, Policies};

/// One call as a handler sees it: who calls, and the key the call turned out to
/// name (set by the handler as soon as it resolves one, even if it then refuses:
/// the trail records it).
pub struct Call<'a> {
    pub caller: &'a Caller,
    pub key_arn: Option<String>,
}

/// Who is calling, as established by the transport (never by the request body) and
/// admitted by [`authz::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Kernel-checked Unix uid of the peer.
    pub uid: u32,
    /// Kernel-checked pid of the peer, if known.
    pub pid: Option<i32>,
    /// The uid's user name.
    pub user: String,
    /// The principal the uid maps to.
    pub uid_principal: String,
    /// The principal the request is evaluated as (`uid_principal`, or the `act_as`
    /// principal once admitted).
    pub principal_arn: String,
    /// The account of `principal_arn`.
    pub account: String,
    /// `principal_arn`, parsed for policy evaluation.
    pub principal: Principal,
    /// The IAM identity policies of `principal`.
    pub policies: Policies,
    /// The service the request came through, if admitted.
    pub via: Option<ViaService>,
    /// Where the request came from, e.g. `unix:/path/kmsd.sock` (CloudTrail's
    /// `sourceIPAddress` when not via a service or the AWS endpoint).
    pub source: String,
    /// The SigV4 signer the AWS endpoint speaks for, if admitted (its access key,
    /// source IP and user agent go to the trail).
    pub signer: Option<Signer>,
}

/// A key in memory: its stored record plus an initialized cipher per backing version.
pub struct KeyEntry {
    pub record: StoredKey,
    pub arn: String,
    /// The key policy, parsed once (the AWS default policy when the record has none;
    /// a stored policy that no longer parses allows nothing: fail closed).
    pub policy: Arc<PolicyDocument>,
    /// `ciphers[v - 1]` is backing version `v`; shared between entry versions.
    pub ciphers: Arc<Vec<Aes256Gcm>>,
}

impl KeyEntry {
    pub fn new(record: StoredKey, ciphers: Arc<Vec<Aes256Gcm>>) -> Self {
        let arn = record.arn();
        let policy = Arc::new(policies::parse_stored(&record));
        KeyEntry {
            record,
            arn,
            policy,
            ciphers,
        }
    }
    /// The same key with a changed record (and the same material).
    pub fn with_record(&self, record: StoredKey) -> Self {
        let policy = if record.policy == self.record.policy && record.account == self.record.account
        {
            Arc::clone(&self.policy)
        } else {
            Arc::new(policies::parse_stored(&record))
        };
        KeyEntry {
            arn: record.arn(),
            record,
            policy,
            ciphers: Arc::clone(&self.ciphers),
        }
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
    /// Grants by key ID.
    pub grants: HashMap<String, Arc<Vec<Grant>>>,
}

/// Options of a [`KeyService`].
pub struct ServiceOptions {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub audit: Arc<dyn AuditSink>,
    /// Accept `AdvanceClock` (tests only).
    pub allow_clock_control: bool,
    /// Where `ReloadConfig` (and SIGHUP) re-read the configuration from, and the
    /// home whose drop-in IAM directory is read; `None`: the config cannot be
    /// reloaded and only `config` counts.
    pub reload: Option<ReloadSource>,
    /// The uid kmsd runs as (`uid = "self"` in the config).
    pub self_uid: u32,
    /// The trail LookupEvents reads (`None`: LookupEvents is unsupported).
    pub trail_dir: Option<PathBuf>,
}

/// Where the configuration is (re)loaded from.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    pub home: PathBuf,
    pub config_path: PathBuf,
    /// `--config` was given: the file must exist.
    pub required: bool,
}

/// The key service.
pub struct KeyService {
    /// The configuration kmsd started with (region, account and socket settings
    /// need a restart; identities and policies are in `directory`, reloadable).
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) allow_clock_control: bool,
    pub(crate) store: Keystore,
    pub(crate) reload: Option<ReloadSource>,
    pub(crate) trail_dir: Option<PathBuf>,
    pub(crate) kms_dir: PathBuf,
    /// Access keys (`HOME/kms/access-keys.json`).
    pub(crate) access_keys: AccessKeyStore,
    /// IAM's users, groups, roles and policies (`HOME/kms/iam.json`).
    pub(crate) iam: IamStore,
    directory: RwLock<Arc<Directory>>,
    state: RwLock<State>,
    write_lock: Mutex<()>,
    /// Policy allows already computed; emptied by every change ([`KeyService::apply`],
    /// [`KeyService::set_directory`]).
    pub(crate) decisions: decisions::DecisionCache,
}

impl KeyService {
    /// Opens the keystore in `kms_dir` and loads every key.
    pub fn open(kms_dir: &std::path::Path, opts: ServiceOptions) -> Result<Self, ServiceError> {
        let directory = Directory::build(
            opts.config.clone(),
            opts.reload.as_ref().map(|r| r.home.as_path()),
            opts.self_uid,
        )?;
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
        state.grants = grants::load(kms_dir, &state.keys)?;
        let access_keys = AccessKeyStore::open(&store).map_err(ServiceError::AccessKeys)?;
        let iam = IamStore::open(kms_dir)?;
        let now = opts.clock.now_ms();
        iam.change(
            |f| Ok::<_, IamStoreError>(((), iam::adopt_declared(f, &opts.config, now))),
            |_, _| Ok(()),
        )?;
        let compiled = crate::iam::compile(&iam.snapshot())?;
        let directory = directory.with_store(&compiled);
        if let Some(src) = &opts.reload {
            // The object endpoint kept its keys in HOME/s3/access-keys.json before
            // they moved here: imported once, then that file is gone.
            let legacy = plumbing::home::Layout::new(&src.home)
                .s3_dir()
                .join("access-keys.json");
            match access_keys.import_legacy(&store, &legacy, opts.clock.now_ms()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    imported = n,
                    from = %legacy.display(),
                    "access keys moved into kmsd's store"
                ),
                Err(e) => tracing::warn!(error = %e, "old access keys not imported"),
            }
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
            reload: opts.reload,
            trail_dir: opts.trail_dir,
            kms_dir: kms_dir.to_path_buf(),
            access_keys,
            iam,
            directory: RwLock::new(Arc::new(directory)),
            state: RwLock::new(state),
            write_lock: Mutex::new(()),
            decisions: decisions::DecisionCache::default(),
        })
    }

    /// The current compiled configuration (identities, IAM policies, services).
    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Swaps in a new directory (after a reload).
    pub(crate) fn set_directory(&self, d: Directory) {
        *self.directory.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(d);
        self.decisions.invalidate();
    }

    /// The grants of a key (shared; empty if none).
    pub(crate) fn grants_of(&self, key_id: &str) -> Arc<Vec<Grant>> {
        self.read().grants.get(key_id).cloned().unwrap_or_default()
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
    /// Every change to keys, key policies, grants and aliases comes through here, and
    /// so empties the authorization cache.
    pub(crate) fn apply<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut guard);
        drop(guard);
        self.decisions.invalidate();
        r
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
        mut env: RequestEnvelope,
    ) -> Result<Response, KmsError> {
        let dir = self.directory();
        let admitted = match env.signer.take() {
            Some(signer) => self.admit_signer(&dir, peer, &env, signer),
            None => authz::admit(&dir, peer, env.act_as.as_deref(), env.via.as_ref()),
        };
        match admitted {
            Ok(caller) => self.handle(&caller, env.request),
            Err(e) => {
                let caller = authz::peer_caller(&dir, peer);
                self.audited(&caller, env.request, |_, _| Err(e))
            }
        }
    }

    /// Handles one request: dispatch, audit (fail closed), result. A service's own
    /// event (`RecordEvent`) is its own record; refused, it is audited as a KMS call.
    /// The endpoint's access-key lookups and the services' caller lookups are
    /// recorded only when refused (the call they serve is recorded itself).
    pub fn handle(&self, caller: &Caller, request: Request) -> Result<Response, KmsError> {
        let request = match request {
            Request::ResolveAccessKey(r) => match self.resolve_access_key(caller, &r) {
                Ok(resp) => return Ok(Response::ResolveAccessKey(resp)),
                Err(e) => {
                    return self.audited(caller, Request::ResolveAccessKey(r), |_, _| Err(e));
                }
            },
            Request::ResolveCaller(r) => match self.resolve_caller(caller, &r) {
                Ok(resp) => return Ok(Response::ResolveCaller(resp)),
                Err(e) => return self.audited(caller, Request::ResolveCaller(r), |_, _| Err(e)),
            },
            // Not a key operation: answered even while the trail refuses everything.
            Request::Status(_) => return Ok(Response::Status(self.status(Default::default()))),
            Request::RecordEvent(r) => match self.record_service_event(caller, &r) {
                Ok(resp) => return Ok(Response::RecordEvent(resp)),
                Err(e) => {
                    return self.audited(caller, Request::RecordEvent(r), |_, _| Err(e));
                }
            },
            other => other,
        };
        self.audited(caller, request, |req, key_arn| {
            let mut call = Call {
                caller,
                key_arn: None,
            };
            let result = req.dispatch(self, &mut call);
            *key_arn = call.key_arn;
            result
        })
    }

    /// Runs `run` and records the request, with the trail parameters its
    /// operation's metadata gives ([`crate::api::Operation`]).
    fn audited(
        &self,
        caller: &Caller,
        request: Request,
        run: impl FnOnce(Request, &mut Option<String>) -> Result<Response, KmsError>,
    ) -> Result<Response, KmsError> {
        let event_name = request.operation();
        let source = request.service().event_source();
        let read_only = request.read_only();
        // The frequent calls write their parameters as JSON text straight from the
        // request; the others build a `Value`.
        let request_parameters_json = request.request_parameters_json();
        let request_parameters = match request_parameters_json {
            Some(_) => serde_json::Value::Null,
            None => request.request_parameters(),
        };
        // Before any key is used or anything changed: a trail that cannot take the
        // record refuses the request now. (The writer logs its problem once.)
        if let Err(e) = self.audit.ready() {
            tracing::debug!(error = %e, operation = event_name, "audit trail cannot record: refusing before acting");
            return Err(KmsError::internal(
                "The request was refused because the audit trail could not record it.",
            ));
        }
        let mut key_arn: Option<String> = None;
        let result = run(request, &mut key_arn);
        let mut event = AuditEvent::new(
            source,
            event_name,
            self.clock.now_ms(),
            AuditIdentity::from_caller(caller),
            &self.config.region,
        );
        event.request_parameters = request_parameters;
        event.request_parameters_json = request_parameters_json;
        event.read_only = read_only;
        if let Some(s) = &caller.signer {
            event.source_ip = Some(s.source_ip.clone());
            event.user_agent = s.user_agent.clone();
            event.access_key_id = Some(s.access_key_id.clone());
        }
        event.key_arn = key_arn;
        match &result {
            Ok(resp) => event.response_elements = resp.response_elements(),
            Err(e) => {
                event.error_code = Some(e.code.as_str().to_string());
                event.error_message = Some(e.message.clone());
            }
        }
        if let Err(e) = self.audit.record(event) {
            tracing::error!(error = %e, operation = event_name, "audit trail unavailable: refusing the request");
            return Err(KmsError::internal(
                "The request was refused because the audit trail could not record it.",
            ));
        }
        result
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

impl Handle<Call<'_>, AdvanceClockRequest> for KeyService {
    fn handle(
        &self,
        _cx: &mut Call<'_>,
        r: AdvanceClockRequest,
    ) -> Result<AdvanceClockResponse, KmsError> {
        if !self.allow_clock_control || !self.clock.advance(r.seconds) {
            return Err(KmsError::new(
                crate::protocol::ErrorCode::AccessDeniedException,
                "AdvanceClock is refused: kmsd was not started with --allow-clock-control",
            ));
        }
        self.sweep();
        Ok(AdvanceClockResponse {
            now: Timestamp::from_millis(self.clock.now_ms()),
        })
    }
}

/// Reached only through [`Request::dispatch`] called directly: [`KeyService::handle`]
/// and the listener answer Status before auditing.
impl Handle<Call<'_>, StatusRequest> for KeyService {
    fn handle(&self, _cx: &mut Call<'_>, _r: StatusRequest) -> Result<StatusResponse, KmsError> {
        Ok(self.status(Default::default()))
    }
}

impl KeyService {
    /// kmsd's state for `atrest status`, with the transport's connection counts.
    pub fn status(&self, connections: ConnectionStatus) -> StatusResponse {
        let trail = self.audit.health().map(|h| TrailStatus {
            sync: h.sync.name().to_string(),
            sync_interval_ms: h
                .sync
                .interval()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            problem: h.problem,
            events: h.stats.events,
            writes: h.stats.batches,
            syncs: h.stats.syncs,
            last_sync_micros: h.last_sync_micros,
        });
        StatusResponse {
            pid: std::process::id(),
            trail,
            connections,
        }
    }
}

/// Why the service could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("invalid configuration: {0}")]
    Config(#[from] directory::DirectoryError),
    #[error("invalid IAM store: {0}")]
    IamFile(#[from] crate::iam::IamFileError),
    #[error(transparent)]
    AccessKeys(crate::credentials::AccessKeysError),
    #[error(transparent)]
    Iam(#[from] IamStoreError),
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
                config: Config::embedded(),
                clock: clock.clone(),
                audit: sink.clone(),
                allow_clock_control: true,
                reload: None,
                self_uid: 0,
                trail_dir: None,
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

    /// An IAM user of the default account with administrator rights.
    pub fn alice() -> Caller {
        user_with("arn:aws:iam::111122223333:user/alice", &[ADMIN])
    }

    pub const ADMIN: &str =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

    /// A caller acting as `arn` with these IAM policies.
    pub fn user_with(arn: &str, iam: &[&str]) -> Caller {
        let principal = directory::parse_principal(arn).unwrap();
        Caller {
            uid: 1000,
            pid: None,
            user: "alice".into(),
            uid_principal: arn.into(),
            principal_arn: arn.into(),
            account: principal.account.clone().unwrap_or_default(),
            principal,
            policies: Arc::new(
                iam.iter()
                    .map(|t| PolicyDocument::parse_identity_policy(t).unwrap())
                    .collect(),
            ),
            via: None,
            source: "test".into(),
            signer: None,
        }
    }
}
