//! Canned ACLs of buckets and objects: PutBucketAcl, GetBucketAcl, PutObjectAcl,
//! GetObjectAcl. What an ACL allows is decided in [`access`](super::super::access).

use s3s::dto::{
    GetBucketAclInput, GetBucketAclOutput, GetObjectAclInput, GetObjectAclOutput, Grant, Grantee,
    Permission, PutBucketAclInput, PutBucketAclOutput, PutObjectAclInput, PutObjectAclOutput, Type,
};

use super::super::access;
use super::super::meta::CannedAcl;
use super::call::Call;
use super::convert::{bucket_view, owner};
use super::error::{not_canned, ApiError};

pub fn parse_acl(s: &str) -> Result<CannedAcl, ApiError> {
    CannedAcl::parse(s)
        .ok_or_else(|| ApiError::invalid_argument(format!("Invalid canned ACL: {s}")))
}

/// The grants a canned ACL stands for, as GetBucketAcl/GetObjectAcl list them.
fn grants(owner_account: &str, acl: CannedAcl, acls_enabled: bool) -> Vec<Grant> {
    let mut out = vec![Grant {
        grantee: Some(Grantee {
            display_name: Some(owner_account.to_string()),
            email_address: None,
            id: Some(owner_account.to_string()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if !acls_enabled {
        return out;
    }
    let group = |uri: &str, perm: &'static str| Grant {
        grantee: Some(Grantee {
            display_name: None,
            email_address: None,
            id: None,
            type_: Type::from_static(Type::GROUP),
            uri: Some(uri.to_string()),
        }),
        permission: Some(Permission::from_static(perm)),
    };
    const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
    const AUTH_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
    match acl {
        CannedAcl::PublicRead => out.push(group(ALL_USERS, Permission::READ)),
        CannedAcl::PublicReadWrite => {
            out.push(group(ALL_USERS, Permission::READ));
            out.push(group(ALL_USERS, Permission::WRITE));
        }
        CannedAcl::AuthenticatedRead => out.push(group(AUTH_USERS, Permission::READ)),
        _ => {}
    }
    out
}

pub async fn put_bucket_acl(
    cx: Call,
    input: PutBucketAclInput,
) -> Result<PutBucketAclOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    let acl = match &input.acl {
        Some(a) => parse_acl(a.as_str())?,
        None => return Err(not_canned()),
    };
    access::check_put_acl(&cx.caller, &bucket_view(&b), acl)?;
    cx.update_bucket(&input.bucket, move |b| b.acl = acl)
        .await?;
    Ok(PutBucketAclOutput {})
}

pub async fn get_bucket_acl(
    cx: Call,
    input: GetBucketAclInput,
) -> Result<GetBucketAclOutput, ApiError> {
    let b = cx.admin_bucket(&input.bucket).await?;
    Ok(GetBucketAclOutput {
        grants: Some(grants(&b.owner_account, b.acl, b.ownership.acls_enabled())),
        owner: Some(owner(&b.owner_account)),
    })
}

pub async fn put_object_acl(
    cx: Call,
    input: PutObjectAclInput,
) -> Result<PutObjectAclOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    let acl = match &input.acl {
        Some(a) => parse_acl(a.as_str())?,
        None => return Err(not_canned()),
    };
    access::check_put_acl(&cx.caller, &bucket_view(&b), acl)?;
    let (bn, k) = (input.bucket, input.key);
    cx.on_store(move |store| store.set_object_acl(&bn, &k, acl))
        .await?;
    Ok(PutObjectAclOutput::default())
}

pub async fn get_object_acl(
    cx: Call,
    input: GetObjectAclInput,
) -> Result<GetObjectAclOutput, ApiError> {
    let b = cx.admin_bucket(&input.bucket).await?;
    let (bn, k) = (input.bucket, input.key);
    let m = cx.on_store(move |store| store.head_object(&bn, &k)).await?;
    Ok(GetObjectAclOutput {
        grants: Some(grants(&m.owner_account, m.acl, b.ownership.acls_enabled())),
        owner: Some(owner(&m.owner_account)),
        request_charged: None,
    })
}
