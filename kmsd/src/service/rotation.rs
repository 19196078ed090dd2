//! Key rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and automatic rotation (run by the sweeper).
//!
//! Rotating adds a backing-key version; new ciphertexts use the newest version and
//! every older version stays to decrypt what it encrypted.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::keys::{page_limit, paginate_in_order};
use super::{rules, storage_error, Call, KeyEntry, KeyService};
use crate::api::{
    DisableKeyRotationRequest, Empty, EnableKeyRotationRequest, ErrorCode,
    GetKeyRotationStatusRequest, GetKeyRotationStatusResponse, Handle, KeyIdResponse, KeyState,
    KmsError, ListKeyRotationsRequest, ListKeyRotationsResponse, RotateKeyOnDemandRequest,
    RotationType, RotationsListEntry, Timestamp,
};
use crate::clock::DAY_MS;
use crate::keystore::{StoredRotationType, StoredVersion};

pub const DEFAULT_ROTATION_DAYS: u32 = 365;
pub const MIN_ROTATION_DAYS: i32 = 90;
pub const MAX_ROTATION_DAYS: i32 = 2560;
/// AWS allows ten on-demand rotations per key.
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

fn check_period(days: i32) -> Result<(), KmsError> {
    if days < MIN_ROTATION_DAYS {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value greater than or equal to 90"
        )));
    }
    if days > MAX_ROTATION_DAYS {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{days}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value less than or equal to 2560"
        )));
    }
    Ok(())
}

impl Handle<Call<'_>, EnableKeyRotationRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: EnableKeyRotationRequest) -> Result<Empty, KmsError> {
        let days = req
            .rotation_period_in_days
            .unwrap_or(DEFAULT_ROTATION_DAYS as i32);
        check_period(days)?;
        // check_period keeps it in 90..=2560.
        let days = days.unsigned_abs();
        let now = self.now_ms();
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:EnableKeyRotation",
            &mut cx.key_arn,
            |r| {
                r.rotation.enabled = true;
                r.rotation.period_days = Some(days);
                r.rotation.next_rotation_ms =
                    Some(now.saturating_add(i64::from(days).saturating_mul(DAY_MS)));
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, DisableKeyRotationRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: DisableKeyRotationRequest) -> Result<Empty, KmsError> {
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:DisableKeyRotation",
            &mut cx.key_arn,
            |r| {
                r.rotation.enabled = false;
                r.rotation.next_rotation_ms = None;
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, GetKeyRotationStatusRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: GetKeyRotationStatusRequest,
    ) -> Result<GetKeyRotationStatusResponse, KmsError> {
        let key = self.authorized_key(
            cx.caller,
            &req.key_id,
            "kms:GetKeyRotationStatus",
            &mut cx.key_arn,
        )?;
        let r = &key.record.rotation;
        let on_demand = key
            .record
            .versions
            .iter()
            .rev()
            .find(|v| v.rotation_type == Some(StoredRotationType::OnDemand))
            .map(|v| Timestamp::from_millis(v.created_ms));
        Ok(GetKeyRotationStatusResponse {
            key_id: key.arn.clone(),
            key_rotation_enabled: r.enabled,
            rotation_period_in_days: r
                .period_days
                .filter(|_| r.enabled)
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
            next_rotation_date: r
                .next_rotation_ms
                .filter(|_| r.enabled)
                .map(Timestamp::from_millis),
            on_demand_rotation_start_date: on_demand,
        })
    }
}

impl Handle<Call<'_>, ListKeyRotationsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ListKeyRotationsRequest,
    ) -> Result<ListKeyRotationsResponse, KmsError> {
        let limit = page_limit(req.limit)?;
        let key = self.authorized_key(
            cx.caller,
            &req.key_id,
            "kms:ListKeyRotations",
            &mut cx.key_arn,
        )?;
        // Each rotation is a backing version; its number is the page marker.
        let rotations: Vec<(String, RotationsListEntry)> = key
            .record
            .versions
            .iter()
            .filter_map(|v| {
                v.rotation_type.map(|t| {
                    (
                        v.version.to_string(),
                        RotationsListEntry {
                            key_id: key.arn.clone(),
                            rotation_date: Timestamp::from_millis(v.created_ms),
                            rotation_type: t.into(),
                        },
                    )
                })
            })
            .collect();
        let (page, next_marker) =
            paginate_in_order(rotations, req.marker.as_deref(), limit, |(v, _)| v)?;
        Ok(ListKeyRotationsResponse {
            truncated: next_marker.is_some(),
            rotations: page.into_iter().map(|(_, r)| r).collect(),
            next_marker,
        })
    }
}

impl Handle<Call<'_>, RotateKeyOnDemandRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: RotateKeyOnDemandRequest,
    ) -> Result<KeyIdResponse, KmsError> {
        let _w = self.writer();
        let key = self.authorized_key(
            cx.caller,
            &req.key_id,
            "kms:RotateKeyOnDemand",
            &mut cx.key_arn,
        )?;
        rules::check("kms:RotateKeyOnDemand", &key)?;
        if key.record.rotation.on_demand_count >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::new(
                ErrorCode::LimitExceededException,
                format!(
                    "The on-demand rotations limit ({MAX_ON_DEMAND_ROTATIONS}) has been reached for {}.",
                    key.arn
                ),
            ));
        }
        let rotated = self.add_version(&key, RotationType::OnDemand)?;
        Ok(KeyIdResponse {
            key_id: rotated.arn.clone(),
        })
    }
}

impl KeyService {
    /// Adds a fresh backing version to `key` and persists it. Call with `writer()` held.
    pub(crate) fn add_version(
        &self,
        key: &KeyEntry,
        kind: RotationType,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let now = self.now_ms();
        let mut record = key.record.clone();
        let version = u32::try_from(record.versions.len())
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| KmsError::internal("too many backing key versions"))?;
        let material: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        let sealed = self
            .store
            .seal(&record.key_id, version, &material)
            .map_err(storage_error)?;
        record.versions.push(StoredVersion {
            version,
            created_ms: now,
            rotation_type: Some(kind.into()),
            sealed_material: sealed,
        });
        match kind {
            RotationType::OnDemand => {
                record.rotation.on_demand_count = record.rotation.on_demand_count.saturating_add(1)
            }
            RotationType::Automatic => {
                let days = record.rotation.period_days.unwrap_or(DEFAULT_ROTATION_DAYS);
                record.rotation.next_rotation_ms =
                    Some(now.saturating_add(i64::from(days).saturating_mul(DAY_MS)));
            }
        }
        let mut ciphers: Vec<_> = key.ciphers.iter().cloned().collect();
        ciphers.push(crate::blob::cipher(&material));
        self.commit_key(KeyEntry::new(record, Arc::new(ciphers)))
    }

    /// Rotates every Enabled key whose automatic rotation is due. Call with
    /// `writer()` held. Returns the rotated keys' ARNs.
    pub(crate) fn rotate_due(&self, now: i64) -> Vec<String> {
        let due: Vec<Arc<KeyEntry>> = self
            .read()
            .keys
            .values()
            .filter(|k| {
                k.record.key_state == KeyState::Enabled
                    && k.record.rotation.enabled
                    && k.record.rotation.next_rotation_ms.is_some_and(|t| t <= now)
            })
            .cloned()
            .collect();
        let mut rotated = Vec::new();
        for key in due {
            match self.add_version(&key, RotationType::Automatic) {
                Ok(k) => rotated.push(k.arn.clone()),
                Err(e) => tracing::error!(key = %key.arn, error = %e, "automatic rotation failed"),
            }
        }
        rotated
    }
}
