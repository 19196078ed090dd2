//! IAM's state as kmsd keeps it: users, groups (with their members), roles (with their
//! trust policies), inline policies, customer managed policies and what is attached to
//! whom, per account. The IAM operations (`service/iam.rs`) write it; authorization
//! reads it through the [`crate::service::directory::Directory`], merged with what
//! the config file and the drop-in directory `HOME/iam/` declare.
//!
//! - [`IamFile`] is the durable form (`HOME/kms/iam.json`, byte layout in
//!   docs/FORMAT.md, "IAM store"); [`parse_file`] reads and checks it (pure, the fuzz
//!   target's entry point);
//! - [`compile`] turns it into the parsed identity policies of every user ARN and role
//!   ARN (a user's own, its groups', and what is attached to each);
//! - [`store`] keeps it on disk (atomic writes) and in memory;
//! - [`aws_managed`] is the set of AWS managed policies atrest knows;
//! - [`names`] holds IAM's name, path and ARN rules with AWS's validation messages;
//! - [`trust`] decides `sts:AssumeRole` from a role's trust policy (pure);
//! - [`session`] seals and opens STS session tokens.

pub mod aws_managed;
pub mod names;
pub mod session;
pub mod store;
pub mod trust;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::is_account_id;
use crate::policy::{PolicyDocument, PolicyError};

/// The store's file name, in the keystore's directory (`HOME/kms`).
pub const IAM_FILE: &str = "iam.json";
/// The file's `format`.
pub const FORMAT: u32 = 1;

/// What is wrong with an IAM store's bytes ([`parse_file`]) or with one of its policies
/// ([`compile`]); every message names the entity.
#[derive(Debug, thiserror::Error)]
pub enum IamFileError {
    #[error(transparent)]
    Syntax(#[from] serde_json::Error),
    #[error("format {0} (this kmsd reads {FORMAT})")]
    Format(u32),
    /// A name, path, account id, member or reference that breaks IAM's rules.
    #[error("{0}")]
    Rule(String),
    /// A policy document that does not parse for its use; `at` names the entity and policy.
    #[error("{at}: {source}")]
    Policy {
        at: String,
        #[source]
        source: PolicyError,
    },
}

impl IamFileError {
    fn policy(at: impl Into<String>) -> impl FnOnce(PolicyError) -> IamFileError {
        let at = at.into();
        move |source| IamFileError::Policy { at, source }
    }
}

/// The whole store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamFile {
    pub format: u32,
    /// By 12-digit account id.
    pub accounts: BTreeMap<String, AccountIam>,
}

impl Default for IamFile {
    fn default() -> Self {
        IamFile {
            format: FORMAT,
            accounts: BTreeMap::new(),
        }
    }
}

/// One account's IAM entities, each map by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountIam {
    pub users: BTreeMap<String, UserRecord>,
    pub groups: BTreeMap<String, GroupRecord>,
    pub roles: BTreeMap<String, RoleRecord>,
    /// Customer managed policies.
    pub policies: BTreeMap<String, ManagedPolicyRecord>,
}

/// What users, groups and roles have alike: inline policies by name (the document
/// as given) and the ARNs of the managed policies attached, in attachment order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    pub inline_policies: BTreeMap<String, String>,
    pub attached_policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// `AIDA...`.
    pub id: String,
    pub path: String,
    pub create_date_ms: i64,
    /// Declared by the config file (`[accounts.ID.users.NAME]`): it cannot be deleted
    /// through IAM.
    pub declared: bool,
    #[serde(flatten)]
    pub permissions: Permissions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRecord {
    /// `AGPA...`.
    pub id: String,
    pub path: String,
    pub create_date_ms: i64,
    /// User names, in the order they were added.
    pub members: Vec<String>,
    #[serde(flatten)]
    pub permissions: Permissions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRecord {
    /// `AROA...`.
    pub id: String,
    pub path: String,
    pub create_date_ms: i64,
    pub declared: bool,
    /// The trust policy, as given.
    pub assume_role_policy: String,
    pub description: Option<String>,
    /// Seconds, 3600 to 43200.
    pub max_session_duration: i32,
    #[serde(flatten)]
    pub permissions: Permissions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedPolicyRecord {
    /// `ANPA...`.
    pub id: String,
    pub path: String,
    pub create_date_ms: i64,
    pub update_date_ms: i64,
    pub description: Option<String>,
    pub default_version_id: String,
    pub versions: Vec<PolicyVersionRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyVersionRecord {
    pub version_id: String,
    pub document: String,
    pub create_date_ms: i64,
}

impl ManagedPolicyRecord {
    /// The default version's document.
    pub fn default_document(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.version_id == self.default_version_id)
            .map(|v| v.document.as_str())
    }
}

/// Parses the store's bytes and checks what its types cannot: the format, account
/// ids, names and paths, that every policy document parses for its use, that group
/// members are users and attached policies exist. Pure: no I/O.
pub fn parse_file(bytes: &[u8]) -> Result<IamFile, IamFileError> {
    let f: IamFile = serde_json::from_slice(bytes)?;
    if f.format != FORMAT {
        return Err(IamFileError::Format(f.format));
    }
    for (account, a) in &f.accounts {
        if !is_account_id(account) {
            return Err(IamFileError::Rule(format!(
                "account {account:?} is not 12 digits"
            )));
        }
        let check_entity = |kind: &str, name: &str, path: &str, p: &Permissions| {
            let at = format!("{account} {kind} {name}");
            if !names::is_entity_name(name, 128) || !names::is_path(path) {
                return Err(IamFileError::Rule(format!(
                    "{at}: not a valid name or path"
                )));
            }
            for (pname, doc) in &p.inline_policies {
                if !names::is_entity_name(pname, 128) {
                    return Err(IamFileError::Rule(format!(
                        "{at}: inline policy name {pname:?} is not valid"
                    )));
                }
                PolicyDocument::parse_identity_policy(doc)
                    .map_err(IamFileError::policy(format!("{at}: inline policy {pname}")))?;
            }
            for arn in &p.attached_policies {
                if resolve_managed(&f, account, arn).is_none() {
                    return Err(IamFileError::Rule(format!(
                        "{at}: attached policy {arn} does not exist"
                    )));
                }
            }
            Ok(())
        };
        for (name, u) in &a.users {
            check_entity("user", name, &u.path, &u.permissions)?;
        }
        for (name, g) in &a.groups {
            check_entity("group", name, &g.path, &g.permissions)?;
            if let Some(m) = g.members.iter().find(|m| !a.users.contains_key(*m)) {
                return Err(IamFileError::Rule(format!(
                    "{account} group {name}: member {m} is not a user"
                )));
            }
        }
        for (name, r) in &a.roles {
            check_entity("role", name, &r.path, &r.permissions)?;
            trust::parse_trust_policy(&r.assume_role_policy).map_err(IamFileError::policy(
                format!("{account} role {name}: trust policy"),
            ))?;
        }
        for (name, p) in &a.policies {
            if !names::is_entity_name(name, 128) || !names::is_path(&p.path) {
                return Err(IamFileError::Rule(format!(
                    "{account} policy {name}: not a valid name or path"
                )));
            }
            let doc = p.default_document().ok_or_else(|| {
                IamFileError::Rule(format!(
                    "{account} policy {name}: default version {} is not among its versions",
                    p.default_version_id
                ))
            })?;
            PolicyDocument::parse_identity_policy(doc)
                .map_err(IamFileError::policy(format!("{account} policy {name}")))?;
        }
    }
    Ok(f)
}

/// The document of the managed policy `arn` as `account` sees it: an AWS managed
/// policy atrest knows, or a customer managed policy of `account`.
pub fn resolve_managed<'a>(f: &'a IamFile, account: &str, arn: &str) -> Option<&'a str> {
    if let Some(p) = aws_managed::by_arn(arn) {
        return Some(p.document);
    }
    let (acct, path_name) = names::split_policy_arn(arn)?;
    if acct != account {
        return None;
    }
    let (path, name) = names::split_path_name(path_name);
    let p = f.accounts.get(account)?.policies.get(name)?;
    (p.path == path).then(|| p.default_document()).flatten()
}

/// The identity policies of every user and role of the store, parsed, by ARN (a
/// role also under its path-less ARN, which its sessions name): a user's inline and
/// attached policies and those of each group it is in; a role's own.
pub fn compile(f: &IamFile) -> Result<HashMap<String, Vec<PolicyDocument>>, IamFileError> {
    let mut out: HashMap<String, Vec<PolicyDocument>> = HashMap::new();
    for (account, a) in &f.accounts {
        let docs = |p: &Permissions| -> Result<Vec<PolicyDocument>, IamFileError> {
            let mut v = Vec::new();
            for (name, text) in &p.inline_policies {
                v.push(
                    PolicyDocument::parse_identity_policy(text)
                        .map_err(IamFileError::policy(format!("inline policy {name}")))?,
                );
            }
            for arn in &p.attached_policies {
                let text = resolve_managed(f, account, arn).ok_or_else(|| {
                    IamFileError::Rule(format!("attached policy {arn} does not exist"))
                })?;
                v.push(
                    PolicyDocument::parse_identity_policy(text)
                        .map_err(IamFileError::policy(arn.as_str()))?,
                );
            }
            Ok(v)
        };
        for (name, u) in &a.users {
            let mut v = docs(&u.permissions)?;
            for g in a.groups.values().filter(|g| g.members.contains(name)) {
                v.extend(docs(&g.permissions)?);
            }
            out.insert(names::arn(account, "user", &u.path, name), v);
        }
        for (name, r) in &a.roles {
            let v = docs(&r.permissions)?;
            if r.path != "/" {
                out.insert(names::arn(account, "role", "/", name), v.clone());
            }
            out.insert(names::arn(account, "role", &r.path, name), v);
        }
    }
    Ok(out)
}

/// A fresh unique id shaped like IAM's: `prefix` (`AIDA` user, `AGPA` group, `AROA`
/// role, `ANPA` policy, `ASIA`/`AKIA` access keys) and 17 base-32 characters.
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let tail: String = (0..17)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}{tail}")
}

/// A stable id for a principal the store does not hold (a Unix user's default
/// principal): `prefix` and 17 base-32 characters of SHA-256 of its ARN.
pub fn derived_id(prefix: &str, arn: &str) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(arn.as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW_DECRYPT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#;

    fn sample() -> IamFile {
        let mut f = IamFile::default();
        let a = f.accounts.entry("111122223333".into()).or_default();
        a.users.insert(
            "alice".into(),
            UserRecord {
                id: "AIDAEXAMPLEEXAMPLE1".into(),
                path: "/".into(),
                create_date_ms: 1_700_000_000_000,
                declared: false,
                permissions: Permissions::default(),
            },
        );
        a.policies.insert(
            "KmsKeyUsagePolicy".into(),
            ManagedPolicyRecord {
                id: "ANPAEXAMPLEEXAMPLE1".into(),
                path: "/".into(),
                create_date_ms: 1,
                update_date_ms: 1,
                description: None,
                default_version_id: "v1".into(),
                versions: vec![PolicyVersionRecord {
                    version_id: "v1".into(),
                    document: ALLOW_DECRYPT.into(),
                    create_date_ms: 1,
                }],
            },
        );
        a.groups.insert(
            "devs".into(),
            GroupRecord {
                id: "AGPAEXAMPLEEXAMPLE1".into(),
                path: "/".into(),
                create_date_ms: 1,
                members: vec!["alice".into()],
                permissions: Permissions {
                    inline_policies: BTreeMap::new(),
                    attached_policies: vec![
                        "arn:aws:iam::111122223333:policy/KmsKeyUsagePolicy".into()
                    ],
                },
            },
        );
        f
    }

    #[test]
    fn a_user_gets_its_groups_attached_policies() {
        let f = sample();
        let bytes = serde_json::to_vec(&f).unwrap();
        assert_eq!(parse_file(&bytes).unwrap(), f);
        let c = compile(&f).unwrap();
        assert_eq!(c["arn:aws:iam::111122223333:user/alice"].len(), 1);
    }

    #[test]
    fn inconsistent_files_are_refused() {
        let mut f = sample();
        f.accounts
            .get_mut("111122223333")
            .unwrap()
            .groups
            .get_mut("devs")
            .unwrap()
            .members
            .push("bob".into());
        let e = parse_file(&serde_json::to_vec(&f).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bob"), "{e}");
        let mut f = sample();
        f.accounts.get_mut("111122223333").unwrap().policies.clear();
        let e = parse_file(&serde_json::to_vec(&f).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("KmsKeyUsagePolicy"), "{e}");
        assert!(parse_file(b"{\"format\":2,\"accounts\":{}}").is_err());
        assert!(parse_file(b"{").is_err());
    }

    #[test]
    fn derived_ids_are_stable_and_shaped() {
        let a = derived_id("AIDA", "arn:aws:iam::111122223333:user/root");
        assert_eq!(a, derived_id("AIDA", "arn:aws:iam::111122223333:user/root"));
        assert_eq!(a.len(), 21);
        assert!(new_id("AROA").starts_with("AROA"));
    }
}
