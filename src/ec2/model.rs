//! The types every part of `src/ec2` shares: the registry's records (volumes,
//! snapshots, instances and their attachments), who is calling, and a data key as
//! kmsd returns it. Imports nothing from its siblings: every other module may use it.
//!
//! The records are the durable JSON (`HOME/ec2/registry.json`, see docs/EC2.md); what
//! the operations answer is [`super::api`]'s AWS-shaped types, built from these.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The instance ID of the dev box itself (`atrest attach`): always running.
pub const LOCAL_INSTANCE_ID: &str = "local";
/// The root device name every instance uses.
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// The key EBS uses when `Encrypted` comes without `KmsKeyId`.
pub const DEFAULT_EBS_KEY: &str = "alias/aws/ebs";
/// Volume sizes are whole GiB.
pub const GIB: u64 = 1 << 30;

/// Who is calling, as the kernel says (SO_PEERCRED) plus the principal they act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The IAM principal ARN EC2 acts on behalf of.
    pub principal: String,
    /// The SigV4 signer when the request came through the AWS endpoint (its access key,
    /// address and user agent go into the trail's EC2 events).
    pub signer: Option<kmsd::protocol::Signer>,
}

/// A data key as kmsd returned it (ciphertext only), with what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub blob: Vec<u8>,
    /// The ARN of the KMS key that wraps it.
    pub key_arn: String,
    pub context: BTreeMap<String, String>,
}

/// A grant made for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRef {
    pub grant_id: String,
    pub grant_token: String,
    pub key_arn: String,
    pub grantee: String,
}

/// The attachment point a device name denotes: `/dev/sdf` and `/dev/xvdf` are the same
/// point (the kernel renames sd* to xvd*), so both map to `xvdf`.
pub fn canonical_device(device: &str) -> String {
    let name = device.strip_prefix("/dev/").unwrap_or(device);
    match name.strip_prefix("sd") {
        Some(rest) => format!("xvd{rest}"),
        None => name.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    Creating,
    Available,
    InUse,
    Deleting,
    Error,
}

impl VolumeState {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::InUse => "in-use",
            VolumeState::Deleting => "deleting",
            VolumeState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentState {
    Attaching,
    Attached,
    Detaching,
}

impl AttachmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Attaching => "attaching",
            AttachmentState::Attached => "attached",
            AttachmentState::Detaching => "detaching",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub instance_id: String,
    /// As given, e.g. `/dev/xvda` or `/dev/sdf`.
    pub device: String,
    pub state: AttachmentState,
    pub attach_time: String,
    pub delete_on_termination: bool,
    /// For the local instance: who attached it (served files are theirs, and a
    /// restarted daemon decrypts on their behalf).
    pub local_owner: Option<LocalOwner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalOwner {
    pub uid: u32,
    pub gid: u32,
    pub principal: String,
}

/// Which process is doing a volume's or snapshot's background work, so a restart can
/// tell an orphan (its worker died) from work still under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub volume_id: String,
    pub size_gib: u64,
    pub availability_zone: String,
    pub state: VolumeState,
    pub encrypted: bool,
    /// The KMS key ARN that wraps the data key (encrypted volumes only).
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub create_time: String,
    pub tags: Vec<Tag>,
    pub attachment: Option<Attachment>,
    /// Percent done while `creating` from a snapshot.
    pub progress: u8,
    pub worker: Option<Worker>,
    /// Why the volume is in `error`.
    pub error_message: Option<String>,
    /// While a lazy restore still copies chunks into it: the principal it restores for
    /// (the volume service resumes the copy on that principal's behalf after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring_for: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_id: String,
    pub state: SnapshotState,
    pub progress: u8,
    pub start_time: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub volume_size_gib: u64,
    pub description: String,
    pub owner_id: String,
    pub tags: Vec<Tag>,
    pub worker: Option<Worker>,
    pub state_message: Option<String>,
    /// ModifySnapshotAttribute createVolumePermission: the accounts (or `all`) besides
    /// the owner that may copy it or make volumes of it.
    #[serde(default)]
    pub create_volume_permissions: Vec<String>,
}

/// EC2 instance states with their AWS codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    pub fn code(self) -> u16 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
            InstanceState::Stopping => 64,
            InstanceState::Stopped => 80,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReason {
    pub code: String,
    pub message: String,
}

impl StateReason {
    /// What AWS shows when an instance cannot start because KMS refused.
    pub fn client_error_on_launch() -> Self {
        StateReason {
            code: "Client.InternalError".into(),
            message: "Client.InternalError: Client error on launch".into(),
        }
    }
    pub fn user_initiated_shutdown() -> Self {
        StateReason {
            code: "Client.UserInitiatedShutdown".into(),
            message: "Client.UserInitiatedShutdown: User initiated shutdown".into(),
        }
    }
}

/// How to boot a running instance as a qemu guest: the kernel and initrd of a local
/// image (`scripts/make-guest.sh` output). The root disk is the instance's root volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub reservation_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub state: InstanceState,
    pub state_reason: Option<StateReason>,
    pub state_transition_reason: String,
    pub availability_zone: String,
    pub launch_time: String,
    pub tags: Vec<Tag>,
    /// The principal that launched it (EC2 acts on its behalf at start).
    pub owner_arn: String,
    /// Served files are owned by this uid/gid.
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub boot: Option<BootSpec>,
}

/// One block device of an AMI: a snapshot restored at `device_name` on launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDevice {
    pub device_name: String,
    pub snapshot_id: String,
    pub volume_size_gib: u64,
    pub delete_on_termination: bool,
}

/// A registered AMI. Its state is its snapshots' (see [`State::image_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub image_id: String,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub creation_date: String,
    pub root_device_name: String,
    /// Root first.
    pub devices: Vec<ImageDevice>,
    /// The kernel and initrd copied into `HOME/ec2/images/AMI-ID/` (none: not bootable).
    pub boot: Option<BootSpec>,
    /// ModifyImageAttribute launchPermission: accounts (or `all`) besides the owner.
    pub launch_permissions: Vec<String>,
    pub tags: Vec<Tag>,
    /// CopyImage: the image it was copied from.
    pub source_image_id: Option<String>,
    /// Registered on first use of a local image directory (`run-instances --image-id DIR`).
    pub source_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageState {
    Pending,
    Available,
    Failed,
}

impl ImageState {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Pending => "pending",
            ImageState::Available => "available",
            ImageState::Failed => "failed",
        }
    }
}

/// Whether `account` is `owner` or one of `permitted` (an account ID or `all`).
pub fn permitted(owner: &str, permitted: &[String], account: &str) -> bool {
    owner == account || permitted.iter().any(|p| p == account || p == "all")
}

/// The whole registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    pub volumes: BTreeMap<String, Volume>,
    pub snapshots: BTreeMap<String, Snapshot>,
    pub instances: BTreeMap<String, Instance>,
    /// AMIs (absent in registries written before them).
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
}

pub const REGISTRY_FORMAT_VERSION: u32 = 1;

impl State {
    /// An image is `available` when every snapshot it names is completed, `pending`
    /// while one is still being taken or copied, `failed` if one failed or is gone.
    pub fn image_state(&self, image: &Image) -> ImageState {
        let mut state = ImageState::Available;
        for d in &image.devices {
            match self.snapshots.get(&d.snapshot_id).map(|s| s.state) {
                Some(SnapshotState::Completed) => {}
                Some(SnapshotState::Pending) => state = ImageState::Pending,
                Some(SnapshotState::Error) | None => return ImageState::Failed,
            }
        }
        state
    }

    /// The volumes attached to `instance_id`, root first, then by device name.
    pub fn attached_volumes(&self, instance_id: &str) -> Vec<&Volume> {
        let mut v: Vec<&Volume> = self
            .volumes
            .values()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance_id)
            })
            .collect();
        v.sort_by_key(|v| {
            let dev = v
                .attachment
                .as_ref()
                .map(|a| a.device.clone())
                .unwrap_or_default();
            (canonical_device(&dev) != canonical_device(ROOT_DEVICE), dev)
        });
        v
    }

    /// The volume attached to `instance_id` at the root device, if any.
    pub fn root_volume(&self, instance_id: &str) -> Option<&Volume> {
        self.attached_volumes(instance_id).into_iter().find(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| canonical_device(&a.device) == canonical_device(ROOT_DEVICE))
        })
    }
}

/// Tags as a map for filtering.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// Sets (replacing) or adds tags, as CreateTags does.
pub fn merge_tags(tags: &mut Vec<Tag>, new: &[Tag]) {
    for t in new {
        match tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value.clone(),
            None => tags.push(t.clone()),
        }
    }
}

/// Removes tags as DeleteTags does: a key alone removes it whatever its value; a key
/// with a value removes it only when the value matches.
pub fn remove_tags(tags: &mut Vec<Tag>, del: &[(String, Option<String>)]) {
    tags.retain(|t| {
        !del.iter()
            .any(|(k, v)| *k == t.key && v.as_ref().is_none_or(|v| *v == t.value))
    });
}

/// The current time as AWS prints it: `2026-11-23T09:30:00.000Z`.
pub fn now_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// `User initiated (2026-11-23 09:30:00 GMT)`, as StateTransitionReason says.
pub fn user_initiated_reason() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    format!(
        "User initiated ({} GMT)",
        now.format(&fmt).unwrap_or_default()
    )
}
