//! Authorization: the one place that decides whether a caller may do an action.
//!
//! For now every admitted caller may do everything. Issue 3 fills [`authorize`]
//! with key-policy, IAM-policy and grant evaluation, and [`admit`] with the config's
//! rules on who may act as whom and which peers are trusted as services. Every
//! operation of the service goes through these two functions, so that is the only
//! change needed.

use super::{Caller, KeyEntry};
use crate::protocol::{EncryptionContext, KmsError, ViaService};

/// What the request says that policy conditions may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContext<'a> {
    /// The encryption context of a cryptographic request
    /// (`kms:EncryptionContext:KEY`, `kms:EncryptionContextKeys`).
    pub encryption_context: Option<&'a EncryptionContext>,
    /// Grant tokens sent with the request.
    pub grant_tokens: &'a [String],
}

/// May `caller` do `action` (e.g. `kms:Decrypt`) on `key` (None for account-level
/// actions such as `kms:CreateKey` and `kms:ListKeys`)? Refusals are
/// `AccessDeniedException` with AWS's message shape.
pub fn authorize(
    caller: &Caller,
    action: &str,
    key: Option<&KeyEntry>,
    request: &RequestContext<'_>,
) -> Result<(), KmsError> {
    // Allow-all until issue 3: keep the parameters "used" so the signature is the
    // contract and not something the compiler prunes.
    let _ = (caller, action, key.map(|k| &k.arn), request);
    Ok(())
}

/// The transport's facts about a peer (kernel-checked).
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    /// The principal the uid maps to.
    pub uid_principal: String,
    /// The account of `uid_principal`.
    pub account: String,
    pub source: String,
}

/// Turns a peer plus the request's claims (`act_as`, `via`) into the [`Caller`]
/// the request is evaluated as. Today a well-formed claim is accepted; issue 3
/// checks the config allows this uid to act as that principal and trusts this peer
/// as that service.
pub fn admit(
    peer: &Peer,
    act_as: Option<&str>,
    via: Option<&ViaService>,
) -> Result<Caller, KmsError> {
    let (principal_arn, account) = match act_as {
        None => (peer.uid_principal.clone(), peer.account.clone()),
        Some(arn) => {
            let account = principal_account(arn).ok_or_else(|| {
                KmsError::validation(format!(
                    "cannot act as '{arn}': not an IAM principal ARN (arn:aws:iam::ACCOUNT:user/NAME or role/NAME)"
                ))
            })?;
            (arn.to_string(), account.to_string())
        }
    };
    if let Some(v) = via {
        if v.service.is_empty() || !v.service.ends_with(".amazonaws.com") {
            return Err(KmsError::validation(format!(
                "via service '{}' is not a service principal like ec2.amazonaws.com",
                v.service
            )));
        }
    }
    Ok(Caller {
        uid: peer.uid,
        pid: peer.pid,
        uid_principal: peer.uid_principal.clone(),
        principal_arn,
        account,
        via: via.cloned(),
        source: peer.source.clone(),
    })
}

/// The account of `arn:aws:iam::ACCOUNT:...` (or an STS assumed-role ARN).
pub fn principal_account(arn: &str) -> Option<&str> {
    let rest = arn
        .strip_prefix("arn:aws:iam::")
        .or_else(|| arn.strip_prefix("arn:aws:sts::"))?;
    let (account, resource) = rest.split_once(':')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || resource.is_empty() {
        return None;
    }
    Some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            uid: 0,
            pid: None,
            uid_principal: "arn:aws:iam::111122223333:user/root".into(),
            account: "111122223333".into(),
            source: "test".into(),
        }
    }

    #[test]
    fn act_as_takes_the_principal_and_its_account() {
        let c = admit(&peer(), Some("arn:aws:iam::444455556666:user/UserA"), None).unwrap();
        assert_eq!(c.account, "444455556666");
        assert_eq!(c.uid_principal, "arn:aws:iam::111122223333:user/root");
        assert!(admit(&peer(), Some("bob"), None).is_err());
        assert!(admit(&peer(), Some("arn:aws:iam::12:user/x"), None).is_err());
    }
}
