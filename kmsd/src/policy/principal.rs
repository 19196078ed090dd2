//! The caller of a request, as policy evaluation sees it.

use serde::{Deserialize, Serialize};

use super::PolicyError;

/// What kind of identity made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "PascalCase")]
pub enum PrincipalKind {
    /// The account's root identity, `arn:aws:iam::ACCOUNT:root`.
    Root,
    /// An IAM user, `arn:aws:iam::ACCOUNT:user/PATH/NAME` (`name` keeps the path).
    User { name: String },
    /// An IAM role, `arn:aws:iam::ACCOUNT:role/PATH/NAME`.
    Role { name: String },
    /// A session of a role, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    AssumedRole { role: String, session: String },
    /// An AWS service principal such as `ec2.amazonaws.com` (atrest's volume/object services).
    Service { name: String },
}

/// A caller: its ARN (or service name), its account and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// `arn:aws:iam::111122223333:user/Alice`, or the service name for a service principal.
    pub arn: String,
    /// 12-digit account id; `None` for service principals.
    pub account: Option<String>,
    pub kind: PrincipalKind,
}

/// Is `s` a 12-digit AWS account id?
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Is `s` shaped like a service principal (`ec2.amazonaws.com`)?
pub fn is_service_principal(s: &str) -> bool {
    s.ends_with(".amazonaws.com")
        && s.len() > ".amazonaws.com".len()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn valid_name(s: &str) -> bool {
    // IAM names allow alphanumerics and `+=,.@_-`; paths add `/`.
    !s.is_empty()
        && !s.starts_with('/')
        && !s.ends_with('/')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-' | '/')
        })
}

impl Principal {
    /// The root identity of `account`.
    pub fn root(account: &str) -> Result<Self, PolicyError> {
        if !is_account_id(account) {
            return Err(PolicyError::InvalidPrincipal(format!(
                "'{account}' is not a 12-digit account id"
            )));
        }
        Ok(Principal {
            arn: format!("arn:aws:iam::{account}:root"),
            account: Some(account.to_string()),
            kind: PrincipalKind::Root,
        })
    }

    /// Parse a caller identity: `arn:aws:iam::ACCOUNT:user/NAME`, `...:role/NAME`, `...:root`,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, a bare 12-digit account (its root), or
    /// a service principal `NAME.amazonaws.com`.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        let bad = |why: &str| PolicyError::InvalidPrincipal(format!("'{s}': {why}"));
        if is_account_id(s) {
            return Principal::root(s);
        }
        if is_service_principal(s) {
            return Ok(Principal {
                arn: s.to_string(),
                account: None,
                kind: PrincipalKind::Service {
                    name: s.to_string(),
                },
            });
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(bad(
                "expected arn:aws:iam::ACCOUNT:user/NAME, role/NAME, root, an account id or a service principal",
            ));
        };
        if *arn != "arn" || *partition != "aws" || !region.is_empty() {
            return Err(bad("expected an ARN of the form arn:aws:iam::ACCOUNT:..."));
        }
        if !is_account_id(account) {
            return Err(bad("the account part is not a 12-digit account id"));
        }
        let kind = match (*service, *resource) {
            ("iam", "root") => PrincipalKind::Root,
            ("iam", r) if r.starts_with("user/") => {
                let name = &r["user/".len()..];
                if !valid_name(name) {
                    return Err(bad("invalid user name"));
                }
                PrincipalKind::User {
                    name: name.to_string(),
                }
            }
            ("iam", r) if r.starts_with("role/") => {
                let name = &r["role/".len()..];
                if !valid_name(name) {
                    return Err(bad("invalid role name"));
                }
                PrincipalKind::Role {
                    name: name.to_string(),
                }
            }
            ("sts", r) if r.starts_with("assumed-role/") => {
                let rest = &r["assumed-role/".len()..];
                let Some((role, session)) = rest.rsplit_once('/') else {
                    return Err(bad("expected assumed-role/ROLE/SESSION"));
                };
                if !valid_name(role) || !valid_name(session) || session.contains('/') {
                    return Err(bad("invalid role or session name"));
                }
                PrincipalKind::AssumedRole {
                    role: role.to_string(),
                    session: session.to_string(),
                }
            }
            _ => {
                return Err(bad(
                    "expected root, user/NAME, role/NAME or assumed-role/ROLE/SESSION",
                ))
            }
        };
        Ok(Principal {
            arn: s.to_string(),
            account: Some(account.to_string()),
            kind,
        })
    }

    pub fn is_root(&self) -> bool {
        self.kind == PrincipalKind::Root
    }

    pub fn is_service(&self) -> bool {
        matches!(self.kind, PrincipalKind::Service { .. })
    }

    /// The ARN of the role a session belongs to, for matching `role/NAME` principals.
    pub fn role_arn(&self) -> Option<String> {
        match (&self.kind, &self.account) {
            (PrincipalKind::Role { .. }, _) => Some(self.arn.clone()),
            (PrincipalKind::AssumedRole { role, .. }, Some(acct)) => {
                Some(format!("arn:aws:iam::{acct}:role/{role}"))
            }
            _ => None,
        }
    }

    /// Does a principal ARN named in a policy or grant (user, role, root, service) designate
    /// exactly this caller? A role ARN also designates that role's sessions.
    pub fn is_designated_by(&self, named: &str) -> bool {
        if named == self.arn {
            return true;
        }
        if self.is_service() {
            return named.eq_ignore_ascii_case(&self.arn);
        }
        if self.is_root() {
            if let Some(acct) = &self.account {
                return named == acct;
            }
        }
        self.role_arn().is_some_and(|r| r == named)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let p = Principal::parse("arn:aws:iam::111122223333:user/Alice").unwrap();
        assert_eq!(p.account.as_deref(), Some("111122223333"));
        assert_eq!(
            p.kind,
            PrincipalKind::User {
                name: "Alice".into()
            }
        );
        let r = Principal::parse("arn:aws:iam::111122223333:role/path/KeyAdmin").unwrap();
        assert_eq!(
            r.kind,
            PrincipalKind::Role {
                name: "path/KeyAdmin".into()
            }
        );
        let root = Principal::parse("444455556666").unwrap();
        assert_eq!(root.arn, "arn:aws:iam::444455556666:root");
        assert!(root.is_root());
        let s = Principal::parse("ec2.amazonaws.com").unwrap();
        assert!(s.is_service());
        assert_eq!(s.account, None);
        let sess =
            Principal::parse("arn:aws:sts::111122223333:assumed-role/Admin/session-1").unwrap();
        assert!(sess.is_designated_by("arn:aws:iam::111122223333:role/Admin"));
        assert!(!sess.is_designated_by("arn:aws:iam::111122223333:role/Other"));
        for bad in [
            "",
            "alice",
            "11112222333",
            "arn:aws:iam::1111:user/A",
            "arn:aws:iam::111122223333:group/G",
            "arn:aws:iam::111122223333:user/",
            "arn:aws:iam:us-east-1:111122223333:user/A",
            "arn:aws:sts::111122223333:assumed-role/OnlyRole",
            "arn:aws:iam::111122223333:user/a b",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
