//! DeleteObjects: up to 1000 keys in one request, each deleted on its own and answered on
//! its own (`Deleted`, or an `Error` with S3's code for that key), `Quiet` answering errors
//! only. S3 requires the body's integrity to be declared (`Content-MD5` or an
//! `x-amz-checksum-*`) and checks it before deleting anything.
//!
//! s3s reads an XML body whole before the handler runs and does not hand the bytes on, so
//! [`tap`] digests the body on its way into s3s (after the signature checks, which read no
//! body); the handler then rules on the declared digest with [`digest`]'s checks.

use std::sync::{Arc, Mutex};

use s3s::dto::{DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, Error, ObjectIdentifier};
use s3s::S3Error;

use super::super::access;
use super::super::meta::SseAlgorithm;
use super::super::precondition::WriteCondition;
use super::super::store::StoreError;
use super::call::Call;
use super::convert::bucket_view;
use super::digest;
use super::error::ApiError;
use super::upload::BodyCheck;

/// S3's limit on keys in one DeleteObjects.
pub const MAX_KEYS: usize = 1000;

type Checks = Result<Vec<Box<dyn BodyCheck>>, ApiError>;

/// The checks a batch delete's declared digests ask for, fed with its body as s3s reads
/// it (a request extension: the handler takes them once the body is in).
#[derive(Clone)]
pub struct BodyDigests(Arc<Mutex<Option<Checks>>>);

impl BodyDigests {
    /// The declared digests' verdict over the body read so far (all of it, by the time a
    /// handler runs).
    fn verify(&self) -> Result<(), ApiError> {
        let checks = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        for c in checks.unwrap_or_else(|| Ok(Vec::new()))? {
            c.verify(None)?;
        }
        Ok(())
    }
}

/// Whether a request is a DeleteObjects (`POST /BUCKET?delete`).
fn is_batch_delete(req: &hyper::Request<s3s::Body>) -> bool {
    req.method() == hyper::Method::POST
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("delete")))
}

/// Digests the body of a DeleteObjects as it streams into s3s; other requests pass as
/// they are.
pub fn tap(req: hyper::Request<s3s::Body>) -> hyper::Request<s3s::Body> {
    if !is_batch_delete(&req) {
        return req;
    }
    let checks = digest::checks(&digest::declared_in(req.headers()));
    let digests = BodyDigests(Arc::new(Mutex::new(Some(checks))));
    let feed = digests.clone();
    let (mut parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        if let Some(data) = frame.data_ref() {
            let mut g = feed.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Ok(checks)) = g.as_mut() {
                for c in checks {
                    c.update(data);
                }
            }
        }
        frame
    });
    parts.extensions.insert(digests);
    hyper::Request::from_parts(parts, s3s::Body::http_body(body))
}

/// Whether the request declares its body's integrity, as S3 requires of DeleteObjects.
fn declares_integrity(headers: &hyper::HeaderMap) -> bool {
    let d = digest::declared_in(headers);
    d.content_md5.is_some() || !d.checksums.is_empty() || d.sdk_algorithm.is_some()
}

pub async fn delete_objects(
    cx: Call,
    input: DeleteObjectsInput,
) -> Result<DeleteObjectsOutput, ApiError> {
    let b = cx.bucket(&input.bucket).await?;
    access::check_write_object(&cx.caller, &bucket_view(&b), None, SseAlgorithm::Aes256)?;
    if !declares_integrity(&cx.headers) {
        return Err(ApiError::refused(
            "InvalidRequest",
            400,
            "Missing required header for this request: Content-MD5",
        ));
    }
    match &cx.body_digests {
        Some(d) => d.verify()?,
        // Only a request that did not come through the endpoint's front door.
        None => {
            return Err(ApiError::invalid_argument(
                "The request body was not checked",
            ))
        }
    }
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > MAX_KEYS {
        return Err(ApiError::refused(
            "MalformedXML",
            400,
            "The XML you provided was not well-formed or did not validate against our published schema",
        ));
    }
    let quiet = input.delete.quiet == Some(true);
    let bucket = input.bucket;
    let outcomes = cx
        .on_store(move |store| {
            Ok(objects
                .into_iter()
                .map(|o| {
                    let r = delete_one(&o).and_then(|condition| {
                        store
                            .delete_object(&bucket, &o.key, &condition)
                            .map_err(ApiError::from)
                    });
                    (o, r)
                })
                .collect::<Vec<_>>())
        })
        .await?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (o, r) in outcomes {
        match r {
            Ok(()) if quiet => {}
            Ok(()) => deleted.push(DeletedObject {
                key: Some(o.key),
                version_id: o.version_id,
                ..Default::default()
            }),
            Err(e) => {
                if matches!(
                    e,
                    ApiError::Store {
                        source: StoreError::Io { .. } | StoreError::Corrupt(_),
                        ..
                    }
                ) {
                    tracing::error!(error = %e, key = %o.key, "batch delete of one key failed");
                }
                let e = S3Error::from(e);
                errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key),
                    message: e.message().map(str::to_string),
                    version_id: o.version_id,
                });
            }
        }
    }
    Ok(DeleteObjectsOutput {
        deleted: (!deleted.is_empty()).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    })
}

/// What S3 refuses about one key before deleting it (a version other than `null`, the
/// only one an unversioned bucket has, and the directory-bucket conditions atrest does not
/// evaluate), and the key's `ETag` condition, as `If-Match` on DeleteObject.
fn delete_one(o: &ObjectIdentifier) -> Result<WriteCondition, ApiError> {
    if o.version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(ApiError::invalid_argument("Invalid version id specified"));
    }
    if o.last_modified_time.is_some() || o.size.is_some() {
        return Err(ApiError::refused(
            "NotImplemented",
            501,
            "atrest does not evaluate LastModifiedTime or Size conditions in DeleteObjects",
        ));
    }
    Ok(match &o.e_tag {
        None => WriteCondition::Unconditional,
        Some(t) if t.value() == "*" => WriteCondition::Matches(None),
        Some(t) => WriteCondition::Matches(Some(t.value().to_string())),
    })
}
