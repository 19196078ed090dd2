//! Buckets themselves: CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket.

use s3s::dto::{
    CreateBucketInput, CreateBucketOutput, DeleteBucketInput, DeleteBucketOutput,
    GetBucketLocationInput, GetBucketLocationOutput, HeadBucketInput, HeadBucketOutput,
};

use super::super::access::{self, Caller, Denial};
use super::super::auth::REGION;
use super::super::meta::ObjectOwnership;
use super::acl::parse_acl;
use super::call::Call;
use super::convert::bucket_view;
use super::error::ApiError;

/// CreateBucket, with the ACL and Object Ownership headers it may carry.
pub async fn create(cx: Call, input: CreateBucketInput) -> Result<CreateBucketOutput, ApiError> {
    access::check_signed(&cx.caller)?;
    let acl = input
        .acl
        .as_ref()
        .map(|a| parse_acl(a.as_str()))
        .transpose()?;
    let ownership = match &input.object_ownership {
        Some(o) => Some(ObjectOwnership::parse(o.as_str()).ok_or_else(|| {
            ApiError::invalid_argument(format!("Invalid ObjectOwnership: {}", o.as_str()))
        })?),
        None => None,
    };
    access::check_create_bucket_acl(acl, ownership)?;
    let Caller::Signed { account, .. } = &cx.caller else {
        return Err(Denial::AccessDenied.into());
    };
    let (name, account) = (input.bucket.clone(), account.clone());
    cx.on_store(move |store| {
        store.create_bucket(&name, &account)?;
        if ownership.is_some() || acl.is_some() {
            store.update_bucket(&name, |b| {
                if let Some(o) = ownership {
                    b.ownership = o;
                }
                if let Some(a) = acl {
                    b.acl = a;
                }
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    })
}

/// HeadBucket: whether the bucket exists and the caller may list it.
pub async fn head(cx: Call, input: HeadBucketInput) -> Result<HeadBucketOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    access::check_list_bucket(&cx.caller, &bucket_view(&b))?;
    Ok(HeadBucketOutput {
        bucket_region: Some(REGION.to_string()),
        ..Default::default()
    })
}

/// GetBucketLocation (the bucket's owner): every bucket is in us-east-1, which S3 answers
/// with an empty `LocationConstraint`.
pub async fn location(
    cx: Call,
    input: GetBucketLocationInput,
) -> Result<GetBucketLocationOutput, ApiError> {
    cx.admin_bucket(&input.bucket).await?;
    Ok(GetBucketLocationOutput {
        location_constraint: (REGION != "us-east-1")
            .then(|| s3s::dto::BucketLocationConstraint::from(REGION.to_string())),
    })
}

/// DeleteBucket (an empty bucket, by its owner).
pub async fn delete(cx: Call, input: DeleteBucketInput) -> Result<DeleteBucketOutput, ApiError> {
    let name = input.bucket;
    cx.admin_bucket(&name).await?;
    cx.on_store(move |store| store.delete_bucket(&name)).await?;
    Ok(DeleteBucketOutput {})
}
