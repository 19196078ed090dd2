//! Where atrest keeps its state: one home directory for every part.
//!
//! Resolution order: an explicit `--home DIR`, then `$ATREST_HOME`, then
//! `$XDG_STATE_HOME/atrest`, then `~/.local/state/atrest`.

use std::path::{Path, PathBuf};

/// The environment variable that names the home directory.
pub const HOME_ENV: &str = "ATREST_HOME";

/// Resolves the home directory from an explicit override and the environment.
pub fn resolve(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    resolve_from(
        std::env::var_os(HOME_ENV).map(PathBuf::from),
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// Pure form of [`resolve`], so the order is testable without touching the environment.
pub fn resolve_from(
    atrest_home: Option<PathBuf>,
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if let Some(dir) = atrest_home.filter(|d| !d.as_os_str().is_empty()) {
        return dir;
    }
    if let Some(dir) = xdg_state_home.filter(|d| !d.as_os_str().is_empty()) {
        return dir.join("atrest");
    }
    home.unwrap_or_else(|| PathBuf::from("/root"))
        .join(".local/state/atrest")
}

/// The well-known paths inside a home directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn kmsd_socket(&self) -> PathBuf {
        self.root.join("kmsd.sock")
    }

    /// The uid kmsd runs as (the config's `uid = "self"`), for the services that read the
    /// same config: the owner of its socket, else this process's (on a dev box kmsd and
    /// the services are one user).
    pub fn kmsd_uid(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(self.kmsd_socket()) {
            Ok(m) => m.uid(),
            // SAFETY: geteuid cannot fail.
            Err(_) => unsafe { libc::geteuid() },
        }
    }
    pub fn ec2_socket(&self) -> PathBuf {
        self.root.join("ec2.sock")
    }
    /// `ADDR:PORT` of the endpoint when it serves plain HTTP (for S3 clients).
    pub fn s3_addr_file(&self) -> PathBuf {
        self.root.join("s3.addr")
    }
    /// The AWS endpoint's URL (`http://127.0.0.1:4566`), written once it listens.
    pub fn endpoint_url_file(&self) -> PathBuf {
        self.root.join("endpoint.url")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn kms_dir(&self) -> PathBuf {
        self.root.join("kms")
    }
    pub fn trail_dir(&self) -> PathBuf {
        self.root.join("trail")
    }
    pub fn ec2_dir(&self) -> PathBuf {
        self.root.join("ec2")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn s3_dir(&self) -> PathBuf {
        self.root.join("s3")
    }
    pub fn mount_dir(&self) -> PathBuf {
        self.root.join("mnt")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    /// Drop-in IAM identity policies: `iam/ACCOUNT/{users,roles}/NAME/POLICY.json`.
    pub fn iam_dir(&self) -> PathBuf {
        self.root.join("iam")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_atrest_home_then_xdg_then_home() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(resolve_from(p("/a"), p("/x"), p("/h")), PathBuf::from("/a"));
        assert_eq!(
            resolve_from(None, p("/x"), p("/h")),
            PathBuf::from("/x/atrest")
        );
        assert_eq!(
            resolve_from(p(""), None, p("/h")),
            PathBuf::from("/h/.local/state/atrest")
        );
    }
}
