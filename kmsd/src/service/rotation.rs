//! Key rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and automatic rotation (run by the sweeper).
//!
//! Rotating adds a backing-key version; new ciphertexts use the newest version and
//! every older version stays to decrypt what it encrypted.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{rules, storage_error, Caller, KeyEntry, KeyService};
use crate::clock::DAY_MS;
use crate::keystore::StoredVersion;
use crate::protocol::{
    ErrorCode, KeyRotationStatus, KeyState, KmsError, Response, RotationEntry, RotationType,
};

pub const DEFAULT_ROTATION_DAYS: u32 = 365;
pub const MIN_ROTATION_DAYS: u32 = 90;
pub const MAX_ROTATION_DAYS: u32 = 2560;
/// AWS allows ten on-demand rotations per key.
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

fn check_period(days: u32) -> Result<(), KmsError> {
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

impl KeyService {
    pub(crate) fn enable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
        period: Option<u32>,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        let days = period.unwrap_or(DEFAULT_ROTATION_DAYS);
        check_period(days)?;
        let now = self.now_ms();
        self.change_key(caller, key_id, "kms:EnableKeyRotation", key_arn, |r| {
            r.rotation.enabled = true;
            r.rotation.period_days = Some(days);
            r.rotation.next_rotation_ms =
                Some(now.saturating_add(i64::from(days).saturating_mul(DAY_MS)));
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    pub(crate) fn disable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        self.change_key(caller, key_id, "kms:DisableKeyRotation", key_arn, |r| {
            r.rotation.enabled = false;
            r.rotation.next_rotation_ms = None;
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    pub(crate) fn get_key_rotation_status(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        let key = self.authorized_key(caller, key_id, "kms:GetKeyRotationStatus", key_arn)?;
        let r = &key.record.rotation;
        let on_demand = key
            .record
            .versions
            .iter()
            .rev()
            .find(|v| v.rotation_type == Some(RotationType::OnDemand))
            .map(|v| v.created_ms);
        Ok(Response::KeyRotationStatus(KeyRotationStatus {
            key_id: key.arn.clone(),
            key_rotation_enabled: r.enabled,
            rotation_period_in_days: if r.enabled { r.period_days } else { None },
            next_rotation_date_ms: if r.enabled { r.next_rotation_ms } else { None },
            on_demand_rotation_start_date_ms: on_demand,
        }))
    }

    pub(crate) fn list_key_rotations(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        let key = self.authorized_key(caller, key_id, "kms:ListKeyRotations", key_arn)?;
        let rotations = key
            .record
            .versions
            .iter()
            .filter_map(|v| {
                v.rotation_type.map(|t| RotationEntry {
                    key_id: key.arn.clone(),
                    rotation_date_ms: v.created_ms,
                    rotation_type: t,
                })
            })
            .collect();
        Ok(Response::ListKeyRotations { rotations })
    }

    pub(crate) fn rotate_key_on_demand(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        let _w = self.writer();
        let key = self.authorized_key(caller, key_id, "kms:RotateKeyOnDemand", key_arn)?;
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
        Ok(Response::KeyId {
            key_id: rotated.arn.clone(),
        })
    }

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
            rotation_type: Some(kind),
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
