//! kmsd's configuration (HOME/config.toml or `--config`).
//!
//! This is the key service's part: region, account, socket mode, how a Unix user
//! becomes a principal. Unknown tables are ignored, so the principals, accounts
//! and trusted services that issue 3 adds can live in the same file.
//!
//! ```toml
//! region = "us-east-1"
//! account = "111122223333"
//! [kmsd]
//! socket_mode = "0660"
//! sweep_interval_seconds = 60
//! default_principal = "arn:aws:iam::{account}:user/{user}"
//! ```

use std::path::Path;

use serde::Deserialize;

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT: &str = "111122223333";
pub const DEFAULT_PRINCIPAL_TEMPLATE: &str = "arn:aws:iam::{account}:user/{user}";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The whole file as kmsd reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub region: String,
    pub account: String,
    pub kmsd: KmsdConfig,
}

/// The `[kmsd]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KmsdConfig {
    /// Octal mode of the socket, e.g. "0660".
    pub socket_mode: String,
    /// How often the deletion and rotation sweeper runs.
    pub sweep_interval_seconds: u64,
    /// Principal for a uid with no explicit mapping; `{account}`, `{user}` and
    /// `{uid}` are substituted.
    pub default_principal: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: DEFAULT_REGION.into(),
            account: DEFAULT_ACCOUNT.into(),
            kmsd: KmsdConfig::default(),
        }
    }
}

impl Default for KmsdConfig {
    fn default() -> Self {
        KmsdConfig {
            socket_mode: "0660".into(),
            sweep_interval_seconds: 60,
            default_principal: DEFAULT_PRINCIPAL_TEMPLATE.into(),
        }
    }
}

impl Config {
    /// Reads `path`; a missing file gives the defaults (unless `required`).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates the text of a config file.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.account.len() != 12 || !self.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "account {:?} must be 12 digits, like 111122223333",
                self.account
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "region {:?} must look like us-east-1 (lowercase letters, digits, '-')",
                self.region
            ));
        }
        self.socket_mode()?;
        if self.kmsd.sweep_interval_seconds == 0 {
            return Err("kmsd.sweep_interval_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The socket mode as a number.
    pub fn socket_mode(&self) -> Result<u32, String> {
        u32::from_str_radix(self.kmsd.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "kmsd.socket_mode {:?} must be an octal mode like \"0660\"",
                    self.kmsd.socket_mode
                )
            })
    }

    /// The principal ARN for a Unix user with no explicit mapping.
    pub fn default_principal_for(&self, user: &str, uid: u32) -> String {
        self.kmsd
            .default_principal
            .replace("{account}", &self.account)
            .replace("{user}", user)
            .replace("{uid}", &uid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_tables() {
        let c = Config::parse("[principals]\nfoo = 1\n").unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.account, "111122223333");
        assert_eq!(c.socket_mode().unwrap(), 0o660);
        assert_eq!(
            c.default_principal_for("alice", 1000),
            "arn:aws:iam::111122223333:user/alice"
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert!(Config::parse("account = \"12\"")
            .unwrap_err()
            .contains("account"));
        assert!(Config::parse("region = \"US East\"")
            .unwrap_err()
            .contains("region"));
        assert!(Config::parse("[kmsd]\nsocket_mode = \"999\"")
            .unwrap_err()
            .contains("socket_mode"));
    }
}
