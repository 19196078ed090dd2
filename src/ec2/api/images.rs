//! RegisterImage, DescribeImages, DeregisterImage, ModifyImageAttribute,
//! DescribeImageAttribute, CopyImage; ModifySnapshotAttribute and
//! DescribeSnapshotAttribute (`createVolumePermission`, which sharing an AMI's storage
//! needs).

use serde::{Deserialize, Serialize};

use super::{BlockDeviceMapping, Filter, Tag, TagSpecification};

/// The image tag that names RegisterImage's boot profile when the request has no
/// `BootImage` member (the stock `aws` CLI cannot send atrest's members):
/// `--tag-specifications 'ResourceType=image,Tags=[{Key=atrest:boot-image,Value=DIR}]'`.
pub const BOOT_IMAGE_TAG: &str = "atrest:boot-image";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterImageRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `x86_64` only.
    #[serde(default)]
    pub architecture: Option<String>,
    /// `/dev/xvda` (the default): the device whose snapshot is the root.
    #[serde(default)]
    pub root_device_name: Option<String>,
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// `hvm` only.
    #[serde(default)]
    pub virtualization_type: Option<String>,
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
    /// atrest: the boot profile, the kernel (`vmlinuz`) and initrd (`initrd.img`) of
    /// this directory (`scripts/make-guest.sh` output), copied into the image; else the
    /// directory an image tag [`BOOT_IMAGE_TAG`] names. Without either an instance of
    /// the image serves its volumes and boots nothing.
    #[serde(default)]
    pub boot_image: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterImageResult {
    pub image_id: String,
}

/// `Image`: what DescribeImages lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub architecture: String,
    pub creation_date: String,
    pub image_id: String,
    pub image_location: String,
    pub image_type: String,
    pub public: bool,
    pub owner_id: String,
    pub platform_details: String,
    pub usage_operation: String,
    pub state: String,
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    #[serde(default)]
    pub description: Option<String>,
    pub ena_support: bool,
    pub hypervisor: String,
    pub name: String,
    pub root_device_name: String,
    pub root_device_type: String,
    pub virtualization_type: String,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    #[serde(default)]
    pub source_image_id: Option<String>,
    #[serde(default)]
    pub source_image_region: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImagesRequest {
    /// `self`, `all` or account IDs: images these may launch.
    #[serde(default)]
    pub executable_users: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub image_ids: Vec<String>,
    /// `self` or account IDs (`amazon` and the like own nothing here).
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImagesResult {
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeregisterImageRequest {
    pub image_id: String,
}

/// `LaunchPermission`: an account (`UserId`) or everyone (`Group: all`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchPermission {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `LaunchPermissionModifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchPermissionModifications {
    #[serde(default)]
    pub add: Vec<LaunchPermission>,
    #[serde(default)]
    pub remove: Vec<LaunchPermission>,
}

/// `AttributeValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeValue {
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyImageAttributeRequest {
    pub image_id: String,
    /// `launchPermission` or `description`.
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub launch_permission: Option<LaunchPermissionModifications>,
    /// `add` or `remove`, with `UserIds` / `UserGroups`.
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub description: Option<AttributeValue>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImageAttributeRequest {
    pub attribute: String,
    pub image_id: String,
}

/// `ImageAttribute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageAttribute {
    pub image_id: String,
    #[serde(default)]
    pub launch_permissions: Option<Vec<LaunchPermission>>,
    #[serde(default)]
    pub description: Option<AttributeValue>,
}

/// `CreateVolumePermission`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVolumePermission {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `CreateVolumePermissionModifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVolumePermissionModifications {
    #[serde(default)]
    pub add: Vec<CreateVolumePermission>,
    #[serde(default)]
    pub remove: Vec<CreateVolumePermission>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifySnapshotAttributeRequest {
    pub snapshot_id: String,
    /// `createVolumePermission`.
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub create_volume_permission: Option<CreateVolumePermissionModifications>,
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub group_names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotAttributeRequest {
    pub attribute: String,
    pub snapshot_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotAttributeResult {
    pub snapshot_id: String,
    #[serde(default)]
    pub create_volume_permissions: Vec<CreateVolumePermission>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyImageRequest {
    pub name: String,
    pub source_image_id: String,
    /// Must be this region (there is one here).
    #[serde(default)]
    pub source_region: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub copy_image_tags: Option<bool>,
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyImageResult {
    pub image_id: String,
}
