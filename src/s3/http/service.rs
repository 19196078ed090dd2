//! Service-level operations: ListBuckets.

use s3s::dto::{Bucket, ListBucketsInput, ListBucketsOutput};

use super::super::access::{self, Caller, Denial};
use super::super::auth::REGION;
use super::call::Call;
use super::convert::{owner, timestamp};
use super::error::ApiError;

/// ListBuckets: the buckets of the caller's account.
pub async fn list_buckets(
    cx: Call,
    _input: ListBucketsInput,
) -> Result<ListBucketsOutput, ApiError> {
    access::check_signed(&cx.caller)?;
    let Caller::Signed { account, .. } = &cx.caller else {
        return Err(Denial::AccessDenied.into());
    };
    let all = cx.on_store(|store| store.list_buckets()).await?;
    let buckets = all
        .iter()
        .filter(|b| &b.owner_account == account)
        .map(|b| Bucket {
            bucket_region: Some(REGION.to_string()),
            creation_date: timestamp(&b.created),
            name: Some(b.name.clone()),
        })
        .collect();
    Ok(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner(account)),
        ..Default::default()
    })
}
