//! One operation, one place: each EC2 operation's request and response types, with the
//! member names and shapes of botocore's EC2 model (`ec2/2016-11-15/service-2.json`),
//! so that ec2.sock (postcard), the CLI's JSON (what `aws ec2 ...` prints) and an EC2
//! Query endpoint all carry the same values.
//!
//! - Members are PascalCase as in the model; `Option` members are `null` in postcard
//!   (positional: nothing is skipped) and dropped at the JSON edge ([`to_aws_json`]);
//!   optional and collection members are `#[serde(default)]`, so JSON may omit them.
//! - Integers are `i64` (the model's `Integer`), so a negative size reaches the
//!   service and is refused with EC2's error instead of failing to parse.
//! - Timestamps are strings as EC2 writes them (`2026-11-23T09:30:00.000Z`).
//! - Members marked "atrest" are this service's extensions (for example
//!   `RunInstances.RootVolumeId`); an EC2 Query decoder never sets them.
//!
//! The table in [`operations!`] lists every operation once: its name, whether it only
//! reads, and whether only the running volume service (`atrest mount`) can answer it.
//! It generates [`Request`] and [`Response`] (one newtype variant per operation,
//! APPEND-ONLY: postcard encodes the variant index) and an [`Operation`] impl per
//! request type. A new operation is its types here, one line in the table, and its
//! handler in the service.

mod images;
mod instances;
mod local;
mod snapshots;
mod tags;
mod volumes;

pub use images::*;
pub use instances::*;
pub use local::*;
pub use snapshots::*;
pub use tags::*;
pub use volumes::*;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use super::model;

/// What every operation's request type knows about itself.
pub trait Operation: Serialize + DeserializeOwned + Into<Request> {
    /// The AWS operation name (`CreateVolume`).
    const NAME: &'static str;
    /// Whether it changes nothing (CloudTrail's `readOnly`).
    const READ_ONLY: bool;
    /// Whether only the running volume service can answer it (it serves volumes,
    /// holds their keys or runs guests); the CLI answers the others in-process when
    /// the service is not running.
    const NEEDS_RUNTIME: bool;
    /// What it answers.
    type Output: Serialize + DeserializeOwned;
    /// The output, if `response` is this operation's.
    fn output(response: Response) -> Option<Self::Output>;
}

macro_rules! operations {
    ($( $op:ident ( $req:ty ) -> $out:ty, $name:literal, read_only: $ro:literal, runtime: $rt:literal; )*) => {
        /// One request per operation. APPEND NEW VARIANTS AT THE END.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum Request {
            $( $op($req), )*
        }

        /// One response per operation, in the same order as [`Request`].
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum Response {
            $( $op($out), )*
        }

        /// Every operation's name, in the table's order.
        pub const OPERATIONS: &[&str] = &[$( $name, )*];

        impl Request {
            /// The AWS operation name (for error messages and the trail).
            pub fn operation(&self) -> &'static str {
                match self {
                    $( Request::$op(_) => $name, )*
                }
            }
            /// See [`Operation::READ_ONLY`].
            pub fn read_only(&self) -> bool {
                match self {
                    $( Request::$op(_) => $ro, )*
                }
            }
            /// See [`Operation::NEEDS_RUNTIME`].
            pub fn needs_runtime(&self) -> bool {
                match self {
                    $( Request::$op(_) => $rt, )*
                }
            }
            /// The request of operation `name` read from its AWS JSON input (what the
            /// EC2 Query decoder makes of a form); `None`: no operation of that name.
            pub fn from_aws_json(
                name: &str,
                input: Value,
            ) -> Option<Result<Request, serde_json::Error>> {
                match name {
                    $( $name => Some(serde_json::from_value::<$req>(input).map(Request::$op)), )*
                    _ => None,
                }
            }
        }

        impl Response {
            /// The operation this answers.
            pub fn operation(&self) -> &'static str {
                match self {
                    $( Response::$op(_) => $name, )*
                }
            }
            /// The output as the AWS CLI prints it (`Null`: nothing to print).
            pub fn to_aws_json(&self) -> Value {
                match self {
                    $( Response::$op(o) => to_aws_json(o), )*
                }
            }
        }

        $(
            impl From<$req> for Request {
                fn from(r: $req) -> Request {
                    Request::$op(r)
                }
            }

            impl Operation for $req {
                const NAME: &'static str = $name;
                const READ_ONLY: bool = $ro;
                const NEEDS_RUNTIME: bool = $rt;
                type Output = $out;
                fn output(response: Response) -> Option<$out> {
                    match response {
                        Response::$op(o) => Some(o),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )*
    };
}

operations! {
    CreateVolume(CreateVolumeRequest) -> Volume, "CreateVolume", read_only: false, runtime: false;
    DescribeVolumes(DescribeVolumesRequest) -> DescribeVolumesResult, "DescribeVolumes", read_only: true, runtime: false;
    DeleteVolume(DeleteVolumeRequest) -> (), "DeleteVolume", read_only: false, runtime: false;
    CreateTags(CreateTagsRequest) -> (), "CreateTags", read_only: false, runtime: false;
    DeleteTags(DeleteTagsRequest) -> (), "DeleteTags", read_only: false, runtime: false;
    CreateSnapshot(CreateSnapshotRequest) -> Snapshot, "CreateSnapshot", read_only: false, runtime: false;
    DescribeSnapshots(DescribeSnapshotsRequest) -> DescribeSnapshotsResult, "DescribeSnapshots", read_only: true, runtime: false;
    DeleteSnapshot(DeleteSnapshotRequest) -> (), "DeleteSnapshot", read_only: false, runtime: false;
    CopySnapshot(CopySnapshotRequest) -> CopySnapshotResult, "CopySnapshot", read_only: false, runtime: false;
    RunInstances(RunInstancesRequest) -> Reservation, "RunInstances", read_only: false, runtime: true;
    DescribeInstances(DescribeInstancesRequest) -> DescribeInstancesResult, "DescribeInstances", read_only: true, runtime: false;
    StartInstances(StartInstancesRequest) -> StartInstancesResult, "StartInstances", read_only: false, runtime: true;
    StopInstances(StopInstancesRequest) -> StopInstancesResult, "StopInstances", read_only: false, runtime: false;
    TerminateInstances(TerminateInstancesRequest) -> TerminateInstancesResult, "TerminateInstances", read_only: false, runtime: false;
    AttachVolume(AttachVolumeRequest) -> VolumeAttachment, "AttachVolume", read_only: false, runtime: false;
    DetachVolume(DetachVolumeRequest) -> VolumeAttachment, "DetachVolume", read_only: false, runtime: false;
    GetConsoleOutput(GetConsoleOutputRequest) -> GetConsoleOutputResult, "GetConsoleOutput", read_only: true, runtime: false;
    Attach(AttachRequest) -> AttachResult, "Attach", read_only: false, runtime: true;
    Detach(DetachRequest) -> (), "Detach", read_only: false, runtime: true;
    Status(StatusRequest) -> DaemonStatus, "Status", read_only: true, runtime: true;
    RegisterImage(RegisterImageRequest) -> RegisterImageResult, "RegisterImage", read_only: false, runtime: false;
    DescribeImages(DescribeImagesRequest) -> DescribeImagesResult, "DescribeImages", read_only: true, runtime: false;
    DeregisterImage(DeregisterImageRequest) -> (), "DeregisterImage", read_only: false, runtime: false;
    ModifyImageAttribute(ModifyImageAttributeRequest) -> (), "ModifyImageAttribute", read_only: false, runtime: false;
    DescribeImageAttribute(DescribeImageAttributeRequest) -> ImageAttribute, "DescribeImageAttribute", read_only: true, runtime: false;
    ModifySnapshotAttribute(ModifySnapshotAttributeRequest) -> (), "ModifySnapshotAttribute", read_only: false, runtime: false;
    DescribeSnapshotAttribute(DescribeSnapshotAttributeRequest) -> DescribeSnapshotAttributeResult, "DescribeSnapshotAttribute", read_only: true, runtime: false;
    CopyImage(CopyImageRequest) -> CopyImageResult, "CopyImage", read_only: false, runtime: false;
}

/// `value` as AWS JSON: serialized, with every `null` member dropped (the AWS CLI
/// never prints a member the response did not carry).
pub fn to_aws_json<T: Serialize>(value: &T) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    drop_nulls(&mut v);
    v
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

// ---- shapes several operations share ---------------------------------------------

/// `Tag`: `Value` is optional in requests (DeleteTags by key alone; CreateTags makes
/// it empty) and always present in answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// `TagSpecification`: the tags for one resource type a create operation makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagSpecification {
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// `Filter` of the describe operations (`Name=tag:Name,Values=a,b`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// The registry's tags as an answer carries them (`None` when there are none: EC2
/// omits an empty `tagSet`).
pub fn tags_of(tags: &[model::Tag]) -> Option<Vec<Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|t| Tag {
                key: t.key.clone(),
                value: Some(t.value.clone()),
            })
            .collect()
    })
}

/// A request's tag as the registry keeps it (a missing value is empty, as EC2 stores it).
pub fn model_tag(t: &Tag) -> model::Tag {
    model::Tag {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
    }
}

/// EC2 integers are `Integer`; sizes and counts here always fit.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_dropped_at_the_json_edge_only() {
        let t = Tag {
            key: "Name".into(),
            value: None,
        };
        assert_eq!(to_aws_json(&t), serde_json::json!({"Key": "Name"}));
        let bytes = postcard::to_allocvec(&t).unwrap();
        let back: Tag = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, t);
        let parsed: Tag = serde_json::from_str(r#"{"Key":"k"}"#).unwrap();
        assert_eq!(
            parsed,
            Tag {
                key: "k".into(),
                value: None
            }
        );
    }

    #[test]
    fn the_table_names_each_operation() {
        let r: Request = DeleteVolumeRequest {
            volume_id: "vol-1".into(),
        }
        .into();
        assert_eq!(r.operation(), "DeleteVolume");
        assert!(!r.read_only() && !r.needs_runtime());
        assert_eq!(<StatusRequest as Operation>::NAME, "Status");
        let status: Request = StatusRequest {}.into();
        assert!(status.needs_runtime() && status.read_only());
        let r = Request::from_aws_json("DeleteVolume", serde_json::json!({"VolumeId": "vol-1"}));
        assert!(matches!(r, Some(Ok(Request::DeleteVolume(d))) if d.volume_id == "vol-1"));
        let missing = Request::from_aws_json("DeleteVolume", serde_json::json!({}));
        assert!(matches!(missing, Some(Err(_))));
        assert!(Request::from_aws_json("Nope", serde_json::json!({})).is_none());
    }
}
