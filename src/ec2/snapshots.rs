//! CreateSnapshot, DescribeSnapshots, DeleteSnapshot, CopySnapshot, and the restores
//! behind CreateVolume --snapshot-id. The long work runs in the background
//! ([`super::worker`]: progress in the registry, `error` if it fails or its process
//! dies); the snapshot store makes a snapshot visible only whole.

use std::sync::Arc;

use super::api::{
    self, CopySnapshotRequest, CopySnapshotResult, CreateSnapshotRequest, DeleteSnapshotRequest,
    DescribeSnapshotsRequest, DescribeSnapshotsResult,
};
use super::error::{Ec2Code, Ec2Error};
use super::filters;
use super::ids::IdKind;
use super::model::{self, Caller, Snapshot, SnapshotState, Volume, WrappedKey, DEFAULT_EBS_KEY};
use super::rules;
use super::service::Ec2Service;
use super::storage;
use super::worker;

/// The smallest `MaxResults` DescribeSnapshots takes.
const MIN_PAGE: i64 = 5;

impl Ec2Service {
    pub(crate) fn create_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        r: CreateSnapshotRequest,
    ) -> Result<api::Snapshot, Ec2Error> {
        let tags = rules::spec_tags(&r.tag_specifications, "snapshot", &["snapshot"])?;
        let snapshot_id = super::ids::new_id(IdKind::Snapshot);
        let snap = self.registry.update(|s| {
            rules::check_create_snapshot(s, &r.volume_id)?;
            let v = rules::volume(s, &r.volume_id)?;
            let snap = Snapshot {
                snapshot_id: snapshot_id.clone(),
                volume_id: r.volume_id.clone(),
                state: SnapshotState::Pending,
                progress: 0,
                start_time: model::now_timestamp(),
                encrypted: v.encrypted,
                kms_key_id: v.kms_key_id.clone(),
                volume_size_gib: v.size_gib,
                description: r.description.clone().unwrap_or_default(),
                owner_id: self.caller_account(caller),
                tags,
                worker: Some(self.worker()),
                state_message: None,
                create_volume_permissions: Vec::new(),
            };
            s.snapshots.insert(snapshot_id.clone(), snap.clone());
            Ok(snap)
        })?;
        self.kms.record_event(
            caller,
            "CreateSnapshot",
            &[snapshot_id.clone(), r.volume_id.clone()],
            None,
        );
        let id = snapshot_id.clone();
        let volume_id = r.volume_id.clone();
        self.spawn(&format!("snapshot-{id}"), move |svc| {
            let res = svc.finish_restore(&volume_id).and_then(|()| {
                storage::create_snapshot(&svc.layout, &id, &volume_id, &mut |pct| {
                    worker::progress::<Snapshot>(&svc.registry, &id, pct)
                })
                .map_err(Ec2Error::from)
            });
            worker::finish::<Snapshot>(&svc.registry, &svc.layout, &id, res);
        });
        Ok(api::Snapshot::from(&snap))
    }

    pub(crate) fn describe_snapshots(
        &self,
        r: DescribeSnapshotsRequest,
    ) -> Result<DescribeSnapshotsResult, Ec2Error> {
        let state = self.registry.read()?;
        for id in &r.snapshot_ids {
            rules::snapshot(&state, id)?;
        }
        let mut out = Vec::new();
        for s in state.snapshots.values() {
            if !r.snapshot_ids.is_empty() && !r.snapshot_ids.contains(&s.snapshot_id) {
                continue;
            }
            if filters::snapshot_matches(s, &r.filters)? {
                out.push(s);
            }
        }
        let (page, next_token) = rules::page(
            out,
            |s| &s.snapshot_id,
            !r.snapshot_ids.is_empty(),
            r.max_results,
            r.next_token.as_deref(),
            MIN_PAGE,
        )?;
        Ok(DescribeSnapshotsResult {
            snapshots: page.into_iter().map(api::Snapshot::from).collect(),
            next_token,
        })
    }

    pub(crate) fn delete_snapshot(&self, r: DeleteSnapshotRequest) -> Result<(), Ec2Error> {
        let snapshot_id = r.snapshot_id;
        self.registry.update(|s| {
            rules::check_delete_snapshot(s, &snapshot_id)?;
            s.snapshots.remove(&snapshot_id);
            Ok(())
        })?;
        storage::delete_snapshot(&self.layout, &snapshot_id)?;
        Ok(())
    }

    pub(crate) fn copy_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        r: CopySnapshotRequest,
    ) -> Result<CopySnapshotResult, Ec2Error> {
        let tags = rules::spec_tags(&r.tag_specifications, "snapshot", &["snapshot"])?;
        let encrypt = r.encrypted.unwrap_or(false);
        if r.kms_key_id.is_some() && !encrypt {
            return Err(Ec2Error::new(
                Ec2Code::InvalidParameterDependency,
                "The parameter KmsKeyId requires the parameter Encrypted to be set.",
            ));
        }
        let account = self.caller_account(caller);
        let source = {
            let state = self.registry.read()?;
            let s = rules::snapshot(&state, &r.source_snapshot_id)?;
            if !model::permitted(&s.owner_id, &s.create_volume_permissions, &account) {
                return Err(Ec2Error::snapshot_not_found(&s.snapshot_id));
            }
            s.clone()
        };
        let snap = self.start_snapshot_copy(
            caller,
            &source,
            encrypt,
            r.kms_key_id.clone(),
            r.description.clone().filter(|d| !d.is_empty()),
            tags,
        )?;
        Ok(CopySnapshotResult {
            snapshot_id: snap.snapshot_id.clone(),
            tags: api::tags_of(&snap.tags),
        })
    }

    /// Starts copying a completed snapshot into the caller's account (CopySnapshot,
    /// CopyImage): the copy's data key is made first (GenerateDataKeyWithoutPlaintext
    /// on the caller's behalf, bound to the copy's own ID, as EBS does), so a refusal
    /// changes nothing; the chunks are copied (re-encrypted) in the background.
    pub(crate) fn start_snapshot_copy(
        self: &Arc<Self>,
        caller: &Caller,
        source: &Snapshot,
        encrypt: bool,
        kms_key_id: Option<String>,
        description: Option<String>,
        tags: Vec<model::Tag>,
    ) -> Result<Snapshot, Ec2Error> {
        if source.state != SnapshotState::Completed {
            return Err(Ec2Error::incorrect_state(format!(
                "Snapshot '{}' is not 'completed' (it is '{}').",
                source.snapshot_id,
                source.state.as_str()
            )));
        }
        let snapshot_id = super::ids::new_id(IdKind::Snapshot);
        let encrypted = encrypt || source.encrypted;
        let data_key = if encrypted {
            let key_id = kms_key_id
                .or_else(|| source.kms_key_id.clone())
                .unwrap_or_else(|| DEFAULT_EBS_KEY.to_string());
            Some(self.kms.new_data_key(caller, &key_id, &snapshot_id)?)
        } else {
            None
        };
        let description = description.unwrap_or_else(|| {
            format!(
                "[Copied {snapshot_id} from {}:{}]",
                self.region, source.snapshot_id
            )
        });
        let snap = Snapshot {
            snapshot_id: snapshot_id.clone(),
            volume_id: source.volume_id.clone(),
            state: SnapshotState::Pending,
            progress: 0,
            start_time: model::now_timestamp(),
            encrypted,
            kms_key_id: data_key.as_ref().map(|k| k.key_arn.clone()),
            volume_size_gib: source.volume_size_gib,
            description,
            owner_id: self.caller_account(caller),
            tags,
            worker: Some(self.worker()),
            state_message: None,
            create_volume_permissions: Vec::new(),
        };
        self.registry.update(|s| {
            rules::snapshot(s, &source.snapshot_id)?;
            s.snapshots.insert(snapshot_id.clone(), snap.clone());
            Ok(())
        })?;
        let caller = caller.clone();
        let id = snapshot_id.clone();
        let source = source.clone();
        self.spawn(&format!("copy-{id}"), move |svc| {
            let res = svc.copy_into(&caller, &source, &id, data_key.as_ref());
            worker::finish::<Snapshot>(&svc.registry, &svc.layout, &id, res);
        });
        Ok(snap)
    }

    /// The copy-snapshot work: decrypt the keys it needs on the caller's behalf, then
    /// let the store copy (or re-encrypt) the chunks.
    fn copy_into(
        &self,
        caller: &Caller,
        source: &Snapshot,
        new_id: &str,
        new_key: Option<&WrappedKey>,
    ) -> Result<(), Ec2Error> {
        let (source_key, dest_key) = self.data_keys(caller, &source.snapshot_id, new_key)?;
        storage::copy_snapshot(
            &self.layout,
            &source.snapshot_id,
            new_id,
            source_key,
            new_key.zip(dest_key),
            &mut |pct| worker::progress::<Snapshot>(&self.registry, new_id, pct),
        )?;
        Ok(())
    }

    /// The create-volume-from-snapshot work: lazy in the daemon (the volume is usable at
    /// once while its copier runs: [`super::restores`]), the whole copy in-process.
    pub(crate) fn restore_into(
        self: &Arc<Self>,
        caller: &Caller,
        snap: &Snapshot,
        volume_id: &str,
        size_bytes: u64,
        new_key: Option<&WrappedKey>,
    ) -> Result<(), Ec2Error> {
        if self.runtime.is_some() {
            return self.restore_lazily(caller, snap, volume_id, size_bytes, new_key);
        }
        let (source_key, dest_key) = self.data_keys(caller, &snap.snapshot_id, new_key)?;
        storage::restore_snapshot(
            &self.layout,
            &snap.snapshot_id,
            volume_id,
            size_bytes,
            source_key,
            new_key.zip(dest_key),
            &mut |pct| worker::progress::<Volume>(&self.registry, volume_id, pct),
        )?;
        Ok(())
    }

    /// The plaintext data keys a copy or restore of `snapshot_id` needs, decrypted on
    /// the caller's behalf (as EBS does): the snapshot's, and the new one's.
    #[allow(clippy::type_complexity)]
    pub(crate) fn data_keys(
        &self,
        caller: &Caller,
        snapshot_id: &str,
        new_key: Option<&WrappedKey>,
    ) -> Result<
        (
            Option<zeroize::Zeroizing<Vec<u8>>>,
            Option<zeroize::Zeroizing<Vec<u8>>>,
        ),
        Ec2Error,
    > {
        let source_key = match storage::snapshot_wrapped_key(&self.layout, snapshot_id)? {
            Some(w) => Some(self.kms.decrypt_data_key(caller, &w)?),
            None => None,
        };
        let dest_key = match new_key {
            Some(w) => Some(self.kms.decrypt_data_key(caller, w)?),
            None => None,
        };
        Ok((source_key, dest_key))
    }
}
