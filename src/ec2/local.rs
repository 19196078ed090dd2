//! The `local` instance: the dev box itself, always running, so `atrest attach VOL`
//! serves a volume here at once (and `--loop` binds a loop device to it).

use std::sync::Arc;

use super::api::{AttachRequest, AttachResult, DaemonStatus, DetachRequest};
use super::error::Ec2Error;
use super::model::{
    self, Attachment, AttachmentState, Caller, Instance, InstanceState, LocalOwner, VolumeState,
    LOCAL_INSTANCE_ID,
};
use super::rules;
use super::service::Ec2Service;

impl Ec2Service {
    /// Makes sure the registry has the local instance (running, in the default zone).
    pub fn ensure_local_instance(&self) -> Result<(), Ec2Error> {
        let zone = self.default_zone();
        self.registry.update(|s| {
            let i = s
                .instances
                .entry(LOCAL_INSTANCE_ID.to_string())
                .or_insert_with(|| Instance {
                    instance_id: LOCAL_INSTANCE_ID.into(),
                    reservation_id: "r-local".into(),
                    image_id: "ami-local".into(),
                    instance_type: "local".into(),
                    state: InstanceState::Running,
                    state_reason: None,
                    state_transition_reason: "this machine".into(),
                    availability_zone: zone.clone(),
                    launch_time: model::now_timestamp(),
                    tags: vec![model::Tag {
                        key: "Name".into(),
                        value: "local".into(),
                    }],
                    owner_arn: String::new(),
                    owner_uid: 0,
                    owner_gid: 0,
                    boot: None,
                });
            i.state = InstanceState::Running;
            Ok(())
        })
    }

    /// Serves again what was attached to the local instance before a restart (the
    /// keys died with the old process: each volume is decrypted anew, as its owner).
    pub fn reserve_local(self: &Arc<Self>) {
        let Ok(state) = self.registry.read() else {
            return;
        };
        for v in state.attached_volumes(LOCAL_INSTANCE_ID) {
            let Some(owner) = v.attachment.as_ref().and_then(|a| a.local_owner.clone()) else {
                continue;
            };
            let caller = Caller {
                uid: owner.uid,
                gid: owner.gid,
                pid: 0,
                principal: owner.principal,
                signer: None,
            };
            match self.serve_attached(&caller, LOCAL_INSTANCE_ID, &v.volume_id, false) {
                Ok(p) => tracing::info!(volume = %v.volume_id, "serving again at {}", p.display()),
                Err(e) => {
                    tracing::warn!(volume = %v.volume_id, "cannot serve it again ({e}); `atrest detach {}` and attach it again", v.volume_id)
                }
            }
        }
    }

    pub(crate) fn local_attach(
        self: &Arc<Self>,
        caller: &Caller,
        r: AttachRequest,
    ) -> Result<AttachResult, Ec2Error> {
        let (volume_id, loop_device) = (r.volume_id.as_str(), r.loop_device);
        self.require_runtime("attach")?;
        self.ensure_local_instance()?;
        self.registry.update(|s| {
            let device = rules::next_free_device(s, LOCAL_INSTANCE_ID).ok_or_else(|| {
                Ec2Error::invalid_parameter(
                    "every device /dev/xvdf../dev/xvdz of the local instance is in use",
                )
            })?;
            rules::check_attach(s, volume_id, LOCAL_INSTANCE_ID, &device)?;
            if let Some(v) = s.volumes.get_mut(volume_id) {
                v.state = VolumeState::InUse;
                v.attachment = Some(Attachment {
                    instance_id: LOCAL_INSTANCE_ID.into(),
                    device: device.clone(),
                    state: AttachmentState::Attaching,
                    attach_time: model::now_timestamp(),
                    delete_on_termination: false,
                    local_owner: Some(LocalOwner {
                        uid: caller.uid,
                        gid: caller.gid,
                        principal: caller.principal.clone(),
                    }),
                });
            }
            Ok(())
        })?;
        match self.serve_attached(caller, LOCAL_INSTANCE_ID, volume_id, loop_device) {
            Ok(path) => {
                self.set_attachment_state(volume_id, AttachmentState::Attached);
                let loop_dev = self
                    .runtime
                    .as_ref()
                    .and_then(|rt| {
                        rt.served_of(LOCAL_INSTANCE_ID)
                            .into_iter()
                            .find(|(v, _, _)| v == volume_id)
                    })
                    .and_then(|(_, _, l)| l);
                Ok(AttachResult {
                    path,
                    loop_device: loop_dev,
                })
            }
            Err(e) => {
                self.clear_attachment(volume_id);
                Err(e)
            }
        }
    }

    pub(crate) fn local_detach(
        self: &Arc<Self>,
        _caller: &Caller,
        r: DetachRequest,
    ) -> Result<(), Ec2Error> {
        self.require_runtime("detach")?;
        self.registry.update(|s| {
            rules::check_detach(s, &r.volume_id, Some(LOCAL_INSTANCE_ID), None)?;
            Ok(())
        })?;
        self.unserve_attached(LOCAL_INSTANCE_ID, &r.volume_id, r.force)?;
        self.clear_attachment(&r.volume_id);
        Ok(())
    }

    pub(crate) fn status(&self) -> Result<DaemonStatus, Ec2Error> {
        Ok(self.require_runtime("status")?.status())
    }
}
