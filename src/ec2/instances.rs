//! RunInstances, DescribeInstances, StartInstances, StopInstances, TerminateInstances,
//! GetConsoleOutput, and the launch/halt sequences behind them.
//!
//! Launch (after `pending` is answered): for each attached volume, root first: if
//! encrypted, CreateGrant on the caller's behalf for the instance, Decrypt as that
//! grantee, open the image with the key, serve it through the mount; then boot the
//! guest if the instance has a boot profile (`running` once its line appears). Any
//! refusal undoes what was served and leaves the instance `stopped` with
//! `Client.InternalError`; nothing on disk is written by a failed launch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{Ec2Code, Ec2Error};
use super::filters;
use super::ids::{self, IdKind};
use super::kms::WrappedKey;
use super::model::{
    self, Attachment, AttachmentState, BootSpec, Instance, InstanceState, SnapshotState,
    StateReason, Volume, VolumeState, LOCAL_INSTANCE_ID, ROOT_DEVICE,
};
use super::protocol::{
    BlockDeviceView, Filter, InstanceView, Response, RootSource, RunInstancesRequest, StateChange,
};
use super::rules;
use super::service::{validate_tags, Caller, Ec2Service};
use super::storage;
use super::volumes::GIB;
use crate::volume::VolumeImage;

/// How long a guest may take to print its ready line.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a guest gets to power off before qemu is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A local "AMI": a directory from `scripts/make-guest.sh` (root.img, vmlinuz,
/// initrd.img) or a bare raw disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    pub image_id: String,
    pub root: PathBuf,
    pub boot: Option<BootSpec>,
}

pub fn resolve_image(path: &Path) -> Result<LocalImage, Ec2Error> {
    let not_found = |why: &str| {
        Ec2Error::new(
            Ec2Code::InvalidAmiIdNotFound,
            format!("The image '{}' does not exist: {why}", path.display()),
        )
    };
    let canon = path.canonicalize().map_err(|e| not_found(&e.to_string()))?;
    let image_id = ids::derived_id(IdKind::Image, canon.as_os_str().as_encoded_bytes());
    if canon.is_dir() {
        let root = canon.join("root.img");
        if !root.is_file() {
            return Err(not_found(
                "the directory has no root.img (build it with scripts/make-guest.sh)",
            ));
        }
        let kernel = canon.join("vmlinuz");
        let initrd = canon.join("initrd.img");
        let boot = (kernel.is_file() && initrd.is_file()).then_some(BootSpec { kernel, initrd });
        Ok(LocalImage {
            image_id,
            root,
            boot,
        })
    } else if canon.is_file() {
        Ok(LocalImage {
            image_id,
            root: canon,
            boot: None,
        })
    } else {
        Err(not_found("not a file or directory"))
    }
}

/// Whether `uid`/`gid` may read `path` by its mode bits. The service runs as root and
/// copies or boots image files for callers, so it must not read for them what they
/// could not read themselves. (Conservative: supplementary groups and ACLs are not
/// considered; such a caller is refused and can copy the image somewhere readable.)
pub fn may_read(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    if uid == 0 {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.mode();
            (m.uid() == uid && mode & 0o400 != 0)
                || (m.gid() == gid && mode & 0o040 != 0)
                || mode & 0o004 != 0
        }
        Err(_) => false,
    }
}

fn check_readable(img: &LocalImage, caller: &Caller) -> Result<(), Ec2Error> {
    let mut files = vec![img.root.clone()];
    if let Some(b) = &img.boot {
        files.push(b.kernel.clone());
        files.push(b.initrd.clone());
    }
    for f in files {
        if !may_read(&f, caller.uid, caller.gid) {
            return Err(Ec2Error::new(
                Ec2Code::UnauthorizedOperation,
                format!(
                    "You are not authorized to use {}: uid {} cannot read it",
                    f.display(),
                    caller.uid
                ),
            ));
        }
    }
    Ok(())
}

impl Ec2Service {
    fn console_path(&self, instance_id: &str) -> PathBuf {
        self.layout
            .log_dir()
            .join("console")
            .join(format!("{instance_id}.log"))
    }

    fn view(&self, state: &model::State, i: &Instance) -> InstanceView {
        let block_devices = state
            .attached_volumes(&i.instance_id)
            .iter()
            .filter_map(|v| {
                v.attachment.as_ref().map(|a| BlockDeviceView {
                    device_name: a.device.clone(),
                    volume_id: v.volume_id.clone(),
                    status: a.state.as_str().into(),
                    attach_time: a.attach_time.clone(),
                    delete_on_termination: a.delete_on_termination,
                })
            })
            .collect();
        InstanceView {
            instance: i.clone(),
            block_devices,
            owner_id: self.account.clone(),
        }
    }

    pub(crate) fn run_instances(
        self: &Arc<Self>,
        caller: &Caller,
        r: RunInstancesRequest,
    ) -> Result<Response, Ec2Error> {
        self.require_runtime("RunInstances")?;
        validate_tags(&r.tags)?;
        validate_tags(&r.volume_tags)?;
        let zone = r
            .availability_zone
            .clone()
            .unwrap_or_else(|| self.default_zone());
        rules::validate_zone(&zone, &self.region)?;
        let instance_id = ids::new_id(IdKind::Instance);
        let reservation_id = ids::new_id(IdKind::Reservation);
        let now = model::now_timestamp();
        let mut boot = None;
        let mut image_id = "ami-00000000000000000".to_string();
        if let Some(p) = &r.boot_image {
            let img = resolve_image(p)?;
            check_readable(&img, caller)?;
            boot = img.boot;
            image_id = img.image_id;
        }
        // A fresh root volume from an image, or an existing one.
        let (root_id, new_root) = match &r.root {
            RootSource::Image(path) => {
                let img = resolve_image(path)?;
                check_readable(&img, caller)?;
                if r.boot_image.is_none() {
                    boot = img.boot.clone();
                    image_id = img.image_id.clone();
                }
                let len = std::fs::metadata(&img.root)
                    .map_err(|e| Ec2Error::io(&format!("cannot stat {}", img.root.display()), &e))?
                    .len();
                let size_gib = match r.root_size_gib {
                    Some(s) if s.saturating_mul(GIB) < len => {
                        return Err(Ec2Error::invalid_parameter(format!(
                            "Volume of {s}GiB is smaller than the image ({len} bytes)"
                        )))
                    }
                    Some(s) => s,
                    None => len.div_ceil(GIB).max(1),
                };
                if size_gib == 0 || size_gib > rules::MAX_VOLUME_GIB {
                    return Err(Ec2Error::invalid_parameter(format!(
                        "Root volume of {size_gib}GiB is out of range"
                    )));
                }
                let vol_id = ids::new_id(IdKind::Volume);
                storage::import_raw(
                    &self.layout,
                    &vol_id,
                    size_gib.saturating_mul(GIB),
                    &img.root,
                )?;
                let vol = Volume {
                    volume_id: vol_id.clone(),
                    size_gib,
                    availability_zone: zone.clone(),
                    state: VolumeState::InUse,
                    encrypted: false,
                    kms_key_id: None,
                    snapshot_id: None,
                    create_time: now.clone(),
                    tags: r.volume_tags.clone(),
                    attachment: None,
                    progress: 100,
                    worker: None,
                    error_message: None,
                };
                (vol_id, Some(vol))
            }
            RootSource::Volume(id) => (id.clone(), None),
        };
        let instance = Instance {
            instance_id: instance_id.clone(),
            reservation_id: reservation_id.clone(),
            image_id,
            instance_type: r.instance_type.clone().unwrap_or_else(|| "t3.micro".into()),
            state: InstanceState::Pending,
            state_reason: Some(StateReason {
                code: "pending".into(),
                message: "pending".into(),
            }),
            state_transition_reason: String::new(),
            availability_zone: zone.clone(),
            launch_time: now.clone(),
            tags: r.tags.clone(),
            owner_arn: caller.principal.clone(),
            owner_uid: caller.uid,
            owner_gid: caller.gid,
            boot,
        };
        let attachment = Attachment {
            instance_id: instance_id.clone(),
            device: ROOT_DEVICE.into(),
            state: AttachmentState::Attached,
            attach_time: now.clone(),
            delete_on_termination: new_root.is_some(),
            local_owner: None,
        };
        let res = self.registry.update(|s| {
            if let Some(v) = &new_root {
                s.volumes.insert(v.volume_id.clone(), v.clone());
            } else {
                let v = rules::volume(s, &root_id)?;
                if v.availability_zone != zone {
                    return Err(Ec2Error::new(
                        Ec2Code::InvalidVolumeZoneMismatch,
                        format!("The volume '{root_id}' is not in availability zone {zone}"),
                    ));
                }
                if v.attachment.is_some() || v.state != VolumeState::Available {
                    return Err(Ec2Error::new(
                        Ec2Code::VolumeInUse,
                        format!("{root_id} is not available (it is '{}')", v.state.as_str()),
                    ));
                }
            }
            s.instances.insert(instance_id.clone(), instance.clone());
            if let Some(v) = s.volumes.get_mut(&root_id) {
                v.state = VolumeState::InUse;
                v.attachment = Some(attachment.clone());
                merge_volume_tags(v, &r.volume_tags);
            }
            Ok(self.view(s, &instance))
        });
        let view = match res {
            Ok(v) => v,
            Err(e) => {
                if new_root.is_some() {
                    storage::discard_volume(&self.layout, &root_id);
                }
                return Err(e);
            }
        };
        self.kms.record_event(
            caller,
            "RunInstances",
            std::slice::from_ref(&instance_id),
            None,
        );
        let c = caller.clone();
        let id = instance_id.clone();
        self.spawn(&format!("launch-{id}"), move |svc| svc.launch(&c, &id));
        Ok(Response::Reservation {
            reservation_id,
            owner_id: self.account.clone(),
            instances: vec![view],
        })
    }

    pub(crate) fn describe_instances(
        &self,
        ids: &[String],
        filters: &[Filter],
    ) -> Result<Response, Ec2Error> {
        let state = self.registry.read()?;
        for id in ids {
            rules::instance(&state, id)?;
        }
        let mut out = Vec::new();
        for i in state.instances.values() {
            let listed = ids.contains(&i.instance_id);
            if !ids.is_empty() && !listed {
                continue;
            }
            // The dev box itself is shown only when asked for by name.
            if i.instance_id == LOCAL_INSTANCE_ID && !listed {
                continue;
            }
            let v = self.view(&state, i);
            if filters::instance_matches(i, &v.block_devices, filters)? {
                out.push(v);
            }
        }
        Ok(Response::Instances {
            owner_id: self.account.clone(),
            instances: out,
        })
    }

    pub(crate) fn start_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
    ) -> Result<Response, Ec2Error> {
        self.require_runtime("StartInstances")?;
        let changes = self.registry.update(|s| {
            let mut changes = Vec::new();
            for id in ids {
                let start = rules::check_start(s, id)?;
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(Ec2Error::instance_not_found(id));
                };
                let previous = i.state;
                if start {
                    i.state = InstanceState::Pending;
                    i.state_reason = Some(StateReason {
                        code: "pending".into(),
                        message: "pending".into(),
                    });
                    i.state_transition_reason = String::new();
                }
                changes.push((
                    start,
                    StateChange {
                        instance_id: id.clone(),
                        previous,
                        current: i.state,
                    },
                ));
            }
            Ok(changes)
        });
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                self.kms
                    .record_event(caller, "StartInstances", ids, Some(&e));
                return Err(e);
            }
        };
        // The trail sees StartInstances before any CreateGrant the launch makes.
        self.kms.record_event(caller, "StartInstances", ids, None);
        for (start, c) in &changes {
            if *start {
                let caller = caller.clone();
                let id = c.instance_id.clone();
                self.spawn(&format!("launch-{id}"), move |svc| svc.launch(&caller, &id));
            }
        }
        Ok(Response::StateChanges(
            changes.into_iter().map(|(_, c)| c).collect(),
        ))
    }

    pub(crate) fn stop_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
        _force: bool,
    ) -> Result<Response, Ec2Error> {
        let changes = self.registry.update(|s| {
            let mut changes = Vec::new();
            for id in ids {
                let stop = rules::check_stop(s, id)?;
                if stop {
                    self.require_runtime("StopInstances")?;
                }
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(Ec2Error::instance_not_found(id));
                };
                let previous = i.state;
                if stop {
                    i.state = InstanceState::Stopping;
                    i.state_transition_reason = model::user_initiated_reason();
                }
                changes.push((
                    stop,
                    StateChange {
                        instance_id: id.clone(),
                        previous,
                        current: i.state,
                    },
                ));
            }
            Ok(changes)
        })?;
        self.kms.record_event(caller, "StopInstances", ids, None);
        for (stop, c) in &changes {
            if *stop {
                let id = c.instance_id.clone();
                self.spawn(&format!("stop-{id}"), move |svc| {
                    svc.halt(
                        &id,
                        InstanceState::Stopped,
                        Some(StateReason::user_initiated_shutdown()),
                    );
                });
            }
        }
        Ok(Response::StateChanges(
            changes.into_iter().map(|(_, c)| c).collect(),
        ))
    }

    pub(crate) fn terminate_instances(
        self: &Arc<Self>,
        caller: &Caller,
        ids: &[String],
    ) -> Result<Response, Ec2Error> {
        let changes = self.registry.update(|s| {
            let mut changes = Vec::new();
            for id in ids {
                let term = rules::check_terminate(s, id)?;
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(Ec2Error::instance_not_found(id));
                };
                let previous = i.state;
                if term {
                    if previous != InstanceState::Stopped {
                        self.require_runtime("TerminateInstances of a running instance")?;
                    }
                    i.state = InstanceState::ShuttingDown;
                    i.state_transition_reason = model::user_initiated_reason();
                }
                changes.push((
                    term,
                    StateChange {
                        instance_id: id.clone(),
                        previous,
                        current: i.state,
                    },
                ));
            }
            Ok(changes)
        })?;
        self.kms
            .record_event(caller, "TerminateInstances", ids, None);
        for (term, c) in &changes {
            if *term {
                let id = c.instance_id.clone();
                let was_stopped = c.previous == InstanceState::Stopped;
                if was_stopped || self.runtime.is_none() {
                    self.finish_termination(&id);
                } else {
                    self.spawn(&format!("terminate-{id}"), move |svc| {
                        svc.halt(
                            &id,
                            InstanceState::ShuttingDown,
                            Some(StateReason::user_initiated_shutdown()),
                        );
                        svc.finish_termination(&id);
                    });
                }
            }
        }
        Ok(Response::StateChanges(
            changes.into_iter().map(|(_, c)| c).collect(),
        ))
    }

    /// Deletes the delete-on-termination volumes, detaches the rest: `terminated`.
    fn finish_termination(&self, instance_id: &str) {
        let res = self.registry.update(|s| {
            let mut doomed = Vec::new();
            for v in s.volumes.values_mut() {
                if let Some(a) = &v.attachment {
                    if a.instance_id == instance_id {
                        if a.delete_on_termination {
                            doomed.push(v.volume_id.clone());
                        } else {
                            v.attachment = None;
                            v.state = VolumeState::Available;
                        }
                    }
                }
            }
            for id in &doomed {
                s.volumes.remove(id);
            }
            if let Some(i) = s.instances.get_mut(instance_id) {
                i.state = InstanceState::Terminated;
                i.state_reason = Some(StateReason {
                    code: "Client.UserInitiatedShutdown".into(),
                    message: "Client.UserInitiatedShutdown: User initiated shutdown".into(),
                });
            }
            Ok(doomed)
        });
        match res {
            Ok(doomed) => {
                for id in doomed {
                    storage::discard_volume(&self.layout, &id);
                }
            }
            Err(e) => tracing::error!(instance = %instance_id, "cannot record termination: {e}"),
        }
    }

    pub(crate) fn get_console_output(&self, instance_id: &str) -> Result<Response, Ec2Error> {
        let state = self.registry.read()?;
        rules::instance(&state, instance_id)?;
        // The last 64 KiB of the serial log, cleaned (AWS's cap); empty if it never booted.
        let output = crate::boot::console::console_output(&self.console_path(instance_id));
        Ok(Response::ConsoleOutput {
            instance_id: instance_id.into(),
            output,
            timestamp: model::now_timestamp(),
        })
    }

    // ---- serving one volume ------------------------------------------------------

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
        let path = storage::image_path(&self.layout, volume_id);
        let header = VolumeImage::read_header(&path).map_err(|e| {
            Ec2Error::internal(format!("cannot read the header of {volume_id}: {e}"))
        })?;
        if header.volume_id() != volume_id {
            return Err(Ec2Error::internal(format!(
                "image {} belongs to {}, not {volume_id}",
                path.display(),
                header.volume_id()
            )));
        }
        let (uid, gid, owner) = if instance_id == LOCAL_INSTANCE_ID {
            (caller.uid, caller.gid, caller.principal.clone())
        } else {
            (inst.owner_uid, inst.owner_gid, inst.owner_arn.clone())
        };
        let (key, grant) = if header.cipher().is_encrypted() {
            let wrapped = WrappedKey {
                blob: header.params.wrapped_key.clone(),
                key_arn: header.params.key_arn.clone(),
                context: header.params.encryption_context.clone(),
            };
            let grant = self.kms.create_instance_grant(
                caller,
                (instance_id, &owner),
                volume_id,
                &wrapped,
            )?;
            let key = self
                .kms
                .decrypt_for_instance(&wrapped, &grant)
                .and_then(|plain| storage::xts_key(&plain));
            match key {
                Ok(k) => (Some(k), Some(grant)),
                Err(e) => {
                    self.kms.retire_grant(&grant);
                    return Err(e);
                }
            }
        } else {
            (None, None)
        };
        let image = match VolumeImage::open(&path, key) {
            Ok(i) => i,
            Err(e) => {
                if let Some(g) = &grant {
                    self.kms.retire_grant(g);
                }
                return Err(Ec2Error::internal(format!("cannot open {volume_id}: {e}")));
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
        .inspect_err(|_| {
            if let Some(g) = &grant {
                self.kms.retire_grant(g);
            }
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

    /// The launch sequence of one `pending` instance (background).
    pub(crate) fn launch(self: &Arc<Self>, caller: &Caller, instance_id: &str) {
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
                            failure = Some(e);
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
                let reason = match e.code {
                    Ec2Code::Kms(_) => StateReason::client_error_on_launch(),
                    _ => StateReason {
                        code: "Server.InternalError".into(),
                        message: format!("Server.InternalError: {}", e.message),
                    },
                };
                self.set_instance(instance_id, InstanceState::Stopped, Some(reason));
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

fn merge_volume_tags(v: &mut Volume, tags: &[model::Tag]) {
    model::merge_tags(&mut v.tags, tags);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_service_reads_images_only_for_callers_who_could() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("root.img");
        std::fs::write(&f, b"x").unwrap();
        // SAFETY: getuid/getgid cannot fail.
        let (me, my_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(may_read(&f, 0, 0));
        assert!(may_read(&f, me, my_gid) || me != 0);
        let stranger = 4242;
        assert_eq!(may_read(&f, stranger, stranger), me == stranger);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(may_read(&f, stranger, stranger));
        assert!(!may_read(&dir.path().join("missing"), stranger, stranger));
        let img = resolve_image(&f).unwrap();
        assert!(img.image_id.starts_with("ami-") && img.boot.is_none());
        assert_eq!(
            resolve_image(&dir.path().join("nope"))
                .unwrap_err()
                .code
                .as_str(),
            "InvalidAMIID.NotFound"
        );
    }
}
