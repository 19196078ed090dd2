//! What the services beside kmsd (the volume service, the AWS endpoint, the CLI) share
//! of `HOME/config.toml`: the region and account every ARN names, and the mode of the
//! sockets they make. Read with kmsd's own parser and checks, so a file kmsd refuses
//! is refused here with the same message, and both sides agree on the defaults (the
//! embedded default config when the file does not exist). Everything else in the file
//! (uids, IAM, access keys) is kmsd's: its questions go through the socket.

use std::path::Path;

use crate::config::Config;
pub use crate::config::{ConfigError, InvalidConfig};

/// The shared settings of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// `region` (default `us-east-1`).
    pub region: String,
    /// `account`: the account Unix users' default principals live in (default
    /// `111122223333`).
    pub account: String,
    /// `[kmsd] socket_mode` as a number (default `0o660`): also the mode of the other
    /// services' sockets.
    pub socket_mode: u32,
}

impl Default for SiteConfig {
    /// The embedded default config's settings.
    fn default() -> Self {
        Self::from_config(&Config::embedded()).unwrap_or(SiteConfig {
            region: crate::config::DEFAULT_REGION.into(),
            account: crate::config::DEFAULT_ACCOUNT.into(),
            socket_mode: 0o660,
        })
    }
}

impl SiteConfig {
    /// Reads `path` (`HOME/config.toml`) as kmsd would; a missing file gives the
    /// embedded default. An unreadable or invalid file is an error naming it.
    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        let config = Config::load(path, false)?;
        Self::from_config(&config).map_err(|source| ConfigError::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    fn from_config(c: &Config) -> Result<SiteConfig, InvalidConfig> {
        Ok(SiteConfig {
            region: c.region.clone(),
            account: c.account.clone(),
            socket_mode: c.socket_mode()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_the_embedded_default_and_an_invalid_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let site = SiteConfig::load(&path).unwrap();
        assert_eq!(site, SiteConfig::default());
        assert_eq!(
            (
                site.region.as_str(),
                site.account.as_str(),
                site.socket_mode
            ),
            ("us-east-1", "111122223333", 0o660)
        );
        std::fs::write(
            &path,
            "region = \"eu-west-3\"\naccount = \"444455556666\"\n[kmsd]\nsocket_mode = \"0600\"\n",
        )
        .unwrap();
        let site = SiteConfig::load(&path).unwrap();
        assert_eq!(
            (
                site.region.as_str(),
                site.account.as_str(),
                site.socket_mode
            ),
            ("eu-west-3", "444455556666", 0o600)
        );
        std::fs::write(&path, "region = \"EU WEST\"\n").unwrap();
        let e = SiteConfig::load(&path).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { source: InvalidConfig::Rule(m), .. } if m.contains("region")),
            "{e}"
        );
    }
}
