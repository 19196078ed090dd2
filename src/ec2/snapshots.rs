//! CreateSnapshot, DescribeSnapshots, DeleteSnapshot, CopySnapshot, and the restores
//! behind CreateVolume --snapshot-id. The long work runs in the background with its
//! progress in the registry; the snapshot store makes a snapshot visible only whole,
//! so a crash leaves the old state or the new one (see `recover_orphans`).

use std::sync::Arc;

use super::error::Ec2Error;
use super::filters;
use super::ids::IdKind;
use super::kms::WrappedKey;
use super::model::{self, Snapshot, SnapshotState};
use super::protocol::{CopySnapshotRequest, CreateSnapshotRequest, Filter, Response};
use super::rules;
use super::service::{validate_tags, Caller, Ec2Service};
use super::storage;
use super::volumes::DEFAULT_EBS_KEY;

impl Ec2Service {
    pub(crate) fn create_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        r: CreateSnapshotRequest,
    ) -> Result<Response, Ec2Error> {
        validate_tags(&r.tags)?;
        let snapshot_id = Ec2Service::new_id(IdKind::Snapshot);
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
                description: r.description.clone(),
                owner_id: self.account.clone(),
                tags: r.tags.clone(),
                worker: Some(self.worker()),
                state_message: None,
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
            let res = storage::create_snapshot(&svc.layout, &id, &volume_id, &mut |pct| {
                svc.snapshot_progress(&id, pct)
            });
            svc.finish_snapshot(&id, res);
        });
        Ok(Response::Snapshot(snap))
    }

    pub(crate) fn snapshot_progress(&self, snapshot_id: &str, pct: u8) {
        let _ = self.registry.update(|s| {
            if let Some(sn) = s.snapshots.get_mut(snapshot_id) {
                sn.progress = pct.min(99);
            }
            Ok(())
        });
    }

    fn finish_snapshot(&self, snapshot_id: &str, res: Result<(), Ec2Error>) {
        if let Err(e) = &res {
            tracing::error!(snapshot = %snapshot_id, "snapshot failed: {e}");
            storage::discard_partial_snapshot(&self.layout, snapshot_id);
        }
        let upd = self.registry.update(|s| {
            if let Some(sn) = s.snapshots.get_mut(snapshot_id) {
                sn.worker = None;
                match &res {
                    Ok(()) => {
                        sn.state = SnapshotState::Completed;
                        sn.progress = 100;
                    }
                    Err(e) => {
                        sn.state = SnapshotState::Error;
                        sn.state_message = Some(e.to_string());
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = upd {
            tracing::error!(snapshot = %snapshot_id, "cannot record the snapshot's new state: {e}");
        }
    }

    pub(crate) fn describe_snapshots(
        &self,
        ids: &[String],
        filters: &[Filter],
    ) -> Result<Response, Ec2Error> {
        let state = self.registry.read()?;
        for id in ids {
            rules::snapshot(&state, id)?;
        }
        let mut out = Vec::new();
        for s in state.snapshots.values() {
            if !ids.is_empty() && !ids.contains(&s.snapshot_id) {
                continue;
            }
            if filters::snapshot_matches(s, filters)? {
                out.push(s.clone());
            }
        }
        Ok(Response::Snapshots(out))
    }

    pub(crate) fn delete_snapshot(&self, snapshot_id: &str) -> Result<Response, Ec2Error> {
        self.registry.update(|s| {
            rules::check_delete_snapshot(s, snapshot_id)?;
            s.snapshots.remove(snapshot_id);
            Ok(())
        })?;
        storage::delete_snapshot(&self.layout, snapshot_id)?;
        Ok(Response::Empty)
    }

    pub(crate) fn copy_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        r: CopySnapshotRequest,
    ) -> Result<Response, Ec2Error> {
        validate_tags(&r.tags)?;
        if r.kms_key_id.is_some() && !r.encrypted {
            return Err(Ec2Error::new(
                super::error::Ec2Code::InvalidParameterDependency,
                "The parameter KmsKeyId requires the parameter Encrypted to be set.",
            ));
        }
        let source = {
            let state = self.registry.read()?;
            let s = rules::snapshot(&state, &r.source_snapshot_id)?;
            if s.state != SnapshotState::Completed {
                return Err(Ec2Error::incorrect_state(format!(
                    "Snapshot '{}' is not 'completed' (it is '{}').",
                    s.snapshot_id,
                    s.state.as_str()
                )));
            }
            s.clone()
        };
        let snapshot_id = Ec2Service::new_id(IdKind::Snapshot);
        let encrypted = r.encrypted || source.encrypted;
        // The copy's data key is bound to the copy's own ID, as EBS does.
        let data_key = if encrypted {
            let key_id = r
                .kms_key_id
                .clone()
                .or_else(|| source.kms_key_id.clone())
                .unwrap_or_else(|| DEFAULT_EBS_KEY.to_string());
            Some(self.kms.new_data_key(caller, &key_id, &snapshot_id)?)
        } else {
            None
        };
        let description = if r.description.is_empty() {
            format!(
                "[Copied {snapshot_id} from {}:{}]",
                self.region, source.snapshot_id
            )
        } else {
            r.description.clone()
        };
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
            owner_id: self.account.clone(),
            tags: r.tags.clone(),
            worker: Some(self.worker()),
            state_message: None,
        };
        self.registry.update(|s| {
            rules::snapshot(s, &source.snapshot_id)?;
            s.snapshots.insert(snapshot_id.clone(), snap.clone());
            Ok(())
        })?;
        let caller = caller.clone();
        let id = snapshot_id.clone();
        self.spawn(&format!("copy-{id}"), move |svc| {
            let res = svc.copy_into(&caller, &source, &id, data_key.as_ref());
            svc.finish_snapshot(&id, res);
        });
        Ok(Response::SnapshotId(snapshot_id))
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
        let source_key = match storage::snapshot_wrapped_key(&self.layout, &source.snapshot_id)? {
            Some(w) => Some(self.kms.decrypt_data_key(caller, &w)?),
            None => None,
        };
        let dest_key = match new_key {
            Some(w) => Some(self.kms.decrypt_data_key(caller, w)?),
            None => None,
        };
        storage::copy_snapshot(
            &self.layout,
            &source.snapshot_id,
            new_id,
            source_key,
            new_key.zip(dest_key),
            &mut |pct| self.snapshot_progress(new_id, pct),
        )
    }

    /// The create-volume-from-snapshot work.
    pub(crate) fn restore_into(
        &self,
        caller: &Caller,
        snap: &Snapshot,
        volume_id: &str,
        size_bytes: u64,
        new_key: Option<&WrappedKey>,
    ) -> Result<(), Ec2Error> {
        let source_key = match storage::snapshot_wrapped_key(&self.layout, &snap.snapshot_id)? {
            Some(w) => Some(self.kms.decrypt_data_key(caller, &w)?),
            None => None,
        };
        let dest_key = match new_key {
            Some(w) => Some(self.kms.decrypt_data_key(caller, w)?),
            None => None,
        };
        storage::restore_snapshot(
            &self.layout,
            &snap.snapshot_id,
            volume_id,
            size_bytes,
            source_key,
            new_key.zip(dest_key),
            &mut |pct| self.volume_progress(volume_id, pct),
        )
    }
}
