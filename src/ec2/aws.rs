//! Rendering registry records as the AWS CLI prints them (`Volumes`, `Snapshots`,
//! `Reservations`, ...), with AWS's field names and shapes.

use serde_json::{json, Value};

use super::model::{Snapshot, Tag, Volume};
use super::protocol::{AttachmentView, InstanceView, StateChange};

fn tags(t: &[Tag]) -> Value {
    Value::Array(
        t.iter()
            .map(|t| json!({"Key": t.key, "Value": t.value}))
            .collect(),
    )
}

pub fn volume(v: &Volume) -> Value {
    let mut o = json!({
        "AvailabilityZone": v.availability_zone,
        "CreateTime": v.create_time,
        "Encrypted": v.encrypted,
        "Size": v.size_gib,
        "SnapshotId": v.snapshot_id.clone().unwrap_or_default(),
        "State": v.state.as_str(),
        "VolumeId": v.volume_id,
        "Iops": 3000,
        "VolumeType": "gp3",
        "Throughput": 125,
        "MultiAttachEnabled": false,
        "Attachments": v.attachment.iter().map(|a| json!({
            "AttachTime": a.attach_time,
            "Device": a.device,
            "InstanceId": a.instance_id,
            "State": a.state.as_str(),
            "VolumeId": v.volume_id,
            "DeleteOnTermination": a.delete_on_termination,
        })).collect::<Vec<_>>(),
    });
    if let Some(k) = &v.kms_key_id {
        o["KmsKeyId"] = json!(k);
    }
    if !v.tags.is_empty() {
        o["Tags"] = tags(&v.tags);
    }
    if v.state == super::model::VolumeState::Creating && v.snapshot_id.is_some() {
        o["Progress"] = json!(format!("{}%", v.progress));
    }
    if let Some(m) = &v.error_message {
        o["StatusMessage"] = json!(m);
    }
    o
}

pub fn snapshot(s: &Snapshot) -> Value {
    let mut o = json!({
        "Description": s.description,
        "Encrypted": s.encrypted,
        "OwnerId": s.owner_id,
        "Progress": format!("{}%", s.progress),
        "SnapshotId": s.snapshot_id,
        "StartTime": s.start_time,
        "State": s.state.as_str(),
        "VolumeId": s.volume_id,
        "VolumeSize": s.volume_size_gib,
        "StorageTier": "standard",
    });
    if let Some(k) = &s.kms_key_id {
        o["KmsKeyId"] = json!(k);
    }
    if !s.tags.is_empty() {
        o["Tags"] = tags(&s.tags);
    }
    if let Some(m) = &s.state_message {
        o["StateMessage"] = json!(m);
    }
    o
}

pub fn instance(v: &InstanceView) -> Value {
    let i = &v.instance;
    let mut o = json!({
        "AmiLaunchIndex": 0,
        "ImageId": i.image_id,
        "InstanceId": i.instance_id,
        "InstanceType": i.instance_type,
        "LaunchTime": i.launch_time,
        "Placement": {"AvailabilityZone": i.availability_zone, "Tenancy": "default"},
        "State": {"Code": i.state.code(), "Name": i.state.as_str()},
        "StateTransitionReason": i.state_transition_reason,
        "RootDeviceName": super::model::ROOT_DEVICE,
        "RootDeviceType": "ebs",
        "Architecture": "x86_64",
        "Hypervisor": "xen",
        "VirtualizationType": "hvm",
        "BlockDeviceMappings": v.block_devices.iter().map(|d| json!({
            "DeviceName": d.device_name,
            "Ebs": {
                "AttachTime": d.attach_time,
                "DeleteOnTermination": d.delete_on_termination,
                "Status": d.status,
                "VolumeId": d.volume_id,
            }
        })).collect::<Vec<_>>(),
    });
    if let Some(r) = &i.state_reason {
        o["StateReason"] = json!({"Code": r.code, "Message": r.message});
    }
    if !i.tags.is_empty() {
        o["Tags"] = tags(&i.tags);
    }
    o
}

pub fn reservation(reservation_id: &str, owner_id: &str, instances: &[&InstanceView]) -> Value {
    json!({
        "Groups": [],
        "Instances": instances.iter().map(|i| instance(i)).collect::<Vec<_>>(),
        "OwnerId": owner_id,
        "ReservationId": reservation_id,
    })
}

pub fn state_change(c: &StateChange) -> Value {
    json!({
        "CurrentState": {"Code": c.current.code(), "Name": c.current.as_str()},
        "InstanceId": c.instance_id,
        "PreviousState": {"Code": c.previous.code(), "Name": c.previous.as_str()},
    })
}

pub fn attachment(a: &AttachmentView) -> Value {
    json!({
        "AttachTime": a.attach_time,
        "Device": a.device,
        "InstanceId": a.instance_id,
        "State": a.state,
        "VolumeId": a.volume_id,
        "DeleteOnTermination": a.delete_on_termination,
    })
}
