//! kmsd's configuration (HOME/config.toml or `--config`; an embedded default when
//! there is no file). See docs/CONFIG.md for every field and a full example.
//!
//! This module is the file's shape and its self-contained checks (pure). Turning it
//! into the lookup tables kmsd evaluates requests with (parsed IAM policies, uid
//! rules, access keys) is [`crate::service::directory`].
//!
//! ```toml
//! region = "us-east-1"
//! account = "111122223333"
//! [kmsd]
//! socket_mode = "0660"
//! [[uids]]
//! uid = "self"
//! may_act_as = ["arn:aws:iam::111122223333:role/voclabs"]
//! services = ["ec2.amazonaws.com"]
//! [accounts.111122223333.roles.voclabs]
//! policies = ["AdministratorAccess"]
//! [policies.AdministratorAccess]
//! document = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT: &str = "111122223333";
pub const DEFAULT_PRINCIPAL_TEMPLATE: &str = "arn:aws:iam::{account}:user/{user}";

/// The configuration kmsd uses when there is no config file: the lab works out of
/// the box for the Unix user kmsd runs as, and for nobody else (see docs/CONFIG.md).
pub const EMBEDDED_DEFAULT: &str = include_str!("config_default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: InvalidConfig,
    },
}

/// What is wrong with a config's text: it is not TOML of the config's shape, or a
/// value breaks a rule (the message names the field and what it must be).
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("{0}")]
    Rule(String),
}

/// An [`InvalidConfig::Rule`], `format!`-style.
macro_rules! invalid {
    ($($t:tt)*) => {
        InvalidConfig::Rule(format!($($t)*))
    };
}

/// The whole file as kmsd reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub region: String,
    /// The account Unix users' default principals live in.
    pub account: String,
    pub kmsd: KmsdConfig,
    /// How the audit trail is made durable.
    pub trail: TrailSection,
    /// Accounts and their IAM users and roles, by 12-digit account id.
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Which Unix users are which principals, may act as whom, and are trusted as
    /// which services.
    pub uids: Vec<UidConfig>,
    /// IAM identity policies by name (attached with `policies = [NAME]`).
    pub policies: BTreeMap<String, PolicySource>,
    /// SigV4 access keys of the object service, each bound to a principal.
    pub access_keys: Vec<AccessKeyConfig>,
    /// Where the config came from (`None`: the embedded default); relative policy
    /// `file`s are resolved against its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Top-level tables kmsd does not read (other services' sections, e.g. `[s3]`);
    /// kmsd logs their names at start so a misspelt key does not go unnoticed.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// The `[kmsd]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KmsdConfig {
    /// Octal mode of the socket, e.g. "0660".
    pub socket_mode: String,
    /// How often the deletion and rotation sweeper runs.
    pub sweep_interval_seconds: u64,
    /// Principal for a uid with no explicit mapping; `{account}`, `{user}` and
    /// `{uid}` are substituted.
    pub default_principal: String,
    /// The uids trusted as the AWS endpoint (`atrest serve`): they may resolve access
    /// keys to their secrets and send requests that speak for a SigV4 signer
    /// ([`crate::protocol::Signer`]). Default: kmsd's own uid and root.
    pub endpoint_uids: Vec<UidSelector>,
    /// Most connections served at once (each has a thread); lowered at start to fit
    /// the open-file limit. Beyond it the connection waiting longest for its first
    /// request, or idle longest, is closed to make room, else the new one is refused
    /// with `LimitExceededException`.
    pub max_connections: u64,
    /// A connection must send its first request (and any request, once started) within
    /// this many milliseconds, and read each reply within it.
    pub first_frame_timeout_ms: u64,
    /// A connection idle this long between requests is closed (clients reconnect).
    pub idle_timeout_seconds: u64,
}

/// The `[trail]` table: durability of the audit trail (docs/CONFIG.md, docs/FORMAT.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrailSection {
    /// `"interval"` (the default): state changes are fdatasync'd before they are
    /// acknowledged, every other event is written before its reply and fdatasync'd
    /// within `sync_interval_ms`. `"every-event"`: every event is fdatasync'd before
    /// its reply.
    pub sync: String,
    /// With `sync = "interval"`: at most this many milliseconds between writing an
    /// event and its group fdatasync (1 to 10000).
    pub sync_interval_ms: u64,
}

impl Default for TrailSection {
    fn default() -> Self {
        TrailSection {
            sync: crate::trail::SyncMode::INTERVAL.into(),
            sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
        }
    }
}

/// `kmsd.max_connections` when not given.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// `kmsd.first_frame_timeout_ms` when not given.
pub const DEFAULT_FIRST_FRAME_TIMEOUT_MS: u64 = 5000;
/// `kmsd.idle_timeout_seconds` when not given.
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 300;

/// `trail.sync_interval_ms` when not given.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 20;
/// The largest `trail.sync_interval_ms`.
pub const MAX_SYNC_INTERVAL_MS: u64 = 10_000;

impl TrailSection {
    /// The sync mode this table asks for.
    pub fn sync_mode(&self) -> Result<crate::trail::SyncMode, InvalidConfig> {
        use crate::trail::SyncMode;
        match self.sync.as_str() {
            SyncMode::EVERY_EVENT => Ok(SyncMode::EveryEvent),
            SyncMode::INTERVAL => {
                if !(1..=MAX_SYNC_INTERVAL_MS).contains(&self.sync_interval_ms) {
                    return Err(invalid!(
                        "trail.sync_interval_ms {} must be 1 to {MAX_SYNC_INTERVAL_MS}",
                        self.sync_interval_ms
                    ));
                }
                Ok(SyncMode::Interval(std::time::Duration::from_millis(
                    self.sync_interval_ms,
                )))
            }
            other => Err(invalid!(
                "trail.sync {other:?} must be \"interval\" or \"every-event\""
            )),
        }
    }
}

/// `[accounts.ID]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// A label for people (not used in ARNs).
    pub name: Option<String>,
    /// IAM users by name (`arn:aws:iam::ID:user/NAME`).
    pub users: BTreeMap<String, IdentityConfig>,
    /// IAM roles by name (`arn:aws:iam::ID:role/NAME`; sessions of the role get its policies).
    pub roles: BTreeMap<String, IdentityConfig>,
}

/// An IAM user or role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Names of `[policies.NAME]` attached to it.
    pub policies: Vec<String>,
}

/// Which Unix user(s) a `[[uids]]` entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UidSelector {
    Uid(u32),
    /// A user name, or `"self"`: the uid kmsd itself runs as.
    Name(String),
}

/// `[[uids]]`: one Unix user's identity and trust.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UidConfig {
    pub uid: UidSelector,
    /// The principal this uid is (default: `kmsd.default_principal`). `{user}`,
    /// `{uid}`, `{account}` are substituted.
    #[serde(default)]
    pub principal: Option<String>,
    /// Principals (ARN patterns, `*` matches any run of characters) this uid may
    /// act as with `atrest --as ARN`.
    #[serde(default)]
    pub may_act_as: Vec<String>,
    /// Services (`ec2.amazonaws.com`, `s3.amazonaws.com`) this uid is trusted to be:
    /// it may send requests `via` them, on behalf of other principals, with
    /// `grant_is_for_aws_resource`, and record their trail events.
    #[serde(default)]
    pub services: Vec<String>,
    /// Policies attached to this uid's own principal.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// `[policies.NAME]`: a JSON IAM policy, inline or in a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySource {
    pub document: Option<String>,
    /// Path of a JSON file (relative paths: relative to the config file's directory).
    pub file: Option<String>,
}

/// `[[access_keys]]`: an S3 access key bound to a principal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: DEFAULT_REGION.into(),
            account: DEFAULT_ACCOUNT.into(),
            kmsd: KmsdConfig::default(),
            trail: TrailSection::default(),
            accounts: BTreeMap::new(),
            uids: Vec::new(),
            policies: BTreeMap::new(),
            access_keys: Vec::new(),
            source: None,
            other: BTreeMap::new(),
        }
    }
}

impl Default for KmsdConfig {
    fn default() -> Self {
        KmsdConfig {
            socket_mode: "0660".into(),
            sweep_interval_seconds: 60,
            default_principal: DEFAULT_PRINCIPAL_TEMPLATE.into(),
            endpoint_uids: vec![UidSelector::Name("self".into()), UidSelector::Uid(0)],
            max_connections: DEFAULT_MAX_CONNECTIONS,
            first_frame_timeout_ms: DEFAULT_FIRST_FRAME_TIMEOUT_MS,
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT_SECONDS,
        }
    }
}

impl Config {
    /// The embedded default configuration (what kmsd uses with no config file).
    pub fn embedded() -> Config {
        // The embedded text is tested to parse; fall back to the bare defaults
        // rather than panic if a build ever broke it.
        Self::parse(EMBEDDED_DEFAULT).unwrap_or_else(|e| {
            tracing::error!("embedded default config is invalid: {e}");
            Config::default()
        })
    }

    /// Reads `path`; a missing file gives the embedded default (unless `required`).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::embedded())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut cfg = Self::parse(&text).map_err(|source| ConfigError::Invalid {
            path: path.display().to_string(),
            source,
        })?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates the text of a config file.
    pub fn parse(text: &str) -> Result<Config, InvalidConfig> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        if !is_account_id(&self.account) {
            return Err(invalid!(
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
            return Err(invalid!(
                "region {:?} must look like us-east-1 (lowercase letters, digits, '-')",
                self.region
            ));
        }
        self.socket_mode()?;
        self.trail.sync_mode()?;
        if self.kmsd.sweep_interval_seconds == 0 {
            return Err(invalid!("kmsd.sweep_interval_seconds must be at least 1"));
        }
        let k = &self.kmsd;
        for (name, value, range) in [
            ("max_connections", k.max_connections, 1..=1_000_000),
            (
                "first_frame_timeout_ms",
                k.first_frame_timeout_ms,
                10..=600_000,
            ),
            ("idle_timeout_seconds", k.idle_timeout_seconds, 1..=86_400),
        ] {
            if !range.contains(&value) {
                return Err(invalid!(
                    "kmsd.{name} {value} must be {} to {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        check_principal_template("kmsd.default_principal", &self.kmsd.default_principal)?;
        if self
            .kmsd
            .endpoint_uids
            .iter()
            .any(|u| matches!(u, UidSelector::Name(n) if n.is_empty()))
        {
            return Err(invalid!(
                "kmsd.endpoint_uids: each entry must be a uid number, a user name or \"self\""
            ));
        }
        for (id, acct) in &self.accounts {
            if !is_account_id(id) {
                return Err(invalid!(
                    "[accounts.{id}]: the account id must be 12 digits"
                ));
            }
            for (kind, map) in [("users", &acct.users), ("roles", &acct.roles)] {
                for (name, ident) in map {
                    if !is_iam_name(name) {
                        return Err(invalid!(
                            "[accounts.{id}.{kind}.{name}]: an IAM name may hold letters, digits and +=,.@_-"
                        ));
                    }
                    self.check_policy_refs(
                        &format!("[accounts.{id}.{kind}.{name}]"),
                        &ident.policies,
                    )?;
                }
            }
        }
        for (i, u) in self.uids.iter().enumerate() {
            let at = format!("[[uids]] #{} ({})", i + 1, u.uid.describe());
            if let UidSelector::Name(n) = &u.uid {
                if n.is_empty() {
                    return Err(invalid!(
                        "{at}: uid must be a number, a user name or \"self\""
                    ));
                }
            }
            if let Some(p) = &u.principal {
                check_principal_template(&format!("{at} principal"), p)?;
            }
            for pat in &u.may_act_as {
                if !(pat.starts_with("arn:aws:iam::") || pat.starts_with("arn:aws:sts::")) {
                    return Err(invalid!(
                        "{at}: may_act_as entry {pat:?} must be an IAM ARN pattern (arn:aws:iam::ACCOUNT:user/NAME, role/NAME, `*` wildcards)"
                    ));
                }
            }
            for s in &u.services {
                if !is_service_name(s) {
                    return Err(invalid!(
                        "{at}: services entry {s:?} must be a service principal like ec2.amazonaws.com"
                    ));
                }
            }
            self.check_policy_refs(&at, &u.policies)?;
        }
        for (name, src) in &self.policies {
            match (&src.document, &src.file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid!(
                        "[policies.{name}]: give exactly one of `document` (inline JSON) or `file`"
                    ))
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for k in &self.access_keys {
            let id_ok = (16..=128).contains(&k.access_key_id.len())
                && k.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !id_ok {
                return Err(invalid!(
                    "[[access_keys]] {:?}: access_key_id must be 16 to 128 letters and digits",
                    k.access_key_id
                ));
            }
            if k.secret_access_key.len() < 16 || k.secret_access_key.len() > 128 {
                return Err(invalid!(
                    "[[access_keys]] {}: secret_access_key must be 16 to 128 characters",
                    k.access_key_id
                ));
            }
            if !k.principal.starts_with("arn:aws:iam::")
                && !k.principal.starts_with("arn:aws:sts::")
            {
                return Err(invalid!(
                    "[[access_keys]] {}: principal {:?} must be an IAM ARN",
                    k.access_key_id,
                    k.principal
                ));
            }
            if !ids.insert(k.access_key_id.as_str()) {
                return Err(invalid!(
                    "[[access_keys]] {}: access key id listed twice",
                    k.access_key_id
                ));
            }
        }
        Ok(())
    }

    fn check_policy_refs(&self, at: &str, names: &[String]) -> Result<(), InvalidConfig> {
        for n in names {
            if !self.policies.contains_key(n) {
                return Err(invalid!(
                    "{at}: policy {n:?} is not defined (add a [policies.{n}] table)"
                ));
            }
        }
        Ok(())
    }

    /// The socket mode as a number.
    pub fn socket_mode(&self) -> Result<u32, InvalidConfig> {
        u32::from_str_radix(self.kmsd.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                invalid!(
                    "kmsd.socket_mode {:?} must be an octal mode like \"0660\"",
                    self.kmsd.socket_mode
                )
            })
    }

    #[cfg(test)]
    /// The principal ARN for a Unix user with no explicit mapping.
    pub fn default_principal_for(&self, user: &str, uid: u32) -> String {
        self.expand(&self.kmsd.default_principal, user, uid)
    }

    /// Substitutes `{account}`, `{user}` and `{uid}` in a principal template.
    pub fn expand(&self, template: &str, user: &str, uid: u32) -> String {
        template
            .replace("{account}", &self.account)
            .replace("{user}", user)
            .replace("{uid}", &uid.to_string())
    }

    /// The access key with this id, if the config binds one.
    #[cfg(test)]
    pub fn access_key(&self, access_key_id: &str) -> Option<&AccessKeyConfig> {
        self.access_keys
            .iter()
            .find(|k| k.access_key_id == access_key_id)
    }

    /// The directory relative policy files are read from.
    pub fn base_dir(&self) -> Option<&Path> {
        self.source.as_deref().and_then(Path::parent)
    }
}

impl UidSelector {
    /// Whether this selector names the Unix user `uid` (called `user`), for a kmsd
    /// running as `self_uid`.
    pub fn matches(&self, uid: u32, user: &str, self_uid: u32) -> bool {
        match self {
            UidSelector::Uid(n) => *n == uid,
            UidSelector::Name(n) if n == "self" => uid == self_uid,
            UidSelector::Name(n) => n == user,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UidSelector::Uid(u) => format!("uid {u}"),
            UidSelector::Name(n) => format!("user {n}"),
        }
    }
}

/// Is `s` a 12-digit account id?
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM user and role names: letters, digits and `+=,.@_-`, 1 to 64 characters.
pub fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `NAME.amazonaws.com`.
pub fn is_service_name(s: &str) -> bool {
    s.len() > ".amazonaws.com".len()
        && s.ends_with(".amazonaws.com")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn check_principal_template(at: &str, t: &str) -> Result<(), InvalidConfig> {
    if t.starts_with("arn:aws:iam::") || t.starts_with("arn:aws:sts::") {
        Ok(())
    } else {
        Err(invalid!(
            "{at} {t:?} must be an IAM ARN like arn:aws:iam::{{account}}:user/{{user}}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.account, "111122223333");
        assert_eq!(c.socket_mode().unwrap(), 0o660);
        let endpoint = &c.kmsd.endpoint_uids;
        assert!(endpoint.iter().any(|u| u.matches(0, "root", 1000)));
        assert!(endpoint.iter().any(|u| u.matches(1000, "me", 1000)));
        assert!(!endpoint.iter().any(|u| u.matches(1001, "bob", 1000)));
        let c = Config::parse("[kmsd]\nendpoint_uids = [\"svc\", 1002]").unwrap();
        assert!(c.kmsd.endpoint_uids[0].matches(7, "svc", 0));
        assert!(c.kmsd.endpoint_uids[1].matches(1002, "x", 0));
        assert!(!c.kmsd.endpoint_uids.iter().any(|u| u.matches(0, "root", 0)));
        assert_eq!(
            c.default_principal_for("alice", 1000),
            "arn:aws:iam::111122223333:user/alice"
        );
    }

    #[test]
    fn embedded_default_parses_and_declares_the_lab() {
        let c = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert!(c.accounts["111122223333"].roles.contains_key("voclabs"));
        assert!(c.accounts["111122223333"]
            .users
            .contains_key("KeyAdminOnly"));
        assert!(c.accounts.contains_key("444455556666"));
        assert_eq!(c.uids.len(), 1);
        assert_eq!(c.uids[0].uid, UidSelector::Name("self".into()));
        assert!(c.access_keys.is_empty());
        assert!(Config::embedded().accounts.contains_key("444455556666"));
    }

    #[test]
    fn bad_values_are_named() {
        let err = |t: &str| Config::parse(t).unwrap_err().to_string();
        assert!(err("account = \"12\"").contains("account"));
        assert!(err("region = \"US East\"").contains("region"));
        assert!(err("[kmsd]\nsocket_mode = \"999\"").contains("socket_mode"));
        assert!(err("[kmsd]\nmax_connections = 0").contains("max_connections"));
        assert!(err("[kmsd]\nfirst_frame_timeout_ms = 1").contains("first_frame_timeout_ms"));
        assert!(err("[kmsd]\nidle_timeout_seconds = 0").contains("idle_timeout_seconds"));
        let k = Config::parse("").unwrap().kmsd;
        assert_eq!(
            (
                k.max_connections,
                k.first_frame_timeout_ms,
                k.idle_timeout_seconds
            ),
            (1024, 5000, 300)
        );
        assert!(Config::parse("[s3]\nport = 1")
            .unwrap()
            .other
            .contains_key("s3"));
        assert!(err("[accounts.1234]\n").contains("12 digits"));
        assert!(err("[accounts.111122223333.users.\"a b\"]\n").contains("IAM name"));
        assert!(err("[accounts.111122223333.users.A]\npolicies=[\"Nope\"]").contains("Nope"));
        assert!(err("[[uids]]\nuid = 5\nmay_act_as = [\"alice\"]").contains("may_act_as"));
        assert!(err("[[uids]]\nuid = 5\nservices = [\"ec2\"]").contains("services"));
        assert!(err("[policies.P]\n").contains("exactly one"));
        assert!(err("[kmsd]\nendpoint_uids = [\"\"]").contains("endpoint_uids"));
        assert!(err(
            "[[access_keys]]\naccess_key_id=\"AKIA\"\nsecret_access_key=\"x\"\nprincipal=\"arn:aws:iam::111122223333:user/a\""
        )
        .contains("access_key_id"));
    }

    #[test]
    fn trail_sync_settings() {
        use crate::trail::SyncMode;
        use std::time::Duration;
        let mode = |t: &str| Config::parse(t).map(|c| c.trail.sync_mode().unwrap());
        assert_eq!(
            mode("").unwrap(),
            SyncMode::Interval(Duration::from_millis(20))
        );
        assert_eq!(mode("").unwrap(), SyncMode::DEFAULT);
        assert_eq!(
            mode("[trail]\nsync = \"every-event\"").unwrap(),
            SyncMode::EveryEvent
        );
        assert_eq!(
            mode("[trail]\nsync_interval_ms = 5").unwrap(),
            SyncMode::Interval(Duration::from_millis(5))
        );
        let err = |t: &str| Config::parse(t).unwrap_err().to_string();
        assert!(err("[trail]\nsync = \"never\"").contains("trail.sync"));
        assert!(err("[trail]\nsync_interval_ms = 0").contains("sync_interval_ms"));
        assert!(err("[trail]\nsync_interval_ms = 10001").contains("sync_interval_ms"));
        assert!(err("[trail]\nsync_intervall_ms = 5").contains("unknown field"));
        // [trail] is kmsd's own table now, not "another tool's".
        assert!(!Config::parse("[trail]\n")
            .unwrap()
            .other
            .contains_key("trail"));
    }

    #[test]
    fn access_keys_are_found_by_id() {
        let c = Config::parse(
            "[[access_keys]]\naccess_key_id=\"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key=\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\nprincipal=\"arn:aws:iam::111122223333:role/voclabs\"",
        )
        .unwrap();
        assert_eq!(
            c.access_key("AKIAIOSFODNN7EXAMPLE").unwrap().principal,
            "arn:aws:iam::111122223333:role/voclabs"
        );
        assert!(c.access_key("AKIAOTHER00000000000").is_none());
    }
}
