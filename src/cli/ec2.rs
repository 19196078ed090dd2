//! `atrest ec2 ...`: AWS CLI names, flags and JSON, answered by the volume service
//! on HOME/ec2.sock (or in-process, for what needs no running service).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{report_error, Global};
use crate::ec2::api::{
    AttachVolumeRequest, AttributeValue, BlockDeviceMapping, CopyImageRequest, CopySnapshotRequest,
    CreateSnapshotRequest, CreateTagsRequest, CreateVolumePermission,
    CreateVolumePermissionModifications, CreateVolumeRequest, DeleteSnapshotRequest,
    DeleteTagsRequest, DeleteVolumeRequest, DeregisterImageRequest, DescribeImageAttributeRequest,
    DescribeImagesRequest, DescribeInstancesRequest, DescribeSnapshotAttributeRequest,
    DescribeSnapshotsRequest, DescribeVolumesRequest, DetachVolumeRequest, EbsBlockDevice, Filter,
    GetConsoleOutputRequest, LaunchPermission, LaunchPermissionModifications,
    ModifyImageAttributeRequest, ModifySnapshotAttributeRequest, Operation, Placement,
    RegisterImageRequest, Request, Response, RunInstancesRequest, StartInstancesRequest,
    StopInstancesRequest, Tag, TagSpecification, TerminateInstancesRequest,
};
use crate::ec2::client::{ClientError, Ec2Client};
use crate::ec2::model::ROOT_DEVICE;
use crate::ec2::{Caller, Ec2Code, Ec2Error, Ec2Service};
use plumbing::shorthand;

#[derive(Debug, clap::Args)]
pub struct Ec2Args {
    #[command(subcommand)]
    pub command: Ec2Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Ec2Command {
    /// Creates an EBS volume (empty, or from a snapshot; encrypted with --encrypted).
    CreateVolume {
        /// Size in GiB (default: the snapshot's size).
        #[arg(long, allow_negative_numbers = true)]
        size: Option<i64>,
        #[arg(long)]
        availability_zone: String,
        #[arg(long)]
        encrypted: bool,
        #[arg(long, conflicts_with = "encrypted")]
        no_encrypted: bool,
        /// Key ID, ARN, alias name or alias ARN (requires --encrypted).
        #[arg(long)]
        kms_key_id: Option<String>,
        #[arg(long)]
        snapshot_id: Option<String>,
        /// gp2 or gp3 (accepted for compatibility; every volume is the same here).
        #[arg(long)]
        volume_type: Option<String>,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    DescribeVolumes {
        #[arg(long, num_args = 1..)]
        volume_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
        /// At most this many (5-1000); the answer's NextToken asks for the rest.
        #[arg(long, allow_negative_numbers = true)]
        max_results: Option<i64>,
        #[arg(long)]
        next_token: Option<String>,
    },
    DeleteVolume {
        #[arg(long)]
        volume_id: String,
    },
    CreateTags {
        #[arg(long, num_args = 1.., required = true)]
        resources: Vec<String>,
        #[arg(long, num_args = 1.., required = true)]
        tags: Vec<String>,
    },
    DeleteTags {
        #[arg(long, num_args = 1.., required = true)]
        resources: Vec<String>,
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    CreateSnapshot {
        #[arg(long)]
        volume_id: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    DescribeSnapshots {
        #[arg(long, num_args = 1..)]
        snapshot_ids: Vec<String>,
        /// `self` or this account's ID (every snapshot here is this account's).
        #[arg(long, num_args = 1..)]
        owner_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
        /// At most this many (5-1000); the answer's NextToken asks for the rest.
        #[arg(long, allow_negative_numbers = true)]
        max_results: Option<i64>,
        #[arg(long)]
        next_token: Option<String>,
    },
    DeleteSnapshot {
        #[arg(long)]
        snapshot_id: String,
    },
    CopySnapshot {
        #[arg(long)]
        source_snapshot_id: String,
        /// Accepted for compatibility; must be this region.
        #[arg(long)]
        source_region: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        encrypted: bool,
        #[arg(long)]
        kms_key_id: Option<String>,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    /// Launches an instance. --image-id is an AMI (`ami-...`: the root volume is
    /// restored from its snapshot), or, as a local shortcut, a directory made by
    /// scripts/make-guest.sh (root.img, vmlinuz, initrd.img: boots under qemu; registered
    /// as an AMI on first use) or a raw disk image file (no boot profile: its volumes are
    /// served, not booted).
    RunInstances {
        #[arg(long)]
        image_id: Option<PathBuf>,
        /// The root device's mapping, e.g.
        /// `DeviceName=/dev/xvda,Ebs={Encrypted=true,KmsKeyId=alias/MyKey,VolumeSize=2}`.
        #[arg(long, num_args = 1..)]
        block_device_mappings: Vec<String>,
        /// Use this existing available volume as the root instead of copying an image
        /// (the image, if given, then only supplies the boot profile).
        #[arg(long)]
        root_volume_id: Option<String>,
        /// Root volume size in GiB when copying the image.
        #[arg(long, allow_negative_numbers = true)]
        root_size: Option<i64>,
        /// Boot with the kernel and initrd of this image directory (make-guest.sh
        /// output) whatever the root is.
        #[arg(long)]
        boot_image: Option<PathBuf>,
        /// e.g. `AvailabilityZone=us-east-1a`.
        #[arg(long)]
        placement: Option<String>,
        #[arg(long)]
        instance_type: Option<String>,
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        count: i64,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    DescribeInstances {
        #[arg(long, num_args = 1..)]
        instance_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
        /// At most this many (5-1000); the answer's NextToken asks for the rest.
        #[arg(long, allow_negative_numbers = true)]
        max_results: Option<i64>,
        #[arg(long)]
        next_token: Option<String>,
    },
    StartInstances {
        #[arg(long, num_args = 1.., required = true)]
        instance_ids: Vec<String>,
    },
    StopInstances {
        #[arg(long, num_args = 1.., required = true)]
        instance_ids: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    TerminateInstances {
        #[arg(long, num_args = 1.., required = true)]
        instance_ids: Vec<String>,
    },
    AttachVolume {
        #[arg(long)]
        volume_id: String,
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        device: String,
    },
    DetachVolume {
        #[arg(long)]
        volume_id: String,
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        force: bool,
    },
    GetConsoleOutput {
        #[arg(long)]
        instance_id: String,
        #[arg(long)]
        latest: bool,
    },
    /// Registers an AMI from an EBS snapshot: `--block-device-mappings
    /// DeviceName=/dev/xvda,Ebs={SnapshotId=snap-...}`; `--boot-image DIR` (a
    /// scripts/make-guest.sh directory) gives its kernel and initrd.
    RegisterImage {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        architecture: Option<String>,
        #[arg(long)]
        root_device_name: Option<String>,
        #[arg(long, num_args = 1..)]
        block_device_mappings: Vec<String>,
        #[arg(long)]
        virtualization_type: Option<String>,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
        /// The boot profile: the kernel and initrd of this directory.
        #[arg(long)]
        boot_image: Option<PathBuf>,
    },
    DescribeImages {
        #[arg(long, num_args = 1..)]
        image_ids: Vec<String>,
        /// `self` or account IDs.
        #[arg(long, num_args = 1..)]
        owners: Vec<String>,
        /// `self` or account IDs: the images they may launch.
        #[arg(long, num_args = 1..)]
        executable_users: Vec<String>,
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
        #[arg(long, allow_negative_numbers = true)]
        max_results: Option<i64>,
        #[arg(long)]
        next_token: Option<String>,
    },
    DeregisterImage {
        #[arg(long)]
        image_id: String,
    },
    /// Shares an AMI: `--launch-permission "Add=[{UserId=444455556666}]"`.
    ModifyImageAttribute {
        #[arg(long)]
        image_id: String,
        #[arg(long)]
        attribute: Option<String>,
        #[arg(long)]
        launch_permission: Option<String>,
        #[arg(long)]
        operation_type: Option<String>,
        #[arg(long, num_args = 1..)]
        user_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        user_groups: Vec<String>,
        /// `Value=TEXT`.
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        value: Option<String>,
    },
    DescribeImageAttribute {
        #[arg(long)]
        image_id: String,
        /// `launchPermission` or `description`.
        #[arg(long)]
        attribute: String,
    },
    /// Shares a snapshot: `--create-volume-permission "Add=[{UserId=444455556666}]"`.
    ModifySnapshotAttribute {
        #[arg(long)]
        snapshot_id: String,
        #[arg(long)]
        attribute: Option<String>,
        #[arg(long)]
        create_volume_permission: Option<String>,
        #[arg(long)]
        operation_type: Option<String>,
        #[arg(long, num_args = 1..)]
        user_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        group_names: Vec<String>,
    },
    DescribeSnapshotAttribute {
        #[arg(long)]
        snapshot_id: String,
        /// `createVolumePermission`.
        #[arg(long)]
        attribute: String,
    },
    /// Copies an AMI (its snapshots re-encrypted under --kms-key-id with --encrypted).
    CopyImage {
        #[arg(long)]
        name: String,
        #[arg(long)]
        source_image_id: String,
        #[arg(long)]
        source_region: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        encrypted: bool,
        #[arg(long)]
        kms_key_id: Option<String>,
        #[arg(long)]
        copy_image_tags: bool,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    /// Waits until a resource reaches a state (like `aws ec2 wait`).
    Wait {
        #[command(subcommand)]
        waiter: Waiter,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Waiter {
    VolumeAvailable {
        #[arg(long, num_args = 1.., required = true)]
        volume_ids: Vec<String>,
    },
    SnapshotCompleted {
        #[arg(long, num_args = 1.., required = true)]
        snapshot_ids: Vec<String>,
    },
    InstanceRunning {
        #[arg(long, num_args = 1.., required = true)]
        instance_ids: Vec<String>,
    },
    InstanceStopped {
        #[arg(long, num_args = 1.., required = true)]
        instance_ids: Vec<String>,
    },
    ImageAvailable {
        #[arg(long, num_args = 1.., required = true)]
        image_ids: Vec<String>,
    },
}

/// A usage error found after clap (a shorthand or JSON argument that is wrong).
struct Usage(String);

fn parse_arg(s: &str) -> Result<Value, Usage> {
    shorthand::parse(s).map_err(|e| Usage(e.to_string()))
}

fn str_field(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn tag_list(v: &Value) -> Result<Vec<Tag>, Usage> {
    let items = match v {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![v.clone()],
        _ => return Err(Usage(format!("expected Key=...,Value=... tags, got {v}"))),
    };
    items
        .iter()
        .map(|t| {
            let key = str_field(t, "Key").ok_or_else(|| Usage(format!("tag {t} has no Key")))?;
            Ok(Tag {
                key,
                value: str_field(t, "Value"),
            })
        })
        .collect()
}

/// `--tags Key=a,Value=b Key=c,Value=d` (or a JSON list).
fn parse_tags(args: &[String]) -> Result<Vec<Tag>, Usage> {
    let mut out = Vec::new();
    for a in args {
        out.extend(tag_list(&parse_arg(a)?)?);
    }
    Ok(out)
}

/// `--tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=X}]'` (the service
/// checks the resource types).
fn tag_specs(args: &[String]) -> Result<Vec<TagSpecification>, Usage> {
    let mut out = Vec::new();
    for a in args {
        for s in items(parse_arg(a)?) {
            let resource_type = Some(
                str_field(&s, "ResourceType")
                    .ok_or_else(|| Usage(format!("tag specification {s} has no ResourceType")))?,
            );
            let tags = match s.get("Tags") {
                Some(t) => tag_list(t)?,
                None => Vec::new(),
            };
            out.push(TagSpecification {
                resource_type,
                tags,
            });
        }
    }
    Ok(out)
}

/// A shorthand or JSON argument's items (one object is a list of one).
fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        o => vec![o],
    }
}

fn bool_field(v: &Value, name: &str) -> Result<Option<bool>, Usage> {
    match str_field(v, name).as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(Usage(format!("{name}={other}: expected true or false"))),
    }
}

/// `--block-device-mappings DeviceName=/dev/xvda,Ebs={SnapshotId=snap-..,VolumeSize=2}`
/// (or a JSON list).
fn parse_mappings(args: &[String]) -> Result<Vec<BlockDeviceMapping>, Usage> {
    let mut out = Vec::new();
    for a in args {
        for m in items(parse_arg(a)?) {
            let ebs =
                match m.get("Ebs") {
                    Some(e) => Some(EbsBlockDevice {
                        delete_on_termination: bool_field(e, "DeleteOnTermination")?,
                        snapshot_id: str_field(e, "SnapshotId"),
                        volume_size: match str_field(e, "VolumeSize") {
                            Some(s) => Some(s.parse().map_err(|_| {
                                Usage(format!("VolumeSize={s}: expected an integer"))
                            })?),
                            None => None,
                        },
                        volume_type: str_field(e, "VolumeType"),
                        kms_key_id: str_field(e, "KmsKeyId"),
                        encrypted: bool_field(e, "Encrypted")?,
                    }),
                    None => None,
                };
            out.push(BlockDeviceMapping {
                device_name: str_field(&m, "DeviceName"),
                ebs,
                no_device: str_field(&m, "NoDevice"),
                virtual_name: str_field(&m, "VirtualName"),
            });
        }
    }
    Ok(out)
}

/// `Add=[{UserId=...},{Group=all}],Remove=[...]`: (group, user ID) pairs to add and remove.
/// `--launch-permission` / `--create-volume-permission` (`Add=[{Group=all}],Remove=[{UserId=..}]`):
/// the `(add, remove)` lists, each entry made by `perm(group, user_id)`.
fn parse_permissions<P>(
    arg: &str,
    perm: impl Fn(Option<String>, Option<String>) -> P,
) -> Result<(Vec<P>, Vec<P>), Usage> {
    let v = parse_arg(arg)?;
    let list = |name: &str| -> Vec<P> {
        v.get(name)
            .cloned()
            .map(items)
            .unwrap_or_default()
            .iter()
            .map(|p| perm(str_field(p, "Group"), str_field(p, "UserId")))
            .collect()
    };
    Ok((list("Add"), list("Remove")))
}

fn parse_filters(args: &[String]) -> Result<Vec<Filter>, Usage> {
    let mut out = Vec::new();
    for a in args {
        for f in items(parse_arg(a)?) {
            let name =
                str_field(&f, "Name").ok_or_else(|| Usage(format!("filter {f} has no Name")))?;
            let values = match f.get("Values") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => return Err(Usage(format!("filter {name} has no Values"))),
            };
            out.push(Filter { name, values });
        }
    }
    Ok(out)
}

/// How to reach the service: the daemon if it runs, else in-process where allowed.
pub struct Ec2Conn {
    g: Global,
}

impl Ec2Conn {
    pub fn new(g: &Global) -> Ec2Conn {
        Ec2Conn { g: g.clone() }
    }

    /// Sends one operation and returns its output.
    pub fn send<O: Operation>(&self, req: O) -> Result<O::Output, Ec2Error> {
        let response = self.call(req.into())?;
        let got = response.operation();
        O::output(response).ok_or_else(|| {
            Ec2Error::internal(format!("the volume service answered {got} to {}", O::NAME))
        })
    }

    pub fn call(&self, req: Request) -> Result<Response, Ec2Error> {
        let layout = self.g.layout();
        match Ec2Client::connect(&layout.ec2_socket(), self.g.act_as.clone()) {
            Ok(mut c) => c.call(req).map_err(|e| match e {
                ClientError::Service(e) => e,
                other => Ec2Error::new(Ec2Code::ServiceUnavailable, other.to_string()),
            }),
            Err(ClientError::NotRunning { .. }) if !req.needs_runtime() => {
                let svc = Ec2Service::new(layout, None)?;
                // SAFETY: getuid/getgid cannot fail.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                let caller = Caller {
                    uid,
                    gid,
                    pid: std::process::id(),
                    principal: svc.kms.caller_principal(uid, self.g.act_as.as_deref())?,
                    signer: None,
                };
                let out = svc.handle(&caller, req);
                // Background work (snapshots, restores) finishes before we exit.
                svc.wait_for_jobs();
                out
            }
            Err(e) => Err(Ec2Error::new(Ec2Code::ServiceUnavailable, e.to_string())),
        }
    }
}

/// `--tag-specifications` etc. as the request's members.
fn build(args: Ec2Command) -> Result<Request, Usage> {
    Ok(match args {
        Ec2Command::CreateVolume {
            size,
            availability_zone,
            encrypted,
            no_encrypted: _,
            kms_key_id,
            snapshot_id,
            volume_type,
            tag_specifications,
        } => CreateVolumeRequest {
            availability_zone: Some(availability_zone),
            encrypted: Some(encrypted),
            kms_key_id,
            size,
            snapshot_id,
            volume_type,
            tag_specifications: tag_specs(&tag_specifications)?,
        }
        .into(),
        Ec2Command::DescribeVolumes {
            volume_ids,
            filters,
            max_results,
            next_token,
        } => DescribeVolumesRequest {
            volume_ids,
            filters: parse_filters(&filters)?,
            max_results,
            next_token,
        }
        .into(),
        Ec2Command::DeleteVolume { volume_id } => DeleteVolumeRequest { volume_id }.into(),
        Ec2Command::CreateTags { resources, tags } => CreateTagsRequest {
            resources,
            tags: parse_tags(&tags)?,
        }
        .into(),
        Ec2Command::DeleteTags { resources, tags } => DeleteTagsRequest {
            resources,
            tags: parse_tags(&tags)?,
        }
        .into(),
        Ec2Command::CreateSnapshot {
            volume_id,
            description,
            tag_specifications,
        } => CreateSnapshotRequest {
            volume_id,
            description: Some(description),
            tag_specifications: tag_specs(&tag_specifications)?,
        }
        .into(),
        Ec2Command::DescribeSnapshots {
            snapshot_ids,
            owner_ids,
            filters,
            max_results,
            next_token,
        } => DescribeSnapshotsRequest {
            snapshot_ids,
            owner_ids,
            filters: parse_filters(&filters)?,
            max_results,
            next_token,
        }
        .into(),
        Ec2Command::DeleteSnapshot { snapshot_id } => DeleteSnapshotRequest { snapshot_id }.into(),
        Ec2Command::CopySnapshot {
            source_snapshot_id,
            source_region,
            description,
            encrypted,
            kms_key_id,
            tag_specifications,
        } => CopySnapshotRequest {
            source_snapshot_id,
            source_region,
            description: Some(description),
            encrypted: Some(encrypted),
            kms_key_id,
            tag_specifications: tag_specs(&tag_specifications)?,
        }
        .into(),
        Ec2Command::RunInstances {
            image_id,
            block_device_mappings,
            root_volume_id,
            root_size,
            boot_image,
            placement,
            instance_type,
            count,
            tag_specifications,
        } => {
            if image_id.is_none() && root_volume_id.is_none() {
                return Err(Usage(
                    "run-instances needs --image-id (an image directory or file) or --root-volume-id".into(),
                ));
            }
            let placement = match placement {
                Some(p) => Some(Placement {
                    availability_zone: Some(
                        str_field(&parse_arg(&p)?, "AvailabilityZone").ok_or_else(|| {
                            Usage("--placement needs AvailabilityZone=...".into())
                        })?,
                    ),
                    tenancy: None,
                }),
                None => None,
            };
            let mut block_device_mappings = parse_mappings(&block_device_mappings)?;
            if let Some(size) = root_size {
                match block_device_mappings
                    .iter_mut()
                    .find(|m| m.device_name.as_deref() == Some(ROOT_DEVICE))
                {
                    Some(m) => m.ebs.get_or_insert_with(Default::default).volume_size = Some(size),
                    None => block_device_mappings.push(BlockDeviceMapping {
                        device_name: Some(ROOT_DEVICE.into()),
                        ebs: Some(EbsBlockDevice {
                            volume_size: Some(size),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }
            }
            RunInstancesRequest {
                image_id: image_id.map(|p| p.display().to_string()),
                instance_type,
                min_count: Some(count),
                max_count: Some(count),
                placement,
                block_device_mappings,
                tag_specifications: tag_specs(&tag_specifications)?,
                root_volume_id,
                boot_image: boot_image.map(|p| p.display().to_string()),
            }
            .into()
        }
        Ec2Command::DescribeInstances {
            instance_ids,
            filters,
            max_results,
            next_token,
        } => DescribeInstancesRequest {
            instance_ids,
            filters: parse_filters(&filters)?,
            max_results,
            next_token,
        }
        .into(),
        Ec2Command::StartInstances { instance_ids } => {
            StartInstancesRequest { instance_ids }.into()
        }
        Ec2Command::StopInstances {
            instance_ids,
            force,
        } => StopInstancesRequest {
            instance_ids,
            force: Some(force),
        }
        .into(),
        Ec2Command::TerminateInstances { instance_ids } => {
            TerminateInstancesRequest { instance_ids }.into()
        }
        Ec2Command::AttachVolume {
            volume_id,
            instance_id,
            device,
        } => AttachVolumeRequest {
            device,
            instance_id,
            volume_id,
        }
        .into(),
        Ec2Command::DetachVolume {
            volume_id,
            instance_id,
            device,
            force,
        } => DetachVolumeRequest {
            device,
            force: Some(force),
            instance_id,
            volume_id,
        }
        .into(),
        Ec2Command::GetConsoleOutput {
            instance_id,
            latest,
        } => GetConsoleOutputRequest {
            instance_id,
            latest: Some(latest),
        }
        .into(),
        Ec2Command::RegisterImage {
            name,
            description,
            architecture,
            root_device_name,
            block_device_mappings,
            virtualization_type,
            tag_specifications,
            boot_image,
        } => RegisterImageRequest {
            name,
            description,
            architecture,
            root_device_name,
            block_device_mappings: parse_mappings(&block_device_mappings)?,
            virtualization_type,
            tag_specifications: tag_specs(&tag_specifications)?,
            boot_image: boot_image.map(|p| p.display().to_string()),
        }
        .into(),
        Ec2Command::DescribeImages {
            image_ids,
            owners,
            executable_users,
            filters,
            max_results,
            next_token,
        } => DescribeImagesRequest {
            executable_users,
            filters: parse_filters(&filters)?,
            image_ids,
            owners,
            max_results,
            next_token,
        }
        .into(),
        Ec2Command::DeregisterImage { image_id } => DeregisterImageRequest { image_id }.into(),
        Ec2Command::ModifyImageAttribute {
            image_id,
            attribute,
            launch_permission,
            operation_type,
            user_ids,
            user_groups,
            description,
            value,
        } => {
            let launch_permission = match launch_permission {
                Some(a) => {
                    let (add, remove) = parse_permissions(&a, |group, user_id| LaunchPermission {
                        group,
                        user_id,
                    })?;
                    Some(LaunchPermissionModifications { add, remove })
                }
                None => None,
            };
            let description = match description {
                Some(d) => Some(AttributeValue {
                    value: Some(str_field(&parse_arg(&d)?, "Value").unwrap_or(d)),
                }),
                None => None,
            };
            ModifyImageAttributeRequest {
                image_id,
                attribute,
                launch_permission,
                operation_type,
                user_ids,
                user_groups,
                description,
                value,
            }
            .into()
        }
        Ec2Command::DescribeImageAttribute {
            image_id,
            attribute,
        } => DescribeImageAttributeRequest {
            attribute,
            image_id,
        }
        .into(),
        Ec2Command::ModifySnapshotAttribute {
            snapshot_id,
            attribute,
            create_volume_permission,
            operation_type,
            user_ids,
            group_names,
        } => {
            let create_volume_permission = match create_volume_permission {
                Some(a) => {
                    let (add, remove) = parse_permissions(&a, |group, user_id| {
                        CreateVolumePermission { group, user_id }
                    })?;
                    Some(CreateVolumePermissionModifications { add, remove })
                }
                None => None,
            };
            ModifySnapshotAttributeRequest {
                snapshot_id,
                attribute,
                create_volume_permission,
                operation_type,
                user_ids,
                group_names,
            }
            .into()
        }
        Ec2Command::DescribeSnapshotAttribute {
            snapshot_id,
            attribute,
        } => DescribeSnapshotAttributeRequest {
            attribute,
            snapshot_id,
        }
        .into(),
        Ec2Command::CopyImage {
            name,
            source_image_id,
            source_region,
            description,
            encrypted,
            kms_key_id,
            copy_image_tags,
            tag_specifications,
        } => CopyImageRequest {
            name,
            source_image_id,
            source_region,
            description,
            encrypted: Some(encrypted),
            kms_key_id,
            copy_image_tags: Some(copy_image_tags),
            tag_specifications: tag_specs(&tag_specifications)?,
        }
        .into(),
        Ec2Command::Wait { .. } => return Err(Usage("internal: wait is not a request".into())),
    })
}

pub fn run(g: &Global, args: Ec2Args) -> i32 {
    if let Ec2Command::Wait { waiter } = args.command {
        return wait(g, waiter);
    }
    let req = match build(args.command) {
        Ok(r) => r,
        Err(Usage(m)) => {
            eprintln!("\n{m}");
            return super::exit::PARAM;
        }
    };
    let op = req.operation();
    match Ec2Conn::new(g).call(req) {
        Ok(resp) => match resp.to_aws_json() {
            Value::Null => 0,
            v => g.output.emit(op, &v),
        },
        Err(e) => report_error(op, e.code.as_str(), &e.message),
    }
}

const WAIT_TIMEOUT: Duration = Duration::from_secs(600);

fn wait(g: &Global, w: Waiter) -> i32 {
    let conn = Ec2Conn::new(g);
    let (name, req, target, fail): (&str, Request, &str, &[&str]) = match w {
        Waiter::VolumeAvailable { volume_ids } => (
            "VolumeAvailable",
            DescribeVolumesRequest {
                volume_ids,
                ..Default::default()
            }
            .into(),
            "available",
            &["error", "deleting"],
        ),
        Waiter::SnapshotCompleted { snapshot_ids } => (
            "SnapshotCompleted",
            DescribeSnapshotsRequest {
                snapshot_ids,
                ..Default::default()
            }
            .into(),
            "completed",
            &["error"],
        ),
        Waiter::InstanceRunning { instance_ids } => (
            "InstanceRunning",
            DescribeInstancesRequest {
                instance_ids,
                ..Default::default()
            }
            .into(),
            "running",
            &["shutting-down", "terminated", "stopping", "stopped"],
        ),
        Waiter::ImageAvailable { image_ids } => (
            "ImageAvailable",
            DescribeImagesRequest {
                image_ids,
                ..Default::default()
            }
            .into(),
            "available",
            &["failed"],
        ),
        Waiter::InstanceStopped { instance_ids } => (
            "InstanceStopped",
            DescribeInstancesRequest {
                instance_ids,
                ..Default::default()
            }
            .into(),
            "stopped",
            &["terminated"],
        ),
    };
    let start = Instant::now();
    // InstanceRunning may see `stopped` before the launch began: only fail on it after
    // the instance has been seen pending (or after a grace period).
    let mut seen_progress = false;
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    let mut bar = ProgressBar::default();
    loop {
        let states: Vec<String> = match conn.call(req.clone()) {
            Ok(Response::DescribeVolumes(r)) => {
                if tty {
                    bar.show(
                        r.volumes
                            .iter()
                            .filter(|v| !v.snapshot_id.is_empty())
                            .map(|v| {
                                let pct = v.progress.as_deref().map_or(100, percent);
                                (v.volume_id.as_str(), pct)
                            }),
                    );
                }
                r.volumes.into_iter().map(|v| v.state).collect()
            }
            Ok(Response::DescribeSnapshots(r)) => {
                if tty {
                    bar.show(
                        r.snapshots
                            .iter()
                            .map(|s| (s.snapshot_id.as_str(), percent(&s.progress))),
                    );
                }
                r.snapshots.into_iter().map(|s| s.state).collect()
            }
            Ok(Response::DescribeImages(r)) => r.images.into_iter().map(|i| i.state).collect(),
            Ok(Response::DescribeInstances(r)) => r
                .reservations
                .into_iter()
                .flat_map(|res| res.instances)
                .map(|i| i.state.name)
                .collect(),
            Ok(_) => vec![],
            Err(e) => return report_error(req.operation(), e.code.as_str(), &e.message),
        };
        if states.iter().all(|s| s == target) {
            bar.finish();
            return 0;
        }
        if states.iter().any(|s| s == "pending" || s == "stopping") {
            seen_progress = true;
        }
        let grace = seen_progress || start.elapsed() > Duration::from_secs(2);
        if let Some(bad) = states.iter().find(|s| fail.contains(&s.as_str())) {
            if grace {
                eprintln!("\nWaiter {name} failed: Waiter encountered a terminal failure state: For expression \"State\" we matched expected path: \"{bad}\"");
                return super::exit::OTHER;
            }
        }
        if start.elapsed() > WAIT_TIMEOUT {
            eprintln!("\nWaiter {name} failed: Max attempts exceeded");
            return super::exit::OTHER;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `42%` as 42.
fn percent(p: &str) -> u8 {
    p.trim_end_matches('%').parse().unwrap_or(0)
}

/// A one-line progress bar on stderr (only drawn on a terminal).
#[derive(Default)]
struct ProgressBar {
    drawn: bool,
}

impl ProgressBar {
    fn show<'a>(&mut self, items: impl Iterator<Item = (&'a str, u8)>) {
        let parts: Vec<String> = items
            .map(|(id, pct)| {
                let filled = usize::from(pct.min(100)) / 5;
                format!(
                    "{id} [{}{}] {pct:>3}%",
                    "#".repeat(filled),
                    ".".repeat(20 - filled)
                )
            })
            .collect();
        if !parts.is_empty() {
            eprint!("\r{}", parts.join("  "));
            self.drawn = true;
        }
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
