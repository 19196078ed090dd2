//! Auditing: every request becomes an [`AuditEvent`] handed to an [`AuditSink`].
//!
//! [`super::KeyService::handle`] asks the sink whether it can record (`ready`) before
//! the operation uses any key, and calls `record` once per request, allowed or refused,
//! after the operation and BEFORE the reply is sent; an error refuses the request.
//! `record` may block until the event is as durable as its class needs
//! ([`AuditEvent::class`]), and many connection threads call it at once, so a sink can
//! batch concurrent events (group commit). [`TrailAuditSink`] writes each event as a
//! CloudTrail-shaped record to the hash-chained trail (`HOME/trail`,
//! [`crate::trail::TrailWriter`]); tests use a memory sink.

use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::Caller;
use crate::protocol::ViaService;
use crate::trail::record::{account_of_arn, AdditionalEventData, IdentityType, Resource};
use crate::trail::{
    EventClass, Health, TrailConfig, TrailError, TrailRecord, TrailWriter, UserIdentity,
};

/// The caller as the trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditIdentity {
    pub uid: u32,
    pub pid: Option<i32>,
    /// The uid's user name (names role sessions).
    pub user: String,
    /// The principal the uid maps to (always recorded).
    pub uid_principal: String,
    /// The principal the request was evaluated as.
    pub principal_arn: String,
    pub account: String,
    pub via: Option<ViaService>,
    pub source: String,
}

impl AuditIdentity {
    pub fn from_caller(c: &Caller) -> Self {
        AuditIdentity {
            uid: c.uid,
            pid: c.pid,
            user: c.user.clone(),
            uid_principal: c.uid_principal.clone(),
            principal_arn: c.principal_arn.clone(),
            account: c.account.clone(),
            via: c.via.clone(),
            source: c.source.clone(),
        }
    }
}

/// One request, as the trail records it. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// The AWS operation, e.g. `Decrypt`.
    pub event_name: String,
    /// `kms.amazonaws.com`.
    pub event_source: String,
    /// Unix milliseconds (kmsd's clock).
    pub time_ms: i64,
    /// A fresh UUID per request.
    pub request_id: String,
    pub identity: AuditIdentity,
    pub region: String,
    /// CloudTrail's `requestParameters` (camelCase keys, no plaintext).
    pub request_parameters: Value,
    /// CloudTrail's `responseElements`, or `Value::Null`.
    pub response_elements: Value,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The key the request used, once resolved.
    pub key_arn: Option<String>,
    pub read_only: bool,
    /// A fresh UUID per event (CloudTrail's `eventID`).
    pub event_id: String,
    /// Further `resources` as `(type, ARN)` (service events).
    pub resources: Vec<(String, String)>,
    /// `userAgent`, when the caller says (service events).
    pub user_agent: Option<String>,
    /// `sourceIPAddress` of a service's own caller (service events).
    pub source_ip: Option<String>,
    /// The access key a service's caller signed with (`userIdentity.accessKeyId`).
    pub access_key_id: Option<String>,
}

impl AuditEvent {
    /// How durable the event must be before the reply: a call that succeeded and is
    /// not read-only changed state; reads, cryptographic calls and every refusal
    /// changed nothing.
    pub fn class(&self) -> EventClass {
        if !self.read_only && self.error_code.is_none() {
            EventClass::StateChange
        } else {
            EventClass::NoChange
        }
    }

    /// An event with fresh IDs and no parameters, result or resources yet.
    pub fn new(
        event_source: &str,
        event_name: &str,
        time_ms: i64,
        identity: AuditIdentity,
        region: &str,
    ) -> Self {
        AuditEvent {
            event_name: event_name.to_string(),
            event_source: event_source.to_string(),
            time_ms,
            request_id: crate::trail::record::random_id(),
            identity,
            region: region.to_string(),
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            key_arn: None,
            read_only: false,
            event_id: crate::trail::record::random_id(),
            resources: Vec::new(),
            user_agent: None,
            source_ip: None,
            access_key_id: None,
        }
    }
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit trail unavailable: {0}")]
    Unavailable(String),
}

/// Where events go. `record` returns once the event is as durable as the sink makes
/// it for its class; an error refuses the request.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Whether a record could be written now. Checked before every request uses any
    /// key or changes anything: a trail known not to take the record refuses the
    /// request up front, so no key is used and no change made unlogged. (A write that
    /// fails after a passing check still refuses the reply; a change then stands.)
    fn ready(&self) -> Result<(), AuditError> {
        Ok(())
    }

    /// The trail's state for `atrest status` (`None`: this sink keeps no trail).
    fn health(&self) -> Option<Health> {
        None
    }
}

#[cfg(test)]
/// Keeps events in memory (tests), and can be told to fail (fail-closed tests).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    pub events: Mutex<Vec<AuditEvent>>,
    pub fail: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl MemoryAuditSink {
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
impl AuditSink for MemoryAuditSink {
    fn ready(&self) -> Result<(), AuditError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(AuditError::Unavailable("test sink told to fail".into()));
        }
        Ok(())
    }

    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(AuditError::Unavailable("test sink told to fail".into()));
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        Ok(())
    }
}

/// The CloudTrail identity of an audited caller: the principal the request was
/// evaluated as (a role is recorded as a session named after the Unix user), with
/// `invokedBy` set when it came via a service.
pub fn user_identity(id: &AuditIdentity) -> UserIdentity {
    UserIdentity::from_principal(&id.principal_arn, &id.user).unwrap_or_else(|| UserIdentity {
        identity_type: IdentityType::IamUser,
        principal_id: None,
        arn: Some(id.principal_arn.clone()),
        account_id: Some(id.account.clone()),
        access_key_id: None,
        user_name: None,
        invoked_by: None,
    })
}

/// An audit event as the CloudTrail-shaped record the trail stores.
pub fn to_trail_record(e: &AuditEvent) -> TrailRecord {
    let nanos = i128::from(e.time_ms).saturating_mul(1_000_000);
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut identity = user_identity(&e.identity);
    identity.access_key_id = e.access_key_id.clone();
    let recipient = e
        .key_arn
        .as_deref()
        .and_then(account_of_arn)
        .unwrap_or_else(|| e.identity.account.clone());
    let opt = |v: &Value| (!v.is_null()).then(|| v.clone());
    let mut r = TrailRecord::api_call(
        &e.event_source,
        &e.event_name,
        &e.region,
        &recipient,
        identity,
        time,
    )
    .with_request_id(&e.request_id)
    .read_only(e.read_only);
    r.event_id = e.event_id.clone();
    r.request_parameters = opt(&e.request_parameters);
    r.response_elements = opt(&e.response_elements);
    // A service's event for a caller whose client it knows (the AWS endpoint's
    // signer) keeps that client's user agent and address, as CloudTrail shows them.
    if let Some(v) = &e.identity.via {
        r = r.via_service(&v.service);
    }
    if let Some(ua) = &e.user_agent {
        r = r.with_user_agent(ua);
    }
    if let Some(ip) = &e.source_ip {
        r = r.with_source_ip(ip);
    }
    if let (Some(code), msg) = (&e.error_code, &e.error_message) {
        r = r.with_error(code, msg.as_deref().unwrap_or(""));
    }
    if let Some(k) = &e.key_arn {
        r = r.with_key(k);
    }
    for (ty, arn) in &e.resources {
        r = r.with_resource(Resource {
            account_id: account_of_arn(arn),
            resource_type: ty.clone(),
            arn: arn.clone(),
        });
    }
    // atrest's own evidence: the kernel-checked uid (and what it maps to, when the
    // request was made as someone else), the pid, and the socket.
    let mut extra = Map::new();
    if e.identity.uid_principal != e.identity.principal_arn {
        extra.insert("unixPrincipal".into(), json!(e.identity.uid_principal));
    }
    if let Some(pid) = e.identity.pid {
        extra.insert("unixPid".into(), json!(pid));
    }
    extra.insert("transport".into(), json!(e.identity.source));
    r.additional_event_data = Some(AdditionalEventData {
        unix_uid: Some(e.identity.uid),
        extra,
    });
    r
}

/// The trail sink: every event becomes one record in `HOME/trail`, written before
/// `record` returns and fdatasync'd as its class and the sync mode say.
///
/// The writer refuses admission while its records cannot be made durable (no space,
/// a failed group fdatasync) and recovers by itself. After a failure that leaves its
/// tail uncertain it stops for good; the sink then reopens it (which runs the trail's
/// crash recovery), at most once a second, on the next request. Until then every
/// request is refused.
pub struct TrailAuditSink {
    config: TrailConfig,
    writer: RwLock<Option<TrailWriter>>,
    last_reopen: Mutex<Option<Instant>>,
}

/// How often a stopped trail writer may be reopened.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl TrailAuditSink {
    /// Opens (creating) the trail as `config` says.
    pub fn open_with(config: TrailConfig) -> Result<Self, TrailError> {
        let writer = TrailWriter::open(config.clone())?;
        Ok(TrailAuditSink {
            config,
            writer: RwLock::new(Some(writer)),
            last_reopen: Mutex::new(None),
        })
    }

    /// The trail directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    #[cfg(test)]
    /// The writer's group-commit counters, while it is open.
    pub fn stats(&self) -> Option<crate::trail::WriterStats> {
        self.read().as_ref().map(TrailWriter::stats)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<TrailWriter>> {
        self.writer.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces a stopped writer by a freshly opened one (crash recovery), at most
    /// once per [`REOPEN_EVERY`].
    fn reopen(&self) -> Result<(), AuditError> {
        {
            let mut last = self.last_reopen.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return Err(AuditError::Unavailable(
                    "the trail writer stopped after a failure; reopening it shortly".into(),
                ));
            }
            *last = Some(Instant::now());
        }
        let mut guard = self.writer.write().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = guard.as_ref() {
            if w.admit().is_ok() {
                return Ok(()); // another thread reopened it meanwhile
            }
        }
        // The old writer holds the directory lock: close it first.
        *guard = None;
        let w = TrailWriter::open(self.config.clone())
            .map_err(|e| AuditError::Unavailable(format!("cannot reopen the trail: {e}")))?;
        tracing::warn!(dir = %self.config.dir.display(), "trail reopened after a failure");
        *guard = Some(w);
        Ok(())
    }
}

impl AuditSink for TrailAuditSink {
    fn ready(&self) -> Result<(), AuditError> {
        match self.read().as_ref().map(TrailWriter::admit) {
            Some(Ok(())) => return Ok(()),
            Some(Err(TrailError::Failed(_))) | None => {}
            Some(Err(e)) => return Err(AuditError::Unavailable(e.to_string())),
        }
        self.reopen()
    }

    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let class = event.class();
        let record = to_trail_record(&event);
        let guard = self.read();
        let Some(writer) = guard.as_ref() else {
            return Err(AuditError::Unavailable("the trail writer is closed".into()));
        };
        writer
            .append(&record, class)
            .map_err(|e| AuditError::Unavailable(e.to_string()))
    }

    fn health(&self) -> Option<Health> {
        self.read().as_ref().map(TrailWriter::health)
    }
}
