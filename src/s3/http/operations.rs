//! The operation table: every S3 operation atrest serves, its handler, and what the
//! plumbing does around it. [`ObjectService::run`] is that plumbing, the same for every
//! operation: resolve the caller from the verified signature, run the handler, turn its
//! [`ApiError`] into S3's error, and record the outcome in the trail when the table says so.
//!
//! Adding an operation is one row here and its handler in the module of its resource.

use std::future::Future;
use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};

use super::super::access::Caller;
use super::super::audit::{self, S3Event};
use super::super::auth::Keyring;
use super::super::store::Store;
use super::call::{self, request_id, Call};
use super::error::ApiError;
use super::{acl, batch_delete, bucket, bucket_config, copy, listing, multipart, object, service};

/// One operation as the plumbing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The AWS name: s3s's operation name and CloudTrail's `eventName`.
    pub name: &'static str,
    /// Whether each call is recorded ([`audit::Trail::record`]: management events in
    /// kmsd's trail, data events in the log).
    pub recorded: bool,
    /// Whether S3's rules can ever let an unsigned request do it (an ACL granting
    /// AllUsers READ or WRITE). Any other unsigned request is refused before its body is
    /// read ([`server`](super::server)'s body gate).
    pub anonymous: bool,
}

/// The bucket and key a call names, for its trail record.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// The S3 operations atrest serves.
pub struct ObjectService {
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: Arc<audit::Trail>,
}

impl ObjectService {
    pub fn new(store: Arc<Store>, keyring: Arc<Keyring>, trail: Arc<audit::Trail>) -> Self {
        ObjectService {
            store,
            keyring,
            trail,
        }
    }

    /// The plumbing around every handler.
    async fn run<I, O, Fut>(
        &self,
        op: &Operation,
        req: S3Request<I>,
        target: impl FnOnce(&I) -> Target,
        handler: impl FnOnce(Call, I) -> Fut,
    ) -> S3Result<S3Response<O>>
    where
        Fut: Future<Output = Result<O, ApiError>>,
    {
        let rid = request_id(&req);
        let caller = call::caller(&self.keyring, &req)?;
        let target = op.recorded.then(|| target(&req.input));
        let cx = Call {
            caller: caller.clone(),
            store: Arc::clone(&self.store),
            trailers: req.trailing_headers.clone(),
            trailer: req
                .headers
                .get("x-amz-trailer")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            headers: req.headers.clone(),
            body_digests: req
                .extensions
                .get::<super::batch_delete::BodyDigests>()
                .cloned(),
            confidential: req
                .extensions
                .get::<super::customer::Transport>()
                .is_some_and(|t| t.confidential),
        };
        let result = handler(cx, req.input).await.map_err(S3Error::from);
        if let Some(t) = target {
            record(
                &self.trail,
                op.name,
                &caller,
                &rid,
                &t,
                result.as_ref().err(),
            );
        }
        result.map(S3Response::new)
    }
}

/// Records one call's outcome in the trail.
pub fn record(
    trail: &audit::Trail,
    event_name: &str,
    caller: &Caller,
    rid: &str,
    target: &Target,
    err: Option<&S3Error>,
) {
    let principal = match caller {
        Caller::Anonymous => None,
        Caller::Signed { principal, .. } => Some(principal.as_str()),
    };
    trail.record(&S3Event {
        event_name,
        principal,
        bucket: target.bucket.as_deref(),
        key: target.key.as_deref(),
        request_id: rid,
        error: err.map(|e| (e.code().as_str(), e.message().unwrap_or(""))),
    });
}

/// Expands the table into [`OPERATIONS`] and the `s3s::S3` implementation, one method per
/// row, each a call of [`ObjectService::run`].
macro_rules! operations {
    ($(
        $method:ident $name:literal ($input:ident -> $output:ident)
            recorded: $recorded:literal, anonymous: $anonymous:literal,
            target: [$($field:ident),*] => $handler:path;
    )*) => {
        /// Every operation atrest serves.
        pub const OPERATIONS: &[Operation] = &[$(
            Operation { name: $name, recorded: $recorded, anonymous: $anonymous }
        ),*];

        #[async_trait::async_trait]
        impl s3s::S3 for ObjectService {
            $(
                async fn $method(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    const OP: Operation =
                        Operation { name: $name, recorded: $recorded, anonymous: $anonymous };
                    #[allow(unused_variables, unused_mut)]
                    let target = |i: &$input| {
                        let mut t = Target::default();
                        $( t.$field = Some(i.$field.clone()); )*
                        t
                    };
                    self.run(&OP, req, target, $handler).await
                }
            )*
        }
    };
}

operations! {
    // service
    list_buckets "ListBuckets" (ListBucketsInput -> ListBucketsOutput)
        recorded: false, anonymous: false, target: [] => service::list_buckets;
    // buckets
    create_bucket "CreateBucket" (CreateBucketInput -> CreateBucketOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket::create;
    head_bucket "HeadBucket" (HeadBucketInput -> HeadBucketOutput)
        recorded: false, anonymous: true, target: [bucket] => bucket::head;
    get_bucket_location "GetBucketLocation" (GetBucketLocationInput -> GetBucketLocationOutput)
        recorded: false, anonymous: false, target: [bucket] => bucket::location;
    delete_bucket "DeleteBucket" (DeleteBucketInput -> DeleteBucketOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket::delete;
    // bucket configuration
    put_bucket_encryption "PutBucketEncryption" (PutBucketEncryptionInput -> PutBucketEncryptionOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket_config::put_encryption;
    get_bucket_encryption "GetBucketEncryption" (GetBucketEncryptionInput -> GetBucketEncryptionOutput)
        recorded: false, anonymous: false, target: [bucket] => bucket_config::get_encryption;
    delete_bucket_encryption "DeleteBucketEncryption" (DeleteBucketEncryptionInput -> DeleteBucketEncryptionOutput)
        recorded: false, anonymous: false, target: [bucket] => bucket_config::delete_encryption;
    put_public_access_block "PutPublicAccessBlock" (PutPublicAccessBlockInput -> PutPublicAccessBlockOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket_config::put_public_access_block;
    get_public_access_block "GetPublicAccessBlock" (GetPublicAccessBlockInput -> GetPublicAccessBlockOutput)
        recorded: false, anonymous: false, target: [bucket] => bucket_config::get_public_access_block;
    delete_public_access_block "DeletePublicAccessBlock" (DeletePublicAccessBlockInput -> DeletePublicAccessBlockOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket_config::delete_public_access_block;
    put_bucket_ownership_controls "PutBucketOwnershipControls" (PutBucketOwnershipControlsInput -> PutBucketOwnershipControlsOutput)
        recorded: true, anonymous: false, target: [bucket] => bucket_config::put_ownership_controls;
    get_bucket_ownership_controls "GetBucketOwnershipControls" (GetBucketOwnershipControlsInput -> GetBucketOwnershipControlsOutput)
        recorded: false, anonymous: false, target: [bucket] => bucket_config::get_ownership_controls;
    // ACLs
    put_bucket_acl "PutBucketAcl" (PutBucketAclInput -> PutBucketAclOutput)
        recorded: true, anonymous: false, target: [bucket] => acl::put_bucket_acl;
    get_bucket_acl "GetBucketAcl" (GetBucketAclInput -> GetBucketAclOutput)
        recorded: false, anonymous: false, target: [bucket] => acl::get_bucket_acl;
    put_object_acl "PutObjectAcl" (PutObjectAclInput -> PutObjectAclOutput)
        recorded: true, anonymous: false, target: [bucket, key] => acl::put_object_acl;
    get_object_acl "GetObjectAcl" (GetObjectAclInput -> GetObjectAclOutput)
        recorded: false, anonymous: false, target: [bucket, key] => acl::get_object_acl;
    // objects
    put_object "PutObject" (PutObjectInput -> PutObjectOutput)
        recorded: true, anonymous: true, target: [bucket, key] => object::put;
    get_object "GetObject" (GetObjectInput -> GetObjectOutput)
        recorded: true, anonymous: true, target: [bucket, key] => object::get;
    head_object "HeadObject" (HeadObjectInput -> HeadObjectOutput)
        recorded: false, anonymous: true, target: [bucket, key] => object::head;
    delete_object "DeleteObject" (DeleteObjectInput -> DeleteObjectOutput)
        recorded: true, anonymous: true, target: [bucket, key] => object::delete;
    delete_objects "DeleteObjects" (DeleteObjectsInput -> DeleteObjectsOutput)
        recorded: true, anonymous: false, target: [bucket] => batch_delete::delete_objects;
    copy_object "CopyObject" (CopyObjectInput -> CopyObjectOutput)
        recorded: true, anonymous: false, target: [bucket, key] => copy::copy_object;
    // multipart uploads
    create_multipart_upload "CreateMultipartUpload" (CreateMultipartUploadInput -> CreateMultipartUploadOutput)
        recorded: true, anonymous: false, target: [bucket, key] => multipart::create;
    upload_part "UploadPart" (UploadPartInput -> UploadPartOutput)
        recorded: true, anonymous: false, target: [bucket, key] => multipart::upload_part;
    upload_part_copy "UploadPartCopy" (UploadPartCopyInput -> UploadPartCopyOutput)
        recorded: true, anonymous: false, target: [bucket, key] => multipart::upload_part_copy;
    complete_multipart_upload "CompleteMultipartUpload" (CompleteMultipartUploadInput -> CompleteMultipartUploadOutput)
        recorded: true, anonymous: false, target: [bucket, key] => multipart::complete;
    abort_multipart_upload "AbortMultipartUpload" (AbortMultipartUploadInput -> AbortMultipartUploadOutput)
        recorded: true, anonymous: false, target: [bucket, key] => multipart::abort;
    list_parts "ListParts" (ListPartsInput -> ListPartsOutput)
        recorded: false, anonymous: false, target: [bucket, key] => multipart::list_parts;
    list_multipart_uploads "ListMultipartUploads" (ListMultipartUploadsInput -> ListMultipartUploadsOutput)
        recorded: false, anonymous: false, target: [bucket] => multipart::list_uploads;
    // listing
    list_objects_v2 "ListObjectsV2" (ListObjectsV2Input -> ListObjectsV2Output)
        recorded: false, anonymous: true, target: [bucket] => listing::list_objects_v2;
    list_objects "ListObjects" (ListObjectsInput -> ListObjectsOutput)
        recorded: false, anonymous: true, target: [bucket] => listing::list_objects;
    list_object_versions "ListObjectVersions" (ListObjectVersionsInput -> ListObjectVersionsOutput)
        recorded: false, anonymous: false, target: [bucket] => listing::list_object_versions;
}

/// The table entry for an operation name, if atrest serves it.
pub fn operation(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_named_once() {
        let mut names: Vec<_> = OPERATIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(operation("PutObject").map(|o| o.recorded), Some(true));
        let anonymous: Vec<_> = OPERATIONS
            .iter()
            .filter(|o| o.anonymous)
            .map(|o| o.name)
            .collect();
        assert_eq!(
            anonymous,
            [
                "HeadBucket",
                "PutObject",
                "GetObject",
                "HeadObject",
                "DeleteObject",
                "ListObjectsV2",
                "ListObjects"
            ]
        );
        assert!(operation("PostObject").is_none());
    }
}
