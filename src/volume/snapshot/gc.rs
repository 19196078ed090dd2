//! Freeing space: `delete` drops one manifest and the chunks only it referenced; `collect`
//! removes what a crash can leave (pending manifests, temp files, unreferenced chunks).
//! Both run under the store's exclusive lock and fail closed: if any manifest cannot be read,
//! nothing is freed (its chunks might be the ones we would delete).

use std::collections::BTreeSet;
use std::fs;

use super::{io, SnapshotError, SnapshotState, SnapshotStore};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    pub freed_chunks: u64,
    pub freed_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_pending_manifests: Vec<String>,
    pub removed_temp_files: u64,
    pub freed_chunks: u64,
    pub freed_bytes: u64,
}

/// Every chunk referenced by a completed manifest, optionally ignoring one snapshot.
fn referenced(
    store: &SnapshotStore,
    except: Option<&str>,
) -> Result<BTreeSet<String>, SnapshotError> {
    let mut set = BTreeSet::new();
    for (id, m) in store.list()? {
        if Some(id.as_str()) == except || m.state != SnapshotState::Completed {
            continue;
        }
        set.extend(m.chunks.into_iter().flatten());
    }
    Ok(set)
}

pub(super) fn delete(store: &SnapshotStore, id: &str) -> Result<DeleteReport, SnapshotError> {
    let victim = store.get(id)?;
    let keep = referenced(store, Some(id))?;
    let path = store.manifest_path(id);
    // The manifest goes first (durably): a crash after this leaves only orphans for gc.
    fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
    plumbing::durable::sync_dir(&store.manifests).map_err(|e| io("fsync", &store.manifests, e))?;
    let mut report = DeleteReport::default();
    let mine: BTreeSet<String> = victim.chunks.into_iter().flatten().collect();
    for hash in mine.difference(&keep) {
        let size = store.chunks.size_of(hash);
        store.chunks.remove(hash)?;
        report.freed_chunks += 1;
        report.freed_bytes += size;
    }
    Ok(report)
}

pub(super) fn collect(store: &SnapshotStore) -> Result<GcReport, SnapshotError> {
    let mut report = GcReport::default();
    for (id, m) in store.list()? {
        if m.state == SnapshotState::Pending {
            let p = store.manifest_path(&id);
            fs::remove_file(&p).map_err(|e| io("remove", &p, e))?;
            report.removed_pending_manifests.push(id);
        }
    }
    let keep = referenced(store, None)?;
    let (present, temps) = store.chunks.scan()?;
    for t in temps {
        fs::remove_file(&t).map_err(|e| io("remove", &t, e))?;
        report.removed_temp_files += 1;
    }
    for hash in present.difference(&keep) {
        let size = store.chunks.size_of(hash);
        store.chunks.remove(hash)?;
        report.freed_chunks += 1;
        report.freed_bytes += size;
    }
    Ok(report)
}
