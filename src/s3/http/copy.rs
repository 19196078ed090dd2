//! CopyObject, and what it shares with UploadPartCopy: the copy source
//! (`x-amz-copy-source`, URL-decoded by s3s; `?versionId=null` is the only version an
//! unversioned bucket has), the `x-amz-copy-source-if-*` conditions, and the copy itself:
//! the source is opened under its own data key (KMS `Decrypt` as the caller for SSE-KMS) and
//! sealed again under the destination's new data key (KMS `GenerateDataKey` under the key the
//! request or the destination bucket names), a batch of chunks at a time. No byte is copied
//! in the clear to disk, and both key uses are in kmsd's trail.

use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopySource, CopySourceIfMatch,
    CopySourceIfModifiedSince, CopySourceIfNoneMatch, CopySourceIfUnmodifiedSince,
};

use std::sync::Arc;

use super::super::meta::ChecksumKind;
use super::super::store::check_customer_key;
use super::super::store::{Store, StoreError, StoredObject, MAX_OBJECT_SIZE};
use super::call::Call;
use super::conditions::Conditions;
use super::convert::{etag, set_checksum, timestamp};
use super::customer::{customer_key_of, set_echo, source_customer_key};
use super::error::ApiError;
use super::object::{new_object, new_object_of, sse_header, NewObject};
use super::upload::BodySink;

/// The object a copy reads: bucket and key from `x-amz-copy-source`.
pub fn source(copy_source: &CopySource) -> Result<(String, String), ApiError> {
    match copy_source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(ApiError::invalid_argument("Invalid version id specified"));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(ApiError::invalid_argument(
            "atrest copies from bucket/key sources only (no access points or outposts)",
        )),
    }
}

/// The `x-amz-copy-source-if-*` headers of a copy.
pub fn source_conditions<'a>(
    if_match: Option<&'a CopySourceIfMatch>,
    if_none_match: Option<&'a CopySourceIfNoneMatch>,
    if_modified_since: Option<&'a CopySourceIfModifiedSince>,
    if_unmodified_since: Option<&'a CopySourceIfUnmodifiedSince>,
) -> Conditions<'a> {
    Conditions {
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    }
}

/// `x-amz-metadata-directive`: whether the copy keeps the source's content type and user
/// metadata (`COPY`, the default) or takes the request's (`REPLACE`).
fn replaces_metadata(directive: Option<&str>) -> Result<bool, ApiError> {
    match directive {
        None | Some("COPY") => Ok(false),
        Some("REPLACE") => Ok(true),
        Some(_) => Err(ApiError::invalid_argument("Unknown metadata directive.")),
    }
}

pub async fn copy_object(cx: Call, input: CopyObjectInput) -> Result<CopyObjectOutput, ApiError> {
    let source_customer = source_customer_key!(cx, input)?;
    let customer = customer_key_of!(cx, input)?;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let replace = replaces_metadata(input.metadata_directive.as_ref().map(|d| d.as_str()))?;
    let bucket = cx.bucket(&input.bucket).await?;
    let mut put = new_object(&cx, &bucket, new_object_of!(input, customer.clone()))?;
    let source_bucket = if src_bucket == bucket.name {
        bucket.clone()
    } else {
        cx.bucket(&src_bucket).await?
    };
    let mut obj = cx
        .object_for_read(&source_bucket, &src_key, |m| 0..m.size)
        .await?;
    check_customer_key(&obj.meta.protection, source_customer.as_deref())?;
    obj.customer = source_customer;
    source_conditions(
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )
    .check(&obj.meta, true)?;
    let changes_encryption = input.server_side_encryption.is_some()
        || input.ssekms_key_id.is_some()
        || customer.is_some();
    if src_bucket == input.bucket && src_key == input.key && !replace && !changes_encryption {
        return Err(ApiError::refused(
            "InvalidRequest",
            400,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    if obj.meta.size > MAX_OBJECT_SIZE {
        return Err(ApiError::invalid_argument(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_OBJECT_SIZE}"
        )));
    }
    if !replace {
        put.content_type = obj.meta.content_type.clone();
        put.user_metadata = obj.meta.user_metadata.clone();
    }
    // The bytes are the same: a checksum of the whole source is the copy's too.
    let checksum = obj
        .meta
        .checksum
        .clone()
        .filter(|c| c.kind == ChecksumKind::FullObject);
    let key = input.key.clone();
    let meta = copy_into(&cx, obj, move |store, principal| {
        let mut w = store.begin_put(&bucket, &key, principal, put)?;
        if let Some(c) = checksum {
            w.set_checksum(c);
        }
        Ok(w)
    })
    .await?;
    let mut out = CopyObjectOutput {
        copy_object_result: Some({
            let mut r = CopyObjectResult {
                e_tag: Some(etag(&meta)),
                last_modified: timestamp(&meta.last_modified),
                ..Default::default()
            };
            set_checksum!(r, meta.checksum.as_ref(), typed);
            r
        }),
        bucket_key_enabled: meta.protection.bucket_key_enabled().then_some(true),
        ssekms_key_id: meta.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&meta.protection),
        ..Default::default()
    };
    set_echo!(out, &meta.protection, customer.as_deref());
    Ok(out)
}

/// Copies `source` into the sink `open` makes, on the blocking pool: the source's data key
/// is recovered first (a refusal names the source's KMS key, as S3's message does), then
/// the destination's made, then the body is opened and sealed again a batch at a time.
pub async fn copy_into<S, F>(
    cx: &Call,
    source: StoredObject,
    open: F,
) -> Result<S::Committed, ApiError>
where
    S: BodySink,
    F: FnOnce(&Arc<Store>, &str) -> Result<S, StoreError> + Send + 'static,
{
    let source_key_arn = source.meta.protection.kms_key_arn().map(str::to_string);
    let principal = cx.principal();
    let store = Arc::clone(&cx.store);
    let reader = {
        let (store, principal) = (Arc::clone(&store), principal.clone());
        tokio::task::spawn_blocking(move || store.open_reader(source, &principal))
            .await?
            .map_err(|e| ApiError::store_for_key(e, source_key_arn.as_deref()))?
    };
    let committed = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut sink = open(&store, &principal)?;
        loop {
            let batch = reader.next_batch()?;
            if batch.is_empty() {
                break;
            }
            for piece in batch {
                sink.write(&piece)?;
            }
        }
        sink.commit()
    })
    .await??;
    Ok(committed)
}
