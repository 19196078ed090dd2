//! The volume service: one request in, one AWS-shaped answer out. The daemon
//! (`atrest mount`) runs it behind ec2.sock with a [`Runtime`] (FUSE mount, loop
//! devices, guests, plaintext keys); without the daemon the CLI runs it in-process for
//! the operations that need no runtime (the registry lock makes both safe together).
//!
//! The handlers live beside the operations they answer: [`super::volumes`],
//! [`super::snapshots`], [`super::instances`], [`super::local`]; tags are here. Each
//! takes the operation's request type of [`super::api`] and returns its output type.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use plumbing::home::Layout;

use super::api::{self, CreateTagsRequest, DeleteTagsRequest, Request, Response};
use super::error::{Ec2Code, Ec2Error};
use super::kms::Kms;
use super::model::{self, Caller, Snapshot, State, Tag, Volume, Worker};
use super::registry::Registry;
use super::rules;
use super::runtime::Runtime;
use super::worker;

pub struct Ec2Service {
    pub layout: Layout,
    pub registry: Registry,
    pub region: String,
    pub account: String,
    pub kms: Kms,
    /// Present only in the daemon.
    pub runtime: Option<Runtime>,
    /// Lazy restores this process owns (the daemon's only).
    pub(crate) restores: super::restores::Restores,
    jobs: Mutex<Vec<JoinHandle<()>>>,
}

impl Ec2Service {
    /// A service over `layout`, with `runtime` when this is the daemon.
    pub fn new(layout: Layout, runtime: Option<Runtime>) -> Result<Arc<Ec2Service>, Ec2Error> {
        let registry = Registry::open(&layout.ec2_dir())?;
        super::storage::ensure_dirs(&layout)?;
        let (region, account) = super::kms::region_and_account(&layout)?;
        let kms = Kms::new(&layout);
        let svc = Arc::new(Ec2Service {
            layout,
            registry,
            region,
            account,
            kms,
            runtime,
            restores: Default::default(),
            jobs: Mutex::new(Vec::new()),
        });
        // Background work whose process died leaves `creating`/`pending` records.
        worker::recover::<Volume>(&svc.registry, &svc.layout)?;
        worker::recover::<Snapshot>(&svc.registry, &svc.layout)?;
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
        worker::this_worker()
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

    /// Answers one request: the operation's handler, its output in the response.
    pub fn handle(self: &Arc<Self>, caller: &Caller, req: Request) -> Result<Response, Ec2Error> {
        Ok(match req {
            Request::CreateVolume(r) => Response::CreateVolume(self.create_volume(caller, r)?),
            Request::DescribeVolumes(r) => Response::DescribeVolumes(self.describe_volumes(r)?),
            Request::DeleteVolume(r) => Response::DeleteVolume(self.delete_volume(r)?),
            Request::CreateTags(r) => Response::CreateTags(self.create_tags(r)?),
            Request::DeleteTags(r) => Response::DeleteTags(self.delete_tags(r)?),
            Request::CreateSnapshot(r) => {
                Response::CreateSnapshot(self.create_snapshot(caller, r)?)
            }
            Request::DescribeSnapshots(r) => {
                Response::DescribeSnapshots(self.describe_snapshots(r)?)
            }
            Request::DeleteSnapshot(r) => Response::DeleteSnapshot(self.delete_snapshot(r)?),
            Request::CopySnapshot(r) => Response::CopySnapshot(self.copy_snapshot(caller, r)?),
            Request::RunInstances(r) => Response::RunInstances(self.run_instances(caller, r)?),
            Request::DescribeInstances(r) => {
                Response::DescribeInstances(self.describe_instances(r)?)
            }
            Request::StartInstances(r) => {
                Response::StartInstances(self.start_instances(caller, r)?)
            }
            Request::StopInstances(r) => Response::StopInstances(self.stop_instances(caller, r)?),
            Request::TerminateInstances(r) => {
                Response::TerminateInstances(self.terminate_instances(caller, r)?)
            }
            Request::AttachVolume(r) => Response::AttachVolume(self.attach_volume(caller, r)?),
            Request::DetachVolume(r) => Response::DetachVolume(self.detach_volume(caller, r)?),
            Request::GetConsoleOutput(r) => Response::GetConsoleOutput(self.get_console_output(r)?),
            Request::Attach(r) => Response::Attach(self.local_attach(caller, r)?),
            Request::Detach(r) => Response::Detach(self.local_detach(caller, r)?),
            Request::Status(_) => Response::Status(self.status()?),
            Request::RegisterImage(r) => Response::RegisterImage(self.register_image(caller, r)?),
            Request::DescribeImages(r) => {
                Response::DescribeImages(self.describe_images(caller, r)?)
            }
            Request::DeregisterImage(r) => {
                Response::DeregisterImage(self.deregister_image(caller, r)?)
            }
            Request::ModifyImageAttribute(r) => {
                Response::ModifyImageAttribute(self.modify_image_attribute(caller, r)?)
            }
            Request::DescribeImageAttribute(r) => {
                Response::DescribeImageAttribute(self.describe_image_attribute(caller, r)?)
            }
            Request::ModifySnapshotAttribute(r) => {
                Response::ModifySnapshotAttribute(self.modify_snapshot_attribute(caller, r)?)
            }
            Request::DescribeSnapshotAttribute(r) => {
                Response::DescribeSnapshotAttribute(self.describe_snapshot_attribute(caller, r)?)
            }
            Request::CopyImage(r) => Response::CopyImage(self.copy_image(caller, r)?),
        })
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

    fn create_tags(&self, r: CreateTagsRequest) -> Result<(), Ec2Error> {
        if r.resources.is_empty() {
            return Err(Ec2Error::missing_parameter("resourceIdSet"));
        }
        let tags: Vec<Tag> = r.tags.iter().map(api::model_tag).collect();
        rules::validate_tags(&tags)?;
        self.registry.update(|s| {
            for id in &r.resources {
                let t = Self::tags_of(s, id)?;
                model::merge_tags(t, &tags);
                if t.len() > rules::MAX_TAGS {
                    return Err(Ec2Error::invalid_parameter(format!(
                        "Resource '{id}' would have more than {} tags",
                        rules::MAX_TAGS
                    )));
                }
            }
            Ok(())
        })
    }

    fn delete_tags(&self, r: DeleteTagsRequest) -> Result<(), Ec2Error> {
        let del: Vec<(String, Option<String>)> =
            r.tags.into_iter().map(|t| (t.key, t.value)).collect();
        self.registry.update(|s| {
            for id in &r.resources {
                let t = Self::tags_of(s, id)?;
                if del.is_empty() {
                    t.clear();
                } else {
                    model::remove_tags(t, &del);
                }
            }
            Ok(())
        })
    }

    // ---- recovery ------------------------------------------------------------------

    /// Instances that were pending/running/stopping when the daemon died lost their
    /// keys with it: they are stopped now (called by the daemon at start).
    pub fn recover_instances(&self) -> Result<(), Ec2Error> {
        self.registry.update(|s| {
            for i in s.instances.values_mut() {
                if i.instance_id == model::LOCAL_INSTANCE_ID {
                    continue;
                }
                let new = match i.state {
                    model::InstanceState::Pending
                    | model::InstanceState::Running
                    | model::InstanceState::Stopping => model::InstanceState::Stopped,
                    model::InstanceState::ShuttingDown => model::InstanceState::Terminated,
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
}
