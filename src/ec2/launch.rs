//! The launch and halt sequences behind RunInstances, StartInstances, StopInstances and
//! TerminateInstances, and serving one attached volume (also for hot attach and
//! `atrest attach`).
//!
//! Launch (after `pending` is answered): for each attached volume, root first: if
//! encrypted, CreateGrant on the caller's behalf for the instance, Decrypt as that
//! grantee, open the image with the key, serve it through the mount; then boot the
//! guest if the instance has a boot profile (`running` once its line appears). Any
//! refusal undoes what was served and leaves the instance `stopped` with
//! `Client.InternalError`; nothing on disk is written by a failed launch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Ec2Code, Ec2Error};
use super::model::{Caller, InstanceState, SnapshotState, StateReason, LOCAL_INSTANCE_ID};
use super::rules;
use super::service::Ec2Service;
use super::storage;

/// Why a launch failed, as the instance's StateReason says: `Client.InternalError` when
/// KMS refused (the key is disabled, or the caller may not use it), else
/// `Server.InternalError` with what failed.
pub(crate) fn launch_failure_reason(e: &Ec2Error) -> StateReason {
    match e.code {
        Ec2Code::Kms(_) => StateReason::client_error_on_launch(),
        _ => StateReason {
            code: "Server.InternalError".into(),
            message: format!("Server.InternalError: {}", e.message),
        },
    }
}

impl Ec2Service {
    pub(crate) fn console_path(&self, instance_id: &str) -> PathBuf {
        self.layout
            .log_dir()
            .join("console")
            .join(format!("{instance_id}.log"))
    }

    /// Serves an attached volume of a running (or launching) instance: for an
    /// encrypted volume, CreateGrant for the instance on the caller's behalf, then
    /// Decrypt as the grantee; open the image; add it to the mount. Returns the path.
    pub(crate) fn serve_attached(
        &self,
        caller: &Caller,
        instance_id: &str,
        volume_id: &str,
        loop_device: bool,
    ) -> Result<PathBuf, Ec2Error> {
        let rt = self.require_runtime("serving a volume")?;
        let state = self.registry.read()?;
        let inst = rules::instance(&state, instance_id)?.clone();
        let vol = rules::volume(&state, volume_id)?.clone();
        drop(state);
        let device = vol
            .attachment
            .as_ref()
            .map(|a| a.device.clone())
            .ok_or_else(|| Ec2Error::incorrect_state(format!("{volume_id} is not attached")))?;
        let wrapped = storage::volume_key(&self.layout, volume_id)?;
        let (uid, gid, owner) = if instance_id == LOCAL_INSTANCE_ID {
            (caller.uid, caller.gid, caller.principal.clone())
        } else {
            (inst.owner_uid, inst.owner_gid, inst.owner_arn.clone())
        };
        let (key, grant) = match wrapped {
            Some(wrapped) => {
                let grant = self.kms.create_instance_grant(
                    caller,
                    (instance_id, &owner),
                    volume_id,
                    &wrapped,
                )?;
                let key = self
                    .kms
                    .decrypt_for_instance(&wrapped, &grant)
                    .and_then(|plain| storage::xts_key(&plain).map_err(Ec2Error::from));
                match key {
                    Ok(k) => (Some(k), Some(grant)),
                    Err(e) => {
                        self.kms.retire_grant(&grant);
                        return Err(e);
                    }
                }
            }
            None => (None, None),
        };
        let image = match self.open_served(volume_id, key) {
            Ok(i) => i,
            Err(e) => {
                if let Some(g) = &grant {
                    self.kms.retire_grant(g);
                }
                return Err(e.into());
            }
        };
        rt.add(
            instance_id,
            &device,
            image,
            uid,
            gid,
            volume_id,
            grant.clone(),
            loop_device,
        )
        .map_err(|e| {
            if let Some(g) = &grant {
                self.kms.retire_grant(g);
            }
            Ec2Error::from(e)
        })
    }

    /// Stops serving a volume, retires its grant; the key is dropped with the image.
    pub(crate) fn unserve_attached(
        &self,
        instance_id: &str,
        volume_id: &str,
        force: bool,
    ) -> Result<(), Ec2Error> {
        let rt = self.require_runtime("detaching a served volume")?;
        if let Some(served) = rt.remove(instance_id, volume_id, force)? {
            if let Some(g) = &served.grant {
                self.kms.retire_grant(g);
            }
        }
        Ok(())
    }

    fn set_instance(&self, instance_id: &str, st: InstanceState, reason: Option<StateReason>) {
        let res = self.registry.update(|s| {
            if let Some(i) = s.instances.get_mut(instance_id) {
                i.state = st;
                i.state_reason = reason.clone();
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(instance = %instance_id, "cannot record state {}: {e}", st.as_str());
        }
    }

    fn instance_state(&self, instance_id: &str) -> Option<InstanceState> {
        self.registry
            .read()
            .ok()
            .and_then(|s| s.instances.get(instance_id).map(|i| i.state))
    }

    /// The launch sequence of one `pending` instance (background). A refused launch
    /// leaves it `stopped`, or `terminated` (its delete-on-termination volumes deleted)
    /// with `terminate_on_failure`: the first launch of an AMI's instance, as on EC2.
    pub(crate) fn launch(
        self: &Arc<Self>,
        caller: &Caller,
        instance_id: &str,
        terminate_on_failure: bool,
    ) {
        let Some(rt) = self.runtime.as_ref() else {
            return;
        };
        let lc = rt.lifecycle_lock(instance_id);
        let _guard = lc.lock().unwrap_or_else(|p| p.into_inner());
        if self.instance_state(instance_id) != Some(InstanceState::Pending) {
            return;
        }
        // A snapshot being taken of one of its volumes must finish first.
        loop {
            let busy = self.registry.read().map(|s| {
                let vols: Vec<&str> = s
                    .attached_volumes(instance_id)
                    .iter()
                    .map(|v| v.volume_id.as_str())
                    .collect();
                s.snapshots.values().any(|sn| {
                    sn.state == SnapshotState::Pending && vols.contains(&sn.volume_id.as_str())
                })
            });
            match busy {
                Ok(true) => std::thread::sleep(Duration::from_millis(100)),
                _ => break,
            }
        }
        let (inst, vols) = match self.registry.read() {
            Ok(s) => match s.instances.get(instance_id) {
                Some(i) => (
                    i.clone(),
                    s.attached_volumes(instance_id)
                        .iter()
                        .map(|v| v.volume_id.clone())
                        .collect::<Vec<_>>(),
                ),
                None => return,
            },
            Err(e) => {
                tracing::error!(instance = %instance_id, "cannot read the registry: {e}");
                self.set_instance(
                    instance_id,
                    InstanceState::Stopped,
                    Some(StateReason::client_error_on_launch()),
                );
                return;
            }
        };
        let mut served: Vec<String> = Vec::new();
        let mut failure: Option<Ec2Error> = None;
        for vol in &vols {
            match self.serve_attached(caller, instance_id, vol, false) {
                Ok(path) => {
                    tracing::info!(instance = %instance_id, volume = %vol, "serving {}", path.display());
                    served.push(vol.clone());
                }
                Err(e) => {
                    tracing::warn!(instance = %instance_id, volume = %vol, "launch refused: {e}");
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            if let Some(spec) = &inst.boot {
                let root = self
                    .registry
                    .read()
                    .ok()
                    .and_then(|s| s.root_volume(instance_id).map(|v| v.volume_id.clone()));
                let disk = root.as_ref().and_then(|r| {
                    rt.served_of(instance_id)
                        .into_iter()
                        .find(|(v, _, _)| v == r)
                        .map(|(_, p, _)| p)
                });
                match (root, disk) {
                    (Some(root), Some(disk)) => {
                        let console = self.console_path(instance_id);
                        if let Some(dir) = console.parent() {
                            let _ = plumbing::durable::ensure_dir(dir, 0o700);
                        }
                        if let Err(e) = rt.start_guest(instance_id, spec, &disk, &root, &console) {
                            tracing::warn!(instance = %instance_id, "the guest did not boot: {e}");
                            failure = Some(e.into());
                        } else {
                            self.watch_guest(instance_id);
                        }
                    }
                    _ => failure = Some(Ec2Error::internal("the root volume is not served")),
                }
            }
        }
        match failure {
            None => self.set_instance(instance_id, InstanceState::Running, None),
            Some(e) => {
                for vol in served.iter().rev() {
                    if let Err(e) = self.unserve_attached(instance_id, vol, true) {
                        tracing::error!(instance = %instance_id, volume = %vol, "cannot stop serving after a failed launch: {e}");
                    }
                }
                let reason = launch_failure_reason(&e);
                if terminate_on_failure {
                    self.finish_termination(instance_id, reason);
                } else {
                    self.set_instance(instance_id, InstanceState::Stopped, Some(reason));
                }
            }
        }
    }

    /// Stops the guest (if any), stops serving every volume, retires the grants,
    /// forgets the keys; then `final_state` with `reason`.
    pub(crate) fn halt(
        self: &Arc<Self>,
        instance_id: &str,
        final_state: InstanceState,
        reason: Option<StateReason>,
    ) {
        let Some(rt) = self.runtime.as_ref() else {
            self.set_instance(instance_id, final_state, reason);
            return;
        };
        let lc = rt.lifecycle_lock(instance_id);
        let _guard = lc.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = rt.stop_guest(instance_id) {
            tracing::error!(instance = %instance_id, "stopping the guest: {e}");
        }
        for (vol, _, _) in rt.served_of(instance_id) {
            if let Err(e) = self.unserve_attached(instance_id, &vol, true) {
                tracing::error!(instance = %instance_id, volume = %vol, "cannot stop serving: {e}");
            }
        }
        self.set_instance(instance_id, final_state, reason);
    }

    /// When qemu exits on its own (guest power-off, panic), the instance stops.
    fn watch_guest(self: &Arc<Self>, instance_id: &str) {
        let id = instance_id.to_string();
        self.spawn(&format!("watch-{id}"), move |svc| {
            let Some(rt) = svc.runtime.as_ref() else {
                return;
            };
            rt.wait_guest(&id);
            if svc.instance_state(&id) == Some(InstanceState::Running) {
                svc.halt(
                    &id,
                    InstanceState::Stopped,
                    Some(StateReason {
                        code: "Client.InstanceInitiatedShutdown".into(),
                        message: "Client.InstanceInitiatedShutdown: Instance initiated shutdown"
                            .into(),
                    }),
                );
            }
        });
    }
}
