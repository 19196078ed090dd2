//! `atrest ec2 ...`: AWS CLI names, flags and JSON, answered by the volume service
//! on HOME/ec2.sock (or in-process, for what needs no running service).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{report_error, Global};
use crate::ec2::client::{ClientError, Ec2Client};
use crate::ec2::model::Tag;
use crate::ec2::protocol::{
    AttachVolumeRequest, CopySnapshotRequest, CreateSnapshotRequest, CreateVolumeRequest,
    DetachVolumeRequest, Filter, Request, Response, RootSource, RunInstancesRequest,
};
use crate::ec2::{aws, Caller, Ec2Code, Ec2Error, Ec2Service};
use plumbing::shorthand;

#[derive(Debug, clap::Args)]
pub struct Ec2Args {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
    #[command(subcommand)]
    pub command: Ec2Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Ec2Command {
    /// Creates an EBS volume (empty, or from a snapshot; encrypted with --encrypted).
    CreateVolume {
        /// Size in GiB (default: the snapshot's size).
        #[arg(long)]
        size: Option<u64>,
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
    /// Launches an instance. Local "AMIs": --image-id is a directory made by
    /// scripts/make-guest.sh (root.img, vmlinuz, initrd.img: boots under qemu) or a raw
    /// disk image file (no boot profile: its volumes are served, not booted).
    RunInstances {
        #[arg(long)]
        image_id: Option<PathBuf>,
        /// Use this existing available volume as the root instead of copying an image
        /// (the image, if given, then only supplies the boot profile).
        #[arg(long)]
        root_volume_id: Option<String>,
        /// Root volume size in GiB when copying the image.
        #[arg(long)]
        root_size: Option<u64>,
        /// Boot with the kernel and initrd of this image directory (make-guest.sh
        /// output) whatever the root is.
        #[arg(long)]
        boot_image: Option<PathBuf>,
        /// e.g. `AvailabilityZone=us-east-1a`.
        #[arg(long)]
        placement: Option<String>,
        #[arg(long)]
        instance_type: Option<String>,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, num_args = 1..)]
        tag_specifications: Vec<String>,
    },
    DescribeInstances {
        #[arg(long, num_args = 1..)]
        instance_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
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
                value: str_field(t, "Value").unwrap_or_default(),
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

/// `--tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=X}]'`: the tags
/// for `resource_type`; other resource types must be in `allowed`.
fn spec_tags(args: &[String], resource_type: &str, allowed: &[&str]) -> Result<Vec<Tag>, Usage> {
    let mut out = Vec::new();
    for a in args {
        let v = parse_arg(a)?;
        let specs = match v {
            Value::Array(a) => a,
            o => vec![o],
        };
        for s in specs {
            let rt = str_field(&s, "ResourceType")
                .ok_or_else(|| Usage(format!("tag specification {s} has no ResourceType")))?;
            if !allowed.contains(&rt.as_str()) {
                return Err(Usage(format!(
                    "ResourceType '{rt}' is not valid here (expected one of {allowed:?})"
                )));
            }
            if rt == resource_type {
                if let Some(t) = s.get("Tags") {
                    out.extend(tag_list(t)?);
                }
            }
        }
    }
    Ok(out)
}

fn parse_filters(args: &[String]) -> Result<Vec<Filter>, Usage> {
    let mut out = Vec::new();
    for a in args {
        let v = parse_arg(a)?;
        let items = match v {
            Value::Array(a) => a,
            o => vec![o],
        };
        for f in items {
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

fn delete_tag_list(args: &[String]) -> Result<Vec<(String, Option<String>)>, Usage> {
    let mut out = Vec::new();
    for a in args {
        let v = parse_arg(a)?;
        let items = match v {
            Value::Array(a) => a,
            o => vec![o],
        };
        for t in items {
            let key = str_field(&t, "Key").ok_or_else(|| Usage(format!("tag {t} has no Key")))?;
            out.push((key, str_field(&t, "Value")));
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

    pub fn call(&self, req: Request) -> Result<Response, Ec2Error> {
        let layout = self.g.layout();
        match Ec2Client::connect(&layout.ec2_socket(), self.g.act_as.clone()) {
            Ok(mut c) => c.call(req).map_err(|e| match e {
                ClientError::Service(e) => e,
                other => Ec2Error::new(Ec2Code::ServiceUnavailable, other.to_string()),
            }),
            Err(ClientError::NotRunning { .. }) if !Ec2Service::needs_runtime(&req) => {
                let svc = Ec2Service::new(layout, None)?;
                // SAFETY: getuid/getgid cannot fail.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                let caller = Caller {
                    uid,
                    gid,
                    pid: std::process::id(),
                    principal: svc.kms.caller_principal(uid, self.g.act_as.as_deref())?,
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

fn build(args: Ec2Command, g: &Global) -> Result<Request, Usage> {
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
        } => {
            if let Some(t) = &volume_type {
                if t != "gp2" && t != "gp3" {
                    return Err(Usage(format!(
                        "--volume-type {t}: only gp2 and gp3 are offered here"
                    )));
                }
            }
            Request::CreateVolume(CreateVolumeRequest {
                size_gib: size,
                availability_zone,
                encrypted,
                kms_key_id,
                snapshot_id,
                tags: spec_tags(&tag_specifications, "volume", &["volume"])?,
            })
        }
        Ec2Command::DescribeVolumes {
            volume_ids,
            filters,
        } => Request::DescribeVolumes {
            volume_ids,
            filters: parse_filters(&filters)?,
        },
        Ec2Command::DeleteVolume { volume_id } => Request::DeleteVolume { volume_id },
        Ec2Command::CreateTags { resources, tags } => Request::CreateTags {
            resources,
            tags: parse_tags(&tags)?,
        },
        Ec2Command::DeleteTags { resources, tags } => Request::DeleteTags {
            resources,
            tags: delete_tag_list(&tags)?,
        },
        Ec2Command::CreateSnapshot {
            volume_id,
            description,
            tag_specifications,
        } => Request::CreateSnapshot(CreateSnapshotRequest {
            volume_id,
            description,
            tags: spec_tags(&tag_specifications, "snapshot", &["snapshot"])?,
        }),
        Ec2Command::DescribeSnapshots {
            snapshot_ids,
            owner_ids: _,
            filters,
        } => Request::DescribeSnapshots {
            snapshot_ids,
            filters: parse_filters(&filters)?,
        },
        Ec2Command::DeleteSnapshot { snapshot_id } => Request::DeleteSnapshot { snapshot_id },
        Ec2Command::CopySnapshot {
            source_snapshot_id,
            source_region,
            description,
            encrypted,
            kms_key_id,
            tag_specifications,
        } => {
            let _ = (source_region, g);
            Request::CopySnapshot(CopySnapshotRequest {
                source_snapshot_id,
                description,
                encrypted,
                kms_key_id,
                tags: spec_tags(&tag_specifications, "snapshot", &["snapshot"])?,
            })
        }
        Ec2Command::RunInstances {
            image_id,
            root_volume_id,
            root_size,
            boot_image: boot_dir,
            placement,
            instance_type,
            count,
            tag_specifications,
        } => {
            if count != 1 {
                return Err(Usage("--count: one instance per call here".into()));
            }
            let zone = match placement {
                Some(p) => Some(
                    str_field(&parse_arg(&p)?, "AvailabilityZone")
                        .ok_or_else(|| Usage("--placement needs AvailabilityZone=...".into()))?,
                ),
                None => None,
            };
            let (root, boot_image) = match (root_volume_id, image_id) {
                (Some(v), img) => (RootSource::Volume(v), boot_dir.or(img)),
                (None, Some(img)) => (RootSource::Image(img), boot_dir),
                (None, None) => {
                    return Err(Usage(
                        "run-instances needs --image-id (an image directory or file) or --root-volume-id".into(),
                    ))
                }
            };
            Request::RunInstances(RunInstancesRequest {
                root,
                boot_image,
                availability_zone: zone,
                instance_type,
                tags: spec_tags(&tag_specifications, "instance", &["instance", "volume"])?,
                volume_tags: spec_tags(&tag_specifications, "volume", &["instance", "volume"])?,
                root_size_gib: root_size,
            })
        }
        Ec2Command::DescribeInstances {
            instance_ids,
            filters,
        } => Request::DescribeInstances {
            instance_ids,
            filters: parse_filters(&filters)?,
        },
        Ec2Command::StartInstances { instance_ids } => Request::StartInstances { instance_ids },
        Ec2Command::StopInstances {
            instance_ids,
            force,
        } => Request::StopInstances {
            instance_ids,
            force,
        },
        Ec2Command::TerminateInstances { instance_ids } => {
            Request::TerminateInstances { instance_ids }
        }
        Ec2Command::AttachVolume {
            volume_id,
            instance_id,
            device,
        } => Request::AttachVolume(AttachVolumeRequest {
            volume_id,
            instance_id,
            device,
        }),
        Ec2Command::DetachVolume {
            volume_id,
            instance_id,
            device,
            force,
        } => Request::DetachVolume(DetachVolumeRequest {
            volume_id,
            instance_id,
            device,
            force,
        }),
        Ec2Command::GetConsoleOutput {
            instance_id,
            latest: _,
        } => Request::GetConsoleOutput { instance_id },
        Ec2Command::Wait { .. } => return Err(Usage("internal: wait is not a request".into())),
    })
}

/// Renders a response as the AWS CLI prints it (None: no output).
pub fn render(resp: &Response) -> Option<Value> {
    Some(match resp {
        Response::Empty => return None,
        Response::Volume(v) => aws::volume(v),
        Response::Volumes(vs) => json!({"Volumes": vs.iter().map(aws::volume).collect::<Vec<_>>()}),
        Response::Snapshot(s) => aws::snapshot(s),
        Response::Snapshots(ss) => {
            json!({"Snapshots": ss.iter().map(aws::snapshot).collect::<Vec<_>>()})
        }
        Response::SnapshotId(id) => json!({"SnapshotId": id}),
        Response::Reservation {
            reservation_id,
            owner_id,
            instances,
        } => aws::reservation(
            reservation_id,
            owner_id,
            &instances.iter().collect::<Vec<_>>(),
        ),
        Response::Instances {
            owner_id,
            instances,
        } => {
            // Grouped by reservation, in first-seen order.
            let mut order: Vec<&str> = Vec::new();
            for i in instances {
                if !order.contains(&i.instance.reservation_id.as_str()) {
                    order.push(&i.instance.reservation_id);
                }
            }
            let res: Vec<Value> = order
                .iter()
                .map(|r| {
                    let members: Vec<_> = instances
                        .iter()
                        .filter(|i| i.instance.reservation_id == *r)
                        .collect();
                    aws::reservation(r, owner_id, &members)
                })
                .collect();
            json!({"Reservations": res})
        }
        Response::StateChanges(c) => json!(c.iter().map(aws::state_change).collect::<Vec<_>>()),
        Response::Attachment(a) => aws::attachment(a),
        Response::ConsoleOutput {
            instance_id,
            output,
            timestamp,
        } => json!({"InstanceId": instance_id, "Output": output, "Timestamp": timestamp}),
        Response::LocalAttached { path, loop_device } => {
            json!({"Path": path, "LoopDevice": loop_device})
        }
        Response::Status(s) => json!({
            "Pid": s.pid,
            "Mountpoint": s.mountpoint,
            "Served": s.served.iter().map(|v| json!({
                "InstanceId": v.instance_id, "VolumeId": v.volume_id,
                "Path": v.path, "LoopDevice": v.loop_device,
                "KeyState": v.key_state, "Notice": v.notice})).collect::<Vec<_>>(),
        }),
    })
}

pub fn run(g: &Global, args: Ec2Args) -> i32 {
    if let Ec2Command::Wait { waiter } = args.command {
        return wait(g, waiter);
    }
    let wrap_key = match &args.command {
        Ec2Command::StartInstances { .. } => Some("StartingInstances"),
        Ec2Command::StopInstances { .. } => Some("StoppingInstances"),
        Ec2Command::TerminateInstances { .. } => Some("TerminatingInstances"),
        _ => None,
    };
    let args_output = args.output;
    let req = match build(args.command, g) {
        Ok(r) => r,
        Err(Usage(m)) => {
            eprintln!("\n{m}");
            return 252;
        }
    };
    let op = req.operation();
    match Ec2Conn::new(g).call(req) {
        Ok(resp) => match render(&resp) {
            Some(v) => match wrap_key {
                Some(k) => args_output.emit(&json!({ k: v })),
                None => args_output.emit(&v),
            },
            None => 0,
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
            Request::DescribeVolumes {
                volume_ids,
                filters: vec![],
            },
            "available",
            &["error", "deleting"],
        ),
        Waiter::SnapshotCompleted { snapshot_ids } => (
            "SnapshotCompleted",
            Request::DescribeSnapshots {
                snapshot_ids,
                filters: vec![],
            },
            "completed",
            &["error"],
        ),
        Waiter::InstanceRunning { instance_ids } => (
            "InstanceRunning",
            Request::DescribeInstances {
                instance_ids,
                filters: vec![],
            },
            "running",
            &["shutting-down", "terminated", "stopping", "stopped"],
        ),
        Waiter::InstanceStopped { instance_ids } => (
            "InstanceStopped",
            Request::DescribeInstances {
                instance_ids,
                filters: vec![],
            },
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
            Ok(Response::Volumes(v)) => {
                if tty {
                    bar.show(
                        v.iter()
                            .filter(|v| v.snapshot_id.is_some())
                            .map(|v| (v.volume_id.as_str(), v.progress)),
                    );
                }
                v.iter().map(|v| v.state.as_str().to_string()).collect()
            }
            Ok(Response::Snapshots(s)) => {
                if tty {
                    bar.show(s.iter().map(|s| (s.snapshot_id.as_str(), s.progress)));
                }
                s.iter().map(|s| s.state.as_str().to_string()).collect()
            }
            Ok(Response::Instances { instances, .. }) => instances
                .iter()
                .map(|i| i.instance.state.as_str().to_string())
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
                return 255;
            }
        }
        if start.elapsed() > WAIT_TIMEOUT {
            eprintln!("\nWaiter {name} failed: Max attempts exceeded");
            return 255;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
