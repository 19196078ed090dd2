//! Who may do what to a bucket or object: Block Public Access, Object Ownership and canned
//! ACLs, decided as S3 decides them, with S3's exact error codes and messages.
//!
//! Pure functions of (caller, bucket settings, object settings, request): no I/O, so the
//! decision tables are unit-tested here and the handlers in `http/` only gather the inputs.
//!
//! Model: every signed principal of the bucket owner's account has full control (atrest does
//! not evaluate IAM policies for S3 yet); anyone else gets only what an effective ACL grants.
//! An ACL is effective when Object Ownership enables ACLs and `IgnorePublicAcls` does not
//! ignore it. atrest has no bucket policies, so `BlockPublicPolicy` and
//! `RestrictPublicBuckets` are stored and reported but have nothing to act on.

use super::meta::{CannedAcl, ObjectOwnership, PublicAccessBlock, SseAlgorithm};

/// How a request was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigVersion {
    V2,
    V4,
}

/// The requester as the endpoint authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Signed {
        principal: String,
        account: String,
        sig: SigVersion,
    },
}

impl Caller {
    pub fn signed(principal: &str, sig: SigVersion) -> Self {
        Caller::Signed {
            principal: principal.to_string(),
            account: account_of(principal).unwrap_or_default().to_string(),
            sig,
        }
    }

    fn account(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Signed { account, .. } => Some(account),
        }
    }

    fn is_sigv4(&self) -> bool {
        matches!(
            self,
            Caller::Signed {
                sig: SigVersion::V4,
                ..
            }
        )
    }
}

/// The account id in an IAM/STS ARN (`arn:aws:iam::ACCOUNT:...`).
pub fn account_of(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(_service), Some(_region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!account.is_empty()).then_some(account)
}

/// The bucket settings a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct BucketView<'a> {
    pub owner_account: &'a str,
    pub public_access_block: PublicAccessBlock,
    pub ownership: ObjectOwnership,
    pub acl: CannedAcl,
}

/// The object settings a read decision needs.
#[derive(Debug, Clone, Copy)]
pub struct ObjectView<'a> {
    pub owner_account: &'a str,
    pub acl: CannedAcl,
    pub algorithm: SseAlgorithm,
}

/// A refusal, carrying S3's code, HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("Access Denied")]
    AccessDenied,
    #[error("The bucket does not allow ACLs")]
    AclNotSupported,
    #[error("Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting")]
    BucketAclWithEnforcedOwnership,
    #[error(
        "Requests specifying Server Side Encryption with AWS KMS managed keys require AWS Signature Version 4."
    )]
    KmsRequiresSigV4,
}

impl Denial {
    pub fn code(self) -> &'static str {
        match self {
            Denial::AccessDenied => "AccessDenied",
            Denial::AclNotSupported => "AccessControlListNotSupported",
            Denial::BucketAclWithEnforcedOwnership => "InvalidBucketAclWithObjectOwnership",
            Denial::KmsRequiresSigV4 => "InvalidArgument",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Denial::AccessDenied => 403,
            _ => 400,
        }
    }
}

fn is_bucket_owner(caller: &Caller, bucket: &BucketView<'_>) -> bool {
    caller.account() == Some(bucket.owner_account)
}

/// Whether an ACL grants READ to this caller, once Ownership and BPA have had their say.
fn acl_grants_read(acl: CannedAcl, caller: &Caller, bucket: &BucketView<'_>) -> bool {
    if !bucket.ownership.acls_enabled() {
        return false;
    }
    if bucket.public_access_block.ignore_public_acls && acl_is_public(acl) {
        return false;
    }
    match acl {
        CannedAcl::PublicRead | CannedAcl::PublicReadWrite => true,
        CannedAcl::AuthenticatedRead => matches!(caller, Caller::Signed { .. }),
        _ => false,
    }
}

/// "Public" as Block Public Access means it: grants to AllUsers or AuthenticatedUsers.
pub fn acl_is_public(acl: CannedAcl) -> bool {
    matches!(
        acl,
        CannedAcl::PublicRead | CannedAcl::PublicReadWrite | CannedAcl::AuthenticatedRead
    )
}

/// GetObject / HeadObject.
pub fn check_read_object(
    caller: &Caller,
    bucket: &BucketView<'_>,
    object: &ObjectView<'_>,
) -> Result<(), Denial> {
    let owner = is_bucket_owner(caller, bucket) || caller.account() == Some(object.owner_account);
    if !owner && !acl_grants_read(object.acl, caller, bucket) {
        return Err(Denial::AccessDenied);
    }
    if object.algorithm == SseAlgorithm::AwsKms && !caller.is_sigv4() {
        return Err(Denial::KmsRequiresSigV4);
    }
    Ok(())
}

/// PutObject (with the ACL header it carries, if any, and the encryption it will get).
pub fn check_write_object(
    caller: &Caller,
    bucket: &BucketView<'_>,
    acl: Option<CannedAcl>,
    algorithm: SseAlgorithm,
) -> Result<(), Denial> {
    let owner = is_bucket_owner(caller, bucket);
    let public_write = bucket.acl == CannedAcl::PublicReadWrite
        && bucket.ownership.acls_enabled()
        && !bucket.public_access_block.ignore_public_acls;
    if !owner && !public_write {
        return Err(Denial::AccessDenied);
    }
    // With ACLs disabled, `private` from the bucket owner is S3's "equivalent form" of
    // bucket-owner-full-control (the owner's full control is the bucket owner's): rclone
    // sends it on every upload by default.
    let owner_private = owner && acl == Some(CannedAcl::Private);
    if let Some(acl) = acl.filter(|_| !owner_private || bucket.ownership.acls_enabled()) {
        check_acl_allowed(bucket, acl, true)?;
    }
    if algorithm == SseAlgorithm::AwsKms && !caller.is_sigv4() {
        return Err(Denial::KmsRequiresSigV4);
    }
    Ok(())
}

/// PutObjectAcl / PutBucketAcl (WRITE_ACP is the owner's).
pub fn check_put_acl(
    caller: &Caller,
    bucket: &BucketView<'_>,
    acl: CannedAcl,
) -> Result<(), Denial> {
    if !is_bucket_owner(caller, bucket) {
        return Err(Denial::AccessDenied);
    }
    check_acl_allowed(bucket, acl, false)
}

/// Ownership then BPA: ACLs disabled is a 400, a blocked public ACL a 403.
fn check_acl_allowed(
    bucket: &BucketView<'_>,
    acl: CannedAcl,
    on_put_object: bool,
) -> Result<(), Denial> {
    if !bucket.ownership.acls_enabled() {
        // With ACLs disabled S3 still accepts the owner-full-control ACL on uploads.
        if on_put_object && acl == CannedAcl::BucketOwnerFullControl {
            return Ok(());
        }
        return Err(Denial::AclNotSupported);
    }
    if bucket.public_access_block.block_public_acls && acl_is_public(acl) {
        return Err(Denial::AccessDenied);
    }
    Ok(())
}

/// CreateBucket with an ACL header. ACLs are disabled unless the request also names an
/// ownership that enables them; even then a public ACL is blocked, because every new
/// bucket starts with all of Block Public Access on.
pub fn check_create_bucket_acl(
    acl: Option<CannedAcl>,
    ownership: Option<ObjectOwnership>,
) -> Result<(), Denial> {
    let Some(acl) = acl else { return Ok(()) };
    if ownership.is_none_or(|o| o == ObjectOwnership::BucketOwnerEnforced) {
        return match acl {
            CannedAcl::Private | CannedAcl::BucketOwnerFullControl => Ok(()),
            _ => Err(Denial::BucketAclWithEnforcedOwnership),
        };
    }
    if acl_is_public(acl) {
        return Err(Denial::AccessDenied);
    }
    Ok(())
}

/// Bucket configuration (encryption, BPA, ownership, ACL reads, delete): the owner only.
pub fn check_bucket_admin(caller: &Caller, bucket: &BucketView<'_>) -> Result<(), Denial> {
    if is_bucket_owner(caller, bucket) {
        Ok(())
    } else {
        Err(Denial::AccessDenied)
    }
}

/// ListObjects(V2): the owner, or whoever the bucket ACL lets read.
pub fn check_list_bucket(caller: &Caller, bucket: &BucketView<'_>) -> Result<(), Denial> {
    if is_bucket_owner(caller, bucket) || acl_grants_read(bucket.acl, caller, bucket) {
        Ok(())
    } else {
        Err(Denial::AccessDenied)
    }
}

/// Anything that needs a signature at all (CreateBucket, ListBuckets).
pub fn check_signed(caller: &Caller) -> Result<(), Denial> {
    match caller {
        Caller::Anonymous => Err(Denial::AccessDenied),
        Caller::Signed { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "111122223333";
    const OWNER: &str = "arn:aws:iam::111122223333:user/alice";
    const STRANGER: &str = "arn:aws:iam::444455556666:user/mallory";

    fn bucket(bpa: PublicAccessBlock, own: ObjectOwnership) -> BucketView<'static> {
        BucketView {
            owner_account: ACCT,
            public_access_block: bpa,
            ownership: own,
            acl: CannedAcl::Private,
        }
    }

    fn obj(acl: CannedAcl, alg: SseAlgorithm) -> ObjectView<'static> {
        ObjectView {
            owner_account: ACCT,
            acl,
            algorithm: alg,
        }
    }

    type ReadRow = (
        PublicAccessBlock,
        ObjectOwnership,
        CannedAcl,
        SseAlgorithm,
        Result<(), Denial>,
    );
    type AclRow = (
        PublicAccessBlock,
        ObjectOwnership,
        CannedAcl,
        Result<(), Denial>,
    );

    use CannedAcl::*;
    use ObjectOwnership::*;
    use SseAlgorithm::*;

    #[test]
    fn account_is_parsed_from_arns() {
        assert_eq!(account_of(OWNER), Some(ACCT));
        assert_eq!(
            account_of("arn:aws:sts::123456789012:assumed-role/r/s"),
            Some("123456789012")
        );
        assert_eq!(account_of("not-an-arn"), None);
        assert_eq!(account_of("arn:aws:s3:::bucket"), None);
    }

    /// The lab's sequence, step by step, for an anonymous GET.
    #[test]
    fn anonymous_read_table() {
        let anon = Caller::Anonymous;
        let off = PublicAccessBlock::ALL_OFF;
        let on = PublicAccessBlock::ALL_ON;
        let ignore_only = PublicAccessBlock {
            ignore_public_acls: true,
            ..off
        };
        // (bpa, ownership, object acl, algorithm) -> expected
        let table: &[ReadRow] = &[
            (
                on,
                BucketOwnerEnforced,
                Private,
                AwsKms,
                Err(Denial::AccessDenied),
            ),
            (
                off,
                BucketOwnerEnforced,
                Private,
                AwsKms,
                Err(Denial::AccessDenied),
            ),
            // ACLs disabled: a stored public-read ACL has no effect.
            (
                off,
                BucketOwnerEnforced,
                PublicRead,
                Aes256,
                Err(Denial::AccessDenied),
            ),
            (
                off,
                BucketOwnerPreferred,
                Private,
                AwsKms,
                Err(Denial::AccessDenied),
            ),
            (
                off,
                BucketOwnerPreferred,
                PublicRead,
                AwsKms,
                Err(Denial::KmsRequiresSigV4),
            ),
            (
                off,
                ObjectWriter,
                PublicRead,
                AwsKms,
                Err(Denial::KmsRequiresSigV4),
            ),
            (off, BucketOwnerPreferred, PublicRead, Aes256, Ok(())),
            (off, BucketOwnerPreferred, PublicReadWrite, Aes256, Ok(())),
            // authenticated-read is not for anonymous callers.
            (
                off,
                BucketOwnerPreferred,
                AuthenticatedRead,
                Aes256,
                Err(Denial::AccessDenied),
            ),
            // IgnorePublicAcls makes the public ACL inert.
            (
                ignore_only,
                BucketOwnerPreferred,
                PublicRead,
                Aes256,
                Err(Denial::AccessDenied),
            ),
            (
                ignore_only,
                BucketOwnerPreferred,
                PublicRead,
                AwsKms,
                Err(Denial::AccessDenied),
            ),
            (
                on,
                BucketOwnerPreferred,
                PublicRead,
                Aes256,
                Err(Denial::AccessDenied),
            ),
        ];
        for (i, (bpa, own, acl, alg, want)) in table.iter().enumerate() {
            let got = check_read_object(&anon, &bucket(*bpa, *own), &obj(*acl, *alg));
            assert_eq!(got, *want, "row {i}");
        }
    }

    #[test]
    fn signed_read_table() {
        let v4 = Caller::signed(OWNER, SigVersion::V4);
        let v2 = Caller::signed(OWNER, SigVersion::V2);
        let other4 = Caller::signed(STRANGER, SigVersion::V4);
        let other2 = Caller::signed(STRANGER, SigVersion::V2);
        let b = bucket(PublicAccessBlock::ALL_ON, BucketOwnerEnforced);
        assert_eq!(check_read_object(&v4, &b, &obj(Private, AwsKms)), Ok(()));
        assert_eq!(check_read_object(&v4, &b, &obj(Private, Aes256)), Ok(()));
        // SigV2 can never read SSE-KMS objects, even the owner's.
        assert_eq!(
            check_read_object(&v2, &b, &obj(Private, AwsKms)),
            Err(Denial::KmsRequiresSigV4)
        );
        assert_eq!(check_read_object(&v2, &b, &obj(Private, Aes256)), Ok(()));
        assert_eq!(
            check_read_object(&other4, &b, &obj(Private, Aes256)),
            Err(Denial::AccessDenied)
        );
        let open = bucket(PublicAccessBlock::ALL_OFF, BucketOwnerPreferred);
        assert_eq!(
            check_read_object(&other4, &open, &obj(AuthenticatedRead, Aes256)),
            Ok(())
        );
        assert_eq!(
            check_read_object(&other4, &open, &obj(PublicRead, AwsKms)),
            Ok(())
        );
        assert_eq!(
            check_read_object(&other2, &open, &obj(PublicRead, AwsKms)),
            Err(Denial::KmsRequiresSigV4)
        );
    }

    #[test]
    fn put_acl_table() {
        let owner = Caller::signed(OWNER, SigVersion::V4);
        let off = PublicAccessBlock::ALL_OFF;
        let on = PublicAccessBlock::ALL_ON;
        let table: &[AclRow] = &[
            (
                on,
                BucketOwnerEnforced,
                PublicRead,
                Err(Denial::AclNotSupported),
            ),
            (
                off,
                BucketOwnerEnforced,
                PublicRead,
                Err(Denial::AclNotSupported),
            ),
            (
                off,
                BucketOwnerEnforced,
                Private,
                Err(Denial::AclNotSupported),
            ),
            (
                on,
                BucketOwnerPreferred,
                PublicRead,
                Err(Denial::AccessDenied),
            ),
            (
                on,
                BucketOwnerPreferred,
                AuthenticatedRead,
                Err(Denial::AccessDenied),
            ),
            (on, BucketOwnerPreferred, Private, Ok(())),
            (off, BucketOwnerPreferred, PublicRead, Ok(())),
            (off, ObjectWriter, PublicRead, Ok(())),
        ];
        for (i, (bpa, own, acl, want)) in table.iter().enumerate() {
            assert_eq!(
                check_put_acl(&owner, &bucket(*bpa, *own), *acl),
                *want,
                "row {i}"
            );
        }
        // Not the owner: denied before anything else is looked at.
        let b = bucket(off, BucketOwnerPreferred);
        assert_eq!(
            check_put_acl(&Caller::Anonymous, &b, Private),
            Err(Denial::AccessDenied)
        );
        assert_eq!(
            check_put_acl(&Caller::signed(STRANGER, SigVersion::V4), &b, Private),
            Err(Denial::AccessDenied)
        );
    }

    #[test]
    fn put_object_table() {
        let owner4 = Caller::signed(OWNER, SigVersion::V4);
        let owner2 = Caller::signed(OWNER, SigVersion::V2);
        let enforced = bucket(PublicAccessBlock::ALL_ON, BucketOwnerEnforced);
        assert_eq!(check_write_object(&owner4, &enforced, None, AwsKms), Ok(()));
        assert_eq!(
            check_write_object(&owner4, &enforced, Some(BucketOwnerFullControl), AwsKms),
            Ok(())
        );
        assert_eq!(
            check_write_object(&owner4, &enforced, Some(PublicRead), Aes256),
            Err(Denial::AclNotSupported)
        );
        assert_eq!(
            check_write_object(&owner4, &enforced, Some(Private), Aes256),
            Ok(())
        );
        assert_eq!(
            check_write_object(&owner2, &enforced, None, AwsKms),
            Err(Denial::KmsRequiresSigV4)
        );
        assert_eq!(check_write_object(&owner2, &enforced, None, Aes256), Ok(()));
        assert_eq!(
            check_write_object(&Caller::Anonymous, &enforced, None, Aes256),
            Err(Denial::AccessDenied)
        );
        let mut open = bucket(PublicAccessBlock::ALL_OFF, BucketOwnerPreferred);
        open.acl = PublicReadWrite;
        assert_eq!(
            check_write_object(&Caller::Anonymous, &open, None, Aes256),
            Ok(())
        );
        assert_eq!(
            check_write_object(&Caller::Anonymous, &open, None, AwsKms),
            Err(Denial::KmsRequiresSigV4)
        );
        let bpa_acls = bucket(
            PublicAccessBlock {
                block_public_acls: true,
                ..PublicAccessBlock::ALL_OFF
            },
            BucketOwnerPreferred,
        );
        assert_eq!(
            check_write_object(&owner4, &bpa_acls, Some(PublicRead), Aes256),
            Err(Denial::AccessDenied)
        );
    }

    #[test]
    fn bucket_level_checks() {
        let owner = Caller::signed(OWNER, SigVersion::V4);
        let stranger = Caller::signed(STRANGER, SigVersion::V4);
        let b = bucket(PublicAccessBlock::ALL_ON, BucketOwnerEnforced);
        assert_eq!(check_bucket_admin(&owner, &b), Ok(()));
        assert_eq!(check_bucket_admin(&stranger, &b), Err(Denial::AccessDenied));
        assert_eq!(
            check_bucket_admin(&Caller::Anonymous, &b),
            Err(Denial::AccessDenied)
        );
        assert_eq!(
            check_list_bucket(&Caller::Anonymous, &b),
            Err(Denial::AccessDenied)
        );
        let mut open = bucket(PublicAccessBlock::ALL_OFF, BucketOwnerPreferred);
        open.acl = PublicRead;
        assert_eq!(check_list_bucket(&Caller::Anonymous, &open), Ok(()));
        assert_eq!(check_signed(&Caller::Anonymous), Err(Denial::AccessDenied));
        assert_eq!(
            check_create_bucket_acl(Some(PublicRead), None),
            Err(Denial::BucketAclWithEnforcedOwnership)
        );
        assert_eq!(
            check_create_bucket_acl(Some(PublicRead), Some(BucketOwnerEnforced)),
            Err(Denial::BucketAclWithEnforcedOwnership)
        );
        assert_eq!(check_create_bucket_acl(None, None), Ok(()));
        // ACLs enabled at creation, but Block Public Access is already on.
        for public in [PublicRead, PublicReadWrite, AuthenticatedRead] {
            for o in [BucketOwnerPreferred, ObjectWriter] {
                assert_eq!(
                    check_create_bucket_acl(Some(public), Some(o)),
                    Err(Denial::AccessDenied)
                );
            }
        }
        assert_eq!(
            check_create_bucket_acl(Some(Private), Some(ObjectWriter)),
            Ok(())
        );
    }

    #[test]
    fn denial_codes_and_messages_are_s3s() {
        assert_eq!(Denial::AccessDenied.to_string(), "Access Denied");
        assert_eq!(Denial::AccessDenied.status(), 403);
        assert_eq!(
            Denial::AclNotSupported.code(),
            "AccessControlListNotSupported"
        );
        assert_eq!(
            Denial::AclNotSupported.to_string(),
            "The bucket does not allow ACLs"
        );
        assert_eq!(Denial::AclNotSupported.status(), 400);
        assert_eq!(Denial::KmsRequiresSigV4.code(), "InvalidArgument");
        assert_eq!(
            Denial::KmsRequiresSigV4.to_string(),
            "Requests specifying Server Side Encryption with AWS KMS managed keys require AWS Signature Version 4."
        );
    }
}
