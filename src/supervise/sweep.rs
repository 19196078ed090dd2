//! What a crashed daemon may leave behind for one HOME, found and released: qemu guests
//! whose command line names a file under HOME, loop devices whose backing file lies under
//! it, and a FUSE mount at `HOME/mnt` with nobody serving it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use plumbing::home::Layout;
use serde::Serialize;

/// A loop device bound to a file under HOME.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoopDevice {
    pub device: String,
    pub backing_file: String,
}

/// A qemu process started for this HOME.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Guest {
    pub pid: i32,
    /// The volume it boots (`atrest.volume=` on its kernel command line), if named.
    pub volume: String,
}

/// One leftover released by [`sweep`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Swept {
    #[serde(rename_all = "PascalCase")]
    Guest { guest: i32, volume: String },
    #[serde(rename_all = "PascalCase")]
    LoopDevice {
        loop_device: String,
        backing_file: String,
        released: bool,
    },
    #[serde(rename_all = "PascalCase")]
    StaleMount {
        stale_mount: PathBuf,
        unmounted: bool,
    },
}

/// Loop devices whose backing file lies under HOME (served volume files).
pub fn loop_devices(layout: &Layout) -> Vec<LoopDevice> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return out;
    };
    let root = layout.root.display().to_string();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(backing) = fs::read_to_string(e.path().join("loop/backing_file")) {
            let backing = backing.trim().to_string();
            if backing.starts_with(&root) {
                out.push(LoopDevice {
                    device: format!("/dev/{name}"),
                    backing_file: backing,
                });
            }
        }
    }
    out.sort();
    out
}

/// qemu processes started for this HOME (their command line names a file under it).
pub fn guests(layout: &Layout) -> Vec<Guest> {
    let mut out = Vec::new();
    let root = layout.root.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_qemu = args
            .first()
            .map(|a| a.contains("qemu-system"))
            .unwrap_or(false);
        if is_qemu && args.iter().any(|a| a.contains(&root)) {
            let volume = args
                .iter()
                .find_map(|a| {
                    a.split_whitespace()
                        .find(|w| w.starts_with("atrest.volume="))
                })
                .map(|w| w.trim_start_matches("atrest.volume=").to_string())
                .unwrap_or_default();
            out.push(Guest { pid, volume });
        }
    }
    out.sort();
    out
}

/// Whether something is mounted at `mountpoint`.
pub fn fuse_mounted(mountpoint: &Path) -> bool {
    let target = mountpoint.display().to_string();
    fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(target.as_str()))
        })
        .unwrap_or(false)
}

/// Releases every leftover of this HOME (call once its daemons are stopped): kills its
/// guests, detaches its loop devices, lazily unmounts a stale `HOME/mnt`.
pub fn sweep(layout: &Layout) -> Vec<Swept> {
    let mut swept = Vec::new();
    for g in guests(layout) {
        plumbing::daemon::signal(g.pid, libc::SIGKILL);
        swept.push(Swept::Guest {
            guest: g.pid,
            volume: g.volume,
        });
    }
    for l in loop_devices(layout) {
        let released = Command::new("losetup")
            .args(["-d", &l.device])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        swept.push(Swept::LoopDevice {
            loop_device: l.device,
            backing_file: l.backing_file,
            released,
        });
    }
    let mountpoint = layout.mount_dir();
    if fuse_mounted(&mountpoint) {
        let unmounted = Command::new("fusermount3")
            .arg("-uz")
            .arg(&mountpoint)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        swept.push(Swept::StaleMount {
            stale_mount: mountpoint,
            unmounted,
        });
    }
    swept
}

/// Whether anything of this HOME still runs or is mounted.
pub fn leftovers(layout: &Layout) -> bool {
    !guests(layout).is_empty()
        || !loop_devices(layout).is_empty()
        || fuse_mounted(&layout.mount_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_reports_serialize_as_atrest_down_prints_them() {
        let v = serde_json::to_value(vec![
            Swept::Guest {
                guest: 7,
                volume: "vol-1".into(),
            },
            Swept::LoopDevice {
                loop_device: "/dev/loop3".into(),
                backing_file: "/h/mnt/i/xvda".into(),
                released: true,
            },
            Swept::StaleMount {
                stale_mount: "/h/mnt".into(),
                unmounted: false,
            },
        ])
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"Guest": 7, "Volume": "vol-1"},
                {"LoopDevice": "/dev/loop3", "BackingFile": "/h/mnt/i/xvda", "Released": true},
                {"StaleMount": "/h/mnt", "Unmounted": false}
            ])
        );
    }

    #[test]
    fn a_fresh_home_has_no_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        assert!(!leftovers(&layout));
        assert!(sweep(&layout).is_empty());
    }
}
