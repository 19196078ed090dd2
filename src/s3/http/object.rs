//! Objects: PutObject, GetObject, HeadObject, DeleteObject. Bodies stream: an upload is
//! sealed and written on a blocking thread while the socket is read, a download is read
//! and opened a batch of chunks at a time while the previous batch is sent.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::{
    DeleteObjectInput, DeleteObjectOutput, GetObjectInput, GetObjectOutput, HeadObjectInput,
    HeadObjectOutput, PutObjectInput, PutObjectOutput, ServerSideEncryption, StreamingBlob,
};
use tokio::sync::mpsc;

use super::super::access::{self, Caller};
use super::super::meta::{CannedAcl, ObjectMeta, ObjectOwnership, SseAlgorithm};
use super::super::store::{PutRequest, SseChoice, StoreError, MAX_OBJECT_SIZE};
use super::acl::parse_acl;
use super::call::Call;
use super::convert::{bucket_view, etag, timestamp, user_metadata};
use super::error::{refused_body, ApiError};

fn sse_header(m: &ObjectMeta) -> Option<ServerSideEncryption> {
    Some(ServerSideEncryption::from(
        m.protection.algorithm().as_str().to_string(),
    ))
}

/// What the upload thread is told.
enum Upload {
    Data(Bytes),
    End,
}

pub async fn put(cx: Call, input: PutObjectInput) -> Result<PutObjectOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    let acl = input
        .acl
        .as_ref()
        .map(|a| parse_acl(a.as_str()))
        .transpose()?;
    let requested = match &input.server_side_encryption {
        Some(s) => Some(SseAlgorithm::parse(s.as_str()).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "The encryption method specified is not supported: {}",
                s.as_str()
            ))
        })?),
        None => None,
    };
    if input.ssekms_key_id.is_some() && requested != Some(SseAlgorithm::AwsKms) {
        return Err(ApiError::invalid_argument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
        ));
    }
    if input.sse_customer_algorithm.is_some() {
        return Err(ApiError::refused(
            "NotImplemented",
            501,
            "SSE-C is not supported by atrest",
        ));
    }
    // Refused before a data key is made or a byte stored; the stream also stops at the
    // limit, for bodies that announce no length.
    if input
        .content_length
        .is_some_and(|n| u64::try_from(n).is_ok_and(|n| n > MAX_OBJECT_SIZE))
    {
        return Err(StoreError::EntityTooLarge.into());
    }
    let choice = SseChoice::resolve(
        &bucket,
        requested,
        input.ssekms_key_id.as_deref(),
        input.bucket_key_enabled,
    )?;
    access::check_write_object(&cx.caller, &bucket_view(&bucket), acl, choice.algorithm())?;
    let account = match &cx.caller {
        Caller::Signed { account, .. } => account.clone(),
        Caller::Anonymous => bucket.owner_account.clone(),
    };
    let owner_account = match bucket.ownership {
        ObjectOwnership::ObjectWriter => account,
        _ => bucket.owner_account.clone(),
    };
    let put = PutRequest {
        content_type: input
            .content_type
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "binary/octet-stream".to_string()),
        acl: acl.unwrap_or(CannedAcl::Private),
        sse: choice,
        owner_account,
        user_metadata: input
            .metadata
            .clone()
            .map(|m| m.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
    };

    // Get the data key first (a KMS refusal must come before the body is read).
    let (b2, k2, principal) = (bucket.clone(), input.key.clone(), cx.principal());
    let writer = cx
        .on_store(move |store| store.begin_put(&b2, &k2, &principal, put))
        .await?;

    // Encrypt and write on a blocking thread while this task keeps reading the socket.
    let started = std::time::Instant::now();
    let (tx, mut rx) = mpsc::channel::<Upload>(8);
    let write_task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Upload::Data(b) => writer.write(&b)?,
                Upload::End => return writer.commit(),
            }
        }
        Err(StoreError::Incomplete)
    });
    let mut body_error = None;
    if let Some(mut body) = input.body {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(Upload::Data(bytes)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
    }
    if let Some(e) = body_error {
        drop(tx); // the writer sees no End and discards the upload
        let _ = write_task.await;
        tracing::info!(error = %e, "upload body ended early");
        return Err(refused_body(&*e));
    }
    let received = started.elapsed();
    let _ = tx.send(Upload::End).await;
    drop(tx);
    let meta = write_task.await??;
    tracing::debug!(
        bytes = meta.size,
        body_ms = received.as_millis() as u64,
        committed_ms = started.elapsed().as_millis() as u64,
        "upload stored"
    );
    Ok(PutObjectOutput {
        bucket_key_enabled: meta.protection.bucket_key_enabled().then_some(true),
        e_tag: Some(etag(&meta)),
        ssekms_key_id: meta.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&meta),
        size: i64::try_from(meta.size).ok(),
        ..Default::default()
    })
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
    if input.range.is_some() || input.part_number.is_some() {
        return Err(ApiError::refused(
            "NotImplemented",
            501,
            "atrest does not serve byte ranges or parts yet",
        ));
    }
    let obj = cx.object_for_read(&bucket, &input.key).await?;
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
    Ok(GetObjectOutput {
        body: Some(StreamingBlob::wrap(ChunkStream {
            batches: rx,
            pending: VecDeque::new(),
        })),
        bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
        content_length: i64::try_from(m.size).ok(),
        content_type: m.content_type.parse().ok(),
        e_tag: Some(etag(&m)),
        last_modified: timestamp(&m.last_modified),
        metadata: user_metadata(&m),
        ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(&m),
        ..Default::default()
    })
}

pub async fn head(cx: Call, input: HeadObjectInput) -> Result<HeadObjectOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    let obj = cx.object_for_read(&b, &input.key).await?;
    let m = &obj.meta;
    Ok(HeadObjectOutput {
        accept_ranges: None,
        bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
        content_length: i64::try_from(m.size).ok(),
        content_type: m.content_type.parse().ok(),
        e_tag: Some(etag(m)),
        last_modified: timestamp(&m.last_modified),
        metadata: user_metadata(m),
        ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
        server_side_encryption: sse_header(m),
        ..Default::default()
    })
}

pub async fn delete(cx: Call, input: DeleteObjectInput) -> Result<DeleteObjectOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    access::check_write_object(&cx.caller, &bucket_view(&b), None, SseAlgorithm::Aes256)?;
    let (bn, k) = (input.bucket, input.key);
    cx.on_store(move |store| store.delete_object(&bn, &k))
        .await?;
    Ok(DeleteObjectOutput::default())
}
