//! EC2 resource IDs: `vol-`, `snap-`, `i-`, `r-`, `ami-` followed by 17 lowercase hex digits,
//! the long form AWS has used since 2016.

use rand::RngCore;

/// The kinds of resource this service names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Volume,
    Snapshot,
    Instance,
    Reservation,
    Image,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Volume => "vol-",
            IdKind::Snapshot => "snap-",
            IdKind::Instance => "i-",
            IdKind::Reservation => "r-",
            IdKind::Image => "ami-",
        }
    }
}

/// The number of hex digits after the prefix.
pub const ID_HEX_LEN: usize = 17;

/// A fresh random ID of `kind`.
pub fn new_id(kind: IdKind) -> String {
    let mut bytes = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut hex = hex::encode(bytes);
    hex.truncate(ID_HEX_LEN);
    format!("{}{hex}", kind.prefix())
}

/// An ID derived from `seed` (used for image IDs, so one image file always has one ID).
pub fn derived_id(kind: IdKind, seed: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed);
    let mut hex = hex::encode(digest);
    hex.truncate(ID_HEX_LEN);
    format!("{}{hex}", kind.prefix())
}

/// Whether `s` is a well-formed ID of `kind` (prefix + 8 or 17 lowercase hex digits,
/// as AWS accepts both the short and the long form).
pub fn is_valid(kind: IdKind, s: &str) -> bool {
    match s.strip_prefix(kind.prefix()) {
        Some(rest) => {
            (rest.len() == ID_HEX_LEN || rest.len() == 8)
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_well_formed_and_distinct() {
        let a = new_id(IdKind::Volume);
        let b = new_id(IdKind::Volume);
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + ID_HEX_LEN);
        assert!(is_valid(IdKind::Volume, &a));
        assert!(!is_valid(IdKind::Snapshot, &a));
        assert!(is_valid(IdKind::Instance, &new_id(IdKind::Instance)));
        assert!(is_valid(IdKind::Snapshot, &new_id(IdKind::Snapshot)));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "vol-",
            "vol-123",
            "vol-0123456789ABCDEF0",
            "vol-0123456789abcdefg",
            "snap-0123456789abcdef0",
            "vol-0123456789abcdef0/../x",
            "",
        ] {
            assert!(!is_valid(IdKind::Volume, bad), "{bad}");
        }
        assert!(is_valid(IdKind::Volume, "vol-0123456789abcdef0"));
        assert!(is_valid(IdKind::Volume, "vol-01234567"));
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(
            derived_id(IdKind::Image, b"x"),
            derived_id(IdKind::Image, b"x")
        );
        assert!(is_valid(IdKind::Image, &derived_id(IdKind::Image, b"x")));
    }
}
