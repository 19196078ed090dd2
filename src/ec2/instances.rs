//! RunInstances, DescribeInstances, StartInstances, StopInstances, TerminateInstances,
//! GetConsoleOutput. The launch and halt sequences behind them are in
//! [`super::launch`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::api::{
    self, BlockDeviceMapping, DescribeInstancesRequest, DescribeInstancesResult,
    GetConsoleOutputRequest, GetConsoleOutputResult, InstanceStateChange, Reservation,
    RunInstancesRequest, StartInstancesRequest, StartInstancesResult, StopInstancesRequest,
    StopInstancesResult, TerminateInstancesRequest, TerminateInstancesResult,
};
use super::error::{Ec2Code, Ec2Error};
use super::filters;
use super::ids::{self, IdKind};
use super::images::visible_image;
use super::launch::launch_failure_reason;
use super::model::{
    self, canonical_device, Attachment, AttachmentState, BootSpec, Caller, Instance, InstanceState,
    State, StateReason, Volume, VolumeState, GIB, LOCAL_INSTANCE_ID, ROOT_DEVICE,
};
use super::rules;
use super::service::Ec2Service;
use super::storage;
use super::worker;

/// The smallest `MaxResults` DescribeInstances takes.
const MIN_PAGE: i64 = 5;

/// Where a new instance's root volume comes from.
enum RootSource {
    /// A local image (see [`resolve_image`]): its content is copied into a new
    /// unencrypted root volume.
    Image(PathBuf),
    /// An existing available volume in the same zone becomes the root.
    Volume(String),
    /// A registered AMI (`ami-...`): the root volume is restored from its root snapshot.
    Ami(String),
}

/// The root volume of an instance launched from an AMI, made in the background before
/// the launch: its data key, then the snapshot's data restored into it.
struct RootRestore {
    volume_id: String,
    snapshot: model::Snapshot,
    /// The KMS key to make the volume's data key under (None: unencrypted).
    key_id: Option<String>,
    size_bytes: u64,
}

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

pub(crate) fn check_readable(img: &LocalImage, caller: &Caller) -> Result<(), Ec2Error> {
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

/// The root device's `Ebs` of RunInstances' block device mappings (the only one taken
/// here), if any.
fn root_mapping(mappings: &[BlockDeviceMapping]) -> Result<Option<&api::EbsBlockDevice>, Ec2Error> {
    let mut root = None;
    for m in mappings {
        let dev = m
            .device_name
            .as_deref()
            .ok_or_else(|| Ec2Error::missing_parameter("BlockDeviceMapping.DeviceName"))?;
        if canonical_device(dev) != canonical_device(ROOT_DEVICE) {
            return Err(Ec2Error::invalid_parameter(format!(
                "Invalid device name {dev}: only the root device {ROOT_DEVICE} can be mapped here \
                 (attach more volumes with attach-volume)"
            )));
        }
        root = m.ebs.as_ref();
    }
    Ok(root)
}

impl Ec2Service {
    fn instance_view(state: &State, i: &Instance) -> api::Instance {
        api::Instance::of(i, &state.attached_volumes(&i.instance_id))
    }

    pub(crate) fn run_instances(
        self: &Arc<Self>,
        caller: &Caller,
        r: RunInstancesRequest,
    ) -> Result<Reservation, Ec2Error> {
        self.require_runtime("RunInstances")?;
        for count in [r.min_count, r.max_count].into_iter().flatten() {
            if count != 1 {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Value ({count}) for MinCount/MaxCount: one instance per call here"
                )));
            }
        }
        let tags = rules::spec_tags(&r.tag_specifications, "instance", &["instance", "volume"])?;
        let volume_tags =
            rules::spec_tags(&r.tag_specifications, "volume", &["instance", "volume"])?;
        let root_size_gib = match root_mapping(&r.block_device_mappings)? {
            Some(ebs) => rules::size_gib(ebs.volume_size)?,
            None => None,
        };
        let zone = r
            .placement
            .as_ref()
            .and_then(|p| p.availability_zone.clone())
            .unwrap_or_else(|| self.default_zone());
        rules::validate_zone(&zone, &self.region)?;
        let (root, boot_image) = match (r.root_volume_id.clone(), r.image_id.clone()) {
            (Some(v), img) => (RootSource::Volume(v), r.boot_image.clone().or(img)),
            // Over HTTP an ImageId is an AMI ID, never a path on this machine (the
            // local shortcut is the CLI's: a signer is not a local user).
            (None, Some(img)) if caller.signer.is_some() => (RootSource::Ami(img), None),
            (None, Some(img)) if img.starts_with("ami-") && !Path::new(&img).exists() => {
                (RootSource::Ami(img), r.boot_image.clone())
            }
            (None, Some(img)) => (RootSource::Image(PathBuf::from(img)), r.boot_image.clone()),
            (None, None) => return Err(Ec2Error::missing_parameter("ImageId")),
        };
        let instance_id = ids::new_id(IdKind::Instance);
        let reservation_id = ids::new_id(IdKind::Reservation);
        let now = model::now_timestamp();
        let mut boot = None;
        let mut image_id = "ami-00000000000000000".to_string();
        let account = self.caller_account(caller);
        let mut restore: Option<RootRestore> = None;
        let mut first_use: Option<(model::Image, model::Snapshot)> = None;
        if let Some(p) = &boot_image {
            let img = resolve_image(Path::new(p))?;
            check_readable(&img, caller)?;
            boot = img.boot;
            image_id = img.image_id;
        }
        // A fresh root volume from an image, or an existing one.
        let (root_id, new_root) = match &root {
            RootSource::Image(path) => {
                let img = resolve_image(path)?;
                check_readable(&img, caller)?;
                if boot_image.is_none() {
                    boot = img.boot.clone();
                    image_id = img.image_id.clone();
                }
                let len = storage::source_len(&img.root)?;
                let size_gib = match root_size_gib {
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
                first_use = self.first_use_image(&img, &account, &vol_id, size_gib)?;
                let vol = Volume {
                    volume_id: vol_id.clone(),
                    size_gib,
                    availability_zone: zone.clone(),
                    state: VolumeState::InUse,
                    encrypted: false,
                    kms_key_id: None,
                    snapshot_id: None,
                    create_time: now.clone(),
                    tags: volume_tags.clone(),
                    attachment: None,
                    progress: 100,
                    worker: None,
                    error_message: None,
                    restoring_for: None,
                };
                (vol_id, Some(vol))
            }
            RootSource::Volume(id) => (id.clone(), None),
            RootSource::Ami(id) => {
                let state = self.registry.read()?;
                let image = visible_image(&state, id, &account)?;
                let st = state.image_state(image);
                if st != model::ImageState::Available {
                    return Err(Ec2Error::new(
                        Ec2Code::InvalidAmiIdUnavailable,
                        format!("The image {id} is not available (it is '{}')", st.as_str()),
                    ));
                }
                let dev = image
                    .devices
                    .first()
                    .ok_or_else(|| Ec2Error::internal(format!("{id} has no root device")))?;
                let snap = rules::snapshot(&state, &dev.snapshot_id)?.clone();
                let ebs = root_mapping(&r.block_device_mappings)?;
                let size_gib = match root_size_gib {
                    Some(s) if s < dev.volume_size_gib => {
                        return Err(Ec2Error::invalid_parameter(format!(
                            "Volume of {s}GiB is smaller than snapshot '{}', expect size >= {}GiB",
                            snap.snapshot_id, dev.volume_size_gib
                        )))
                    }
                    Some(s) => s,
                    None => dev.volume_size_gib,
                };
                let want_encrypted = ebs.and_then(|e| e.encrypted);
                let key_given = ebs.and_then(|e| e.kms_key_id.clone());
                if key_given.is_some() && want_encrypted != Some(true) {
                    return Err(Ec2Error::new(
                        Ec2Code::InvalidParameterDependency,
                        "The parameter KmsKeyId requires the parameter Encrypted to be set.",
                    ));
                }
                if want_encrypted == Some(false) && snap.encrypted {
                    return Err(Ec2Error::invalid_parameter(format!(
                        "Snapshot '{}' is encrypted: its volume cannot be unencrypted",
                        snap.snapshot_id
                    )));
                }
                let encrypted = snap.encrypted || want_encrypted == Some(true);
                let key_id = encrypted.then(|| {
                    key_given
                        .or_else(|| snap.kms_key_id.clone())
                        .unwrap_or_else(|| model::DEFAULT_EBS_KEY.to_string())
                });
                boot = image.boot.clone();
                image_id = image.image_id.clone();
                let vol_id = ids::new_id(IdKind::Volume);
                let vol = Volume {
                    volume_id: vol_id.clone(),
                    size_gib,
                    availability_zone: zone.clone(),
                    state: VolumeState::Creating,
                    encrypted,
                    kms_key_id: None,
                    snapshot_id: Some(snap.snapshot_id.clone()),
                    create_time: now.clone(),
                    tags: volume_tags.clone(),
                    attachment: None,
                    progress: 0,
                    worker: Some(self.worker()),
                    error_message: None,
                    restoring_for: None,
                };
                restore = Some(RootRestore {
                    volume_id: vol_id.clone(),
                    snapshot: snap,
                    key_id,
                    size_bytes: size_gib.saturating_mul(GIB),
                });
                (vol_id, Some(vol))
            }
        };
        let delete_on_termination = match &root {
            RootSource::Volume(_) => false,
            RootSource::Image(_) => true,
            RootSource::Ami(_) => root_mapping(&r.block_device_mappings)?
                .and_then(|e| e.delete_on_termination)
                .unwrap_or(true),
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
            tags,
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
            delete_on_termination,
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
                if v.state != VolumeState::Creating {
                    v.state = VolumeState::InUse;
                }
                v.attachment = Some(attachment.clone());
                model::merge_tags(&mut v.tags, &volume_tags);
            }
            if let Some((image, snap)) = &first_use {
                if !s.images.contains_key(&image.image_id) {
                    s.snapshots.insert(snap.snapshot_id.clone(), snap.clone());
                    s.images.insert(image.image_id.clone(), image.clone());
                }
            }
            Ok(Self::instance_view(s, &instance))
        });
        let view = match res {
            Ok(v) => v,
            Err(e) => {
                if new_root.is_some() {
                    storage::discard_volume(&self.layout, &root_id);
                }
                if let Some((image, _)) = &first_use {
                    storage::discard_boot(&self.layout, &image.image_id);
                }
                return Err(e);
            }
        };
        if let Some((image, snap)) = first_use {
            // The image directory's first use: its AMI's snapshot is taken of the new
            // root before the launch serves it (the launch waits for it).
            let (snap_id, vol_id) = (snap.snapshot_id.clone(), root_id.clone());
            tracing::info!(image = %image.image_id, snapshot = %snap_id, "registering {} as an AMI", image.name);
            self.spawn(&format!("snapshot-{snap_id}"), move |svc| {
                let res = storage::create_snapshot(&svc.layout, &snap_id, &vol_id, &mut |pct| {
                    worker::progress::<model::Snapshot>(&svc.registry, &snap_id, pct)
                })
                .map_err(Ec2Error::from);
                worker::finish::<model::Snapshot>(&svc.registry, &svc.layout, &snap_id, res);
            });
            self.kms.record_event(
                caller,
                "RegisterImage",
                std::slice::from_ref(&image.image_id),
                None,
            );
        }
        self.kms.record_event(
            caller,
            "RunInstances",
            std::slice::from_ref(&instance_id),
            None,
        );
        let c = caller.clone();
        let id = instance_id.clone();
        self.spawn(&format!("launch-{id}"), move |svc| match restore {
            None => svc.launch(&c, &id, false),
            Some(rr) => match svc.restore_root(&c, &rr) {
                // An instance of an AMI that cannot launch terminates, as on EC2.
                Ok(()) => svc.launch(&c, &id, true),
                Err(e) => {
                    tracing::warn!(instance = %id, "launch refused: {e}");
                    svc.finish_termination(&id, launch_failure_reason(&e));
                }
            },
        });
        Ok(Reservation {
            groups: Vec::new(),
            instances: vec![view],
            owner_id: self.account.clone(),
            reservation_id,
        })
    }

    pub(crate) fn describe_instances(
        &self,
        r: DescribeInstancesRequest,
    ) -> Result<DescribeInstancesResult, Ec2Error> {
        let state = self.registry.read()?;
        for id in &r.instance_ids {
            rules::instance(&state, id)?;
        }
        let mut out = Vec::new();
        for i in state.instances.values() {
            let listed = r.instance_ids.contains(&i.instance_id);
            if !r.instance_ids.is_empty() && !listed {
                continue;
            }
            // The dev box itself is shown only when asked for by name.
            if i.instance_id == LOCAL_INSTANCE_ID && !listed {
                continue;
            }
            let attached = state.attached_volumes(&i.instance_id);
            if filters::instance_matches(i, &attached, &r.filters)? {
                out.push(i);
            }
        }
        let (page, next_token) = rules::page(
            out,
            |i| &i.instance_id,
            !r.instance_ids.is_empty(),
            r.max_results,
            r.next_token.as_deref(),
            MIN_PAGE,
        )?;
        // Grouped by reservation, in first-seen order.
        let mut reservations: Vec<Reservation> = Vec::new();
        for i in page {
            let view = Self::instance_view(&state, i);
            match reservations
                .iter_mut()
                .find(|res| res.reservation_id == i.reservation_id)
            {
                Some(res) => res.instances.push(view),
                None => reservations.push(Reservation {
                    groups: Vec::new(),
                    instances: vec![view],
                    owner_id: self.account.clone(),
                    reservation_id: i.reservation_id.clone(),
                }),
            }
        }
        Ok(DescribeInstancesResult {
            reservations,
            next_token,
        })
    }

    /// Moves each of `ids` that `check` says should move (`apply` moves it), under one
    /// registry update; nothing changes if any is refused. Per instance: whether it
    /// moved, its previous state, and the change as EC2 answers it.
    fn transition(
        &self,
        ids: &[String],
        check: impl Fn(&State, &str) -> Result<bool, Ec2Error>,
        apply: impl Fn(&mut Instance) -> Result<(), Ec2Error>,
    ) -> Result<Vec<(bool, InstanceState, InstanceStateChange)>, Ec2Error> {
        self.registry.update(|s| {
            let mut changes = Vec::new();
            for id in ids {
                let moves = check(s, id)?;
                let Some(i) = s.instances.get_mut(id) else {
                    return Err(Ec2Error::instance_not_found(id));
                };
                let previous = i.state;
                if moves {
                    apply(i)?;
                }
                changes.push((
                    moves,
                    previous,
                    InstanceStateChange {
                        current_state: i.state.into(),
                        instance_id: id.clone(),
                        previous_state: previous.into(),
                    },
                ));
            }
            Ok(changes)
        })
    }

    pub(crate) fn start_instances(
        self: &Arc<Self>,
        caller: &Caller,
        r: StartInstancesRequest,
    ) -> Result<StartInstancesResult, Ec2Error> {
        self.require_runtime("StartInstances")?;
        let ids = &r.instance_ids;
        let changes = self.transition(ids, rules::check_start, |i| {
            i.state = InstanceState::Pending;
            i.state_reason = Some(StateReason {
                code: "pending".into(),
                message: "pending".into(),
            });
            i.state_transition_reason = String::new();
            Ok(())
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
        for (start, _, c) in &changes {
            if *start {
                let caller = caller.clone();
                let id = c.instance_id.clone();
                self.spawn(&format!("launch-{id}"), move |svc| {
                    svc.launch(&caller, &id, false)
                });
            }
        }
        Ok(StartInstancesResult {
            starting_instances: changes.into_iter().map(|(_, _, c)| c).collect(),
        })
    }

    pub(crate) fn stop_instances(
        self: &Arc<Self>,
        caller: &Caller,
        r: StopInstancesRequest,
    ) -> Result<StopInstancesResult, Ec2Error> {
        let ids = &r.instance_ids;
        let changes = self.transition(ids, rules::check_stop, |i| {
            self.require_runtime("StopInstances")?;
            i.state = InstanceState::Stopping;
            i.state_transition_reason = model::user_initiated_reason();
            Ok(())
        })?;
        self.kms.record_event(caller, "StopInstances", ids, None);
        for (stop, _, c) in &changes {
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
        Ok(StopInstancesResult {
            stopping_instances: changes.into_iter().map(|(_, _, c)| c).collect(),
        })
    }

    pub(crate) fn terminate_instances(
        self: &Arc<Self>,
        caller: &Caller,
        r: TerminateInstancesRequest,
    ) -> Result<TerminateInstancesResult, Ec2Error> {
        let ids = &r.instance_ids;
        let changes = self.transition(ids, rules::check_terminate, |i| {
            if i.state != InstanceState::Stopped {
                self.require_runtime("TerminateInstances of a running instance")?;
            }
            i.state = InstanceState::ShuttingDown;
            i.state_transition_reason = model::user_initiated_reason();
            Ok(())
        })?;
        self.kms
            .record_event(caller, "TerminateInstances", ids, None);
        for (term, previous, c) in &changes {
            if *term {
                let id = c.instance_id.clone();
                if *previous == InstanceState::Stopped || self.runtime.is_none() {
                    self.finish_termination(&id, StateReason::user_initiated_shutdown());
                } else {
                    self.spawn(&format!("terminate-{id}"), move |svc| {
                        svc.halt(
                            &id,
                            InstanceState::ShuttingDown,
                            Some(StateReason::user_initiated_shutdown()),
                        );
                        svc.finish_termination(&id, StateReason::user_initiated_shutdown());
                    });
                }
            }
        }
        Ok(TerminateInstancesResult {
            terminating_instances: changes.into_iter().map(|(_, _, c)| c).collect(),
        })
    }

    /// The root volume of an AMI's instance: its data key under `rr.key_id` (on the
    /// caller's behalf: GenerateDataKeyWithoutPlaintext), then the snapshot's data
    /// restored into it (Decrypt of both keys on the caller's behalf). A refusal leaves
    /// the volume `error`, its partial image removed.
    fn restore_root(self: &Arc<Self>, caller: &Caller, rr: &RootRestore) -> Result<(), Ec2Error> {
        let res = (|| {
            let data_key = match &rr.key_id {
                Some(k) => Some(self.kms.new_data_key(caller, k, &rr.volume_id)?),
                None => None,
            };
            if let Some(k) = &data_key {
                self.registry.update(|s| {
                    if let Some(v) = s.volumes.get_mut(&rr.volume_id) {
                        v.kms_key_id = Some(k.key_arn.clone());
                    }
                    Ok(())
                })?;
            }
            self.restore_into(
                caller,
                &rr.snapshot,
                &rr.volume_id,
                rr.size_bytes,
                data_key.as_ref(),
            )
        })();
        worker::finish::<Volume>(&self.registry, &self.layout, &rr.volume_id, res.clone());
        res
    }

    /// The first use of a local image directory (or file) registers it as an AMI owned
    /// by `account`: its boot profile copied, and a snapshot (pending) of the root
    /// volume just imported from it. None if it is registered already (or its derived
    /// ID is another account's).
    fn first_use_image(
        &self,
        img: &LocalImage,
        account: &str,
        root_volume_id: &str,
        size_gib: u64,
    ) -> Result<Option<(model::Image, model::Snapshot)>, Ec2Error> {
        if self.registry.read()?.images.contains_key(&img.image_id) {
            return Ok(None);
        }
        let dir = img
            .root
            .parent()
            .filter(|_| img.boot.is_some())
            .unwrap_or(&img.root);
        let name: String = dir
            .display()
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(128)
            .collect();
        let boot = match &img.boot {
            Some(b) => Some(storage::store_boot(&self.layout, &img.image_id, b)?),
            None => None,
        };
        let now = model::now_timestamp();
        let snapshot_id = ids::new_id(IdKind::Snapshot);
        let snap = model::Snapshot {
            snapshot_id: snapshot_id.clone(),
            volume_id: root_volume_id.to_string(),
            state: model::SnapshotState::Pending,
            progress: 0,
            start_time: now.clone(),
            encrypted: false,
            kms_key_id: None,
            volume_size_gib: size_gib,
            description: format!("Created for {} from {}", img.image_id, dir.display()),
            owner_id: account.to_string(),
            tags: Vec::new(),
            worker: Some(self.worker()),
            state_message: None,
            create_volume_permissions: Vec::new(),
        };
        let image = model::Image {
            image_id: img.image_id.clone(),
            name,
            description: Some(format!(
                "Registered on first use of the local image {}",
                dir.display()
            )),
            owner_id: account.to_string(),
            creation_date: now,
            root_device_name: ROOT_DEVICE.into(),
            devices: vec![model::ImageDevice {
                device_name: ROOT_DEVICE.into(),
                snapshot_id,
                volume_size_gib: size_gib,
                delete_on_termination: true,
            }],
            boot,
            launch_permissions: Vec::new(),
            tags: Vec::new(),
            source_image_id: None,
            source_dir: Some(dir.to_path_buf()),
        };
        Ok(Some((image, snap)))
    }

    /// Deletes the delete-on-termination volumes, detaches the rest: `terminated`
    /// with `reason`.
    pub(crate) fn finish_termination(&self, instance_id: &str, reason: StateReason) {
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
                i.state_reason = Some(reason.clone());
            }
            Ok(doomed)
        });
        match res {
            Ok(doomed) => {
                for id in doomed {
                    self.cancel_restore(&id);
                    storage::discard_volume(&self.layout, &id);
                }
            }
            Err(e) => tracing::error!(instance = %instance_id, "cannot record termination: {e}"),
        }
    }

    pub(crate) fn get_console_output(
        &self,
        r: GetConsoleOutputRequest,
    ) -> Result<GetConsoleOutputResult, Ec2Error> {
        let state = self.registry.read()?;
        rules::instance(&state, &r.instance_id)?;
        // The last 64 KiB of the serial log, cleaned (AWS's cap); empty if it never booted.
        let output = crate::boot::console::console_output(&self.console_path(&r.instance_id));
        Ok(GetConsoleOutputResult {
            instance_id: r.instance_id,
            output,
            timestamp: model::now_timestamp(),
        })
    }
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
