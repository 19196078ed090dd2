//! Background work on a volume or a snapshot, one state machine for both:
//!
//! ```text
//!   working (worker = this pid, progress 0..99) --ok--> done   (progress 100)
//!                                               --err-> failed (the reason; partial output removed)
//!   working, worker pid gone (a crash) -----------------> failed ("interrupted")
//! ```
//!
//! A volume is `creating` -> `available` | `error`; a snapshot `pending` ->
//! `completed` | `error`. [`Job`] says how each kind of record spells those states;
//! everything else (progress in the registry, finishing, discarding partial output,
//! recovering orphans at start) is written once, here.

use std::collections::BTreeMap;

use plumbing::home::Layout;

use super::error::Ec2Error;
use super::model::{Snapshot, SnapshotState, State, Volume, VolumeState, Worker};
use super::registry::Registry;
use super::storage;

/// A registry record that background work creates.
pub trait Job: Sized {
    /// For logs: "volume", "snapshot".
    const KIND: &'static str;
    /// What a failed job's record says when its worker died.
    const INTERRUPTED: &'static str;
    /// The records of this kind.
    fn table(state: &mut State) -> &mut BTreeMap<String, Self>;
    fn is_working(&self) -> bool;
    fn worker_mut(&mut self) -> &mut Option<Worker>;
    fn worker(&self) -> Option<&Worker>;
    fn set_progress(&mut self, pct: u8);
    fn set_done(&mut self);
    fn set_failed(&mut self, reason: String);
    /// Removes what unfinished work left on disk (missing is fine).
    fn discard(layout: &Layout, id: &str);
}

impl Job for Volume {
    const KIND: &'static str = "volume";
    const INTERRUPTED: &'static str = "creation was interrupted (the service stopped)";
    fn table(state: &mut State) -> &mut BTreeMap<String, Self> {
        &mut state.volumes
    }
    fn is_working(&self) -> bool {
        self.state == VolumeState::Creating
    }
    fn worker_mut(&mut self) -> &mut Option<Worker> {
        &mut self.worker
    }
    fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }
    fn set_progress(&mut self, pct: u8) {
        self.progress = pct;
    }
    fn set_done(&mut self) {
        // A root volume made for a launch is attached while it is created.
        self.state = if self.attachment.is_some() {
            VolumeState::InUse
        } else {
            VolumeState::Available
        };
        self.progress = 100;
    }
    fn set_failed(&mut self, reason: String) {
        self.state = VolumeState::Error;
        self.error_message = Some(reason);
    }
    fn discard(layout: &Layout, id: &str) {
        storage::discard_volume(layout, id);
    }
}

impl Job for Snapshot {
    const KIND: &'static str = "snapshot";
    const INTERRUPTED: &'static str = "the snapshot was interrupted (the service stopped)";
    fn table(state: &mut State) -> &mut BTreeMap<String, Self> {
        &mut state.snapshots
    }
    fn is_working(&self) -> bool {
        self.state == SnapshotState::Pending
    }
    fn worker_mut(&mut self) -> &mut Option<Worker> {
        &mut self.worker
    }
    fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }
    fn set_progress(&mut self, pct: u8) {
        self.progress = pct;
    }
    fn set_done(&mut self) {
        self.state = SnapshotState::Completed;
        self.progress = 100;
    }
    fn set_failed(&mut self, reason: String) {
        self.state = SnapshotState::Error;
        self.state_message = Some(reason);
    }
    fn discard(layout: &Layout, id: &str) {
        storage::discard_partial_snapshot(layout, id);
    }
}

/// This process, as the worker of the jobs it starts.
pub fn this_worker() -> Worker {
    Worker {
        pid: std::process::id(),
    }
}

fn alive(w: Option<&Worker>) -> bool {
    w.is_some_and(|w| std::path::Path::new(&format!("/proc/{}", w.pid)).exists())
}

/// Records a job's progress (below 100 until it is done). Best effort: a registry that
/// cannot be written now will be by `finish`.
pub fn progress<J: Job>(registry: &Registry, id: &str, pct: u8) {
    let _ = registry.update(|s| {
        if let Some(r) = J::table(s).get_mut(id) {
            r.set_progress(pct.min(99));
        }
        Ok(())
    });
}

/// Working -> done, or -> failed with the reason (and no partial output left).
pub fn finish<J: Job>(registry: &Registry, layout: &Layout, id: &str, res: Result<(), Ec2Error>) {
    if let Err(e) = &res {
        tracing::error!(id = %id, "the {} failed: {e}", J::KIND);
        J::discard(layout, id);
    }
    let upd = registry.update(|s| {
        if let Some(r) = J::table(s).get_mut(id) {
            *r.worker_mut() = None;
            match &res {
                Ok(()) => r.set_done(),
                Err(e) => r.set_failed(e.to_string()),
            }
        }
        Ok(())
    });
    if let Err(e) = upd {
        tracing::error!(id = %id, "cannot record the {}'s new state: {e}", J::KIND);
    }
}

/// Jobs whose worker died (a crash, a kill) become failed, their partial output removed,
/// so the registry never claims a volume or snapshot that is not whole.
pub fn recover<J: Job>(registry: &Registry, layout: &Layout) -> Result<(), Ec2Error> {
    let mut state = registry.read()?;
    let dead: Vec<String> = J::table(&mut state)
        .iter()
        .filter(|(_, r)| r.is_working() && !alive(r.worker()))
        .map(|(id, _)| id.clone())
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    for id in &dead {
        J::discard(layout, id);
    }
    registry.update(|s| {
        for id in &dead {
            if let Some(r) = J::table(s).get_mut(id) {
                if r.is_working() && !alive(r.worker()) {
                    tracing::warn!(id = %id, "the {} was interrupted; marking it error", J::KIND);
                    *r.worker_mut() = None;
                    r.set_failed(J::INTERRUPTED.into());
                }
            }
        }
        Ok(())
    })
}
