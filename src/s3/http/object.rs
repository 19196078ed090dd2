//! Objects: PutObject, GetObject, HeadObject (with `If-*` conditions, `conditions.rs`),
//! DeleteObject (PutObject and DeleteObject with conditional writes, `precondition.rs`). Bodies stream: an upload is
//! sealed and written on a blocking thread while the socket is read (`upload.rs`), a
//! download is read and opened a batch of chunks at a time while the previous batch is
//! sent; a `Range` or `partNumber` read opens only the chunks under it (`span.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::digest::DeclaresDigests as _;
use bytes::Bytes;
use s3s::dto::{
    ContentType, DeleteObjectInput, DeleteObjectOutput, GetObjectInput, GetObjectOutput,
    HeadObjectInput, HeadObjectOutput, Metadata, ObjectCannedACL, PutObjectInput, PutObjectOutput,
    ServerSideEncryption, StreamingBlob,
};
use tokio::sync::mpsc;

use super::super::access::{self, Caller};
use super::super::customer_key::CustomerKey;
use super::super::meta::{BucketMeta, CannedAcl, KeyProtection, ObjectOwnership, SseAlgorithm};
use super::super::precondition::WriteCondition;
use super::super::store::{check_customer_key, PutRequest, SseChoice, StoreError, MAX_OBJECT_SIZE};
use super::acl::parse_acl;
use super::call::Call;
use super::conditions::{write_condition, Conditions};
use super::convert::{bucket_view, checksum_mode, etag, set_checksum, timestamp, user_metadata};
use super::customer::{customer_key_of, set_echo};
use super::digest;
use super::error::ApiError;
use super::span::Want;
use super::upload::stream_into;

/// `x-amz-server-side-encryption` of an object or upload kept under `p` (none for SSE-C,
/// whose answers carry the `-customer-` headers instead, as S3's do).
pub fn sse_header(p: &KeyProtection) -> Option<ServerSideEncryption> {
    (!p.is_customer_key()).then(|| ServerSideEncryption::from(p.algorithm().as_str().to_string()))
}

/// What PutObject and CreateMultipartUpload share: the new object's encryption, ACL,
/// content type and metadata, as the request's headers give them.
pub struct NewObject<'a> {
    pub acl: Option<&'a ObjectCannedACL>,
    pub sse: Option<&'a ServerSideEncryption>,
    pub kms_key_id: Option<&'a str>,
    pub bucket_key: Option<bool>,
    /// SSE-C: the request's customer key.
    pub customer: Option<Arc<CustomerKey>>,
    pub content_type: Option<&'a ContentType>,
    pub metadata: Option<&'a Metadata>,
}

/// The [`NewObject`] of an s3s input that carries PutObject's headers (PutObject,
/// CreateMultipartUpload and CopyObject name them alike), with its customer key.
macro_rules! new_object_of {
    ($input:expr, $customer:expr) => {
        NewObject {
            acl: $input.acl.as_ref(),
            sse: $input.server_side_encryption.as_ref(),
            kms_key_id: $input.ssekms_key_id.as_deref(),
            bucket_key: $input.bucket_key_enabled,
            customer: $customer,
            content_type: $input.content_type.as_ref(),
            metadata: $input.metadata.as_ref(),
        }
    };
}
pub(crate) use new_object_of;

/// Checks a new object's headers as S3 does (encryption, ACL against ownership and Block
/// Public Access, the caller's right to write) and resolves what the store is to do: the
/// bucket default encryption unless the request names one, the owner by Object Ownership.
pub fn new_object(
    cx: &Call,
    bucket: &BucketMeta,
    n: NewObject<'_>,
) -> Result<PutRequest, ApiError> {
    let acl = n.acl.map(|a| parse_acl(a.as_str())).transpose()?;
    let requested = match n.sse {
        Some(s) => Some(SseAlgorithm::parse(s.as_str()).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "The encryption method specified is not supported: {}",
                s.as_str()
            ))
        })?),
        None => None,
    };
    if n.kms_key_id.is_some() && requested != Some(SseAlgorithm::AwsKms) {
        return Err(ApiError::invalid_argument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
        ));
    }
    let choice = match n.customer {
        Some(_) if requested.is_some() => {
            return Err(ApiError::invalid_argument(
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ))
        }
        // SSE-C overrides the bucket's default encryption, as in S3.
        Some(ck) => SseChoice::Customer(ck),
        None => SseChoice::resolve(bucket, requested, n.kms_key_id, n.bucket_key)?,
    };
    access::check_write_object(&cx.caller, &bucket_view(bucket), acl, choice.algorithm())?;
    let account = match &cx.caller {
        Caller::Signed { account, .. } => account.clone(),
        Caller::Anonymous => bucket.owner_account.clone(),
    };
    let owner_account = match bucket.ownership {
        ObjectOwnership::ObjectWriter => account,
        _ => bucket.owner_account.clone(),
    };
    Ok(PutRequest {
        content_type: n
            .content_type
            .map(|c| c.to_string())
            .unwrap_or_else(|| "binary/octet-stream".to_string()),
        acl: acl.unwrap_or(CannedAcl::Private),
        sse: choice,
        owner_account,
        user_metadata: n
            .metadata
            .cloned()
            .map(|m| m.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
        condition: WriteCondition::Unconditional,
    })
}

pub async fn put(cx: Call, input: PutObjectInput) -> Result<PutObjectOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    let customer = customer_key_of!(cx, input)?;
    let mut put = new_object(&cx, &bucket, new_object_of!(input, customer.clone()))?;
    put.condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    // Refused before a data key is made or a byte stored; the stream also stops at the
    // limit, for bodies that announce no length.
    if input
        .content_length
        .is_some_and(|n| u64::try_from(n).is_ok_and(|n| n > MAX_OBJECT_SIZE))
    {
        return Err(StoreError::EntityTooLarge.into());
    }

    let checks = digest::checks(&input.declared(cx.trailer.as_deref()))?;

    // Get the data key first (a KMS refusal must come before the body is read).
    let (b2, k2, principal) = (bucket.clone(), input.key.clone(), cx.principal());
    let writer = cx
        .on_store(move |store| store.begin_put(&b2, &k2, &principal, put))
        .await?;
    let started = std::time::Instant::now();
    let meta = stream_into(writer, input.body, checks, cx.trailers.clone()).await?;
    tracing::debug!(
        bytes = meta.size,
        committed_ms = started.elapsed().as_millis() as u64,
        "upload stored"
    );
    let mut out = PutObjectOutput {
        bucket_key_enabled: meta.protection.bucket_key_enabled().then_some(true),
        e_tag: Some(etag(&meta)),
        ssekms_key_id: meta.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&meta.protection),
        size: i64::try_from(meta.size).ok(),
        ..Default::default()
    };
    set_echo!(out, &meta.protection, customer.as_deref());
    set_checksum!(out, meta.checksum.as_ref(), typed);
    Ok(out)
}

/// A GET body: batches of authenticated chunks from the reader thread, yielded one chunk
/// at a time.
struct ChunkStream {
    batches: mpsc::Receiver<Result<Vec<Bytes>, StoreError>>,
    pending: VecDeque<Bytes>,
}

impl futures::Stream for ChunkStream {
    type Item = Result<Bytes, StoreError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(b)));
            }
            match self.batches.poll_recv(cx) {
                Poll::Ready(Some(Ok(batch))) => self.pending.extend(batch),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

pub async fn get(cx: Call, input: GetObjectInput) -> Result<GetObjectOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    let want = Want::of(input.range.as_ref(), input.part_number)?;
    let customer = customer_key_of!(cx, input)?;
    // Only the data files under the wanted bytes are opened; what cannot be served is
    // refused below, once the caller is known to be allowed to read the object.
    let mut obj = cx
        .object_for_read(&bucket, &input.key, move |m| want.span(m).unwrap_or(0..0))
        .await?;
    check_customer_key(&obj.meta.protection, customer.as_deref())?;
    obj.customer = customer.clone();
    Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&obj.meta, false)?;
    let span = want.span(&obj.meta)?;
    let key_arn = obj.meta.protection.kms_key_arn().map(str::to_string);
    let principal = cx.principal();
    let store = std::sync::Arc::clone(&cx.store);
    let mut reader = tokio::task::spawn_blocking(move || store.open_reader(obj, &principal))
        .await?
        .map_err(|e| ApiError::store_for_key(e, key_arn.as_deref()))?;
    let m = reader.meta().clone();
    // Two batches (2 MiB) queued ahead of the socket at most: memory stays bounded.
    let (tx, rx) = mpsc::channel::<Result<Vec<Bytes>, StoreError>>(2);
    tokio::task::spawn_blocking(move || loop {
        match reader.next_batch() {
            Ok(batch) if batch.is_empty() => return,
            Ok(batch) => {
                if tx.blocking_send(Ok(batch)).is_err() {
                    return; // client went away
                }
            }
            Err(e) => {
                // The response is already under way: fail the body so the connection is
                // cut short of Content-Length, and the client sees an error, not success.
                tracing::error!(error = %e, "object read failed mid-stream");
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    let checksum = checksum_mode(input.checksum_mode.as_ref())
        .then(|| want.checksum(&m, &span))
        .flatten();
    let mut out = GetObjectOutput {
        accept_ranges: Some("bytes".into()),
        body: Some(StreamingBlob::wrap(ChunkStream {
            batches: rx,
            pending: VecDeque::new(),
        })),
        bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
        content_length: i64::try_from(span.end - span.start).ok(),
        content_range: want.content_range(&span, m.size),
        content_type: m.content_type.parse().ok(),
        e_tag: Some(etag(&m)),
        last_modified: timestamp(&m.last_modified),
        metadata: user_metadata(&m),
        parts_count: want.parts_count(&m),
        ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&m.protection),
        ..Default::default()
    };
    set_echo!(out, &m.protection, customer.as_deref());
    set_checksum!(out, checksum.as_ref(), typed);
    Ok(out)
}

pub async fn head(cx: Call, input: HeadObjectInput) -> Result<HeadObjectOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    let want = Want::of(input.range.as_ref(), input.part_number)?;
    let customer = customer_key_of!(cx, input)?;
    // Metadata only: no data file is opened (an SSE-C object's key is checked against
    // its fingerprint).
    let obj = cx.object_for_read(&b, &input.key, |_| 0..0).await?;
    let m = &obj.meta;
    check_customer_key(&m.protection, customer.as_deref())?;
    Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(m, false)?;
    let span = want.span(m)?;
    let mut out = HeadObjectOutput {
        accept_ranges: Some("bytes".into()),
        bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
        content_length: i64::try_from(span.end - span.start).ok(),
        content_range: want.content_range(&span, m.size),
        content_type: m.content_type.parse().ok(),
        e_tag: Some(etag(m)),
        last_modified: timestamp(&m.last_modified),
        metadata: user_metadata(m),
        parts_count: want.parts_count(m),
        ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&m.protection),
        ..Default::default()
    };
    if checksum_mode(input.checksum_mode.as_ref()) {
        set_checksum!(out, want.checksum(m, &span).as_ref(), typed);
    }
    set_echo!(out, &m.protection, customer.as_deref());
    Ok(out)
}

pub async fn delete(cx: Call, input: DeleteObjectInput) -> Result<DeleteObjectOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    access::check_write_object(&cx.caller, &bucket_view(&b), None, SseAlgorithm::Aes256)?;
    if input.if_match_last_modified_time.is_some() || input.if_match_size.is_some() {
        // Directory-bucket conditions: refused rather than ignored.
        return Err(ApiError::refused(
            "NotImplemented",
            501,
            "A header you provided implies functionality that is not implemented (x-amz-if-match-last-modified-time / x-amz-if-match-size)",
        ));
    }
    let condition = write_condition(input.if_match.as_ref(), None)?;
    let (bn, k) = (input.bucket, input.key);
    cx.on_store(move |store| store.delete_object(&bn, &k, &condition))
        .await?;
    Ok(DeleteObjectOutput::default())
}
