//! The boot profile: what an instance boots (kernel, initramfs), with how much memory,
//! which extra kernel arguments and which accelerator. Stored in the ec2 registry.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::BootError;

/// Smallest and largest guest memory we accept, in MiB.
pub const MIN_MEMORY_MIB: u32 = 64;
pub const MAX_MEMORY_MIB: u32 = 16 * 1024;
/// Default guest memory: the demo guest needs far less, but the kernel wants headroom.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Longest volume ID we put on a kernel command line.
const MAX_VOLUME_ID_LEN: usize = 128;
/// Longest extra command line we accept (the x86 kernel limit is 2048 bytes in total).
const MAX_EXTRA_CMDLINE_LEN: usize = 1024;

/// Which accelerator qemu uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Accel {
    /// KVM when a probe guest really runs under it (cached per process), TCG otherwise.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// The value for qemu's `-accel` option (only for a resolved accelerator).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg | Accel::Auto => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

impl std::str::FromStr for Accel {
    type Err = BootError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(BootError::InvalidProfile(format!(
                "accelerator {s:?} is not one of auto, kvm, tcg"
            ))),
        }
    }
}

/// How to boot an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootProfile {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// Appended to the kernel command line after atrest's own arguments.
    #[serde(default)]
    pub extra_cmdline: String,
    #[serde(default)]
    pub accel: Accel,
}

fn default_memory() -> u32 {
    DEFAULT_MEMORY_MIB
}

impl BootProfile {
    /// The demo guest built by `scripts/make-guest.sh` into `dir`.
    pub fn demo_guest(dir: &std::path::Path) -> Self {
        BootProfile {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            memory_mib: DEFAULT_MEMORY_MIB,
            extra_cmdline: String::new(),
            accel: Accel::Auto,
        }
    }

    /// Checks everything that does not need the file system.
    pub fn validate(&self) -> Result<(), BootError> {
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(BootError::InvalidProfile(format!(
                "memory_mib {} is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB}",
                self.memory_mib
            )));
        }
        if self.extra_cmdline.len() > MAX_EXTRA_CMDLINE_LEN {
            return Err(BootError::InvalidProfile(format!(
                "extra_cmdline is {} bytes, at most {MAX_EXTRA_CMDLINE_LEN} allowed",
                self.extra_cmdline.len()
            )));
        }
        if self.extra_cmdline.chars().any(|c| c.is_control()) {
            return Err(BootError::InvalidProfile(
                "extra_cmdline contains a control character".into(),
            ));
        }
        for (what, path) in [("kernel", &self.kernel), ("initrd", &self.initrd)] {
            if path.as_os_str().is_empty() {
                return Err(BootError::InvalidProfile(format!("{what} path is empty")));
            }
            // qemu splits -kernel/-initrd values on commas in some versions; refuse them.
            if path.to_string_lossy().contains(',') {
                return Err(BootError::InvalidProfile(format!(
                    "{what} path {} contains a comma",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// The kernel command line for booting `volume_id`.
    ///
    /// Measured under TCG (docs/BOOT.md): `quiet` keeps the kernel's messages off the
    /// serial port, where every byte costs emulated UART time (about 2x faster boot);
    /// `cryptomgr.notests` skips the crypto self-tests and `edd=off` the BIOS disk
    /// probe (together about 10% less CPU). `panic=-1` turns a panic into a reboot,
    /// which `-no-reboot` turns into qemu exiting, so a broken guest never hangs.
    pub fn cmdline(&self, volume_id: &str) -> Result<String, BootError> {
        validate_volume_id(volume_id)?;
        let mut line = format!(
            "console=ttyS0 root=/dev/vda atrest.volume={volume_id} quiet panic=-1 \
             cryptomgr.notests edd=off"
        );
        let extra = self.extra_cmdline.trim();
        if !extra.is_empty() {
            line.push(' ');
            line.push_str(extra);
        }
        Ok(line)
    }
}

/// A volume ID goes on the kernel command line: one word of safe characters.
pub fn validate_volume_id(volume_id: &str) -> Result<(), BootError> {
    let ok = !volume_id.is_empty()
        && volume_id.len() <= MAX_VOLUME_ID_LEN
        && volume_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(BootError::InvalidProfile(format!(
            "volume id {volume_id:?} must be 1..={MAX_VOLUME_ID_LEN} characters of [A-Za-z0-9._-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> BootProfile {
        BootProfile::demo_guest(std::path::Path::new("/g"))
    }

    #[test]
    fn cmdline_names_the_volume_and_appends_extra() {
        let mut p = profile();
        assert_eq!(
            p.cmdline("vol-0abc").unwrap(),
            "console=ttyS0 root=/dev/vda atrest.volume=vol-0abc quiet panic=-1 \
             cryptomgr.notests edd=off"
        );
        p.extra_cmdline = "  loglevel=3 ".into();
        assert!(p.cmdline("vol-1").unwrap().ends_with("edd=off loglevel=3"));
    }

    #[test]
    fn volume_ids_that_could_inject_arguments_are_refused() {
        let p = profile();
        for bad in ["", "vol 1", "vol-1 init=/bin/sh", "vol\n", "vol=x", "é"] {
            assert!(matches!(p.cmdline(bad), Err(BootError::InvalidProfile(_))));
        }
        assert!(p.cmdline(&"v".repeat(129)).is_err());
    }

    #[test]
    fn validate_checks_memory_and_cmdline() {
        let mut p = profile();
        assert!(p.validate().is_ok());
        p.memory_mib = 8;
        assert!(p.validate().is_err());
        p.memory_mib = 256;
        p.extra_cmdline = "a\nb".into();
        assert!(p.validate().is_err());
        p.extra_cmdline = String::new();
        p.kernel = "/a,b".into();
        assert!(p.validate().is_err());
    }

    #[test]
    fn profile_round_trips_through_json_with_defaults() {
        let p: BootProfile = serde_json::from_str(r#"{"kernel":"/k","initrd":"/i"}"#).unwrap();
        assert_eq!(p.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(p.accel, Accel::Auto);
        let back: BootProfile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!("TCG".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("xen".parse::<Accel>().is_err());
    }
}
