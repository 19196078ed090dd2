//! RunInstances, DescribeInstances, StartInstances, StopInstances, TerminateInstances,
//! GetConsoleOutput.

use serde::{Deserialize, Serialize};

use super::{tags_of, Filter, Tag, TagSpecification};
use crate::ec2::model::{self, ROOT_DEVICE};

/// `Placement`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub tenancy: Option<String>,
}

/// `BlockDeviceMapping` of a request (RunInstances, RegisterImage).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockDeviceMapping {
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub ebs: Option<EbsBlockDevice>,
    #[serde(default)]
    pub no_device: Option<String>,
    #[serde(default)]
    pub virtual_name: Option<String>,
}

/// `EbsBlockDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsBlockDevice {
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// GiB.
    #[serde(default)]
    pub volume_size: Option<i64>,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunInstancesRequest {
    /// An AMI ID; or (atrest, the CLI's local shortcut) the path of a directory made by
    /// `scripts/make-guest.sh` or of a raw disk image.
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub min_count: Option<i64>,
    #[serde(default)]
    pub max_count: Option<i64>,
    #[serde(default)]
    pub placement: Option<Placement>,
    /// `/dev/xvda`'s `Ebs.VolumeSize` sizes the root volume.
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// `instance` and `volume` (the root volume).
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
    /// atrest: this existing available volume becomes the root (no copy of an image).
    #[serde(default)]
    pub root_volume_id: Option<String>,
    /// atrest: boot with the kernel and initrd of this image directory, whatever the root.
    #[serde(default)]
    pub boot_image: Option<String>,
}

/// `InstanceState`: `{Code: 16, Name: running}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceState {
    pub code: i64,
    pub name: String,
}

impl From<model::InstanceState> for InstanceState {
    fn from(s: model::InstanceState) -> InstanceState {
        InstanceState {
            code: i64::from(s.code()),
            name: s.as_str().into(),
        }
    }
}

/// `StateReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateReason {
    pub code: String,
    pub message: String,
}

/// `InstanceBlockDeviceMapping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceBlockDeviceMapping {
    pub device_name: String,
    pub ebs: EbsInstanceBlockDevice,
}

/// `EbsInstanceBlockDevice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsInstanceBlockDevice {
    pub attach_time: String,
    pub delete_on_termination: bool,
    pub status: String,
    pub volume_id: String,
}

/// `Instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub ami_launch_index: i64,
    pub image_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub launch_time: String,
    pub placement: Placement,
    pub state: InstanceState,
    pub state_transition_reason: String,
    pub root_device_name: String,
    pub root_device_type: String,
    pub architecture: String,
    pub hypervisor: String,
    pub virtualization_type: String,
    #[serde(default)]
    pub block_device_mappings: Vec<InstanceBlockDeviceMapping>,
    #[serde(default)]
    pub state_reason: Option<StateReason>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
}

impl Instance {
    /// `i` with the volumes attached to it (root first, as the registry orders them).
    pub fn of(i: &model::Instance, attached: &[&model::Volume]) -> Instance {
        Instance {
            ami_launch_index: 0,
            image_id: i.image_id.clone(),
            instance_id: i.instance_id.clone(),
            instance_type: i.instance_type.clone(),
            launch_time: i.launch_time.clone(),
            placement: Placement {
                availability_zone: Some(i.availability_zone.clone()),
                tenancy: Some("default".into()),
            },
            state: i.state.into(),
            state_transition_reason: i.state_transition_reason.clone(),
            root_device_name: ROOT_DEVICE.into(),
            root_device_type: "ebs".into(),
            architecture: "x86_64".into(),
            hypervisor: "xen".into(),
            virtualization_type: "hvm".into(),
            block_device_mappings: attached
                .iter()
                .filter_map(|v| {
                    v.attachment.as_ref().map(|a| InstanceBlockDeviceMapping {
                        device_name: a.device.clone(),
                        ebs: EbsInstanceBlockDevice {
                            attach_time: a.attach_time.clone(),
                            delete_on_termination: a.delete_on_termination,
                            status: a.state.as_str().into(),
                            volume_id: v.volume_id.clone(),
                        },
                    })
                })
                .collect(),
            state_reason: i.state_reason.as_ref().map(|r| StateReason {
                code: r.code.clone(),
                message: r.message.clone(),
            }),
            tags: tags_of(&i.tags),
        }
    }
}

/// `GroupIdentifier` (security groups: there are none here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIdentifier {
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub group_name: Option<String>,
}

/// `Reservation`: what RunInstances answers, and DescribeInstances' unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reservation {
    #[serde(default)]
    pub groups: Vec<GroupIdentifier>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    pub owner_id: String,
    pub reservation_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesRequest {
    #[serde(default)]
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesResult {
    #[serde(default)]
    pub reservations: Vec<Reservation>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `InstanceStateChange`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStateChange {
    pub current_state: InstanceState,
    pub instance_id: String,
    pub previous_state: InstanceState,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartInstancesRequest {
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartInstancesResult {
    #[serde(default)]
    pub starting_instances: Vec<InstanceStateChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopInstancesRequest {
    #[serde(default)]
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub force: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopInstancesResult {
    #[serde(default)]
    pub stopping_instances: Vec<InstanceStateChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateInstancesRequest {
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateInstancesResult {
    #[serde(default)]
    pub terminating_instances: Vec<InstanceStateChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetConsoleOutputRequest {
    pub instance_id: String,
    #[serde(default)]
    pub latest: Option<bool>,
}

/// `Output` is the text itself (the last 64 KiB of the serial console); EC2's wire
/// carries it base64-encoded, which an EC2 Query encoder does at its edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetConsoleOutputResult {
    pub instance_id: String,
    pub output: String,
    pub timestamp: String,
}
