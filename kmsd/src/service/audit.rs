//! Auditing: every request becomes an [`AuditEvent`] handed to an [`AuditSink`].
//!
//! [`super::KeyService::handle`] calls `record` once per request, allowed or refused,
//! after the operation and BEFORE the reply is sent; an error refuses the request.
//! `record` may block until the event is durable, and many connection threads call
//! it at once, so a sink can batch concurrent events into one fsync (group commit).
//! The CloudTrail-shaped file trail (issue 3) implements this trait; the default
//! here logs through `tracing`.

use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::Caller;
use crate::clock::format_rfc3339;
use crate::protocol::{Request, Response, ViaService, SYMMETRIC_DEFAULT};

/// The caller as the trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditIdentity {
    pub uid: u32,
    pub pid: Option<i32>,
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

/// Whether CloudTrail marks the operation `readOnly` (reads and cryptographic calls).
pub fn is_read_only(r: &Request) -> bool {
    matches!(
        r,
        Request::DescribeKey { .. }
            | Request::ListKeys(_)
            | Request::ListAliases(_)
            | Request::Encrypt(_)
            | Request::Decrypt(_)
            | Request::ReEncrypt(_)
            | Request::GenerateDataKey(_)
            | Request::GenerateDataKeyWithoutPlaintext(_)
            | Request::GetKeyRotationStatus { .. }
            | Request::ListKeyRotations { .. }
            | Request::ListResourceTags { .. }
    )
}

fn ctx_value(ctx: &crate::protocol::EncryptionContext) -> Value {
    Value::Object(
        ctx.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// CloudTrail's `requestParameters` for a request: identifiers and options, never
/// plaintext (Encrypt's plaintext and blobs are left out).
pub fn request_parameters(r: &Request) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match r {
        Request::CreateKey(c) => {
            if let Some(d) = &c.description {
                put("description", json!(d));
            }
            put(
                "keyUsage",
                json!(c.key_usage.as_deref().unwrap_or("ENCRYPT_DECRYPT")),
            );
            put(
                "keySpec",
                json!(c.key_spec.as_deref().unwrap_or(SYMMETRIC_DEFAULT)),
            );
            if let Some(p) = &c.policy {
                put("policy", json!(p));
            }
            if !c.tags.is_empty() {
                put(
                    "tags",
                    Value::Array(
                        c.tags
                            .iter()
                            .map(|t| json!({"tagKey": t.tag_key, "tagValue": t.tag_value}))
                            .collect(),
                    ),
                );
            }
            if c.bypass_policy_lockout_safety_check {
                put("bypassPolicyLockoutSafetyCheck", json!(true));
            }
        }
        Request::DescribeKey { key_id, .. }
        | Request::EnableKey { key_id }
        | Request::DisableKey { key_id }
        | Request::CancelKeyDeletion { key_id }
        | Request::DisableKeyRotation { key_id }
        | Request::GetKeyRotationStatus { key_id }
        | Request::RotateKeyOnDemand { key_id }
        | Request::ListKeyRotations { key_id }
        | Request::ListResourceTags { key_id } => put("keyId", json!(key_id)),
        Request::ListKeys(l) => {
            if let Some(n) = l.limit {
                put("limit", json!(n));
            }
        }
        Request::ScheduleKeyDeletion {
            key_id,
            pending_window_in_days,
        } => {
            put("keyId", json!(key_id));
            put(
                "pendingWindowInDays",
                json!(pending_window_in_days.unwrap_or(30)),
            );
        }
        Request::CreateAlias {
            alias_name,
            target_key_id,
        }
        | Request::UpdateAlias {
            alias_name,
            target_key_id,
        } => {
            put("aliasName", json!(alias_name));
            put("targetKeyId", json!(target_key_id));
        }
        Request::DeleteAlias { alias_name } => put("aliasName", json!(alias_name)),
        Request::ListAliases(l) => {
            if let Some(k) = &l.key_id {
                put("keyId", json!(k));
            }
        }
        Request::Encrypt(e) => {
            put("keyId", json!(e.key_id));
            put("encryptionContext", ctx_value(&e.encryption_context));
            put(
                "encryptionAlgorithm",
                json!(e
                    .encryption_algorithm
                    .as_deref()
                    .unwrap_or(SYMMETRIC_DEFAULT)),
            );
        }
        Request::Decrypt(d) => {
            if let Some(k) = &d.key_id {
                put("keyId", json!(k));
            }
            put("encryptionContext", ctx_value(&d.encryption_context));
            put(
                "encryptionAlgorithm",
                json!(d
                    .encryption_algorithm
                    .as_deref()
                    .unwrap_or(SYMMETRIC_DEFAULT)),
            );
        }
        Request::ReEncrypt(re) => {
            if let Some(k) = &re.source_key_id {
                put("sourceKeyId", json!(k));
            }
            put("destinationKeyId", json!(re.destination_key_id));
            put(
                "sourceEncryptionContext",
                ctx_value(&re.source_encryption_context),
            );
            put(
                "destinationEncryptionContext",
                ctx_value(&re.destination_encryption_context),
            );
            put("sourceEncryptionAlgorithm", json!(SYMMETRIC_DEFAULT));
            put("destinationEncryptionAlgorithm", json!(SYMMETRIC_DEFAULT));
        }
        Request::GenerateDataKey(g) | Request::GenerateDataKeyWithoutPlaintext(g) => {
            put("keyId", json!(g.key_id));
            if let Some(s) = g.key_spec {
                put("keySpec", json!(s.as_str()));
            }
            if let Some(n) = g.number_of_bytes {
                put("numberOfBytes", json!(n));
            }
            put("encryptionContext", ctx_value(&g.encryption_context));
        }
        Request::EnableKeyRotation {
            key_id,
            rotation_period_in_days,
        } => {
            put("keyId", json!(key_id));
            if let Some(d) = rotation_period_in_days {
                put("rotationPeriodInDays", json!(d));
            }
        }
        Request::UpdateKeyDescription {
            key_id,
            description,
        } => {
            put("keyId", json!(key_id));
            put("description", json!(description));
        }
        Request::AdvanceClock { seconds } => put("seconds", json!(seconds)),
    }
    Value::Object(m)
}

/// CloudTrail's `responseElements`: null for reads and cryptographic calls, a
/// summary for management calls.
pub fn response_elements(event_name: &str, r: &Response) -> Value {
    match (event_name, r) {
        ("CreateKey", Response::KeyMetadata(m)) => json!({
            "keyMetadata": {
                "aWSAccountId": m.aws_account_id,
                "keyId": m.key_id,
                "arn": m.arn,
                "creationDate": format_rfc3339(m.creation_date_ms),
                "enabled": m.enabled,
                "description": m.description,
                "keyUsage": m.key_usage,
                "keyState": m.key_state.as_str(),
                "origin": m.origin,
                "keyManager": m.key_manager,
                "keySpec": m.key_spec,
                "encryptionAlgorithms": m.encryption_algorithms,
                "multiRegion": m.multi_region,
            }
        }),
        (_, Response::ScheduleKeyDeletion(s)) => json!({
            "keyId": s.key_id,
            "deletionDate": format_rfc3339(s.deletion_date_ms),
            "keyState": s.key_state.as_str(),
            "pendingWindowInDays": s.pending_window_in_days,
        }),
        ("CancelKeyDeletion", Response::KeyId { key_id })
        | ("RotateKeyOnDemand", Response::KeyId { key_id }) => json!({ "keyId": key_id }),
        _ => Value::Null,
    }
}
