//! Streaming a request body into the store, the one path PutObject and UploadPart share:
//! the socket is read on this task while a blocking thread seals and writes what arrived
//! (at most [`QUEUED`] pieces wait between them, so memory stays bounded whatever the
//! body's size), and the store commits only once the whole body arrived and every
//! [`BodyCheck`] accepted it.

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::StreamingBlob;
use tokio::sync::mpsc;

use super::super::meta::{ObjectMeta, StoredChecksum};
use super::super::multipart::{PartRecord, PartWriter};
use super::super::store::{PutWriter, StoreError};
use super::error::{refused_body, ApiError};

/// Body pieces queued for the writer thread at most.
const QUEUED: usize = 8;

/// Where a streamed body goes: [`PutWriter`] (a PUT's object) or [`PartWriter`] (a part).
/// Both run on a blocking thread.
pub trait BodySink: Send + 'static {
    type Committed: Send + 'static;
    /// Seals and writes the next piece.
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError>;
    /// Keeps the checksum the body was checked against, for GET and HEAD to return.
    fn set_checksum(&mut self, checksum: StoredChecksum);
    /// Makes the body durable and visible.
    fn commit(self) -> Result<Self::Committed, StoreError>;
}

impl BodySink for PutWriter {
    type Committed = ObjectMeta;
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        PutWriter::write(self, data)
    }
    fn set_checksum(&mut self, checksum: StoredChecksum) {
        PutWriter::set_checksum(self, checksum)
    }
    fn commit(self) -> Result<ObjectMeta, StoreError> {
        PutWriter::commit(self)
    }
}

impl BodySink for PartWriter {
    type Committed = PartRecord;
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        PartWriter::write(self, data)
    }
    fn set_checksum(&mut self, checksum: StoredChecksum) {
        PartWriter::set_checksum(self, checksum)
    }
    fn commit(self) -> Result<PartRecord, StoreError> {
        PartWriter::commit(self)
    }
}

/// Watches a body's plaintext as it streams in and rules on it once it has ended, before
/// anything is committed: the place for `Content-MD5` and `x-amz-checksum-*` checks.
/// `update` runs on the writer thread for every piece; `verify` once after the last, with
/// the trailers of an `aws-chunked` body if it had any. An error from `verify` discards the
/// upload and is the request's answer; a checksum it returns is kept with the body.
pub trait BodyCheck: Send + 'static {
    fn update(&mut self, data: &[u8]);
    fn verify(
        self: Box<Self>,
        trailers: Option<&hyper::HeaderMap>,
    ) -> Result<Option<StoredChecksum>, ApiError>;
}

/// What the writer thread is told.
enum Piece {
    Data(Bytes),
    /// The body ended; its trailers, if any.
    End(Option<hyper::HeaderMap>),
}

/// Streams `body` into `sink` while it arrives, runs `checks`, and commits.
pub async fn stream_into<S: BodySink>(
    sink: S,
    body: Option<StreamingBlob>,
    mut checks: Vec<Box<dyn BodyCheck>>,
    trailers: Option<s3s::TrailingHeaders>,
) -> Result<S::Committed, ApiError> {
    let (tx, mut rx) = mpsc::channel::<Piece>(QUEUED);
    let writer = tokio::task::spawn_blocking(move || -> Result<S::Committed, ApiError> {
        let mut sink = sink;
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Data(b) => {
                    for c in &mut checks {
                        c.update(&b);
                    }
                    sink.write(&b)?;
                }
                Piece::End(trailers) => {
                    for c in checks {
                        if let Some(checksum) = c.verify(trailers.as_ref())? {
                            sink.set_checksum(checksum);
                        }
                    }
                    return Ok(sink.commit()?);
                }
            }
        }
        Err(StoreError::Incomplete.into())
    });
    let mut body_error = None;
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(Piece::Data(bytes)).await.is_err() {
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
        let _ = writer.await;
        tracing::info!(error = %e, "upload body ended early");
        return Err(refused_body(&*e));
    }
    let _ = tx.send(Piece::End(trailers.and_then(|t| t.take()))).await;
    drop(tx);
    writer.await?
}
