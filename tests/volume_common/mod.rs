//! What the snapshot-store tests share: two key ARNs and a temp root with a `volumes/`
//! directory and a snapshot store under `snapshots/`.
#![allow(dead_code)]

use std::path::PathBuf;

use atrest::volume::snapshot::SnapshotStore;

pub const ARN_A: &str =
    "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-0000-4000-8000-000000000001";
pub const ARN_B: &str =
    "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-0000-4000-8000-000000000002";

pub struct Env {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub store: SnapshotStore,
}

pub fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::create_dir(root.join("volumes")).unwrap();
    let store = SnapshotStore::open(&root.join("snapshots")).unwrap();
    Env {
        _tmp: tmp,
        root,
        store,
    }
}

impl Env {
    /// The image path of volume `name` under `volumes/`.
    pub fn vol(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{name}.img"))
    }
}
