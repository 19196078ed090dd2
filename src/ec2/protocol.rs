//! The ec2.sock protocol: length-prefixed postcard frames, one request and one reply
//! per frame, the same framing kmsd uses (4-byte big-endian length, then postcard).
//! The caller is identified by the kernel (SO_PEERCRED), never by the frame.
//!
//! STABILITY RULE: append new variants at the END of every enum; adding a struct
//! field is a protocol change: bump [`PROTOCOL_VERSION`].

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::error::Ec2Error;
use super::model::{Instance, InstanceState, Snapshot, Tag, Volume};

pub const PROTOCOL_VERSION: u16 = 2;
/// The largest frame either side accepts (a describe of thousands of volumes fits).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u16,
    /// `--as ARN`: act as another principal (kmsd decides whether the uid may).
    pub act_as: Option<String>,
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u16,
    pub result: Result<Response, Ec2Error>,
}

/// `--filters Name=...,Values=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateVolumeRequest {
    pub size_gib: Option<u64>,
    pub availability_zone: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSnapshotRequest {
    pub volume_id: String,
    pub description: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopySnapshotRequest {
    pub source_snapshot_id: String,
    pub description: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Vec<Tag>,
}

/// Where a new instance's root volume comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RootSource {
    /// A local image: a directory made by `scripts/make-guest.sh` (root.img, and
    /// vmlinuz + initrd.img for a boot profile) or a bare disk image file (no boot
    /// profile). Its content is copied into a new unencrypted root volume.
    Image(PathBuf),
    /// An existing available volume in the same zone becomes the root.
    Volume(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInstancesRequest {
    pub root: RootSource,
    /// Use this image's kernel and initrd to boot (when the root is an existing volume).
    pub boot_image: Option<PathBuf>,
    pub availability_zone: Option<String>,
    pub instance_type: Option<String>,
    pub tags: Vec<Tag>,
    /// Tags for the root volume (`ResourceType=volume` in --tag-specifications).
    pub volume_tags: Vec<Tag>,
    /// Root volume size when copying an image (default: the image size rounded up).
    pub root_size_gib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachVolumeRequest {
    pub volume_id: String,
    pub instance_id: String,
    pub device: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachVolumeRequest {
    pub volume_id: String,
    pub instance_id: Option<String>,
    pub device: Option<String>,
    pub force: bool,
}

/// One request per operation. APPEND NEW VARIANTS AT THE END.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    CreateVolume(CreateVolumeRequest),
    DescribeVolumes {
        volume_ids: Vec<String>,
        filters: Vec<Filter>,
    },
    DeleteVolume {
        volume_id: String,
    },
    CreateTags {
        resources: Vec<String>,
        tags: Vec<Tag>,
    },
    DeleteTags {
        resources: Vec<String>,
        /// Key, and the value that must match (None: any value).
        tags: Vec<(String, Option<String>)>,
    },
    CreateSnapshot(CreateSnapshotRequest),
    DescribeSnapshots {
        snapshot_ids: Vec<String>,
        filters: Vec<Filter>,
    },
    DeleteSnapshot {
        snapshot_id: String,
    },
    CopySnapshot(CopySnapshotRequest),
    RunInstances(RunInstancesRequest),
    DescribeInstances {
        instance_ids: Vec<String>,
        filters: Vec<Filter>,
    },
    StartInstances {
        instance_ids: Vec<String>,
    },
    StopInstances {
        instance_ids: Vec<String>,
        force: bool,
    },
    TerminateInstances {
        instance_ids: Vec<String>,
    },
    AttachVolume(AttachVolumeRequest),
    DetachVolume(DetachVolumeRequest),
    GetConsoleOutput {
        instance_id: String,
    },
    /// `atrest attach [--loop] VOL`: attach to the local instance and serve it now.
    LocalAttach {
        volume_id: String,
        loop_device: bool,
    },
    /// `atrest detach [--force] VOL`.
    LocalDetach {
        volume_id: String,
        force: bool,
    },
    /// Is the daemon up, and where does it serve?
    Status,
}

impl Request {
    /// The AWS operation name (for error messages and the trail).
    pub fn operation(&self) -> &'static str {
        match self {
            Request::CreateVolume(_) => "CreateVolume",
            Request::DescribeVolumes { .. } => "DescribeVolumes",
            Request::DeleteVolume { .. } => "DeleteVolume",
            Request::CreateTags { .. } => "CreateTags",
            Request::DeleteTags { .. } => "DeleteTags",
            Request::CreateSnapshot(_) => "CreateSnapshot",
            Request::DescribeSnapshots { .. } => "DescribeSnapshots",
            Request::DeleteSnapshot { .. } => "DeleteSnapshot",
            Request::CopySnapshot(_) => "CopySnapshot",
            Request::RunInstances(_) => "RunInstances",
            Request::DescribeInstances { .. } => "DescribeInstances",
            Request::StartInstances { .. } => "StartInstances",
            Request::StopInstances { .. } => "StopInstances",
            Request::TerminateInstances { .. } => "TerminateInstances",
            Request::AttachVolume(_) => "AttachVolume",
            Request::DetachVolume(_) => "DetachVolume",
            Request::GetConsoleOutput { .. } => "GetConsoleOutput",
            Request::LocalAttach { .. } => "Attach",
            Request::LocalDetach { .. } => "Detach",
            Request::Status => "Status",
        }
    }
}

/// `Ebs` of one block device mapping of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDeviceView {
    pub device_name: String,
    pub volume_id: String,
    pub status: String,
    pub attach_time: String,
    pub delete_on_termination: bool,
}

/// An instance as DescribeInstances shows it (with its mappings from the volumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance: Instance,
    pub block_devices: Vec<BlockDeviceView>,
    pub owner_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub instance_id: String,
    pub previous: InstanceState,
    pub current: InstanceState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub volume_id: String,
    pub instance_id: String,
    pub device: String,
    pub state: String,
    pub attach_time: String,
    pub delete_on_termination: bool,
}

/// What one served volume looks like to `atrest status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedVolume {
    pub instance_id: String,
    pub volume_id: String,
    pub path: PathBuf,
    pub loop_device: Option<String>,
    /// The KMS key state as the service last learnt it from the trail (`Enabled` when it
    /// was attached); `None` for an unencrypted volume.
    pub key_state: Option<String>,
    /// What that means for this volume, when the user should know (key disabled or
    /// pending deletion while attached, data key revoked).
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub mountpoint: Option<PathBuf>,
    pub served: Vec<ServedVolume>,
}

/// One response per request kind. APPEND NEW VARIANTS AT THE END.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Empty,
    Volume(Volume),
    Volumes(Vec<Volume>),
    Snapshot(Snapshot),
    Snapshots(Vec<Snapshot>),
    SnapshotId(String),
    Reservation {
        reservation_id: String,
        owner_id: String,
        instances: Vec<InstanceView>,
    },
    Instances {
        owner_id: String,
        instances: Vec<InstanceView>,
    },
    StateChanges(Vec<StateChange>),
    Attachment(AttachmentView),
    ConsoleOutput {
        instance_id: String,
        output: String,
        timestamp: String,
    },
    LocalAttached {
        path: PathBuf,
        loop_device: Option<String>,
    },
    Status(DaemonStatus),
}

pub use plumbing::frame::FrameError;

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), FrameError> {
    plumbing::frame::write(w, value, &mut Vec::new(), MAX_FRAME)
}

/// Reads one frame and decodes it; the version (first field) is checked before the rest.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut buf = Vec::new();
    plumbing::frame::read_bytes(r, &mut buf, MAX_FRAME)?;
    plumbing::frame::decode_versioned(&buf, PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: None,
            request: Request::DeleteVolume {
                volume_id: "vol-1".into(),
            },
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &env).unwrap();
        let back: RequestEnvelope = read_frame(&mut &buf[..]).unwrap();
        assert!(
            matches!(back.request, Request::DeleteVolume { volume_id } if volume_id == "vol-1")
        );

        let mut bad = Vec::new();
        write_frame(&mut bad, &(9u16, 0u8)).unwrap();
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &bad[..]),
            Err(FrameError::Version { got: 9, .. })
        ));
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &huge[..]),
            Err(FrameError::TooLarge { .. })
        ));
        // The current version (a one-byte varint), then bytes that decode as nothing.
        let garbage = [0u8, 0, 0, 3, PROTOCOL_VERSION as u8, 0, 250];
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &garbage[..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &[][..]),
            Err(FrameError::Closed)
        ));
    }
}
