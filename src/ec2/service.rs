//! The volume service: one request in, one AWS-shaped answer out. The daemon
//! (`atrest mount`) runs it behind ec2.sock with a [`Runtime`] (FUSE mount, loop
//! devices, guests, plaintext keys); without the daemon the CLI runs it in-process for
//! the operations that need no runtime (the registry lock makes both safe together).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use plumbing::home::Layout;

use super::error::{Ec2Code, Ec2Error};
use super::ids::{self, IdKind};
use super::kms::Kms;
use super::model::{self, InstanceState, SnapshotState, State, Tag, VolumeState, Worker};
use super::protocol::{Request, Response};
use super::registry::Registry;
use super::rules;
use super::runtime::Runtime;

/// Who is calling, as the kernel says (SO_PEERCRED) plus the principal they act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The IAM principal ARN EC2 acts on behalf of.
    pub principal: String,
}

pub struct Ec2Service {
    pub layout: Layout,
    pub registry: Registry,
    pub region: String,
    pub account: String,
    pub kms: Kms,
    /// Present only in the daemon.
    pub runtime: Option<Runtime>,
    jobs: Mutex<Vec<JoinHandle<()>>>,
}

/// The maximum number of tags on one resource (AWS's limit).
pub const MAX_TAGS: usize = 50;

impl Ec2Service {
    /// A service over `layout`, with `runtime` when this is the daemon.
    pub fn new(layout: Layout, runtime: Option<Runtime>) -> Result<Arc<Ec2Service>, Ec2Error> {
        let registry = Registry::open(&layout.ec2_dir())?;
        for dir in [layout.volumes_dir(), layout.snapshots_dir()] {
            plumbing::durable::ensure_dir(&dir, 0o700)
                .map_err(|e| Ec2Error::io(&format!("cannot create {}", dir.display()), &e))?;
        }
        let (region, account) = super::kms::region_and_account(&layout)?;
        let kms = Kms::new(&layout);
        let svc = Arc::new(Ec2Service {
            layout,
            registry,
            region,
            account,
            kms,
            runtime,
            jobs: Mutex::new(Vec::new()),
        });
        svc.recover_orphans()?;
        Ok(svc)
    }

    pub fn default_zone(&self) -> String {
        format!("{}a", self.region)
    }

    /// Runs `f` in the background (snapshots, restores, launches).
    pub fn spawn(self: &Arc<Self>, name: &str, f: impl FnOnce(Arc<Ec2Service>) + Send + 'static) {
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || f(me));
        match handle {
            Ok(h) => {
                if let Ok(mut jobs) = self.jobs.lock() {
                    jobs.retain(|j| !j.is_finished());
                    jobs.push(h);
                }
            }
            Err(e) => tracing::error!("cannot start background job {name}: {e}"),
        }
    }

    /// Waits for every background job (the CLI does this before exiting in-process).
    pub fn wait_for_jobs(&self) {
        loop {
            let next = match self.jobs.lock() {
                Ok(mut jobs) => jobs.pop(),
                Err(_) => None,
            };
            match next {
                Some(h) => {
                    let _ = h.join();
                }
                None => break,
            }
        }
    }

    pub fn worker(&self) -> Worker {
        Worker {
            pid: std::process::id(),
        }
    }

    pub(crate) fn require_runtime(&self, op: &str) -> Result<&Runtime, Ec2Error> {
        self.runtime.as_ref().ok_or_else(|| {
            Ec2Error::new(
                Ec2Code::ServiceUnavailable,
                format!(
                    "{op} needs the volume service: start it with `atrest mount` (it serves \
                     volumes, holds their keys and runs instances)"
                ),
            )
        })
    }

    /// Whether the request can be answered without the daemon's runtime.
    pub fn needs_runtime(req: &Request) -> bool {
        matches!(
            req,
            Request::StartInstances { .. }
                | Request::RunInstances(_)
                | Request::LocalAttach { .. }
                | Request::LocalDetach { .. }
                | Request::Status
        )
    }

    pub fn handle(self: &Arc<Self>, caller: &Caller, req: Request) -> Result<Response, Ec2Error> {
        match req {
            Request::CreateVolume(r) => self.create_volume(caller, r),
            Request::DescribeVolumes {
                volume_ids,
                filters,
            } => self.describe_volumes(&volume_ids, &filters),
            Request::DeleteVolume { volume_id } => self.delete_volume(&volume_id),
            Request::CreateTags { resources, tags } => self.create_tags(&resources, &tags),
            Request::DeleteTags { resources, tags } => self.delete_tags(&resources, &tags),
            Request::CreateSnapshot(r) => self.create_snapshot(caller, r),
            Request::DescribeSnapshots {
                snapshot_ids,
                filters,
            } => self.describe_snapshots(&snapshot_ids, &filters),
            Request::DeleteSnapshot { snapshot_id } => self.delete_snapshot(&snapshot_id),
            Request::CopySnapshot(r) => self.copy_snapshot(caller, r),
            Request::RunInstances(r) => self.run_instances(caller, r),
            Request::DescribeInstances {
                instance_ids,
                filters,
            } => self.describe_instances(&instance_ids, &filters),
            Request::StartInstances { instance_ids } => self.start_instances(caller, &instance_ids),
            Request::StopInstances {
                instance_ids,
                force,
            } => self.stop_instances(caller, &instance_ids, force),
            Request::TerminateInstances { instance_ids } => {
                self.terminate_instances(caller, &instance_ids)
            }
            Request::AttachVolume(r) => self.attach_volume(caller, r),
            Request::DetachVolume(r) => self.detach_volume(caller, r),
            Request::GetConsoleOutput { instance_id } => self.get_console_output(&instance_id),
            Request::LocalAttach {
                volume_id,
                loop_device,
            } => self.local_attach(caller, &volume_id, loop_device),
            Request::LocalDetach { volume_id, force } => {
                self.local_detach(caller, &volume_id, force)
            }
            Request::Status => self.status(),
        }
    }

    // ---- tags -------------------------------------------------------------------

    fn tags_of<'a>(state: &'a mut State, id: &str) -> Result<&'a mut Vec<Tag>, Ec2Error> {
        if id.starts_with("vol-") {
            rules::check_volume_id(id)?;
            return state
                .volumes
                .get_mut(id)
                .map(|v| &mut v.tags)
                .ok_or_else(|| Ec2Error::volume_not_found(id));
        }
        if id.starts_with("snap-") {
            rules::check_snapshot_id(id)?;
            return state
                .snapshots
                .get_mut(id)
                .map(|s| &mut s.tags)
                .ok_or_else(|| Ec2Error::snapshot_not_found(id));
        }
        if id.starts_with("i-") || id == model::LOCAL_INSTANCE_ID {
            rules::check_instance_id(id)?;
            return state
                .instances
                .get_mut(id)
                .map(|i| &mut i.tags)
                .ok_or_else(|| Ec2Error::instance_not_found(id));
        }
        Err(Ec2Error::invalid_parameter(format!(
            "Invalid id: \"{id}\" (expecting a vol-, snap- or i- ID)"
        )))
    }

    fn create_tags(&self, resources: &[String], tags: &[Tag]) -> Result<Response, Ec2Error> {
        if resources.is_empty() {
            return Err(Ec2Error::new(
                Ec2Code::MissingParameter,
                "The request must contain the parameter resourceIdSet",
            ));
        }
        validate_tags(tags)?;
        self.registry.update(|s| {
            for id in resources {
                let t = Self::tags_of(s, id)?;
                model::merge_tags(t, tags);
                if t.len() > MAX_TAGS {
                    return Err(Ec2Error::new(
                        Ec2Code::InvalidParameterValue,
                        format!("Resource '{id}' would have more than {MAX_TAGS} tags"),
                    ));
                }
            }
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    fn delete_tags(
        &self,
        resources: &[String],
        tags: &[(String, Option<String>)],
    ) -> Result<Response, Ec2Error> {
        self.registry.update(|s| {
            for id in resources {
                let t = Self::tags_of(s, id)?;
                if tags.is_empty() {
                    t.clear();
                } else {
                    model::remove_tags(t, tags);
                }
            }
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    // ---- recovery ------------------------------------------------------------------

    /// Background work whose process died leaves `creating`/`pending` records: they
    /// become `error` (the half-written output is removed), so the registry never claims
    /// a volume or snapshot that is not whole.
    fn recover_orphans(&self) -> Result<(), Ec2Error> {
        let alive = |w: &Option<Worker>| {
            w.as_ref()
                .is_some_and(|w| std::path::Path::new(&format!("/proc/{}", w.pid)).exists())
        };
        let state = self.registry.read()?;
        let dead_vols: Vec<String> = state
            .volumes
            .values()
            .filter(|v| v.state == VolumeState::Creating && !alive(&v.worker))
            .map(|v| v.volume_id.clone())
            .collect();
        let dead_snaps: Vec<String> = state
            .snapshots
            .values()
            .filter(|s| s.state == SnapshotState::Pending && !alive(&s.worker))
            .map(|s| s.snapshot_id.clone())
            .collect();
        if dead_vols.is_empty() && dead_snaps.is_empty() {
            return Ok(());
        }
        for id in &dead_vols {
            super::storage::discard_volume(&self.layout, id);
        }
        for id in &dead_snaps {
            super::storage::discard_partial_snapshot(&self.layout, id);
        }
        self.registry.update(|s| {
            for id in &dead_vols {
                if let Some(v) = s.volumes.get_mut(id) {
                    if v.state == VolumeState::Creating && !alive(&v.worker) {
                        tracing::warn!(volume = %id, "creation was interrupted; marking it error");
                        v.state = VolumeState::Error;
                        v.worker = None;
                        v.error_message =
                            Some("creation was interrupted (the service stopped)".into());
                    }
                }
            }
            for id in &dead_snaps {
                if let Some(sn) = s.snapshots.get_mut(id) {
                    if sn.state == SnapshotState::Pending && !alive(&sn.worker) {
                        tracing::warn!(snapshot = %id, "snapshot was interrupted; marking it error");
                        sn.state = SnapshotState::Error;
                        sn.worker = None;
                        sn.state_message =
                            Some("the snapshot was interrupted (the service stopped)".into());
                    }
                }
            }
            Ok(())
        })
    }

    /// Instances that were pending/running/stopping when the daemon died lost their
    /// keys with it: they are stopped now (called by the daemon at start).
    pub fn recover_instances(&self) -> Result<(), Ec2Error> {
        self.registry.update(|s| {
            for i in s.instances.values_mut() {
                if i.instance_id == model::LOCAL_INSTANCE_ID {
                    continue;
                }
                let new = match i.state {
                    InstanceState::Pending | InstanceState::Running | InstanceState::Stopping => {
                        InstanceState::Stopped
                    }
                    InstanceState::ShuttingDown => InstanceState::Terminated,
                    _ => continue,
                };
                tracing::warn!(instance = %i.instance_id, "the volume service restarted; {} -> {}", i.state.as_str(), new.as_str());
                i.state = new;
                i.state_reason = Some(model::StateReason {
                    code: "Server.InternalError".into(),
                    message: "Server.InternalError: the volume service restarted".into(),
                });
            }
            Ok(())
        })
    }

    pub fn new_id(kind: IdKind) -> String {
        ids::new_id(kind)
    }
}

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
