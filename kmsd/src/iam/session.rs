//! STS session tokens: self-contained, sealed by kmsd.
//!
//! A token carries everything needed to authenticate its temporary credentials — the
//! `ASIA...` access key id, the secret, the session's principal and its expiry — as
//! JSON ([`SessionClaims`]) sealed with AES-256-GCM under the keystore's root key
//! ([`crate::keystore::Keystore::seal_secret`]), with AAD [`SESSION_AAD`] and the access
//! key id, so a token opens only for the key id it was issued with and cannot pass for
//! another kind of sealed secret. kmsd keeps no state per session: a token survives a
//! restart until it expires, and one kmsd did not seal does not open.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keystore::{Keystore, KeystoreError};

/// AAD prefix of a sealed session token (followed by its access key id).
pub const SESSION_AAD: &[u8] = b"atrest-sts-session-v1\0";

/// What a session token says.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionClaims {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub principal: String,
    /// Unix milliseconds.
    pub expiration_ms: i64,
}

impl std::fmt::Debug for SessionClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClaims")
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .field("expiration_ms", &self.expiration_ms)
            .finish_non_exhaustive()
    }
}

/// Seals `claims` into a session token.
pub fn seal(keystore: &Keystore, claims: &SessionClaims) -> Result<String, KeystoreError> {
    let json = Zeroizing::new(serde_json::to_vec(claims).unwrap_or_default());
    keystore.seal_secret(SESSION_AAD, &claims.access_key_id, &json)
}

/// Opens a session token presented with `access_key_id`; `None` if kmsd did not seal
/// it for that key id (forged, altered, another key's, or not a token at all).
pub fn open(keystore: &Keystore, access_key_id: &str, token: &str) -> Option<SessionClaims> {
    let json = keystore
        .open_secret(SESSION_AAD, access_key_id, token)
        .ok()?;
    let claims: SessionClaims = serde_json::from_slice(&json).ok()?;
    (claims.access_key_id == access_key_id).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_for_their_key_id_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let (ks, _) = Keystore::open(dir.path()).unwrap();
        let claims = SessionClaims {
            access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
            secret_access_key: Zeroizing::new("s".repeat(40)),
            principal: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            expiration_ms: 5,
        };
        let token = seal(&ks, &claims).unwrap();
        assert!(!token.contains("assumed-role"), "the token is sealed");
        let back = open(&ks, "ASIAEXAMPLEEXAMPLE12", &token).unwrap();
        assert_eq!(back.principal, claims.principal);
        assert_eq!(*back.secret_access_key, *claims.secret_access_key);
        assert!(open(&ks, "ASIAOTHEROTHEROTHER1", &token).is_none());
        let mut bytes = token.into_bytes();
        bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
        assert!(open(
            &ks,
            "ASIAEXAMPLEEXAMPLE12",
            &String::from_utf8(bytes).unwrap()
        )
        .is_none());
        assert!(open(&ks, "ASIAEXAMPLEEXAMPLE12", "not a token").is_none());
        // Another kmsd (another root key) cannot open it.
        let other = tempfile::tempdir().unwrap();
        let (ks2, _) = Keystore::open(other.path()).unwrap();
        let token = seal(&ks, &claims).unwrap();
        assert!(open(&ks2, "ASIAEXAMPLEEXAMPLE12", &token).is_none());
    }
}
