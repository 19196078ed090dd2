//! The directory: the configuration compiled into what authorization looks up on
//! every request. Which principal a Unix uid is, whom it may act as, which
//! services it is trusted to be, and the (parsed, once) IAM identity policies of
//! every user and role. Rebuilt whole on reload and swapped in atomically, so a
//! request always sees one consistent configuration.
//!
//! IAM policies come from the config file (`[accounts.ID.users.NAME] policies`,
//! `[[uids]] policies`), from the drop-in directory `HOME/iam/ACCOUNT/users/NAME/
//! POLICY.json` (and `roles/NAME/`), which works like `aws iam put-user-policy`
//! followed by a reload, and from the IAM store ([`crate::iam`]: what the IAM
//! operations write), swapped in with [`Directory::with_store`] after every IAM
//! change so that it takes effect on the next request. A principal's policies are
//! all of these together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{is_account_id, is_iam_name, AccessKeyConfig, Config, UidSelector};
use crate::policy::matching::glob_match;
use crate::policy::{PolicyDocument, PolicyError, Principal, PrincipalKind};
use crate::protocol::{ErrorCode, KmsError};

/// Why a configuration (with its drop-in IAM directory) does not compile into a
/// directory; each names the config section or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("[policies.{name}]: cannot read {path}: {source}")]
    ReadPolicy {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[policies.{name}] has no document")]
    NoDocument { name: String },
    /// `at`: `[policies.NAME]` or a drop-in file's path.
    #[error("{at}: {source}")]
    Policy {
        at: String,
        #[source]
        source: PolicyError,
    },
    #[error("{at}: policy {name:?} is not defined")]
    Undefined { at: String, name: String },
    #[error("cannot read {path}: {source}")]
    ReadDropIns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an IAM user or role name")]
    DropInName { path: PathBuf },
}

/// Parsed IAM policies of one principal, shared between requests.
pub type Policies = Arc<Vec<PolicyDocument>>;

/// What the directory knows about one Unix uid.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub user: String,
    /// The principal the uid is.
    pub principal: String,
    pub account: String,
    /// ARN patterns the uid may act as.
    pub may_act_as: Vec<String>,
    /// Services the uid is trusted as.
    pub services: Vec<String>,
    /// IAM policies of `principal` (its configured IAM entity plus `[[uids]] policies`).
    pub policies: Policies,
    /// `principal` parsed (or why it does not parse), once per identity rather than
    /// on every request: parsing is a pure function of the string, so this is exactly
    /// what [`parse_principal`] would return now. Identities live until the next
    /// reload, which builds a new directory; policies are not part of it.
    parsed: Result<Principal, KmsError>,
}

impl Identity {
    /// [`parse_principal`] of `principal`, without parsing it again.
    pub fn parsed_principal(&self) -> Result<Principal, KmsError> {
        self.parsed.clone()
    }
}

/// Who a request is evaluated as, once the peer's claims are admitted.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub principal: Principal,
    pub policies: Policies,
}

/// The compiled configuration.
pub struct Directory {
    config: Arc<Config>,
    self_uid: u32,
    /// IAM policies by user ARN or role ARN from the config and the drop-ins.
    declared: Arc<HashMap<String, Vec<PolicyDocument>>>,
    /// `declared` plus the IAM store's, by user ARN or role ARN.
    iam: HashMap<String, Policies>,
    /// `[[uids]]` entries with their own policies, in file order.
    rules: Vec<(UidSelector, Vec<PolicyDocument>)>,
    identities: Mutex<HashMap<u32, Arc<Identity>>>,
    empty: Policies,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("self_uid", &self.self_uid)
            .field("iam_entities", &self.iam.len())
            .finish_non_exhaustive()
    }
}

/// The drop-in IAM policy directory of a home.
pub fn iam_dir(home: &Path) -> PathBuf {
    plumbing::home::Layout::new(home).iam_dir()
}

impl Directory {
    /// Compiles `config` (plus `home`'s drop-in IAM directory, if `home` is given)
    /// for a kmsd running as `self_uid`. Every policy is parsed here; an invalid
    /// one is an error naming it.
    pub fn build(
        config: Config,
        home: Option<&Path>,
        self_uid: u32,
    ) -> Result<Self, DirectoryError> {
        let mut named: HashMap<&str, PolicyDocument> = HashMap::new();
        for (name, src) in &config.policies {
            let text = match (&src.document, &src.file) {
                (Some(doc), _) => doc.clone(),
                (None, Some(file)) => {
                    let path = match config.base_dir() {
                        Some(base) if Path::new(file).is_relative() => base.join(file),
                        _ => PathBuf::from(file),
                    };
                    std::fs::read_to_string(&path).map_err(|source| DirectoryError::ReadPolicy {
                        name: name.clone(),
                        path,
                        source,
                    })?
                }
                (None, None) => return Err(DirectoryError::NoDocument { name: name.clone() }),
            };
            let doc = PolicyDocument::parse_identity_policy(&text).map_err(|source| {
                DirectoryError::Policy {
                    at: format!("[policies.{name}]"),
                    source,
                }
            })?;
            named.insert(name.as_str(), doc);
        }
        let pick = |names: &[String], at: &str| -> Result<Vec<PolicyDocument>, DirectoryError> {
            names
                .iter()
                .map(|n| {
                    named
                        .get(n.as_str())
                        .cloned()
                        .ok_or_else(|| DirectoryError::Undefined {
                            at: at.to_string(),
                            name: n.clone(),
                        })
                })
                .collect()
        };
        let mut iam: HashMap<String, Vec<PolicyDocument>> = HashMap::new();
        for (account, acct) in &config.accounts {
            for (kind, map) in [("user", &acct.users), ("role", &acct.roles)] {
                for (name, ident) in map {
                    let at = format!("[accounts.{account}.{kind}s.{name}]");
                    iam.entry(format!("arn:aws:iam::{account}:{kind}/{name}"))
                        .or_default()
                        .extend(pick(&ident.policies, &at)?);
                }
            }
        }
        if let Some(home) = home {
            load_drop_ins(&iam_dir(home), &mut iam)?;
        }
        let rules = config
            .uids
            .iter()
            .map(|u| Ok((u.uid.clone(), pick(&u.policies, &u.uid.describe())?)))
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(Directory {
            config: Arc::new(config),
            self_uid,
            iam: iam
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
            declared: Arc::new(iam),
            rules,
            identities: Mutex::new(HashMap::new()),
            empty: Arc::new(Vec::new()),
        })
    }

    /// This directory with the IAM store's policies (`store`, by user or role ARN,
    /// from [`crate::iam::compile`]) in place of those it had.
    pub fn with_store(&self, store: &HashMap<String, Vec<PolicyDocument>>) -> Directory {
        let mut iam: HashMap<String, Vec<PolicyDocument>> = (*self.declared).clone();
        for (arn, docs) in store {
            iam.entry(arn.clone())
                .or_default()
                .extend(docs.iter().cloned());
        }
        Directory {
            config: Arc::clone(&self.config),
            self_uid: self.self_uid,
            declared: Arc::clone(&self.declared),
            iam: iam.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            rules: self.rules.clone(),
            identities: Mutex::new(HashMap::new()),
            empty: Arc::clone(&self.empty),
        }
    }

    /// The uid kmsd runs as (`uid = "self"`).
    pub fn self_uid(&self) -> u32 {
        self.self_uid
    }

    /// How many IAM users and roles have policies (for reload summaries).
    pub fn iam_entities(&self) -> usize {
        self.iam.len()
    }

    /// The identity of a Unix uid (cached until the next reload).
    pub fn identity(&self, uid: u32, user: &str) -> Arc<Identity> {
        let mut cache = self.identities.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.get(&uid) {
            return Arc::clone(i);
        }
        let ident = Arc::new(self.compute_identity(uid, user));
        cache.insert(uid, Arc::clone(&ident));
        ident
    }

    fn compute_identity(&self, uid: u32, user: &str) -> Identity {
        let cfg = &self.config;
        let rule = self
            .rules
            .iter()
            .zip(&cfg.uids)
            .find(|((sel, _), _)| sel.matches(uid, user, self.self_uid));
        let template = rule
            .and_then(|(_, u)| u.principal.as_deref())
            .unwrap_or(&cfg.kmsd.default_principal);
        let principal = cfg.expand(template, user, uid);
        let account = principal_account(&principal)
            .unwrap_or(&cfg.account)
            .to_string();
        let mut policies: Vec<PolicyDocument> = self
            .iam_policies(&principal)
            .map(|p| p.as_ref().clone())
            .unwrap_or_default();
        if let Some(((_, own), _)) = rule {
            policies.extend(own.iter().cloned());
        }
        let parsed = parse_principal(&principal);
        Identity {
            uid,
            user: user.to_string(),
            parsed,
            principal,
            account,
            may_act_as: rule.map(|(_, u)| u.may_act_as.clone()).unwrap_or_default(),
            services: rule.map(|(_, u)| u.services.clone()).unwrap_or_default(),
            policies: Arc::new(policies),
        }
    }

    /// The configured IAM policies of a user ARN or role ARN.
    fn iam_policies(&self, arn: &str) -> Option<&Policies> {
        self.iam.get(arn)
    }

    /// The IAM policies that apply to `p`: a user's own, a role's for the role and its
    /// sessions, none for roots (the root needs none) and services.
    pub fn policies_for(&self, p: &Principal) -> Policies {
        let key = match &p.kind {
            PrincipalKind::User { .. } => Some(p.arn.clone()),
            PrincipalKind::Role { .. } | PrincipalKind::AssumedRole { .. } => p.role_arn(),
            _ => None,
        };
        key.and_then(|k| self.iam_policies(&k).cloned())
            .unwrap_or_else(|| Arc::clone(&self.empty))
    }

    /// Does the config let `ident` act as `arn`?
    pub fn may_act_as(&self, ident: &Identity, arn: &str) -> bool {
        arn == ident.principal || ident.may_act_as.iter().any(|pat| glob_match(pat, arn))
    }

    /// Is the Unix user `uid` (`user`) trusted as the AWS endpoint (`[kmsd]
    /// endpoint_uids`)?
    pub fn is_endpoint(&self, uid: u32, user: &str) -> bool {
        self.config
            .kmsd
            .endpoint_uids
            .iter()
            .any(|sel| sel.matches(uid, user, self.self_uid))
    }

    /// Is `ident` trusted as `service`?
    pub fn trusts(&self, ident: &Identity, service: &str) -> bool {
        ident.services.iter().any(|s| s == service)
    }

    /// The principal a uid's request is evaluated as, given its `--as` claim: its own
    /// principal, or one the config lets it act as. A role becomes a session of that
    /// role named after the Unix user (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/USER`),
    /// as assuming it would. For the volume and object services, which must check a
    /// caller's `--as` claim the same way kmsd does before acting on its behalf.
    pub fn resolve_act_as(
        &self,
        ident: &Identity,
        act_as: Option<&str>,
    ) -> Result<Resolved, KmsError> {
        let Some(arn) = act_as.filter(|a| *a != ident.principal) else {
            let principal = ident.parsed_principal()?;
            return Ok(Resolved {
                principal,
                policies: Arc::clone(&ident.policies),
            });
        };
        let requested = parse_principal(arn)?;
        let allowed_as = match &requested.kind {
            // A session is allowed when its role is.
            PrincipalKind::AssumedRole { .. } => requested.role_arn().unwrap_or_default(),
            _ => requested.arn.clone(),
        };
        // An instance's EC2 identity is spoken for only by the trusted EC2 service
        // (via, on behalf of), never claimed with --as: `role/*` must not reach it.
        let ec2_identity = allowed_as.ends_with(&format!(":role/{EC2_INFRASTRUCTURE_ROLE}"));
        if matches!(requested.kind, PrincipalKind::Service { .. })
            || ec2_identity
            || !self.may_act_as(ident, &allowed_as)
        {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "uid {} ({}) may not act as {arn}: the kmsd config does not list it in may_act_as for this user (see docs/CONFIG.md)",
                    ident.uid, ident.user
                ),
            ));
        }
        let principal = match &requested.kind {
            PrincipalKind::Role { name } => {
                let role = name.rsplit('/').next().unwrap_or(name);
                let account = requested.account.clone().unwrap_or_default();
                Principal {
                    arn: format!(
                        "arn:aws:sts::{account}:assumed-role/{role}/{}",
                        session_name(&ident.user)
                    ),
                    account: Some(account),
                    kind: PrincipalKind::AssumedRole {
                        role: name.clone(),
                        session: session_name(&ident.user),
                    },
                }
            }
            _ => requested,
        };
        let policies = self.policies_for(&principal);
        Ok(Resolved {
            principal,
            policies,
        })
    }

    /// The principal a trusted service says it acts for: any principal, including the
    /// grantee of an EC2 grant (`ACCOUNT:aws:ec2-infrastructure:INSTANCE`).
    pub fn resolve_on_behalf_of(&self, arn: &str) -> Result<Resolved, KmsError> {
        let principal = parse_principal(arn)?;
        let policies = self.policies_for(&principal);
        Ok(Resolved {
            principal,
            policies,
        })
    }

    /// The access keys the object service accepts.
    pub fn access_keys(&self) -> &[AccessKeyConfig] {
        &self.config.access_keys
    }
}

/// A role session name from a Unix user name (IAM session names: `\w+=,.@-`).
fn session_name(user: &str) -> String {
    let s: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.len() < 2 {
        format!("atrest-{s}")
    } else {
        s
    }
}

/// The role EC2 uses for an instance's access to its volumes.
pub const EC2_INFRASTRUCTURE_ROLE: &str = "aws:ec2-infrastructure";

/// `ACCOUNT:aws:ec2-infrastructure:INSTANCE` (how EBS names the grantee of the grant it
/// creates for an instance) as the session ARN it designates:
/// `arn:aws:sts::ACCOUNT:assumed-role/aws:ec2-infrastructure/INSTANCE`.
pub fn ec2_infrastructure_arn(short: &str) -> Option<String> {
    let (account, rest) = short.split_once(':')?;
    let instance = rest.strip_prefix("aws:ec2-infrastructure:")?;
    let instance_ok = !instance.is_empty()
        && instance.len() <= 64
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (is_account_id(account) && instance_ok).then(|| {
        format!("arn:aws:sts::{account}:assumed-role/{EC2_INFRASTRUCTURE_ROLE}/{instance}")
    })
}

/// Parses a caller principal: what [`Principal::parse`] accepts, plus EC2's
/// infrastructure sessions (whose role name holds a `:`), in either spelling.
pub fn parse_principal(s: &str) -> Result<Principal, KmsError> {
    let sts = ec2_infrastructure_arn(s).unwrap_or_else(|| s.to_string());
    let prefix = "arn:aws:sts::";
    if let Some(rest) = sts.strip_prefix(prefix) {
        if let Some((account, tail)) = rest.split_once(':') {
            if let Some(instance) =
                tail.strip_prefix(&format!("assumed-role/{EC2_INFRASTRUCTURE_ROLE}/"))
            {
                if ec2_infrastructure_arn(&format!(
                    "{account}:{EC2_INFRASTRUCTURE_ROLE}:{instance}"
                ))
                .is_some()
                {
                    return Ok(Principal {
                        arn: sts.clone(),
                        account: Some(account.to_string()),
                        kind: PrincipalKind::AssumedRole {
                            role: EC2_INFRASTRUCTURE_ROLE.to_string(),
                            session: instance.to_string(),
                        },
                    });
                }
            }
        }
    }
    Principal::parse(s).map_err(|e| {
        KmsError::validation(format!(
            "{e}: expected arn:aws:iam::ACCOUNT:user/NAME, role/NAME, root, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION"
        ))
    })
}

/// Does a grantee (or retiring) principal as written in a grant designate `p`?
pub fn designates(named: &str, p: &Principal) -> bool {
    if p.is_designated_by(named) {
        return true;
    }
    ec2_infrastructure_arn(named).is_some_and(|arn| arn == p.arn)
}

/// The account of `arn:aws:iam::ACCOUNT:...` (or an STS ARN).
pub fn principal_account(arn: &str) -> Option<&str> {
    let rest = arn
        .strip_prefix("arn:aws:iam::")
        .or_else(|| arn.strip_prefix("arn:aws:sts::"))?;
    let (account, resource) = rest.split_once(':')?;
    (is_account_id(account) && !resource.is_empty()).then_some(account)
}

/// Reads `DIR/ACCOUNT/{users,roles}/NAME/*.json` into `iam`.
fn load_drop_ins(
    dir: &Path,
    iam: &mut HashMap<String, Vec<PolicyDocument>>,
) -> Result<(), DirectoryError> {
    let accounts = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DirectoryError::ReadDropIns {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for acct in accounts.flatten() {
        let account = acct.file_name().to_string_lossy().into_owned();
        if !is_account_id(&account) {
            continue;
        }
        for kind in ["users", "roles"] {
            let Ok(names) = std::fs::read_dir(acct.path().join(kind)) else {
                continue;
            };
            for ent in names.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if !is_iam_name(&name) {
                    return Err(DirectoryError::DropInName { path: ent.path() });
                }
                let Ok(policies) = std::fs::read_dir(ent.path()) else {
                    continue;
                };
                for f in policies.flatten() {
                    let path = f.path();
                    if path.extension().and_then(|e| e.to_str()) == Some("json") {
                        let arn = format!(
                            "arn:aws:iam::{account}:{}/{name}",
                            kind.trim_end_matches('s')
                        );
                        files.push((arn, path));
                    }
                }
            }
        }
    }
    // Deterministic order (policy evaluation does not depend on it, messages might).
    files.sort();
    for (arn, path) in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(source) => return Err(DirectoryError::ReadDropIns { path, source }),
        };
        let doc = PolicyDocument::parse_identity_policy(&text).map_err(|source| {
            DirectoryError::Policy {
                at: path.display().to_string(),
                source,
            }
        })?;
        iam.entry(arn).or_default().push(doc);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory::build(Config::embedded(), None, 0).unwrap()
    }

    #[test]
    fn self_uid_is_the_admin_and_others_are_nobody() {
        let d = dir();
        let me = d.identity(0, "root");
        assert_eq!(me.principal, "arn:aws:iam::111122223333:user/root");
        assert_eq!(me.policies.len(), 1);
        assert!(d.trusts(&me, "ec2.amazonaws.com"));
        let other = d.identity(1000, "alice");
        assert_eq!(other.principal, "arn:aws:iam::111122223333:user/alice");
        assert!(other.policies.is_empty());
        assert!(!d.trusts(&other, "ec2.amazonaws.com"));
        assert!(d
            .resolve_act_as(&other, Some("arn:aws:iam::111122223333:role/voclabs"))
            .is_err());
        assert!(d
            .resolve_act_as(&other, Some(&other.principal.clone()))
            .is_ok());
    }

    #[test]
    fn acting_as_a_role_is_a_session_with_the_roles_policies() {
        let d = dir();
        let me = d.identity(0, "root");
        let r = d
            .resolve_act_as(&me, Some("arn:aws:iam::111122223333:role/voclabs"))
            .unwrap();
        assert_eq!(
            r.principal.arn,
            "arn:aws:sts::111122223333:assumed-role/voclabs/root"
        );
        assert_eq!(r.policies.len(), 1);
        let k = d
            .resolve_act_as(&me, Some("arn:aws:iam::111122223333:user/KeyAdminOnly"))
            .unwrap();
        assert!(k.policies.is_empty());
        let e = d
            .resolve_act_as(&me, Some("arn:aws:iam::111122223333:root"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        assert!(d.resolve_act_as(&me, Some("ec2.amazonaws.com")).is_err());
        assert!(d.resolve_act_as(&me, Some("bob")).is_err());
        // `role/*` does not reach an instance's EC2 identity, in either spelling.
        for claim in [
            "111122223333:aws:ec2-infrastructure:i-0abc",
            "arn:aws:sts::111122223333:assumed-role/aws:ec2-infrastructure/i-0abc",
        ] {
            let e = d.resolve_act_as(&me, Some(claim)).unwrap_err();
            assert_eq!(e.code, ErrorCode::AccessDeniedException, "{claim}");
        }
    }

    #[test]
    fn ec2_infrastructure_principals() {
        let p = parse_principal("111122223333:aws:ec2-infrastructure:i-0abc").unwrap();
        assert_eq!(
            p.arn,
            "arn:aws:sts::111122223333:assumed-role/aws:ec2-infrastructure/i-0abc"
        );
        assert!(designates("111122223333:aws:ec2-infrastructure:i-0abc", &p));
        assert!(!designates(
            "111122223333:aws:ec2-infrastructure:i-0abd",
            &p
        ));
        assert!(designates(&p.arn.clone(), &p));
        assert!(parse_principal("1:aws:ec2-infrastructure:i-1").is_err());
        assert!(parse_principal("111122223333:aws:ec2-infrastructure:").is_err());
    }

    #[test]
    fn drop_in_policies_attach_to_users() {
        let home = tempfile::tempdir().unwrap();
        let d = home.path().join("iam/444455556666/users/UserA");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("kms.json"),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#,
        )
        .unwrap();
        let dir = Directory::build(Config::embedded(), Some(home.path()), 0).unwrap();
        let p = parse_principal("arn:aws:iam::444455556666:user/UserA").unwrap();
        assert_eq!(dir.policies_for(&p).len(), 3);
        std::fs::write(d.join("bad.json"), "{").unwrap();
        let e = Directory::build(Config::embedded(), Some(home.path()), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.json"), "{e}");
    }
}
