//! `--filters` for the describe operations: AWS semantics (values of one filter are
//! OR'ed, filters are AND'ed, `*` and `?` wildcards), pure and unit-tested.

use super::api::Filter;
use super::error::Ec2Error;
use super::model::{tag_value, Image, ImageState, Instance, Snapshot, State, Tag, Volume};

/// AWS wildcard match: `*` any run of characters, `?` any one.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn any(values: &[String], actual: Option<&str>) -> bool {
    actual.is_some_and(|a| values.iter().any(|v| wildcard(v, a)))
}

fn tag_filter(name: &str, values: &[String], tags: &[Tag]) -> Option<bool> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(any(values, tag_value(tags, key)));
    }
    if name == "tag-key" {
        return Some(tags.iter().any(|t| any(values, Some(&t.key))));
    }
    if name == "tag-value" {
        return Some(tags.iter().any(|t| any(values, Some(&t.value))));
    }
    None
}

fn invalid(name: &str) -> Ec2Error {
    Ec2Error::invalid_parameter(format!("The filter '{name}' is invalid"))
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

pub fn volume_matches(v: &Volume, filters: &[Filter]) -> Result<bool, Ec2Error> {
    for f in filters {
        let vals = &f.values;
        let a = v.attachment.as_ref();
        let ok = match f.name.as_str() {
            "volume-id" => any(vals, Some(&v.volume_id)),
            "status" => any(vals, Some(v.state.as_str())),
            "encrypted" => any(vals, Some(bool_str(v.encrypted))),
            "size" => any(vals, Some(&v.size_gib.to_string())),
            "availability-zone" => any(vals, Some(&v.availability_zone)),
            "snapshot-id" => any(vals, v.snapshot_id.as_deref()),
            "kms-key-id" => any(vals, v.kms_key_id.as_deref()),
            "volume-type" => any(vals, Some("gp3")),
            "create-time" => any(vals, Some(&v.create_time)),
            "attachment.instance-id" => any(vals, a.map(|a| a.instance_id.as_str())),
            "attachment.device" => any(vals, a.map(|a| a.device.as_str())),
            "attachment.status" => any(vals, a.map(|a| a.state.as_str())),
            "attachment.delete-on-termination" => {
                any(vals, a.map(|a| bool_str(a.delete_on_termination)))
            }
            name => tag_filter(name, vals, &v.tags).ok_or_else(|| invalid(name))?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn snapshot_matches(s: &Snapshot, filters: &[Filter]) -> Result<bool, Ec2Error> {
    for f in filters {
        let vals = &f.values;
        let ok = match f.name.as_str() {
            "snapshot-id" => any(vals, Some(&s.snapshot_id)),
            "volume-id" => any(vals, Some(&s.volume_id)),
            "status" => any(vals, Some(s.state.as_str())),
            "encrypted" => any(vals, Some(bool_str(s.encrypted))),
            "owner-id" => any(vals, Some(&s.owner_id)),
            "description" => any(vals, Some(&s.description)),
            "volume-size" => any(vals, Some(&s.volume_size_gib.to_string())),
            "kms-key-id" => any(vals, s.kms_key_id.as_deref()),
            "progress" => any(vals, Some(&format!("{}%", s.progress))),
            name => tag_filter(name, vals, &s.tags).ok_or_else(|| invalid(name))?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// DescribeImages' filters; `st` is the image's state, `state` the registry (its
/// snapshots say whether a mapping is encrypted).
pub fn image_matches(
    i: &Image,
    st: ImageState,
    state: &State,
    filters: &[Filter],
) -> Result<bool, Ec2Error> {
    for f in filters {
        let vals = &f.values;
        let snaps = || {
            i.devices
                .iter()
                .filter_map(|d| state.snapshots.get(&d.snapshot_id))
        };
        let public = i.launch_permissions.iter().any(|p| p == "all");
        let ok = match f.name.as_str() {
            "image-id" => any(vals, Some(&i.image_id)),
            "name" => any(vals, Some(&i.name)),
            "description" => any(vals, i.description.as_deref()),
            "state" => any(vals, Some(st.as_str())),
            "owner-id" => any(vals, Some(&i.owner_id)),
            "is-public" => any(vals, Some(bool_str(public))),
            "architecture" => any(vals, Some("x86_64")),
            "image-type" => any(vals, Some("machine")),
            "virtualization-type" => any(vals, Some("hvm")),
            "hypervisor" => any(vals, Some("xen")),
            "root-device-type" => any(vals, Some("ebs")),
            "root-device-name" => any(vals, Some(&i.root_device_name)),
            "platform-details" => any(vals, Some("Linux/UNIX")),
            "block-device-mapping.snapshot-id" => {
                i.devices.iter().any(|d| any(vals, Some(&d.snapshot_id)))
            }
            "block-device-mapping.device-name" => {
                i.devices.iter().any(|d| any(vals, Some(&d.device_name)))
            }
            "block-device-mapping.volume-size" => i
                .devices
                .iter()
                .any(|d| any(vals, Some(&d.volume_size_gib.to_string()))),
            "block-device-mapping.delete-on-termination" => i
                .devices
                .iter()
                .any(|d| any(vals, Some(bool_str(d.delete_on_termination)))),
            "block-device-mapping.encrypted" => {
                snaps().any(|s| any(vals, Some(bool_str(s.encrypted))))
            }
            name => tag_filter(name, vals, &i.tags).ok_or_else(|| invalid(name))?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `attached`: the volumes attached to `i` (its block device mappings).
pub fn instance_matches(
    i: &Instance,
    attached: &[&Volume],
    filters: &[Filter],
) -> Result<bool, Ec2Error> {
    let devices = || {
        attached
            .iter()
            .filter_map(|v| v.attachment.as_ref().map(|a| (v, a)))
    };
    for f in filters {
        let vals = &f.values;
        let ok = match f.name.as_str() {
            "instance-id" => any(vals, Some(&i.instance_id)),
            "instance-state-name" => any(vals, Some(i.state.as_str())),
            "instance-state-code" => any(vals, Some(&i.state.code().to_string())),
            "availability-zone" => any(vals, Some(&i.availability_zone)),
            "image-id" => any(vals, Some(&i.image_id)),
            "instance-type" => any(vals, Some(&i.instance_type)),
            "reservation-id" => any(vals, Some(&i.reservation_id)),
            "block-device-mapping.volume-id" => {
                devices().any(|(v, _)| any(vals, Some(&v.volume_id)))
            }
            "block-device-mapping.device-name" => {
                devices().any(|(_, a)| any(vals, Some(&a.device)))
            }
            name => tag_filter(name, vals, &i.tags).ok_or_else(|| invalid(name))?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::model::{Attachment, AttachmentState, VolumeState};

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("Lab*", "LabInstance"));
        assert!(wildcard("?ab*e", "LabInstance"));
        assert!(!wildcard("Lab", "LabInstance"));
        assert!(wildcard("*Root*", "Encrypted Root volume"));
        assert!(!wildcard("a?c", "ac"));
    }

    fn f(name: &str, values: &[&str]) -> Filter {
        Filter {
            name: name.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn volume_filters() {
        let v = Volume {
            volume_id: "vol-1".into(),
            size_gib: 8,
            availability_zone: "us-east-1a".into(),
            state: VolumeState::InUse,
            encrypted: true,
            kms_key_id: Some("arn:k".into()),
            snapshot_id: None,
            create_time: "t".into(),
            tags: vec![Tag {
                key: "Name".into(),
                value: "Encrypted Root".into(),
            }],
            attachment: Some(Attachment {
                instance_id: "i-1".into(),
                device: "/dev/xvda".into(),
                state: AttachmentState::Attached,
                attach_time: "t".into(),
                delete_on_termination: false,
                local_owner: None,
            }),
            progress: 100,
            worker: None,
            error_message: None,
            restoring_for: None,
        };
        assert!(volume_matches(&v, &[f("tag:Name", &["Encrypted*"])]).unwrap());
        assert!(volume_matches(&v, &[f("tag:Name", &["x", "Encrypted Root"])]).unwrap());
        assert!(!volume_matches(
            &v,
            &[f("tag:Name", &["Encrypted*"]), f("encrypted", &["false"])]
        )
        .unwrap());
        assert!(volume_matches(
            &v,
            &[
                f("attachment.instance-id", &["i-1"]),
                f("status", &["in-use"])
            ]
        )
        .unwrap());
        assert!(!volume_matches(&v, &[f("tag:Other", &["*"])]).unwrap());
        assert_eq!(
            volume_matches(&v, &[f("nonsense", &["x"])])
                .unwrap_err()
                .code
                .as_str(),
            "InvalidParameterValue"
        );
    }
}
