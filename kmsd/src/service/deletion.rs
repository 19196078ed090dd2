//! Key deletion: ScheduleKeyDeletion, CancelKeyDeletion, and the sweeper that
//! really deletes a key (material, metadata, aliases) once its window has passed.
//! The sweeper also runs due automatic rotations; kmsd runs it at start and
//! periodically, and after every `AdvanceClock`.

use super::audit::{AuditEvent, AuditIdentity};
use super::{storage_error, Call, KeyService};
use crate::api::{
    CancelKeyDeletionRequest, Handle, KeyIdResponse, KeyState, KmsError,
    ScheduleKeyDeletionRequest, ScheduleKeyDeletionResponse, Timestamp,
};
use crate::clock::DAY_MS;

pub const DEFAULT_WINDOW_DAYS: i32 = 30;
pub const MIN_WINDOW_DAYS: i32 = 7;
pub const MAX_WINDOW_DAYS: i32 = 30;

fn check_window(days: i32) -> Result<(), KmsError> {
    if days < MIN_WINDOW_DAYS {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value greater than or equal to 7"
        )));
    }
    if days > MAX_WINDOW_DAYS {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value less than or equal to 30"
        )));
    }
    Ok(())
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: Vec<String>,
    pub rotated: Vec<String>,
}

impl Handle<Call<'_>, ScheduleKeyDeletionRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse, KmsError> {
        let days = req.pending_window_in_days.unwrap_or(DEFAULT_WINDOW_DAYS);
        check_window(days)?;
        let now = self.now_ms();
        let deletion = now.saturating_add(i64::from(days).saturating_mul(DAY_MS));
        let key = self.change_key(
            cx.caller,
            &req.key_id,
            "kms:ScheduleKeyDeletion",
            &mut cx.key_arn,
            |r| {
                r.key_state = KeyState::PendingDeletion;
                r.deletion_date_ms = Some(deletion);
                // check_window keeps it in 7..=30.
                r.pending_window_days = Some(days.unsigned_abs());
                Ok(())
            },
        )?;
        Ok(ScheduleKeyDeletionResponse {
            key_id: key.arn.clone(),
            deletion_date: Timestamp::from_millis(deletion),
            key_state: KeyState::PendingDeletion,
            pending_window_in_days: days,
        })
    }
}

impl Handle<Call<'_>, CancelKeyDeletionRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: CancelKeyDeletionRequest,
    ) -> Result<KeyIdResponse, KmsError> {
        let key = self.change_key(
            cx.caller,
            &req.key_id,
            "kms:CancelKeyDeletion",
            &mut cx.key_arn,
            |r| {
                r.key_state = KeyState::Disabled;
                r.deletion_date_ms = None;
                r.pending_window_days = None;
                Ok(())
            },
        )?;
        Ok(KeyIdResponse {
            key_id: key.arn.clone(),
        })
    }
}

impl KeyService {
    /// Deletes every key whose deletion date has passed and runs due automatic
    /// rotations. Each action is recorded in the audit trail as kms itself
    /// (`DeleteKey`, `RotateKey`), as AWS does.
    pub fn sweep(&self) -> SweepReport {
        let _w = self.writer();
        let now = self.now_ms();
        let due: Vec<String> = self
            .read()
            .keys
            .values()
            .filter(|k| {
                k.record.key_state == KeyState::PendingDeletion
                    && k.record.deletion_date_ms.is_some_and(|d| d <= now)
            })
            .map(|k| k.record.key_id.clone())
            .collect();
        let mut report = SweepReport::default();
        for key_id in due {
            match self.delete_now(&key_id) {
                Ok(arn) => {
                    tracing::info!(key = %arn, "deleted key after its waiting period");
                    self.record_internal("DeleteKey", &arn);
                    report.deleted.push(arn);
                }
                Err(e) => {
                    tracing::error!(key = %key_id, error = %e, "key deletion failed; will retry")
                }
            }
        }
        for arn in self.rotate_due(now) {
            tracing::info!(key = %arn, "rotated key automatically");
            self.record_internal("RotateKey", &arn);
            report.rotated.push(arn);
        }
        report
    }

    /// Removes a key's file (its material) and then every alias that points at it.
    /// Crash-safe in either order: the loader drops aliases to missing keys.
    fn delete_now(&self, key_id: &str) -> Result<String, KmsError> {
        let arn = self
            .read()
            .keys
            .get(key_id)
            .map(|k| k.arn.clone())
            .unwrap_or_default();
        self.drop_grants(key_id)?;
        self.store.delete_key(key_id).map_err(storage_error)?;
        self.apply(|s| {
            s.keys.remove(key_id);
        });
        let mut aliases = self.read().aliases.clone();
        let before = aliases.len();
        aliases.retain(|_, a| a.target_key_id != key_id);
        if aliases.len() != before {
            self.commit_aliases(aliases)?;
        }
        Ok(arn)
    }

    fn record_internal(&self, event_name: &str, arn: &str) {
        let mut event = AuditEvent::new(
            "kms.amazonaws.com",
            event_name,
            self.now_ms(),
            AuditIdentity {
                uid: 0,
                pid: None,
                user: "kms".into(),
                uid_principal: "kms.amazonaws.com".into(),
                principal_arn: "kms.amazonaws.com".into(),
                account: self.config.account.as_str().into(),
                via: None,
                source: "kms.amazonaws.com".into(),
            },
            &self.config.region,
        );
        event.key_arn = Some(arn.to_string());
        // Not a caller's request: nobody to refuse, so a failure is logged only.
        if let Err(e) = self.audit.record(event) {
            tracing::error!(error = %e, event = event_name, key = arn, "could not record a service event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture};
    use crate::clock::Clock;
    use crate::protocol::*;
    use crate::protocol::{CreateKeyRequest, ErrorCode, Request};

    #[test]
    fn schedule_cancel_and_sweep() {
        let f = fixture();
        let c = alice();
        let Response::CreateKey(CreateKeyResponse { key_metadata: m }) = f
            .svc
            .handle(&c, Request::CreateKey(CreateKeyRequest::default()))
            .unwrap()
        else {
            panic!()
        };
        f.svc
            .handle(
                &c,
                Request::CreateAlias(CreateAliasRequest {
                    alias_name: "alias/doomed".into(),
                    target_key_id: m.key_id.clone(),
                }),
            )
            .unwrap();
        let e = f
            .svc
            .handle(
                &c,
                Request::CancelKeyDeletion(CancelKeyDeletionRequest {
                    key_id: m.key_id.clone(),
                }),
            )
            .unwrap_err();
        assert_eq!(e.message, format!("{} is not pending deletion.", m.arn));
        for bad in [6, 31] {
            let e = f
                .svc
                .handle(
                    &c,
                    Request::ScheduleKeyDeletion(ScheduleKeyDeletionRequest {
                        key_id: m.key_id.clone(),
                        pending_window_in_days: Some(bad),
                    }),
                )
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::ValidationException);
        }
        let Response::ScheduleKeyDeletion(s) = f
            .svc
            .handle(
                &c,
                Request::ScheduleKeyDeletion(ScheduleKeyDeletionRequest {
                    key_id: m.key_id.clone(),
                    pending_window_in_days: Some(7),
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(s.pending_window_in_days, 7);
        assert!(f.svc.sweep().deleted.is_empty());
        f.clock.advance(7 * 86_400 + 1);
        assert!(f.clock.now_ms() > s.deletion_date.as_millis());
        assert_eq!(f.svc.sweep().deleted, vec![m.arn.clone()]);
        let e = f
            .svc
            .handle(
                &c,
                Request::DescribeKey(DescribeKeyRequest {
                    key_id: m.key_id.clone(),
                    grant_tokens: vec![],
                }),
            )
            .unwrap_err();
        assert_eq!(e.message, format!("Key '{}' does not exist", m.arn));
        assert!(f.svc.read().aliases.is_empty());
    }
}
