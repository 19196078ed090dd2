//! Auditing: every request becomes an [`AuditEvent`] handed to an [`AuditSink`].
//!
//! [`super::KeyService::handle`] calls `record` once per request, allowed or refused,
//! after the operation and BEFORE the reply is sent; an error refuses the request.
//! `record` may block until the event is durable, and many connection threads call
//! it at once, so a sink can batch concurrent events into one fsync (group commit).
//! [`TrailAuditSink`] writes each event as a CloudTrail-shaped record to the
//! hash-chained trail (`HOME/trail`, [`crate::trail::TrailWriter`]: group commit,
//! fdatasync before `record` returns); [`TracingAuditSink`] only logs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::Caller;
use crate::protocol::ViaService;
use crate::trail::record::{account_of_arn, AdditionalEventData, IdentityType, Resource};
use crate::trail::{TrailConfig, TrailRecord, TrailWriter, UserIdentity};
use plumbing::awstime::format_rfc3339;

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
            request_id: uuid::Uuid::new_v4().to_string(),
            identity,
            region: region.to_string(),
            request_parameters: Value::Null,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            key_arn: None,
            read_only: false,
            event_id: uuid::Uuid::new_v4().to_string(),
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
/// it; an error refuses the request.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent) -> Result<(), AuditError>;

    /// Whether a record could be written now. Checked before a request that changes
    /// state: a trail known not to take the record refuses the change up front, so
    /// it is never made and then reported as refused, unlogged. (A write that fails
    /// after a passing check still refuses the reply; the change then stands.)
    fn ready(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// The default sink: one `tracing` line per event (target `kmsd::audit`, level DEBUG
/// for successful cryptographic calls, INFO otherwise).
#[derive(Debug, Default)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, e: AuditEvent) -> Result<(), AuditError> {
        let quiet = e.read_only && e.error_code.is_none();
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "kmsd::audit",
                    event = %e.event_name,
                    time = %format_rfc3339(e.time_ms),
                    principal = %e.identity.principal_arn,
                    uid = e.identity.uid,
                    key = e.key_arn.as_deref().unwrap_or("-"),
                    error = e.error_code.as_deref().unwrap_or("-"),
                    request = %e.request_parameters,
                    "audit"
                )
            };
        }
        if quiet {
            emit!(debug);
        } else {
            emit!(info);
        }
        Ok(())
    }
}

/// Keeps events in memory (tests), and can be told to fail (fail-closed tests).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    pub events: Mutex<Vec<AuditEvent>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl MemoryAuditSink {
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

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
    if let Some(ua) = &e.user_agent {
        r = r.with_user_agent(ua);
    }
    if let Some(v) = &e.identity.via {
        r = r.via_service(&v.service);
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

/// The trail sink: every event becomes one record in `HOME/trail`, durable
/// (fdatasync'd, group-committed with concurrent events) before `record` returns.
///
/// After a failed write the writer refuses everything (its chain tail is
/// uncertain); the sink then reopens it on the next event, which runs the trail's
/// crash recovery, so kmsd recovers by itself once the disk has room again. Until
/// then every request is refused.
pub struct TrailAuditSink {
    dir: PathBuf,
    writer: Mutex<Option<Arc<TrailWriter>>>,
}

impl TrailAuditSink {
    /// Opens (creating) the trail in `dir`.
    pub fn open(dir: &Path) -> Result<Self, crate::trail::TrailError> {
        let writer = TrailWriter::open(TrailConfig::new(dir))?;
        Ok(TrailAuditSink {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Some(Arc::new(writer))),
        })
    }

    /// The trail directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writer's group-commit counters, while it is open.
    pub fn stats(&self) -> Option<crate::trail::WriterStats> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|w| w.stats())
    }

    fn current(&self) -> Result<Arc<TrailWriter>, AuditError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = guard.as_ref() {
            return Ok(Arc::clone(w));
        }
        let w = TrailWriter::open(TrailConfig::new(&self.dir))
            .map_err(|e| AuditError::Unavailable(format!("cannot reopen the trail: {e}")))?;
        tracing::warn!(dir = %self.dir.display(), "trail reopened after a failure");
        let w = Arc::new(w);
        *guard = Some(Arc::clone(&w));
        Ok(w)
    }
}

/// Free space below which the trail counts as full for state changes: a few hundred
/// records, more than one group commit can need.
const TRAIL_MIN_FREE: u64 = 256 << 10;

/// Bytes kmsd may still write on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `st` is a plain C struct statvfs fills; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Root (kmsd on CI, in drills) may also use the blocks reserved for it.
    // SAFETY: geteuid cannot fail.
    let blocks = if unsafe { libc::geteuid() } == 0 {
        st.f_bfree
    } else {
        st.f_bavail
    };
    Ok((blocks as u64).saturating_mul(st.f_frsize as u64))
}

impl AuditSink for TrailAuditSink {
    fn ready(&self) -> Result<(), AuditError> {
        self.current()?;
        let free = free_bytes(&self.dir)?;
        if free < TRAIL_MIN_FREE {
            return Err(AuditError::Unavailable(format!(
                "{} has {free} bytes free",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let writer = self.current()?;
        let record = to_trail_record(&event);
        match writer.append(record) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                if guard.as_ref().is_some_and(|w| Arc::ptr_eq(w, &writer)) {
                    *guard = None;
                }
                Err(AuditError::Unavailable(e.to_string()))
            }
        }
    }
}
