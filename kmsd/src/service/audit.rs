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

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Caller;
use crate::protocol::ViaService;
use crate::trail::record::IdentityType;
use crate::trail::{EventClass, Health, TrailConfig, TrailError, TrailWriter, UserIdentity};

/// The caller as the trail records it. Borrowed from the request's [`Caller`] (a
/// request's event is recorded before the request returns), so recording it copies no
/// string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditIdentity<'a> {
    pub uid: u32,
    pub pid: Option<i32>,
    /// The uid's user name (names role sessions).
    pub user: Cow<'a, str>,
    /// The principal the uid maps to (always recorded).
    pub uid_principal: Cow<'a, str>,
    /// The principal the request was evaluated as.
    pub principal_arn: Cow<'a, str>,
    pub account: Cow<'a, str>,
    pub via: Option<Cow<'a, ViaService>>,
    pub source: Cow<'a, str>,
}

impl<'a> AuditIdentity<'a> {
    pub fn from_caller(c: &'a Caller) -> Self {
        AuditIdentity {
            uid: c.uid,
            pid: c.pid,
            user: Cow::Borrowed(&c.user),
            uid_principal: Cow::Borrowed(&c.uid_principal),
            principal_arn: Cow::Borrowed(&c.principal_arn),
            account: Cow::Borrowed(&c.account),
            via: c.via.as_ref().map(Cow::Borrowed),
            source: Cow::Borrowed(&c.source),
        }
    }

    /// The same identity owning its strings.
    #[cfg(test)]
    pub fn into_owned(self) -> AuditIdentity<'static> {
        AuditIdentity {
            uid: self.uid,
            pid: self.pid,
            user: Cow::Owned(self.user.into_owned()),
            uid_principal: Cow::Owned(self.uid_principal.into_owned()),
            principal_arn: Cow::Owned(self.principal_arn.into_owned()),
            account: Cow::Owned(self.account.into_owned()),
            via: self.via.map(|v| Cow::Owned(v.into_owned())),
            source: Cow::Owned(self.source.into_owned()),
        }
    }
}

/// One request, as the trail records it. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent<'a> {
    /// The AWS operation, e.g. `Decrypt`.
    pub event_name: Cow<'a, str>,
    /// `kms.amazonaws.com`.
    pub event_source: Cow<'a, str>,
    /// Unix milliseconds (kmsd's clock).
    pub time_ms: i64,
    /// A fresh UUID per request (rendered straight into the record).
    pub request_id: uuid::Uuid,
    pub identity: AuditIdentity<'a>,
    pub region: Cow<'a, str>,
    /// CloudTrail's `requestParameters` (camelCase keys, no plaintext).
    pub request_parameters: Value,
    /// The same as JSON text, when the operation writes it straight from the request
    /// ([`crate::api::Operation::request_parameters_json`]): recorded as it is, in
    /// place of `request_parameters` (then `Value::Null`).
    pub request_parameters_json: Option<String>,
    /// CloudTrail's `responseElements`, or `Value::Null`.
    pub response_elements: Value,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The key the request used, once resolved.
    pub key_arn: Option<String>,
    pub read_only: bool,
    /// A fresh UUID per event (CloudTrail's `eventID`).
    pub event_id: uuid::Uuid,
    /// Further `resources` as `(type, ARN)` (service events).
    pub resources: Vec<(String, String)>,
    /// `userAgent`, when the caller says (service events).
    pub user_agent: Option<String>,
    /// `sourceIPAddress` of a service's own caller (service events).
    pub source_ip: Option<String>,
    /// The access key a service's caller signed with (`userIdentity.accessKeyId`).
    pub access_key_id: Option<String>,
}

impl<'a> AuditEvent<'a> {
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
        event_source: &'a str,
        event_name: &'a str,
        time_ms: i64,
        identity: AuditIdentity<'a>,
        region: &'a str,
    ) -> Self {
        AuditEvent {
            event_name: Cow::Borrowed(event_name),
            event_source: Cow::Borrowed(event_source),
            time_ms,
            request_id: crate::trail::record::random_uuid(),
            identity,
            region: Cow::Borrowed(region),
            request_parameters: Value::Null,
            request_parameters_json: None,
            response_elements: Value::Null,
            error_code: None,
            error_message: None,
            key_arn: None,
            read_only: false,
            event_id: crate::trail::record::random_uuid(),
            resources: Vec::new(),
            user_agent: None,
            source_ip: None,
            access_key_id: None,
        }
    }

    /// The same event owning its strings (the test sink keeps events).
    #[cfg(test)]
    pub fn into_owned(self) -> AuditEvent<'static> {
        AuditEvent {
            event_name: Cow::Owned(self.event_name.into_owned()),
            event_source: Cow::Owned(self.event_source.into_owned()),
            time_ms: self.time_ms,
            request_id: self.request_id,
            identity: self.identity.into_owned(),
            region: Cow::Owned(self.region.into_owned()),
            // Tests read the parameters as a `Value` whichever way they came.
            request_parameters: match &self.request_parameters_json {
                Some(j) => serde_json::from_str(j).expect("rendered requestParameters are JSON"),
                None => self.request_parameters,
            },
            request_parameters_json: self.request_parameters_json,
            response_elements: self.response_elements,
            error_code: self.error_code,
            error_message: self.error_message,
            key_arn: self.key_arn,
            read_only: self.read_only,
            event_id: self.event_id,
            resources: self.resources,
            user_agent: self.user_agent,
            source_ip: self.source_ip,
            access_key_id: self.access_key_id,
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
    fn record(&self, event: AuditEvent<'_>) -> Result<(), AuditError>;

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
    pub events: Mutex<Vec<AuditEvent<'static>>>,
    pub fail: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl MemoryAuditSink {
    pub fn take(&self) -> Vec<AuditEvent<'static>> {
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

    fn record(&self, event: AuditEvent<'_>) -> Result<(), AuditError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(AuditError::Unavailable("test sink told to fail".into()));
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.into_owned());
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
        arn: Some(id.principal_arn.to_string()),
        account_id: Some(id.account.to_string()),
        access_key_id: None,
        user_name: None,
        invoked_by: None,
    })
}

/// An audit event as the CloudTrail-shaped record the trail stores: the definition
/// [`encode_trail_record`] (the request path's rendering of it) is tested against.
#[cfg(test)]
pub fn to_trail_record(e: &AuditEvent) -> crate::trail::TrailRecord {
    use crate::trail::record::{account_of_arn, AdditionalEventData, Resource};
    use crate::trail::TrailRecord;
    use serde_json::{json, Map};
    let nanos = i128::from(e.time_ms).saturating_mul(1_000_000);
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut identity = user_identity(&e.identity);
    identity.access_key_id = e.access_key_id.clone();
    let recipient = e
        .key_arn
        .as_deref()
        .and_then(account_of_arn)
        .unwrap_or_else(|| e.identity.account.to_string());
    let opt = |v: &Value| (!v.is_null()).then(|| v.clone());
    let mut r = TrailRecord::api_call(
        &e.event_source,
        &e.event_name,
        &e.region,
        &recipient,
        identity,
        time,
    )
    .with_request_id(&e.request_id.to_string())
    .read_only(e.read_only);
    r.event_id = e.event_id.to_string();
    r.request_parameters = match &e.request_parameters_json {
        Some(j) => Some(serde_json::from_str(j).expect("rendered requestParameters are JSON")),
        None => opt(&e.request_parameters),
    };
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

/// The JSON of [`to_trail_record`]`(e)`, byte for byte as `serde_json` writes it, built
/// straight into `out` on the request path: the record's constant parts are literals and
/// its `userIdentity` is rendered once per caller ([`IdentityCache`]) rather than
/// derived (an ARN parse, a SHA-256 for the principal ID, several strings) and
/// serialised again for every event. `to_trail_record` stays the definition (the unit
/// test `encoded_records_are_the_serde_records_byte_for_byte` holds them equal).
pub fn encode_trail_record(e: &AuditEvent, identities: &IdentityCache, out: &mut Vec<u8>) {
    fn string(out: &mut Vec<u8>, s: &str) {
        // Writing to a Vec cannot fail; serde_json escapes exactly as for the record.
        let _ = serde_json::to_writer(&mut *out, s);
    }
    fn value(out: &mut Vec<u8>, v: &Value) {
        let _ = serde_json::to_writer(&mut *out, v);
    }
    fn number(out: &mut Vec<u8>, n: impl serde::Serialize) {
        let _ = serde_json::to_writer(&mut *out, &n);
    }
    fn uuid(out: &mut Vec<u8>, id: uuid::Uuid) {
        // Hex digits and hyphens: nothing to escape.
        let mut buf = uuid::Uuid::encode_buffer();
        out.push(b'"');
        out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        out.push(b'"');
    }
    let via = e.identity.via.as_ref().map(|v| v.service.as_str());
    out.extend_from_slice(b"{\"eventVersion\":");
    string(out, crate::trail::record::EVENT_VERSION);
    out.extend_from_slice(b",\"userIdentity\":");
    identities.render(&e.identity, e.access_key_id.as_deref(), via, out);
    out.extend_from_slice(b",\"eventTime\":");
    event_time(out, e.time_ms);
    out.extend_from_slice(b",\"eventSource\":");
    string(out, &e.event_source);
    out.extend_from_slice(b",\"eventName\":");
    string(out, &e.event_name);
    out.extend_from_slice(b",\"awsRegion\":");
    string(out, &e.region);
    let source_ip = e
        .source_ip
        .as_deref()
        .or(via)
        .unwrap_or(crate::trail::record::LOCAL_SOURCE_IP);
    out.extend_from_slice(b",\"sourceIPAddress\":");
    string(out, source_ip);
    let user_agent = e
        .user_agent
        .as_deref()
        .or(via)
        .unwrap_or(crate::trail::record::DEFAULT_USER_AGENT);
    out.extend_from_slice(b",\"userAgent\":");
    string(out, user_agent);
    if let Some(code) = &e.error_code {
        out.extend_from_slice(b",\"errorCode\":");
        string(out, code);
        out.extend_from_slice(b",\"errorMessage\":");
        string(out, e.error_message.as_deref().unwrap_or(""));
    }
    out.extend_from_slice(b",\"requestParameters\":");
    match &e.request_parameters_json {
        Some(j) => out.extend_from_slice(j.as_bytes()),
        None => value(out, &e.request_parameters),
    }
    out.extend_from_slice(b",\"responseElements\":");
    value(out, &e.response_elements);
    // additionalEventData: unixUid, then the extra map's keys in serde_json's (sorted)
    // order.
    out.extend_from_slice(b",\"additionalEventData\":{\"unixUid\":");
    number(out, e.identity.uid);
    out.extend_from_slice(b",\"transport\":");
    string(out, &e.identity.source);
    if let Some(pid) = e.identity.pid {
        out.extend_from_slice(b",\"unixPid\":");
        number(out, pid);
    }
    if e.identity.uid_principal != e.identity.principal_arn {
        out.extend_from_slice(b",\"unixPrincipal\":");
        string(out, &e.identity.uid_principal);
    }
    out.extend_from_slice(b"},\"requestID\":");
    uuid(out, e.request_id);
    out.extend_from_slice(b",\"eventID\":");
    uuid(out, e.event_id);
    out.extend_from_slice(if e.read_only {
        b",\"readOnly\":true,\"resources\":["
    } else {
        b",\"readOnly\":false,\"resources\":["
    });
    let resources = e
        .key_arn
        .iter()
        .map(|k| (crate::trail::record::KMS_KEY_TYPE, k.as_str()))
        .chain(e.resources.iter().map(|(t, a)| (t.as_str(), a.as_str())));
    for (i, (ty, arn)) in resources.enumerate() {
        out.extend_from_slice(if i == 0 { b"{" } else { b",{" });
        if let Some(account) = arn.split(':').nth(4).filter(|a| !a.is_empty()) {
            out.extend_from_slice(b"\"accountId\":");
            string(out, account);
            out.push(b',');
        }
        out.extend_from_slice(b"\"type\":");
        string(out, ty);
        out.extend_from_slice(b",\"ARN\":");
        string(out, arn);
        out.push(b'}');
    }
    out.extend_from_slice(
        b"],\"eventType\":\"AwsApiCall\",\"managementEvent\":true,\"recipientAccountId\":",
    );
    let recipient = e
        .key_arn
        .as_deref()
        .and_then(|k| k.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or(&e.identity.account);
    string(out, recipient);
    out.extend_from_slice(b",\"eventCategory\":\"Management\"}");
}

/// Appends the JSON string of the record's `eventTime` (whole seconds) for `time_ms`.
/// Consecutive events mostly fall in the same second: each thread keeps the last
/// second it rendered rather than formatting the date again for every event.
fn event_time(out: &mut Vec<u8>, time_ms: i64) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(i64, Vec<u8>)> = const { RefCell::new((i64::MIN, Vec::new())) };
    }
    let second = time_ms.div_euclid(1000);
    LAST.with_borrow_mut(|(rendered_second, rendered)| {
        if *rendered_second != second || rendered.is_empty() {
            let nanos = i128::from(time_ms).saturating_mul(1_000_000);
            let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            rendered.clear();
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(
                &mut *rendered,
                &crate::trail::record::event_time::format(time),
            );
            *rendered_second = second;
        }
        out.extend_from_slice(rendered);
    });
}

/// Rendered `userIdentity` objects by caller (principal, session name, access key,
/// service), so that an event's identity is derived and serialised once per caller,
/// not once per event. Bounded: emptied when it reaches [`IdentityCache::MAX`].
#[derive(Default)]
pub struct IdentityCache {
    rendered: RwLock<HashMap<IdentityKey, Arc<[u8]>>>,
}

struct IdentityKey {
    principal_arn: String,
    user: String,
    account: String,
    access_key_id: Option<String>,
    via: Option<String>,
}

impl IdentityCache {
    const MAX: usize = 4096;

    /// Appends the `userIdentity` JSON [`to_trail_record`] gives this caller.
    fn render(
        &self,
        id: &AuditIdentity,
        access_key_id: Option<&str>,
        via: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let key = IdentityKeyRef {
            principal_arn: &id.principal_arn,
            user: &id.user,
            account: &id.account,
            access_key_id,
            via,
        };
        if let Some(bytes) = self
            .rendered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key as &dyn IdentityKeyLike)
        {
            out.extend_from_slice(bytes);
            return;
        }
        let mut identity = user_identity(id);
        identity.access_key_id = access_key_id.map(str::to_string);
        if let Some(service) = via {
            identity.invoked_by = Some(service.to_string());
        }
        let Ok(bytes) = serde_json::to_vec(&identity) else {
            return;
        };
        out.extend_from_slice(&bytes);
        let mut map = self.rendered.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(key.owned(), bytes.into());
    }
}

/// A borrowed [`IdentityKey`], to look the cache up without allocating.
#[derive(PartialEq, Eq, Hash)]
struct IdentityKeyRef<'a> {
    principal_arn: &'a str,
    user: &'a str,
    account: &'a str,
    access_key_id: Option<&'a str>,
    via: Option<&'a str>,
}

impl IdentityKeyRef<'_> {
    fn owned(&self) -> IdentityKey {
        IdentityKey {
            principal_arn: self.principal_arn.to_string(),
            user: self.user.to_string(),
            account: self.account.to_string(),
            access_key_id: self.access_key_id.map(str::to_string),
            via: self.via.map(str::to_string),
        }
    }
}

/// The key's fields, owned or borrowed, hashed and compared alike.
trait IdentityKeyLike {
    fn key(&self) -> IdentityKeyRef<'_>;
}

impl IdentityKeyLike for IdentityKey {
    fn key(&self) -> IdentityKeyRef<'_> {
        IdentityKeyRef {
            principal_arn: &self.principal_arn,
            user: &self.user,
            account: &self.account,
            access_key_id: self.access_key_id.as_deref(),
            via: self.via.as_deref(),
        }
    }
}

impl IdentityKeyLike for IdentityKeyRef<'_> {
    fn key(&self) -> IdentityKeyRef<'_> {
        IdentityKeyRef { ..*self }
    }
}

impl PartialEq for IdentityKey {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for IdentityKey {}

impl std::hash::Hash for IdentityKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl<'a> std::borrow::Borrow<dyn IdentityKeyLike + 'a> for IdentityKey {
    fn borrow(&self) -> &(dyn IdentityKeyLike + 'a) {
        self
    }
}

impl PartialEq for dyn IdentityKeyLike + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn IdentityKeyLike + '_ {}

impl std::hash::Hash for dyn IdentityKeyLike + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
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
    identities: IdentityCache,
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
            identities: IdentityCache::default(),
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

    fn record(&self, event: AuditEvent<'_>) -> Result<(), AuditError> {
        use std::cell::RefCell;
        // Each connection thread renders its records into one buffer, kept between
        // requests (the writer copies the record into its queue).
        thread_local! {
            static RECORD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        const KEEP: usize = 64 << 10;
        let class = event.class();
        RECORD.with_borrow_mut(|record| {
            record.clear();
            encode_trail_record(&event, &self.identities, record);
            let guard = self.read();
            let result = match guard.as_ref() {
                None => Err(AuditError::Unavailable("the trail writer is closed".into())),
                Some(writer) => writer
                    .append_bytes(record, class)
                    .map_err(|e| AuditError::Unavailable(e.to_string())),
            };
            if record.capacity() > KEEP {
                *record = Vec::new();
            }
            result
        })
    }

    fn health(&self) -> Option<Health> {
        self.read().as_ref().map(TrailWriter::health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(principal: &str, uid_principal: &str, via: Option<&str>) -> AuditIdentity<'static> {
        AuditIdentity {
            uid: 1000,
            pid: Some(4242),
            user: "alice".into(),
            uid_principal: uid_principal.to_string().into(),
            principal_arn: principal.to_string().into(),
            account: "111122223333".into(),
            via: via.map(|s| {
                Cow::Owned(ViaService {
                    service: s.into(),
                    on_behalf_of: None,
                    grant_is_for_aws_resource: false,
                })
            }),
            source: "unix:/run/kmsd.sock".into(),
        }
    }

    /// The hot path's encoder writes exactly the bytes serde_json writes for
    /// [`to_trail_record`], for every shape of event (callers of each identity type,
    /// via a service, refusals, keys and resources, strings that need escaping), and
    /// the identity cache serves each caller its own identity.
    #[test]
    fn encoded_records_are_the_serde_records_byte_for_byte() {
        let user = "arn:aws:iam::111122223333:user/alice";
        let principals = [
            user,
            "arn:aws:iam::111122223333:user/path/to/bob",
            "arn:aws:iam::111122223333:role/admin",
            "arn:aws:sts::111122223333:assumed-role/admin/sess\"ion",
            "arn:aws:iam::111122223333:root",
            "ec2.amazonaws.com",
            "not an arn",
        ];
        let cache = IdentityCache::default();
        let mut n = 0;
        for round in 0..2 {
            for principal in principals {
                for via in [None, Some("ec2.amazonaws.com")] {
                    for uid_principal in [principal, user] {
                        for variant in 0..4 {
                            let mut e = AuditEvent::new(
                                crate::trail::record::KMS_SOURCE,
                                "Decrypt",
                                1_765_000_000_123 + variant,
                                identity(principal, uid_principal, via),
                                "us-east-1",
                            );
                            e.read_only = variant % 2 == 0;
                            if variant >= 1 {
                                e.key_arn =
                                    Some("arn:aws:kms:us-east-1:444455556666:key/1234abcd".into());
                                e.request_parameters = json!({"keyId": "alias/x", "n": 3});
                                e.response_elements = json!({"keyId": "k\u{7}\"\\é"});
                            }
                            if variant == 2 {
                                e.error_code = Some("AccessDeniedException".into());
                                e.error_message = Some("not \"allowed\"\n\tat all".into());
                                e.identity.pid = None;
                                e.access_key_id = Some("AKIAEXAMPLE".into());
                            }
                            if variant == 3 {
                                e.error_code = Some("NotFoundException".into());
                                e.key_arn = Some("alias/no-account".into());
                                e.resources = vec![
                                    (
                                        "AWS::EC2::Volume".into(),
                                        "arn:aws:ec2:us-east-1:111122223333:volume/vol-1".into(),
                                    ),
                                    ("AWS::S3::Object".into(), "arn:aws:s3:::bucket/key".into()),
                                ];
                                e.user_agent = Some("aws-cli/2 \u{1}".into());
                                e.source_ip = Some("10.0.0.1".into());
                                // Parameters an operation wrote as text are recorded as
                                // they are.
                                e.request_parameters = Value::Null;
                                e.request_parameters_json = Some(
                                    r#"{"encryptionContext":{"a\"":"\u0007"},"keyId":"k"}"#.into(),
                                );
                            }
                            let want = serde_json::to_vec(&to_trail_record(&e)).unwrap();
                            let mut got = b"junk".to_vec();
                            encode_trail_record(&e, &cache, &mut got);
                            assert_eq!(
                                String::from_utf8_lossy(&got[4..]),
                                String::from_utf8_lossy(&want),
                                "round {round}, {principal}, via {via:?}, variant {variant}"
                            );
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 2 * 7 * 2 * 2 * 4);
    }
}
