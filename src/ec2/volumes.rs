//! CreateVolume, DescribeVolumes, DeleteVolume, AttachVolume, DetachVolume.

use std::sync::Arc;

use super::api::{
    self, AttachVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest, DescribeVolumesRequest,
    DescribeVolumesResult, DetachVolumeRequest, VolumeAttachment,
};
use super::error::Ec2Error;
use super::filters;
use super::ids::IdKind;
use super::model::{
    self, Attachment, AttachmentState, Caller, InstanceState, Volume, VolumeState, DEFAULT_EBS_KEY,
    GIB, LOCAL_INSTANCE_ID,
};
use super::rules::{self, CreateVolumeCheck};
use super::service::Ec2Service;
use super::storage;
use super::worker;

/// The smallest `MaxResults` DescribeVolumes takes.
const MIN_PAGE: i64 = 5;

impl Ec2Service {
    pub(crate) fn create_volume(
        self: &Arc<Self>,
        caller: &Caller,
        r: CreateVolumeRequest,
    ) -> Result<api::Volume, Ec2Error> {
        let tags = rules::spec_tags(&r.tag_specifications, "volume", &["volume"])?;
        if let Some(t) = &r.volume_type {
            if t != "gp2" && t != "gp3" {
                return Err(Ec2Error::invalid_parameter(format!(
                    "--volume-type {t}: only gp2 and gp3 are offered here"
                )));
            }
        }
        let zone = r
            .availability_zone
            .clone()
            .ok_or_else(|| Ec2Error::missing_parameter("AvailabilityZone"))?;
        let encrypted = r.encrypted.unwrap_or(false);
        let check = CreateVolumeCheck {
            size_gib: rules::size_gib(r.size)?,
            availability_zone: &zone,
            snapshot_id: r.snapshot_id.as_deref(),
            encrypted,
            kms_key_given: r.kms_key_id.is_some(),
            region: &self.region,
        };
        let state = self.registry.read()?;
        let plan = rules::check_create_volume(&state, &check)?;
        let snapshot = match &r.snapshot_id {
            Some(id) => Some(rules::snapshot(&state, id)?.clone()),
            None => None,
        };
        drop(state);
        let volume_id = super::ids::new_id(IdKind::Volume);
        // The data key is made before the record exists: if kmsd refuses, nothing changes.
        let data_key = if plan.encrypted {
            let key_id = r
                .kms_key_id
                .clone()
                .or_else(|| snapshot.as_ref().and_then(|s| s.kms_key_id.clone()))
                .unwrap_or_else(|| DEFAULT_EBS_KEY.to_string());
            Some(self.kms.new_data_key(caller, &key_id, &volume_id)?)
        } else {
            None
        };
        let volume = Volume {
            volume_id: volume_id.clone(),
            size_gib: plan.size_gib,
            availability_zone: zone.clone(),
            state: VolumeState::Creating,
            encrypted: plan.encrypted,
            kms_key_id: data_key.as_ref().map(|k| k.key_arn.clone()),
            snapshot_id: r.snapshot_id.clone(),
            create_time: model::now_timestamp(),
            tags,
            attachment: None,
            progress: 0,
            worker: Some(self.worker()),
            error_message: None,
            restoring_for: None,
        };
        self.registry.update(|s| {
            rules::check_create_volume(s, &check)?;
            s.volumes.insert(volume_id.clone(), volume.clone());
            Ok(())
        })?;
        let size_bytes = plan.size_gib.saturating_mul(GIB);
        match snapshot {
            None => {
                let res =
                    storage::create_blank(&self.layout, &volume_id, size_bytes, data_key.as_ref())
                        .map_err(Ec2Error::from);
                worker::finish::<Volume>(&self.registry, &self.layout, &volume_id, res);
            }
            Some(snap) => {
                let caller = caller.clone();
                let id = volume_id.clone();
                self.spawn(&format!("restore-{id}"), move |svc| {
                    let res = svc.restore_into(&caller, &snap, &id, size_bytes, data_key.as_ref());
                    worker::finish::<Volume>(&svc.registry, &svc.layout, &id, res);
                });
            }
        }
        self.kms.record_event(
            caller,
            "CreateVolume",
            std::slice::from_ref(&volume_id),
            None,
        );
        Ok(api::Volume::from(&volume))
    }

    pub(crate) fn describe_volumes(
        &self,
        r: DescribeVolumesRequest,
    ) -> Result<DescribeVolumesResult, Ec2Error> {
        let state = self.registry.read()?;
        for id in &r.volume_ids {
            rules::volume(&state, id)?;
        }
        let mut out = Vec::new();
        for v in state.volumes.values() {
            if !r.volume_ids.is_empty() && !r.volume_ids.contains(&v.volume_id) {
                continue;
            }
            if filters::volume_matches(v, &r.filters)? {
                out.push(v);
            }
        }
        let (page, next_token) = rules::page(
            out,
            |v| &v.volume_id,
            !r.volume_ids.is_empty(),
            r.max_results,
            r.next_token.as_deref(),
            MIN_PAGE,
        )?;
        Ok(DescribeVolumesResult {
            volumes: page.into_iter().map(api::Volume::from).collect(),
            next_token,
        })
    }

    pub(crate) fn delete_volume(&self, r: DeleteVolumeRequest) -> Result<(), Ec2Error> {
        let volume_id = r.volume_id;
        self.registry.update(|s| {
            rules::check_delete_volume(s, &volume_id)?;
            s.volumes.remove(&volume_id);
            Ok(())
        })?;
        self.cancel_restore(&volume_id);
        storage::discard_volume(&self.layout, &volume_id);
        Ok(())
    }

    pub(crate) fn attach_volume(
        self: &Arc<Self>,
        caller: &Caller,
        r: AttachVolumeRequest,
    ) -> Result<VolumeAttachment, Ec2Error> {
        let attachment = Attachment {
            instance_id: r.instance_id.clone(),
            device: r.device.clone(),
            state: AttachmentState::Attaching,
            attach_time: model::now_timestamp(),
            delete_on_termination: false,
            local_owner: None,
        };
        let running = self.registry.update(|s| {
            rules::check_attach(s, &r.volume_id, &r.instance_id, &r.device)?;
            let running = rules::instance(s, &r.instance_id)?.state == InstanceState::Running;
            if running {
                self.require_runtime("AttachVolume to a running instance")?;
            }
            if let Some(v) = s.volumes.get_mut(&r.volume_id) {
                v.attachment = Some(attachment.clone());
                v.state = VolumeState::InUse;
                if !running {
                    v.attachment = Some(Attachment {
                        state: AttachmentState::Attached,
                        ..attachment.clone()
                    });
                }
            }
            Ok(running)
        })?;
        // The trail sees AttachVolume before a hot attach's CreateGrant.
        self.kms.record_event(
            caller,
            "AttachVolume",
            &[r.volume_id.clone(), r.instance_id.clone()],
            None,
        );
        if running {
            // Hot attach: serve it now (grant + decrypt for encrypted volumes).
            if let Err(e) = self.serve_attached(caller, &r.instance_id, &r.volume_id, false) {
                self.clear_attachment(&r.volume_id);
                return Err(e);
            }
            self.set_attachment_state(&r.volume_id, AttachmentState::Attached);
        }
        Ok(VolumeAttachment::of(
            &r.volume_id,
            &attachment,
            AttachmentState::Attaching.as_str(),
        ))
    }

    pub(crate) fn detach_volume(
        self: &Arc<Self>,
        caller: &Caller,
        r: DetachVolumeRequest,
    ) -> Result<VolumeAttachment, Ec2Error> {
        let (instance_id, attachment, served) = self.registry.update(|s| {
            let instance_id = rules::check_detach(
                s,
                &r.volume_id,
                r.instance_id.as_deref(),
                r.device.as_deref(),
            )?;
            let inst = rules::instance(s, &instance_id)?;
            let served = inst.state != InstanceState::Stopped || instance_id == LOCAL_INSTANCE_ID;
            if served {
                self.require_runtime("DetachVolume from a running instance")?;
            }
            let v = s
                .volumes
                .get_mut(&r.volume_id)
                .ok_or_else(|| Ec2Error::volume_not_found(&r.volume_id))?;
            let a = v
                .attachment
                .as_mut()
                .ok_or_else(|| Ec2Error::incorrect_state("volume is not attached"))?;
            a.state = AttachmentState::Detaching;
            Ok((instance_id, a.clone(), served))
        })?;
        self.kms.record_event(
            caller,
            "DetachVolume",
            &[r.volume_id.clone(), instance_id.clone()],
            None,
        );
        if served {
            if let Err(e) =
                self.unserve_attached(&instance_id, &r.volume_id, r.force.unwrap_or(false))
            {
                self.set_attachment_state(&r.volume_id, AttachmentState::Attached);
                return Err(e);
            }
        }
        self.clear_attachment(&r.volume_id);
        Ok(VolumeAttachment::of(
            &r.volume_id,
            &attachment,
            AttachmentState::Detaching.as_str(),
        ))
    }

    pub(crate) fn set_attachment_state(&self, volume_id: &str, st: AttachmentState) {
        let _ = self.registry.update(|s| {
            if let Some(a) = s
                .volumes
                .get_mut(volume_id)
                .and_then(|v| v.attachment.as_mut())
            {
                a.state = st;
            }
            Ok(())
        });
    }

    pub(crate) fn clear_attachment(&self, volume_id: &str) {
        let res = self.registry.update(|s| {
            if let Some(v) = s.volumes.get_mut(volume_id) {
                v.attachment = None;
                v.state = VolumeState::Available;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(volume = %volume_id, "cannot record the detach: {e}");
        }
    }
}
