//! AWS's rules for volumes, snapshots, attachments and instance transitions, as pure
//! functions of the registry state. The service calls them under the registry lock
//! and then applies the change; tests call them directly.

use super::api::{self, TagSpecification};
use super::error::{Ec2Code, Ec2Error};
use super::ids::{self, IdKind};
pub use super::model::canonical_device;
use super::model::{
    AttachmentState, Instance, InstanceState, Snapshot, SnapshotState, State, Tag, Volume,
    VolumeState, LOCAL_INSTANCE_ID, ROOT_DEVICE,
};

/// The largest gp2/gp3 volume, 16 TiB.
pub const MAX_VOLUME_GIB: u64 = 16384;
/// The maximum number of tags on one resource (AWS's limit).
pub const MAX_TAGS: usize = 50;

/// AWS's tag limits: key 1..=128 characters, not starting with `aws:`; value up to 256.
pub fn validate_tags(tags: &[Tag]) -> Result<(), Ec2Error> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(Ec2Error::invalid_parameter(format!(
                "Tag key '{}' must be 1 to 128 characters",
                t.key
            )));
        }
        if t.key.starts_with("aws:") {
            return Err(Ec2Error::invalid_parameter(
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(Ec2Error::invalid_parameter(format!(
                "The value of tag '{}' is longer than 256 characters",
                t.key
            )));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(Ec2Error::invalid_parameter(format!(
            "At most {MAX_TAGS} tags per resource"
        )));
    }
    Ok(())
}

/// The tags `specs` give a new resource of `resource_type`, validated; a specification
/// for a type the operation does not create (not in `allowed`) is refused.
pub fn spec_tags(
    specs: &[TagSpecification],
    resource_type: &str,
    allowed: &[&str],
) -> Result<Vec<Tag>, Ec2Error> {
    let mut out = Vec::new();
    for s in specs {
        let rt = s.resource_type.as_deref().unwrap_or_default();
        if !allowed.contains(&rt) {
            return Err(Ec2Error::invalid_parameter(format!(
                "'{rt}' is not a valid taggable resource type for this operation (expected one of: {})",
                allowed.join(", ")
            )));
        }
        if rt == resource_type {
            out.extend(s.tags.iter().map(api::model_tag));
        }
    }
    validate_tags(&out)?;
    Ok(out)
}

/// A describe's page: `MaxResults` items after the `NextToken` (the last ID of the
/// previous page), and the token of the next page if there is one. `items` are in ID
/// order. EC2 refuses `MaxResults` beside explicit IDs, and out of `min..=1000`.
pub fn page<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    ids_given: bool,
    max_results: Option<i64>,
    next_token: Option<&str>,
    min: i64,
) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let Some(max) = max_results else {
        if let Some(t) = next_token {
            return Ok((items.into_iter().filter(|x| id(x) > t).collect(), None));
        }
        return Ok((items, None));
    };
    if ids_given {
        return Err(Ec2Error::new(
            Ec2Code::InvalidParameterCombination,
            "The parameter MaxResults cannot be used with the parameter of IDs",
        ));
    }
    if !(min..=1000).contains(&max) {
        return Err(Ec2Error::invalid_parameter(format!(
            "Value ( {max} ) for parameter maxResults is invalid. Expecting a value greater than {} and less than 1001.",
            min - 1
        )));
    }
    let max = usize::try_from(max).unwrap_or(1000);
    let mut rest: Vec<T> = match next_token {
        Some(t) => items.into_iter().filter(|x| id(x) > t).collect(),
        None => items,
    };
    if rest.len() <= max {
        return Ok((rest, None));
    }
    rest.truncate(max);
    let token = rest.last().map(|x| id(x).to_string());
    Ok((rest, token))
}

/// `/dev/sd[a-z]`, `/dev/xvd[a-z]`, optionally a second letter (`/dev/xvdba`) or a
/// partition number 1-15 (`/dev/sda1`).
pub fn validate_device(device: &str) -> Result<(), Ec2Error> {
    let bad = || {
        Ec2Error::invalid_parameter(format!(
            "Invalid value '{device}' for unixDevice. Use a name like /dev/sdf or /dev/xvdf."
        ))
    };
    let name = device.strip_prefix("/dev/").ok_or_else(bad)?;
    let rest = name
        .strip_prefix("xvd")
        .or_else(|| name.strip_prefix("sd"))
        .ok_or_else(bad)?;
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    let digits = &rest[letters.len()..];
    if letters.is_empty() || letters.len() > 2 {
        return Err(bad());
    }
    if !digits.is_empty() {
        match digits.parse::<u8>() {
            Ok(n) if (1..=15).contains(&n) && !digits.starts_with('0') => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// A zone of `region`: the region name and one letter a..f.
pub fn validate_zone(zone: &str, region: &str) -> Result<(), Ec2Error> {
    let ok = zone
        .strip_prefix(region)
        .is_some_and(|l| l.len() == 1 && ("a"..="f").contains(&l));
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::new(
            Ec2Code::InvalidZoneNotFound,
            format!("The zone '{zone}' does not exist."),
        ))
    }
}

pub fn check_volume_id(id: &str) -> Result<(), Ec2Error> {
    if ids::is_valid(IdKind::Volume, id) {
        Ok(())
    } else {
        Err(Ec2Error::new(
            Ec2Code::InvalidVolumeIdMalformed,
            format!("Invalid id: \"{id}\" (expecting \"vol-...\")"),
        ))
    }
}

pub fn check_snapshot_id(id: &str) -> Result<(), Ec2Error> {
    if ids::is_valid(IdKind::Snapshot, id) {
        Ok(())
    } else {
        Err(Ec2Error::new(
            Ec2Code::InvalidSnapshotIdMalformed,
            format!("Invalid id: \"{id}\" (expecting \"snap-...\")"),
        ))
    }
}

pub fn check_instance_id(id: &str) -> Result<(), Ec2Error> {
    if id == LOCAL_INSTANCE_ID || ids::is_valid(IdKind::Instance, id) {
        Ok(())
    } else {
        Err(Ec2Error::new(
            Ec2Code::InvalidInstanceIdMalformed,
            format!("Invalid id: \"{id}\""),
        ))
    }
}

pub fn volume<'a>(state: &'a State, id: &str) -> Result<&'a Volume, Ec2Error> {
    check_volume_id(id)?;
    state
        .volumes
        .get(id)
        .ok_or_else(|| Ec2Error::volume_not_found(id))
}

pub fn snapshot<'a>(state: &'a State, id: &str) -> Result<&'a Snapshot, Ec2Error> {
    check_snapshot_id(id)?;
    state
        .snapshots
        .get(id)
        .ok_or_else(|| Ec2Error::snapshot_not_found(id))
}

pub fn instance<'a>(state: &'a State, id: &str) -> Result<&'a Instance, Ec2Error> {
    check_instance_id(id)?;
    state
        .instances
        .get(id)
        .ok_or_else(|| Ec2Error::instance_not_found(id))
}

fn size_out_of_range(size: impl std::fmt::Display) -> Ec2Error {
    Ec2Error::invalid_parameter(format!(
        "Volume of {size}GiB is out of range: size must be 1 to {MAX_VOLUME_GIB} GiB."
    ))
}

/// A requested size in GiB (EC2's `Integer`): a negative one is out of range.
pub fn size_gib(size: Option<i64>) -> Result<Option<u64>, Ec2Error> {
    size.map(|s| u64::try_from(s).map_err(|_| size_out_of_range(s)))
        .transpose()
}

/// The parameters of CreateVolume that the rules look at.
#[derive(Debug, Clone)]
pub struct CreateVolumeCheck<'a> {
    pub size_gib: Option<u64>,
    pub availability_zone: &'a str,
    pub snapshot_id: Option<&'a str>,
    pub encrypted: bool,
    pub kms_key_given: bool,
    pub region: &'a str,
}

/// What CreateVolume will make: the size and whether it is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub size_gib: u64,
    pub encrypted: bool,
}

pub fn check_create_volume(state: &State, p: &CreateVolumeCheck) -> Result<VolumePlan, Ec2Error> {
    validate_zone(p.availability_zone, p.region)?;
    if p.kms_key_given && !p.encrypted {
        return Err(Ec2Error::new(
            Ec2Code::InvalidParameterDependency,
            "The parameter KmsKeyId requires the parameter Encrypted to be set.",
        ));
    }
    let snap = match p.snapshot_id {
        Some(id) => {
            let s = snapshot(state, id)?;
            if s.state != SnapshotState::Completed {
                return Err(Ec2Error::incorrect_state(format!(
                    "Snapshot '{id}' is not 'completed' (it is '{}').",
                    s.state.as_str()
                )));
            }
            Some(s)
        }
        None => None,
    };
    let size = match (p.size_gib, snap) {
        (Some(size), Some(s)) if size < s.volume_size_gib => {
            return Err(Ec2Error::invalid_parameter(format!(
                "Volume of {size}GiB is too small; minimum is {}GiB.",
                s.volume_size_gib
            )))
        }
        (Some(size), _) => size,
        (None, Some(s)) => s.volume_size_gib,
        (None, None) => {
            return Err(Ec2Error::new(
                Ec2Code::MissingParameter,
                "The request must contain the parameter size/snapshot",
            ))
        }
    };
    if size == 0 || size > MAX_VOLUME_GIB {
        return Err(size_out_of_range(size));
    }
    // Encrypted snapshots always give encrypted volumes (there is no decrypting copy).
    let encrypted = p.encrypted || snap.is_some_and(|s| s.encrypted);
    Ok(VolumePlan {
        size_gib: size,
        encrypted,
    })
}

pub fn check_delete_volume(state: &State, id: &str) -> Result<(), Ec2Error> {
    let v = volume(state, id)?;
    if let Some(a) = &v.attachment {
        return Err(Ec2Error::new(
            Ec2Code::VolumeInUse,
            format!("Volume {id} is currently attached to {}", a.instance_id),
        ));
    }
    if let Some(s) = state
        .snapshots
        .values()
        .find(|s| s.volume_id == id && s.state == SnapshotState::Pending)
    {
        return Err(Ec2Error::incorrect_state(format!(
            "The volume '{id}' is being read by pending snapshot '{}'.",
            s.snapshot_id
        )));
    }
    match v.state {
        VolumeState::Available | VolumeState::Error => Ok(()),
        other => Err(Ec2Error::incorrect_state(format!(
            "The volume '{id}' is in the '{}' state.",
            other.as_str()
        ))),
    }
}

pub fn check_create_snapshot(state: &State, volume_id: &str) -> Result<(), Ec2Error> {
    let v = volume(state, volume_id)?;
    match v.state {
        VolumeState::Available | VolumeState::InUse => {}
        other => {
            return Err(Ec2Error::incorrect_state(format!(
                "The volume '{volume_id}' is in the '{}' state.",
                other.as_str()
            )))
        }
    }
    // Crash consistency: the image must not change while it is read. A volume of a
    // stopped instance (or none) is quiet; a running instance could write mid-copy.
    if let Some(a) = &v.attachment {
        let inst = instance(state, &a.instance_id)?;
        if inst.state != InstanceState::Stopped {
            return Err(Ec2Error::incorrect_state(format!(
                "Volume '{volume_id}' is attached to '{}', which is {}: stop the instance \
                 (or detach the volume) so the snapshot is crash-consistent.",
                a.instance_id,
                inst.state.as_str()
            )));
        }
    }
    Ok(())
}

pub fn check_delete_snapshot(state: &State, id: &str) -> Result<(), Ec2Error> {
    let s = snapshot(state, id)?;
    if let Some(i) = state
        .images
        .values()
        .find(|i| i.devices.iter().any(|d| d.snapshot_id == id))
    {
        return Err(Ec2Error::new(
            Ec2Code::InvalidSnapshotInUse,
            format!("The snapshot {id} is currently in use by {}", i.image_id),
        ));
    }
    if s.state == SnapshotState::Pending {
        return Err(Ec2Error::incorrect_state(format!(
            "The snapshot '{id}' is still pending."
        )));
    }
    if let Some(v) = state.volumes.values().find(|v| {
        v.snapshot_id.as_deref() == Some(id)
            && (v.state == VolumeState::Creating || v.restoring_for.is_some())
    }) {
        return Err(Ec2Error::incorrect_state(format!(
            "The snapshot '{id}' is in use by volume '{}', which is still being restored from it.",
            v.volume_id
        )));
    }
    Ok(())
}

/// AttachVolume: same zone, an available volume, a free attachment point, an instance
/// that exists and is running or stopped.
pub fn check_attach(
    state: &State,
    volume_id: &str,
    instance_id: &str,
    device: &str,
) -> Result<(), Ec2Error> {
    validate_device(device)?;
    let v = volume(state, volume_id)?;
    let i = instance(state, instance_id)?;
    match i.state {
        InstanceState::Running | InstanceState::Stopped => {}
        other => {
            return Err(Ec2Error::new(
                Ec2Code::IncorrectInstanceState,
                format!(
                    "Instance '{instance_id}' is not 'running' or 'stopped' (it is '{}').",
                    other.as_str()
                ),
            ))
        }
    }
    if v.availability_zone != i.availability_zone {
        return Err(Ec2Error::new(
            Ec2Code::InvalidVolumeZoneMismatch,
            format!(
                "The volume '{volume_id}' is not in the same availability zone as instance \
                 '{instance_id}'"
            ),
        ));
    }
    if let Some(a) = &v.attachment {
        return Err(Ec2Error::new(
            Ec2Code::VolumeInUse,
            format!(
                "{volume_id} is already attached to an instance ({})",
                a.instance_id
            ),
        ));
    }
    if v.state != VolumeState::Available {
        return Err(Ec2Error::incorrect_state(format!(
            "The volume '{volume_id}' is '{}', not 'available'.",
            v.state.as_str()
        )));
    }
    if i.state == InstanceState::Running
        && state
            .snapshots
            .values()
            .any(|s| s.volume_id == volume_id && s.state == SnapshotState::Pending)
    {
        return Err(Ec2Error::incorrect_state(format!(
            "The volume '{volume_id}' is being snapshotted; attach it to a running instance when the snapshot completes."
        )));
    }
    let point = canonical_device(device);
    if state.attached_volumes(instance_id).iter().any(|o| {
        o.attachment
            .as_ref()
            .is_some_and(|a| canonical_device(&a.device) == point)
    }) {
        return Err(Ec2Error::invalid_parameter(format!(
            "Invalid value '{device}' for unixDevice. Attachment point {device} is already in use"
        )));
    }
    Ok(())
}

/// DetachVolume: the volume must be attached (to the given instance/device if named);
/// the root volume only while its instance is stopped. Returns the instance ID.
pub fn check_detach(
    state: &State,
    volume_id: &str,
    instance_id: Option<&str>,
    device: Option<&str>,
) -> Result<String, Ec2Error> {
    let v = volume(state, volume_id)?;
    let a = v.attachment.as_ref().ok_or_else(|| {
        Ec2Error::incorrect_state(format!(
            "Volume '{volume_id}' is in the '{}' state.",
            v.state.as_str()
        ))
    })?;
    if let Some(want) = instance_id {
        check_instance_id(want)?;
        if want != a.instance_id {
            return Err(Ec2Error::new(
                Ec2Code::InvalidAttachmentNotFound,
                format!(
                    "Attachment point for volume '{volume_id}' on instance '{want}' does not exist"
                ),
            ));
        }
    }
    if let Some(dev) = device {
        if canonical_device(dev) != canonical_device(&a.device) {
            return Err(Ec2Error::new(
                Ec2Code::InvalidAttachmentNotFound,
                format!("Volume '{volume_id}' is not attached at '{dev}'"),
            ));
        }
    }
    if a.state == AttachmentState::Detaching {
        return Err(Ec2Error::incorrect_state(format!(
            "Volume '{volume_id}' is already detaching."
        )));
    }
    let inst = instance(state, &a.instance_id)?;
    let is_root = canonical_device(&a.device) == canonical_device(ROOT_DEVICE);
    if is_root && inst.instance_id != LOCAL_INSTANCE_ID && inst.state != InstanceState::Stopped {
        return Err(Ec2Error::incorrect_state(format!(
            "Unable to detach root volume '{volume_id}' from instance '{}': the instance is \
             '{}'; stop it first.",
            inst.instance_id,
            inst.state.as_str()
        )));
    }
    Ok(a.instance_id.clone())
}

/// StartInstances on one instance: only from `stopped` (starting a pending or running
/// instance changes nothing), only with a root volume attached.
pub fn check_start(state: &State, instance_id: &str) -> Result<bool, Ec2Error> {
    let i = instance(state, instance_id)?;
    match i.state {
        InstanceState::Stopped => {}
        InstanceState::Pending | InstanceState::Running => return Ok(false),
        other => {
            return Err(Ec2Error::new(
                Ec2Code::IncorrectInstanceState,
                format!(
                    "The instance '{instance_id}' is not in a state from which it can be started (it is '{}').",
                    other.as_str()
                ),
            ))
        }
    }
    if state.root_volume(instance_id).is_none() {
        return Err(Ec2Error::invalid_parameter(format!(
            "Invalid value '{instance_id}' for instanceId. Instance does not have a volume \
             attached at root ({ROOT_DEVICE})"
        )));
    }
    Ok(true)
}

/// StopInstances: from `pending` or `running`; already stopped or stopping is a no-op.
pub fn check_stop(state: &State, instance_id: &str) -> Result<bool, Ec2Error> {
    let i = instance(state, instance_id)?;
    if instance_id == LOCAL_INSTANCE_ID {
        return Err(Ec2Error::new(
            Ec2Code::IncorrectInstanceState,
            "The local instance (this machine) is always running; use `atrest detach`.",
        ));
    }
    match i.state {
        InstanceState::Pending | InstanceState::Running => Ok(true),
        InstanceState::Stopping | InstanceState::Stopped => Ok(false),
        other => Err(Ec2Error::new(
            Ec2Code::IncorrectInstanceState,
            format!(
                "This instance '{instance_id}' is not in a state from which it can be stopped (it is '{}').",
                other.as_str()
            ),
        )),
    }
}

pub fn check_terminate(state: &State, instance_id: &str) -> Result<bool, Ec2Error> {
    let i = instance(state, instance_id)?;
    if instance_id == LOCAL_INSTANCE_ID {
        return Err(Ec2Error::new(
            Ec2Code::IncorrectInstanceState,
            "The local instance (this machine) cannot be terminated.",
        ));
    }
    Ok(i.state != InstanceState::Terminated)
}

/// The first free device of `instance_id` from /dev/xvdf on (what `atrest attach` uses).
pub fn next_free_device(state: &State, instance_id: &str) -> Option<String> {
    let used: Vec<String> = state
        .attached_volumes(instance_id)
        .iter()
        .filter_map(|v| v.attachment.as_ref().map(|a| canonical_device(&a.device)))
        .collect();
    ('f'..='z')
        .map(|c| format!("/dev/xvd{c}"))
        .find(|d| !used.contains(&canonical_device(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::model::{Attachment, Tag};

    const VA: &str = "vol-0000000000000000a";
    const VB: &str = "vol-0000000000000000b";
    const VC: &str = "vol-0000000000000000c";
    const I1: &str = "i-00000000000000001";
    const S1: &str = "snap-00000000000000001";

    fn vol(id: &str, zone: &str) -> Volume {
        Volume {
            volume_id: id.into(),
            size_gib: 8,
            availability_zone: zone.into(),
            state: VolumeState::Available,
            encrypted: false,
            kms_key_id: None,
            snapshot_id: None,
            create_time: "t".into(),
            tags: vec![Tag {
                key: "Name".into(),
                value: id.into(),
            }],
            attachment: None,
            progress: 100,
            worker: None,
            error_message: None,
            restoring_for: None,
        }
    }

    fn inst(id: &str, state: InstanceState) -> Instance {
        Instance {
            instance_id: id.into(),
            reservation_id: "r-00000000000000001".into(),
            image_id: "ami-00000000000000001".into(),
            instance_type: "t3.micro".into(),
            state,
            state_reason: None,
            state_transition_reason: String::new(),
            availability_zone: "us-east-1a".into(),
            launch_time: "t".into(),
            tags: vec![],
            owner_arn: "arn:aws:iam::111122223333:user/a".into(),
            owner_uid: 0,
            owner_gid: 0,
            boot: None,
        }
    }

    fn attach(s: &mut State, vol: &str, inst: &str, dev: &str) {
        let v = s.volumes.get_mut(vol).unwrap();
        v.state = VolumeState::InUse;
        v.attachment = Some(Attachment {
            instance_id: inst.into(),
            device: dev.into(),
            state: AttachmentState::Attached,
            attach_time: "t".into(),
            delete_on_termination: false,
            local_owner: None,
        });
    }

    fn world(istate: InstanceState) -> State {
        let mut s = State::default();
        s.volumes.insert(VA.into(), vol(VA, "us-east-1a"));
        s.volumes.insert(VB.into(), vol(VB, "us-east-1a"));
        s.volumes.insert(VC.into(), vol(VC, "us-east-1b"));
        s.instances.insert(I1.into(), inst(I1, istate));
        attach(&mut s, VA, I1, "/dev/xvda");
        s
    }

    fn code(r: Result<impl std::fmt::Debug, Ec2Error>) -> String {
        r.unwrap_err().code.as_str().to_string()
    }

    #[test]
    fn attach_rules() {
        let s = world(InstanceState::Stopped);
        assert_eq!(
            code(check_attach(&s, VC, I1, "/dev/sdf")),
            "InvalidVolume.ZoneMismatch"
        );
        assert_eq!(code(check_attach(&s, VA, I1, "/dev/sdf")), "VolumeInUse");
        assert_eq!(
            code(check_attach(&s, VB, I1, "/dev/xvda")),
            "InvalidParameterValue"
        );
        // sda and xvda are the same attachment point.
        assert_eq!(
            code(check_attach(&s, VB, I1, "/dev/sda")),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(check_attach(&s, VB, I1, "xvdf")),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(check_attach(&s, "vol-00000000000000099", I1, "/dev/sdf")),
            "InvalidVolume.NotFound"
        );
        assert_eq!(
            code(check_attach(&s, VB, "i-00000000000000099", "/dev/sdf")),
            "InvalidInstanceID.NotFound"
        );
        assert_eq!(
            code(check_attach(&s, "vol-x", I1, "/dev/sdf")),
            "InvalidVolumeID.Malformed"
        );
        check_attach(&s, VB, I1, "/dev/sdf").unwrap();
        let t = world(InstanceState::Terminated);
        assert_eq!(
            code(check_attach(&t, VB, I1, "/dev/sdf")),
            "IncorrectInstanceState"
        );
        let mut c = world(InstanceState::Stopped);
        c.volumes.get_mut(VB).unwrap().state = VolumeState::Creating;
        assert_eq!(code(check_attach(&c, VB, I1, "/dev/sdf")), "IncorrectState");
    }

    #[test]
    fn detach_rules() {
        let running = world(InstanceState::Running);
        assert_eq!(
            code(check_detach(&running, VA, None, None)),
            "IncorrectState"
        );
        assert_eq!(
            code(check_detach(&running, VB, None, None)),
            "IncorrectState"
        );
        let stopped = world(InstanceState::Stopped);
        assert_eq!(
            check_detach(&stopped, VA, Some(I1), Some("/dev/sda")).unwrap(),
            I1
        );
        assert_eq!(
            code(check_detach(
                &stopped,
                VA,
                Some("i-00000000000000002"),
                None
            )),
            "InvalidAttachment.NotFound"
        );
        assert_eq!(
            code(check_detach(&stopped, VA, None, Some("/dev/xvdf"))),
            "InvalidAttachment.NotFound"
        );
        // A non-root volume may leave a running instance.
        let mut r2 = world(InstanceState::Running);
        attach(&mut r2, VB, I1, "/dev/xvdf");
        assert_eq!(check_detach(&r2, VB, None, None).unwrap(), I1);
    }

    #[test]
    fn delete_volume_refused_while_in_use() {
        let s = world(InstanceState::Stopped);
        assert_eq!(code(check_delete_volume(&s, VA)), "VolumeInUse");
        check_delete_volume(&s, VB).unwrap();
        assert_eq!(
            code(check_delete_volume(&s, "vol-00000000000000099")),
            "InvalidVolume.NotFound"
        );
    }

    #[test]
    fn start_and_stop_rules() {
        let mut s = world(InstanceState::Stopped);
        assert!(check_start(&s, I1).unwrap());
        s.volumes.get_mut(VA).unwrap().attachment = None;
        let e = check_start(&s, I1).unwrap_err();
        assert_eq!(e.code.as_str(), "InvalidParameterValue");
        assert!(e.message.contains("/dev/xvda"));
        let t = world(InstanceState::Terminated);
        assert_eq!(code(check_start(&t, I1)), "IncorrectInstanceState");
        assert_eq!(code(check_stop(&t, I1)), "IncorrectInstanceState");
        let r = world(InstanceState::Running);
        assert!(!check_start(&r, I1).unwrap());
        assert!(check_stop(&r, I1).unwrap());
        assert!(!check_stop(&world(InstanceState::Stopped), I1).unwrap());
        assert_eq!(
            code(check_start(&r, "i-00000000000000099")),
            "InvalidInstanceID.NotFound"
        );
    }

    #[test]
    fn create_volume_rules() {
        let mut s = world(InstanceState::Stopped);
        let base = CreateVolumeCheck {
            size_gib: Some(1),
            availability_zone: "us-east-1a",
            snapshot_id: None,
            encrypted: false,
            kms_key_given: false,
            region: "us-east-1",
        };
        assert_eq!(
            check_create_volume(&s, &base).unwrap(),
            VolumePlan {
                size_gib: 1,
                encrypted: false
            }
        );
        let zone = CreateVolumeCheck {
            availability_zone: "us-east-1z",
            ..base.clone()
        };
        assert_eq!(code(check_create_volume(&s, &zone)), "InvalidZone.NotFound");
        let dep = CreateVolumeCheck {
            kms_key_given: true,
            ..base.clone()
        };
        assert_eq!(
            code(check_create_volume(&s, &dep)),
            "InvalidParameterDependency"
        );
        let zero = CreateVolumeCheck {
            size_gib: Some(0),
            ..base.clone()
        };
        assert_eq!(
            code(check_create_volume(&s, &zero)),
            "InvalidParameterValue"
        );
        let none = CreateVolumeCheck {
            size_gib: None,
            ..base.clone()
        };
        assert_eq!(code(check_create_volume(&s, &none)), "MissingParameter");
        let from = CreateVolumeCheck {
            snapshot_id: Some(S1),
            size_gib: None,
            ..base.clone()
        };
        assert_eq!(
            code(check_create_volume(&s, &from)),
            "InvalidSnapshot.NotFound"
        );
        s.snapshots.insert(
            S1.into(),
            Snapshot {
                snapshot_id: S1.into(),
                volume_id: VA.into(),
                state: SnapshotState::Completed,
                progress: 100,
                start_time: "t".into(),
                encrypted: true,
                kms_key_id: Some("arn:k".into()),
                volume_size_gib: 8,
                description: String::new(),
                owner_id: "111122223333".into(),
                tags: vec![],
                worker: None,
                state_message: None,
                create_volume_permissions: Vec::new(),
            },
        );
        // Without --encrypted, a volume from an encrypted snapshot is still encrypted.
        assert_eq!(
            check_create_volume(&s, &from).unwrap(),
            VolumePlan {
                size_gib: 8,
                encrypted: true
            }
        );
        let small = CreateVolumeCheck {
            size_gib: Some(4),
            ..from.clone()
        };
        assert_eq!(
            code(check_create_volume(&s, &small)),
            "InvalidParameterValue"
        );
        s.snapshots.get_mut(S1).unwrap().state = SnapshotState::Pending;
        assert_eq!(code(check_create_volume(&s, &from)), "IncorrectState");
        assert_eq!(code(check_delete_snapshot(&s, S1)), "IncorrectState");
    }

    #[test]
    fn snapshot_needs_a_quiet_volume() {
        let r = world(InstanceState::Running);
        assert_eq!(code(check_create_snapshot(&r, VA)), "IncorrectState");
        check_create_snapshot(&world(InstanceState::Stopped), VA).unwrap();
        check_create_snapshot(&r, VB).unwrap();
    }

    #[test]
    fn device_names() {
        for ok in ["/dev/xvda", "/dev/sdf", "/dev/xvdba", "/dev/sda1"] {
            validate_device(ok).unwrap();
        }
        for bad in [
            "xvda",
            "/dev/hda",
            "/dev/xvd",
            "/dev/sda0",
            "/dev/sda16",
            "/dev/xvdabc",
            "/dev/../x",
        ] {
            assert!(validate_device(bad).is_err(), "{bad}");
        }
        assert_eq!(canonical_device("/dev/sdf"), "xvdf");
        let s = world(InstanceState::Stopped);
        assert_eq!(next_free_device(&s, I1).as_deref(), Some("/dev/xvdf"));
    }

    #[test]
    fn pages_follow_the_token_and_refuse_what_ec2_refuses() {
        let ids: Vec<String> = (0..12).map(|i| format!("vol-{i:02}")).collect();
        fn id(s: &String) -> &str {
            s
        }
        let (all, none) = page(ids.clone(), id, false, None, None, 5).unwrap();
        assert_eq!((all.len(), none), (12, None));
        let (p1, t1) = page(ids.clone(), id, false, Some(5), None, 5).unwrap();
        assert_eq!(p1, ids[..5]);
        assert_eq!(t1.as_deref(), Some("vol-04"));
        let (p2, t2) = page(ids.clone(), id, false, Some(5), t1.as_deref(), 5).unwrap();
        assert_eq!(p2, ids[5..10]);
        let (p3, t3) = page(ids.clone(), id, false, Some(5), t2.as_deref(), 5).unwrap();
        assert_eq!((p3, t3), (ids[10..].to_vec(), None));
        assert_eq!(
            code(page(ids.clone(), id, false, Some(4), None, 5)),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(page(ids.clone(), id, false, Some(1001), None, 5)),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(page(ids, id, true, Some(5), None, 5)),
            "InvalidParameterCombination"
        );
    }

    #[test]
    fn negative_sizes_are_out_of_range() {
        assert_eq!(size_gib(Some(8)).unwrap(), Some(8));
        assert_eq!(size_gib(None).unwrap(), None);
        let e = size_gib(Some(-1)).unwrap_err();
        assert_eq!(e.code.as_str(), "InvalidParameterValue");
        assert!(e.message.contains("-1GiB is out of range"), "{e}");
    }
}
