//! RegisterImage, DescribeImages, DeregisterImage, ModifyImageAttribute,
//! DescribeImageAttribute, CopyImage, and the snapshot attributes that share an AMI's
//! storage (ModifySnapshotAttribute, DescribeSnapshotAttribute).
//!
//! An AMI is a registry record naming its snapshots (the root at `/dev/xvda`) and a
//! boot profile (a kernel and an initrd copied into `HOME/ec2/images/AMI-ID/`). Its
//! state is its snapshots' ([`model::State::image_state`]). Accounts are the
//! callers' (the account of their principal ARN): an AMI is visible to its owner and to
//! the accounts its launch permission names; anyone else is told it does not exist, as
//! EC2 does. Launching one is [`super::instances`]'s RunInstances.

use std::path::Path;
use std::sync::Arc;

use super::api::{
    self, BlockDeviceMapping, CopyImageRequest, CopyImageResult, CreateVolumePermission,
    DeregisterImageRequest, DescribeImageAttributeRequest, DescribeImagesRequest,
    DescribeImagesResult, DescribeSnapshotAttributeRequest, DescribeSnapshotAttributeResult,
    EbsBlockDevice, ImageAttribute, LaunchPermission, ModifyImageAttributeRequest,
    ModifySnapshotAttributeRequest, RegisterImageRequest, RegisterImageResult,
};
use super::error::{Ec2Code, Ec2Error};
use super::filters;
use super::ids::{self, IdKind};
use super::instances::{check_readable, resolve_image};
use super::kms::account_of;
use super::model::{
    self, canonical_device, permitted, Caller, Image, ImageDevice, ImageState, InstanceState,
    SnapshotState, State, ROOT_DEVICE,
};
use super::rules;
use super::service::Ec2Service;
use super::storage;

/// The smallest `MaxResults` DescribeImages takes.
const MIN_PAGE: i64 = 5;

/// The group that means "every account".
const ALL: &str = "all";

/// `ami-` + 8 or 17 hex digits, else `InvalidAMIID.Malformed`.
pub fn check_image_id(id: &str) -> Result<(), Ec2Error> {
    if ids::is_valid(IdKind::Image, id) {
        Ok(())
    } else {
        Err(Ec2Error::new(
            Ec2Code::InvalidAmiIdMalformed,
            format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
        ))
    }
}

/// The image `id` as `account` sees it: one it owns or may launch; any other is
/// `InvalidAMIID.NotFound`, as EC2 answers for an AMI not shared with the caller.
pub fn visible_image<'a>(state: &'a State, id: &str, account: &str) -> Result<&'a Image, Ec2Error> {
    check_image_id(id)?;
    state
        .images
        .get(id)
        .filter(|i| permitted(&i.owner_id, &i.launch_permissions, account))
        .ok_or_else(|| Ec2Error::image_not_found(id))
}

/// The image `id`, which `account` must own (`AuthFailure` if it only may launch it).
fn owned_image<'a>(state: &'a State, id: &str, account: &str) -> Result<&'a Image, Ec2Error> {
    let i = visible_image(state, id, account)?;
    if i.owner_id != account {
        return Err(Ec2Error::new(
            Ec2Code::AuthFailure,
            format!("Not authorized for image:{id}"),
        ));
    }
    Ok(i)
}

/// A 12-digit account ID, or `InvalidParameterValue`.
fn check_account(id: &str) -> Result<(), Ec2Error> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Ec2Error::invalid_parameter(format!(
            "Invalid user ID '{id}': expecting a 12-digit AWS account ID"
        )))
    }
}

/// Permissions as a request names them: `(Group, UserId)` pairs.
pub type Permissions = Vec<(Option<String>, Option<String>)>;

/// The accounts (or `all`) a permission modification names: `(add, remove)`. Both the
/// structured form (`LaunchPermission={Add=[{UserId=...}]}`) and the flat one
/// (`OperationType=add`, `UserIds`, `UserGroups`) are taken, as EC2 does.
fn permission_changes(
    structured: Option<(Permissions, Permissions)>,
    operation_type: Option<&str>,
    user_ids: &[String],
    groups: &[String],
) -> Result<(Vec<String>, Vec<String>), Ec2Error> {
    let one = |(group, user): (Option<String>, Option<String>)| -> Result<String, Ec2Error> {
        match (group, user) {
            (Some(g), None) if g == ALL => Ok(ALL.to_string()),
            (Some(g), None) => Err(Ec2Error::invalid_parameter(format!(
                "Invalid group '{g}': the only group is 'all'"
            ))),
            (None, Some(u)) => check_account(&u).map(|()| u),
            _ => Err(Ec2Error::new(
                Ec2Code::InvalidParameterCombination,
                "Each permission names exactly one of UserId and Group",
            )),
        }
    };
    let mut add = Vec::new();
    let mut remove = Vec::new();
    if let Some((a, r)) = structured {
        for p in a {
            add.push(one(p)?);
        }
        for p in r {
            remove.push(one(p)?);
        }
    }
    let flat: Permissions = user_ids
        .iter()
        .map(|u| (None, Some(u.clone())))
        .chain(groups.iter().map(|g| (Some(g.clone()), None)))
        .collect();
    if !flat.is_empty() {
        let target = match operation_type {
            Some("add") => &mut add,
            Some("remove") => &mut remove,
            Some(o) => {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Value ({o}) for parameter operationType is invalid: expecting add or remove"
                )))
            }
            None => return Err(Ec2Error::missing_parameter("OperationType")),
        };
        for p in flat {
            target.push(one(p)?);
        }
    }
    if add.is_empty() && remove.is_empty() {
        return Err(Ec2Error::missing_parameter("LaunchPermission"));
    }
    Ok((add, remove))
}

fn apply_changes(list: &mut Vec<String>, add: &[String], remove: &[String]) {
    for a in add {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
    list.retain(|x| !remove.contains(x));
    list.sort();
}

/// `LaunchPermission`s as EC2 lists them.
fn permission_views(list: &[String]) -> Permissions {
    list.iter()
        .map(|p| {
            if p == ALL {
                (Some(ALL.to_string()), None)
            } else {
                (None, Some(p.clone()))
            }
        })
        .collect()
}

/// An AMI name: 3-128 of letters, digits and `()[] ./-'@_`, as EC2 allows.
fn check_name(name: &str) -> Result<(), Ec2Error> {
    if name.is_empty() {
        return Err(Ec2Error::missing_parameter("Name"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
    if !(3..=128).contains(&name.len()) || !name.chars().all(ok_char) {
        return Err(Ec2Error::invalid_parameter(format!(
            "AMI names must be between 3 and 128 characters long, and may contain letters, \
             numbers, '(', ')', '.', '-', '/' and '_' (got '{name}')"
        )));
    }
    Ok(())
}

fn check_unique_name(state: &State, owner: &str, name: &str) -> Result<(), Ec2Error> {
    if let Some(i) = state
        .images
        .values()
        .find(|i| i.owner_id == owner && i.name == name)
    {
        return Err(Ec2Error::new(
            Ec2Code::InvalidAmiNameDuplicate,
            format!("AMI name {name} is already in use by AMI {}", i.image_id),
        ));
    }
    Ok(())
}

/// The one mapping RegisterImage takes: the root device's EBS snapshot.
fn root_device(
    state: &State,
    account: &str,
    root_device_name: &str,
    mappings: &[BlockDeviceMapping],
) -> Result<ImageDevice, Ec2Error> {
    if canonical_device(root_device_name) != canonical_device(ROOT_DEVICE) {
        return Err(Ec2Error::invalid_parameter(format!(
            "Invalid root device name {root_device_name}: the root device is {ROOT_DEVICE} here"
        )));
    }
    let mut root = None;
    for m in mappings {
        let dev = m
            .device_name
            .as_deref()
            .ok_or_else(|| Ec2Error::missing_parameter("BlockDeviceMapping.DeviceName"))?;
        rules::validate_device(dev)?;
        if canonical_device(dev) != canonical_device(ROOT_DEVICE) {
            return Err(Ec2Error::invalid_parameter(format!(
                "Invalid device name {dev}: only the root device {ROOT_DEVICE} can be mapped here"
            )));
        }
        let ebs = m.ebs.as_ref().ok_or_else(|| {
            Ec2Error::invalid_parameter(format!("The root device {dev} needs an Ebs mapping"))
        })?;
        let snapshot_id = ebs.snapshot_id.as_deref().ok_or_else(|| {
            Ec2Error::invalid_parameter(format!("The root device {dev} needs a SnapshotId"))
        })?;
        let snap = rules::snapshot(state, snapshot_id)?;
        if !permitted(&snap.owner_id, &snap.create_volume_permissions, account) {
            return Err(Ec2Error::snapshot_not_found(snapshot_id));
        }
        if snap.state != SnapshotState::Completed {
            return Err(Ec2Error::incorrect_state(format!(
                "Snapshot '{snapshot_id}' is not 'completed' (it is '{}').",
                snap.state.as_str()
            )));
        }
        if ebs.encrypted == Some(false) && snap.encrypted {
            return Err(Ec2Error::invalid_parameter(format!(
                "Snapshot '{snapshot_id}' is encrypted: Encrypted=false cannot be mapped"
            )));
        }
        let size = match rules::size_gib(ebs.volume_size)? {
            Some(s) if s < snap.volume_size_gib => {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Volume of {s}GiB is smaller than snapshot '{snapshot_id}', expect size >= {}GiB",
                    snap.volume_size_gib
                )))
            }
            Some(s) => s,
            None => snap.volume_size_gib,
        };
        root = Some(ImageDevice {
            device_name: ROOT_DEVICE.into(),
            snapshot_id: snapshot_id.to_string(),
            volume_size_gib: size,
            delete_on_termination: ebs.delete_on_termination.unwrap_or(true),
        });
    }
    root.ok_or_else(|| {
        Ec2Error::invalid_parameter(format!(
            "The root device {ROOT_DEVICE} must be mapped to a snapshot \
             (--block-device-mappings DeviceName={ROOT_DEVICE},Ebs={{SnapshotId=snap-...}})"
        ))
    })
}

/// `Image` as DescribeImages lists it.
fn image_view(state: &State, i: &Image) -> api::Image {
    let st = state.image_state(i);
    api::Image {
        architecture: "x86_64".into(),
        creation_date: i.creation_date.clone(),
        image_id: i.image_id.clone(),
        image_location: format!("{}/{}", i.owner_id, i.name),
        image_type: "machine".into(),
        public: i.launch_permissions.iter().any(|p| p == ALL),
        owner_id: i.owner_id.clone(),
        platform_details: "Linux/UNIX".into(),
        usage_operation: "RunInstances".into(),
        state: st.as_str().into(),
        block_device_mappings: i
            .devices
            .iter()
            .map(|d| {
                let snap = state.snapshots.get(&d.snapshot_id);
                BlockDeviceMapping {
                    device_name: Some(d.device_name.clone()),
                    ebs: Some(EbsBlockDevice {
                        delete_on_termination: Some(d.delete_on_termination),
                        snapshot_id: Some(d.snapshot_id.clone()),
                        volume_size: Some(api::int(d.volume_size_gib)),
                        volume_type: Some("gp3".into()),
                        kms_key_id: snap.and_then(|s| s.kms_key_id.clone()),
                        encrypted: Some(snap.is_some_and(|s| s.encrypted)),
                    }),
                    no_device: None,
                    virtual_name: None,
                }
            })
            .collect(),
        description: i.description.clone(),
        ena_support: true,
        hypervisor: "xen".into(),
        name: i.name.clone(),
        root_device_name: i.root_device_name.clone(),
        root_device_type: "ebs".into(),
        virtualization_type: "hvm".into(),
        tags: api::tags_of(&i.tags),
        source_image_id: i.source_image_id.clone(),
        source_image_region: None,
    }
}

impl Ec2Service {
    /// The account a caller acts in: its principal's, else this lab's.
    pub(crate) fn caller_account(&self, caller: &Caller) -> String {
        account_of(&caller.principal)
            .unwrap_or(&self.account)
            .to_string()
    }

    pub(crate) fn register_image(
        &self,
        caller: &Caller,
        r: RegisterImageRequest,
    ) -> Result<RegisterImageResult, Ec2Error> {
        check_name(&r.name)?;
        if let Some(a) = r.architecture.as_deref().filter(|a| *a != "x86_64") {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({a}) for parameter architecture is invalid: only x86_64 here"
            )));
        }
        if let Some(v) = r.virtualization_type.as_deref().filter(|v| *v != "hvm") {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({v}) for parameter virtualizationType is invalid: only hvm here"
            )));
        }
        let tags = rules::spec_tags(&r.tag_specifications, "image", &["image"])?;
        let account = self.caller_account(caller);
        let root_name = r
            .root_device_name
            .as_deref()
            .unwrap_or(ROOT_DEVICE)
            .to_string();
        let check = |s: &State| -> Result<ImageDevice, Ec2Error> {
            check_unique_name(s, &account, &r.name)?;
            root_device(s, &account, &root_name, &r.block_device_mappings)
        };
        check(&self.registry.read()?)?;
        let boot_dir = r.boot_image.clone().or_else(|| {
            tags.iter()
                .find(|t| t.key == api::BOOT_IMAGE_TAG)
                .map(|t| t.value.clone())
        });
        let boot_source = match &boot_dir {
            Some(dir) => {
                let img = resolve_image(Path::new(dir))?;
                check_readable(&img, caller)?;
                Some(img.boot.ok_or_else(|| {
                    Ec2Error::invalid_parameter(format!(
                        "BootImage {dir} has no vmlinuz and initrd.img (build it with \
                         scripts/make-guest.sh)"
                    ))
                })?)
            }
            None => None,
        };
        let image_id = ids::new_id(IdKind::Image);
        let boot = match &boot_source {
            Some(b) => Some(storage::store_boot(&self.layout, &image_id, b)?),
            None => None,
        };
        self.commit_image(
            caller,
            "RegisterImage",
            &image_id,
            std::slice::from_ref(&image_id),
            |s| {
                Ok(Image {
                    image_id: image_id.clone(),
                    name: r.name.clone(),
                    description: r.description.clone(),
                    owner_id: account.clone(),
                    creation_date: model::now_timestamp(),
                    root_device_name: root_name.clone(),
                    devices: vec![check(s)?],
                    boot: boot.clone(),
                    launch_permissions: Vec::new(),
                    tags: tags.clone(),
                    source_image_id: None,
                    source_dir: None,
                })
            },
        )?;
        Ok(RegisterImageResult { image_id })
    }

    pub(crate) fn describe_images(
        &self,
        caller: &Caller,
        r: DescribeImagesRequest,
    ) -> Result<DescribeImagesResult, Ec2Error> {
        let account = self.caller_account(caller);
        let state = self.registry.read()?;
        for id in &r.image_ids {
            visible_image(&state, id, &account)?;
        }
        let owners: Vec<&str> = r
            .owners
            .iter()
            .map(|o| {
                if o == "self" {
                    account.as_str()
                } else {
                    o.as_str()
                }
            })
            .collect();
        let executable: Vec<&str> = r
            .executable_users
            .iter()
            .map(|o| {
                if o == "self" {
                    account.as_str()
                } else {
                    o.as_str()
                }
            })
            .collect();
        let mut out = Vec::new();
        for i in state.images.values() {
            if !permitted(&i.owner_id, &i.launch_permissions, &account) {
                continue;
            }
            if !r.image_ids.is_empty() && !r.image_ids.contains(&i.image_id) {
                continue;
            }
            if !owners.is_empty() && !owners.contains(&i.owner_id.as_str()) {
                continue;
            }
            if !executable.is_empty()
                && !executable.iter().any(|e| {
                    i.launch_permissions.iter().any(|p| p == e)
                        || (*e == account && i.owner_id == account)
                })
            {
                continue;
            }
            let st = state.image_state(i);
            if filters::image_matches(i, st, &state, &r.filters)? {
                out.push(i);
            }
        }
        let (page, next_token) = rules::page(
            out,
            |i| &i.image_id,
            !r.image_ids.is_empty(),
            r.max_results,
            r.next_token.as_deref(),
            MIN_PAGE,
        )?;
        Ok(DescribeImagesResult {
            images: page.into_iter().map(|i| image_view(&state, i)).collect(),
            next_token,
        })
    }

    pub(crate) fn deregister_image(
        &self,
        caller: &Caller,
        r: DeregisterImageRequest,
    ) -> Result<(), Ec2Error> {
        let account = self.caller_account(caller);
        self.registry.update(|s| {
            owned_image(s, &r.image_id, &account)?;
            if let Some(i) = s
                .instances
                .values()
                .find(|i| i.image_id == r.image_id && i.state != InstanceState::Terminated)
            {
                return Err(Ec2Error::new(
                    Ec2Code::InvalidAmiIdUnavailable,
                    format!(
                        "The image {} is in use by instance {} ({}): terminate it first",
                        r.image_id,
                        i.instance_id,
                        i.state.as_str()
                    ),
                ));
            }
            s.images.remove(&r.image_id);
            Ok(())
        })?;
        storage::discard_boot(&self.layout, &r.image_id);
        self.kms.record_event(
            caller,
            "DeregisterImage",
            std::slice::from_ref(&r.image_id),
            None,
        );
        Ok(())
    }

    pub(crate) fn modify_image_attribute(
        &self,
        caller: &Caller,
        r: ModifyImageAttributeRequest,
    ) -> Result<(), Ec2Error> {
        let account = self.caller_account(caller);
        let attribute = match (&r.attribute, &r.description, &r.value) {
            (Some(a), _, _) => a.clone(),
            (None, Some(_), _) => "description".into(),
            _ => "launchPermission".into(),
        };
        match attribute.as_str() {
            "launchPermission" => {
                let structured = r.launch_permission.clone().map(|m| {
                    let pairs = |v: Vec<LaunchPermission>| {
                        v.into_iter().map(|p| (p.group, p.user_id)).collect()
                    };
                    (pairs(m.add), pairs(m.remove))
                });
                let (add, remove) = permission_changes(
                    structured,
                    r.operation_type.as_deref(),
                    &r.user_ids,
                    &r.user_groups,
                )?;
                self.registry.update(|s| {
                    owned_image(s, &r.image_id, &account)?;
                    if let Some(i) = s.images.get_mut(&r.image_id) {
                        apply_changes(&mut i.launch_permissions, &add, &remove);
                    }
                    Ok(())
                })?;
            }
            "description" => {
                let text = r
                    .description
                    .as_ref()
                    .and_then(|d| d.value.clone())
                    .or_else(|| r.value.clone())
                    .ok_or_else(|| Ec2Error::missing_parameter("Description"))?;
                self.registry.update(|s| {
                    owned_image(s, &r.image_id, &account)?;
                    if let Some(i) = s.images.get_mut(&r.image_id) {
                        i.description = Some(text.clone());
                    }
                    Ok(())
                })?;
            }
            other => {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Value ({other}) for parameter attribute is invalid: expecting \
                     launchPermission or description"
                )))
            }
        }
        self.kms.record_event(
            caller,
            "ModifyImageAttribute",
            std::slice::from_ref(&r.image_id),
            None,
        );
        Ok(())
    }

    pub(crate) fn describe_image_attribute(
        &self,
        caller: &Caller,
        r: DescribeImageAttributeRequest,
    ) -> Result<ImageAttribute, Ec2Error> {
        let account = self.caller_account(caller);
        let state = self.registry.read()?;
        let i = owned_image(&state, &r.image_id, &account)?;
        let mut out = ImageAttribute {
            image_id: i.image_id.clone(),
            ..ImageAttribute::default()
        };
        match r.attribute.as_str() {
            "launchPermission" => {
                out.launch_permissions = Some(
                    permission_views(&i.launch_permissions)
                        .into_iter()
                        .map(|(group, user_id)| LaunchPermission { group, user_id })
                        .collect(),
                );
            }
            "description" => {
                out.description = Some(api::AttributeValue {
                    value: i.description.clone(),
                })
            }
            other => {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Value ({other}) for parameter attribute is invalid: expecting \
                     launchPermission or description"
                )))
            }
        }
        Ok(out)
    }

    pub(crate) fn modify_snapshot_attribute(
        &self,
        caller: &Caller,
        r: ModifySnapshotAttributeRequest,
    ) -> Result<(), Ec2Error> {
        if let Some(a) = r
            .attribute
            .as_deref()
            .filter(|a| *a != "createVolumePermission")
        {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({a}) for parameter attribute is invalid: expecting createVolumePermission"
            )));
        }
        let structured = r.create_volume_permission.clone().map(|m| {
            let pairs = |v: Vec<CreateVolumePermission>| {
                v.into_iter().map(|p| (p.group, p.user_id)).collect()
            };
            (pairs(m.add), pairs(m.remove))
        });
        let (add, remove) = permission_changes(
            structured,
            r.operation_type.as_deref(),
            &r.user_ids,
            &r.group_names,
        )?;
        let account = self.caller_account(caller);
        self.registry.update(|s| {
            let snap = rules::snapshot(s, &r.snapshot_id)?;
            if snap.owner_id != account {
                return Err(Ec2Error::new(
                    Ec2Code::AuthFailure,
                    format!("Not authorized for snapshot:{}", r.snapshot_id),
                ));
            }
            if snap.encrypted && add.iter().any(|a| a == ALL) {
                return Err(Ec2Error::invalid_parameter(format!(
                    "Encrypted snapshots with EBS default key cannot be shared, and no encrypted \
                     snapshot can be made public: {} is encrypted",
                    r.snapshot_id
                )));
            }
            if let Some(snap) = s.snapshots.get_mut(&r.snapshot_id) {
                apply_changes(&mut snap.create_volume_permissions, &add, &remove);
            }
            Ok(())
        })?;
        self.kms.record_event(
            caller,
            "ModifySnapshotAttribute",
            std::slice::from_ref(&r.snapshot_id),
            None,
        );
        Ok(())
    }

    pub(crate) fn describe_snapshot_attribute(
        &self,
        caller: &Caller,
        r: DescribeSnapshotAttributeRequest,
    ) -> Result<DescribeSnapshotAttributeResult, Ec2Error> {
        if r.attribute != "createVolumePermission" {
            return Err(Ec2Error::invalid_parameter(format!(
                "Value ({}) for parameter attribute is invalid: expecting createVolumePermission",
                r.attribute
            )));
        }
        let account = self.caller_account(caller);
        let state = self.registry.read()?;
        let snap = rules::snapshot(&state, &r.snapshot_id)?;
        if snap.owner_id != account {
            return Err(Ec2Error::new(
                Ec2Code::AuthFailure,
                format!("Not authorized for snapshot:{}", r.snapshot_id),
            ));
        }
        Ok(DescribeSnapshotAttributeResult {
            snapshot_id: snap.snapshot_id.clone(),
            create_volume_permissions: permission_views(&snap.create_volume_permissions)
                .into_iter()
                .map(|(group, user_id)| CreateVolumePermission { group, user_id })
                .collect(),
        })
    }

    pub(crate) fn copy_image(
        self: &Arc<Self>,
        caller: &Caller,
        r: CopyImageRequest,
    ) -> Result<CopyImageResult, Ec2Error> {
        check_name(&r.name)?;
        if let Some(region) = r.source_region.as_deref().filter(|x| *x != self.region) {
            return Err(Ec2Error::invalid_parameter(format!(
                "Invalid source region {region}: there is one region here, {}",
                self.region
            )));
        }
        let encrypt = r.encrypted.unwrap_or(false);
        if r.kms_key_id.is_some() && !encrypt {
            return Err(Ec2Error::new(
                Ec2Code::InvalidParameterDependency,
                "The parameter KmsKeyId requires the parameter Encrypted to be set.",
            ));
        }
        let mut tags = rules::spec_tags(&r.tag_specifications, "image", &["image"])?;
        let account = self.caller_account(caller);
        let state = self.registry.read()?;
        let source = visible_image(&state, &r.source_image_id, &account)?.clone();
        let st = state.image_state(&source);
        if st != ImageState::Available {
            return Err(Ec2Error::new(
                Ec2Code::InvalidAmiIdUnavailable,
                format!(
                    "The image {} is not available (it is '{}')",
                    source.image_id,
                    st.as_str()
                ),
            ));
        }
        check_unique_name(&state, &account, &r.name)?;
        let mut sources = Vec::new();
        for d in &source.devices {
            let snap = rules::snapshot(&state, &d.snapshot_id)?;
            // EC2 copies a shared AMI only if its storage is shared too.
            if !permitted(&snap.owner_id, &snap.create_volume_permissions, &account) {
                return Err(Ec2Error::new(
                    Ec2Code::AuthFailure,
                    format!(
                        "You do not have permission to access the storage of this ami: \
                         snapshot {} of {} is not shared with account {account} \
                         (modify-snapshot-attribute createVolumePermission)",
                        d.snapshot_id, source.image_id
                    ),
                ));
            }
            sources.push((d.clone(), snap.clone()));
        }
        drop(state);
        if r.copy_image_tags == Some(true) {
            model::merge_tags(&mut tags, &source.tags);
        }
        let image_id = ids::new_id(IdKind::Image);
        let boot = match &source.boot {
            Some(b) => Some(storage::store_boot(&self.layout, &image_id, b)?),
            None => None,
        };
        let mut devices = Vec::new();
        for (d, snap) in &sources {
            let description = format!(
                "Copied for DestinationAmi {image_id} from SourceAmi {} for SourceSnapshot {}. \
                 Task created on {}.",
                source.image_id,
                snap.snapshot_id,
                model::now_timestamp()
            );
            // A refusal here (KMS) leaves nothing (an image has its root device only).
            let started = self.start_snapshot_copy(
                caller,
                snap,
                encrypt,
                r.kms_key_id.clone(),
                Some(description),
                Vec::new(),
            );
            match started {
                Ok(copy) => devices.push(ImageDevice {
                    snapshot_id: copy.snapshot_id,
                    ..d.clone()
                }),
                Err(e) => {
                    storage::discard_boot(&self.layout, &image_id);
                    return Err(e);
                }
            }
        }
        self.commit_image(
            caller,
            "CopyImage",
            &image_id,
            &[image_id.clone(), source.image_id.clone()],
            |s| {
                check_unique_name(s, &account, &r.name)?;
                Ok(Image {
                    image_id: image_id.clone(),
                    name: r.name.clone(),
                    description: r.description.clone().or_else(|| source.description.clone()),
                    owner_id: account.clone(),
                    creation_date: model::now_timestamp(),
                    root_device_name: source.root_device_name.clone(),
                    devices: devices.clone(),
                    boot: boot.clone(),
                    launch_permissions: Vec::new(),
                    tags: tags.clone(),
                    source_image_id: Some(source.image_id.clone()),
                    source_dir: None,
                })
            },
        )?;
        Ok(CopyImageResult { image_id })
    }

    /// Adds the image `build` makes from the registry (under its lock) as `image_id` and
    /// records `event` naming `resources`. If `build` refuses, the image's boot files,
    /// stored beforehand, are removed and nothing is recorded.
    fn commit_image(
        &self,
        caller: &Caller,
        event: &str,
        image_id: &str,
        resources: &[String],
        build: impl FnOnce(&State) -> Result<Image, Ec2Error>,
    ) -> Result<(), Ec2Error> {
        let res = self.registry.update(|s| {
            let image = build(s)?;
            s.images.insert(image_id.to_string(), image);
            Ok(())
        });
        if let Err(e) = res {
            storage::discard_boot(&self.layout, image_id);
            return Err(e);
        }
        self.kms.record_event(caller, event, resources, None);
        Ok(())
    }
}
