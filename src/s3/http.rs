//! The loopback HTTP endpoint: the S3 REST API over hyper via `s3s`, which parses requests,
//! verifies SigV4 (header and presigned) and SigV2 signatures and renders XML. This module
//! implements the `s3s::S3` operations on top of [`Store`], decides access with
//! [`access`](super::access), and adds S3's `RequestId` to every response.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio::sync::mpsc;

use super::access::{self, BucketView, Caller, Denial, ObjectView, SigVersion};
use super::audit::{self, S3Event};
use super::auth::Keyring;
use super::kms::KmsFailure;
use super::meta::{
    self, BucketMeta, CannedAcl, ObjectMeta, ObjectOwnership, PublicAccessBlock, SseAlgorithm,
};
use super::store::{PutRequest, SseChoice, Store, StoreError};

/// The S3 operations atrest serves.
pub struct ObjectService {
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: audit::Trail,
}

/// Request id of the current request (set by the HTTP layer, read by operations).
#[derive(Debug, Clone)]
struct RequestId(String);

fn request_id<T>(req: &S3Request<T>) -> String {
    req.extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// S3 refuses presigned URLs valid for more than seven days, whatever their signature
/// says (the signature library checks only that they have not yet expired).
fn check_presigned_expiry(query: Option<&str>) -> S3Result<()> {
    const MAX_EXPIRES: u64 = 7 * 24 * 3600;
    let Some(q) = query else { return Ok(()) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("X-Amz-Expires=") {
            return match v.parse::<u64>() {
                Ok(n) if n <= MAX_EXPIRES => Ok(()),
                _ => Err(error(
                    "AuthorizationQueryParametersError",
                    400,
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                )),
            };
        }
    }
    Ok(())
}

fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

// ---- errors ----------------------------------------------------------------------------------

fn error(code: &str, status: u16, message: impl Into<String>) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let mut e = S3Error::with_message(code, message.into());
    if let Ok(s) = hyper::StatusCode::from_u16(status) {
        e.set_status_code(s);
    }
    e
}

fn denial(d: Denial) -> S3Error {
    error(d.code(), d.status(), d.to_string())
}

/// A KMS refusal as S3 reports it: `KMS.<Exception>` with kmsd's message; a disabled key's
/// message names the key's ARN exactly as AWS does.
fn kms_error(f: &KmsFailure, key_arn: Option<&str>) -> S3Error {
    match f.code.as_str() {
        "AccessDeniedException" => error("AccessDenied", 403, f.message.clone()),
        "KMSUnavailable" => error(
            "ServiceUnavailable",
            503,
            format!("The key service is unavailable: {}", f.message),
        ),
        "DisabledException" => {
            let msg = match key_arn {
                Some(arn) => format!("{arn} is disabled."),
                None => f.message.clone(),
            };
            error("KMS.DisabledException", 400, msg)
        }
        code => error(&format!("KMS.{code}"), 400, f.message.clone()),
    }
}

fn store_error(e: StoreError, key_arn: Option<&str>) -> S3Error {
    match &e {
        StoreError::NoSuchBucket => error("NoSuchBucket", 404, e.to_string()),
        StoreError::NoSuchKey => error("NoSuchKey", 404, e.to_string()),
        StoreError::BucketAlreadyOwnedByYou => error("BucketAlreadyOwnedByYou", 409, e.to_string()),
        StoreError::BucketAlreadyExists => error("BucketAlreadyExists", 409, e.to_string()),
        StoreError::BucketNotEmpty => error("BucketNotEmpty", 409, e.to_string()),
        StoreError::InvalidBucketName(_) => error("InvalidBucketName", 400, e.to_string()),
        StoreError::InvalidKey(why) if why.contains("1024") => {
            error("KeyTooLongError", 400, "Your key is too long")
        }
        StoreError::InvalidKey(_) => error("InvalidArgument", 400, e.to_string()),
        StoreError::EntityTooLarge => error("EntityTooLarge", 400, e.to_string()),
        StoreError::Incomplete => error(
            "IncompleteBody",
            400,
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
        ),
        StoreError::Kms(f) => kms_error(f, key_arn),
        StoreError::Integrity { .. } => {
            tracing::error!(error = %e, "object failed its integrity check");
            error(
                "InternalError",
                500,
                format!("We encountered an internal error: {e}"),
            )
        }
        StoreError::Corrupt(_)
        | StoreError::Io { .. }
        | StoreError::StoreKey(_)
        | StoreError::InUse { .. } => {
            tracing::error!(error = %e, "store error");
            error(
                "InternalError",
                500,
                "We encountered an internal error. Please try again.",
            )
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> S3Error {
    tracing::error!(error = %e, "worker task failed");
    error(
        "InternalError",
        500,
        "We encountered an internal error. Please try again.",
    )
}

/// Runs blocking store work (file I/O, KMS calls) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<Result<T, StoreError>, S3Error> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)
}

// ---- small conversions -----------------------------------------------------------------------

fn timestamp(rfc3339: &str) -> Option<Timestamp> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(Timestamp::from)
}

fn etag(meta: &ObjectMeta) -> ETag {
    ETag::Strong(meta.etag.trim_matches('"').to_string())
}

fn bucket_view(b: &BucketMeta) -> BucketView<'_> {
    BucketView {
        owner_account: &b.owner_account,
        public_access_block: b.public_access_block.unwrap_or(PublicAccessBlock::ALL_OFF),
        ownership: b.ownership,
        acl: b.acl,
    }
}

fn object_view(m: &ObjectMeta) -> ObjectView<'_> {
    ObjectView {
        owner_account: &m.owner_account,
        acl: m.acl,
        algorithm: m.protection.algorithm(),
    }
}

fn parse_acl(s: &str) -> S3Result<CannedAcl> {
    CannedAcl::parse(s)
        .ok_or_else(|| error("InvalidArgument", 400, format!("Invalid canned ACL: {s}")))
}

fn owner(account: &str) -> Owner {
    Owner {
        display_name: Some(account.to_string()),
        id: Some(account.to_string()),
    }
}

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

/// The signature version of a request `s3s` has verified (same order s3s checks them in).
fn sig_version(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> SigVersion {
    if let Some(q) = uri.query() {
        let has = |name: &str| q.split('&').any(|p| p.split('=').next() == Some(name));
        if has("Signature") {
            return SigVersion::V2;
        }
        if has("X-Amz-Signature") {
            return SigVersion::V4;
        }
    }
    match headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(a) if a.starts_with("AWS ") => SigVersion::V2,
        _ => SigVersion::V4,
    }
}

impl ObjectService {
    pub fn new(store: Arc<Store>, keyring: Arc<Keyring>, trail: audit::Trail) -> Self {
        ObjectService {
            store,
            keyring,
            trail,
        }
    }

    fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Caller> {
        let Some(creds) = &req.credentials else {
            return Ok(Caller::Anonymous);
        };
        let key = self
            .keyring
            .lookup(&creds.access_key)
            .ok_or_else(|| denial(Denial::AccessDenied))?;
        check_presigned_expiry(req.uri.query())?;
        Ok(Caller::signed(
            &key.principal,
            sig_version(&req.headers, &req.uri),
        ))
    }

    /// Runs `f` on the store in the blocking pool; a store error becomes its S3 error.
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<Store>) -> Result<T, StoreError> + Send + 'static,
    ) -> S3Result<T> {
        let store = Arc::clone(&self.store);
        blocking(move || f(&store))
            .await?
            .map_err(|e| store_error(e, None))
    }

    async fn bucket(&self, name: &str) -> S3Result<BucketMeta> {
        let name = name.to_string();
        self.on_store(move |store| store.get_bucket(&name)).await
    }

    async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketMeta) + Send + 'static,
    ) -> S3Result<BucketMeta> {
        let name = name.to_string();
        self.on_store(move |store| store.update_bucket(&name, change))
            .await
    }

    /// The bucket, if `caller` may administer it.
    async fn admin_bucket(&self, caller: &Caller, name: &str) -> S3Result<BucketMeta> {
        let b = self.bucket(name).await?;
        access::check_bucket_admin(caller, &bucket_view(&b)).map_err(denial)?;
        Ok(b)
    }

    /// Loads an object for a read, applying S3's rule that callers who may not list the
    /// bucket learn nothing about missing keys (403, not 404).
    async fn object_for_read(
        &self,
        caller: &Caller,
        bucket: &BucketMeta,
        key: &str,
    ) -> S3Result<super::store::StoredObject> {
        let store = Arc::clone(&self.store);
        let (b, k) = (bucket.name.clone(), key.to_string());
        match blocking(move || store.load_object(&b, &k)).await? {
            Ok(o) => {
                access::check_read_object(caller, &bucket_view(bucket), &object_view(&o.meta))
                    .map_err(denial)?;
                Ok(o)
            }
            Err(StoreError::NoSuchKey) => {
                access::check_list_bucket(caller, &bucket_view(bucket)).map_err(denial)?;
                Err(store_error(StoreError::NoSuchKey, None))
            }
            Err(e) => Err(store_error(e, None)),
        }
    }
}

impl ObjectService {
    fn record(
        &self,
        event_name: &str,
        caller: &Caller,
        rid: &str,
        bucket: Option<&str>,
        key: Option<&str>,
        err: Option<&S3Error>,
    ) {
        let principal = match caller {
            Caller::Anonymous => None,
            Caller::Signed { principal, .. } => Some(principal.as_str()),
        };
        self.trail.record(&S3Event {
            event_name,
            principal,
            bucket,
            key,
            request_id: rid,
            error: err.map(|e| (e.code().as_str(), e.message().unwrap_or(""))),
        });
    }

    /// Adds the outcome of one operation to the trail and passes it through.
    fn audited<T>(
        &self,
        event_name: &str,
        caller: &Caller,
        rid: &str,
        bucket: Option<&str>,
        key: Option<&str>,
        result: S3Result<T>,
    ) -> S3Result<T> {
        self.record(event_name, caller, rid, bucket, key, result.as_ref().err());
        result
    }
}

/// A plaintext body streamed from a blocking reader thread.
/// A GET body: batches of authenticated chunks from the reader thread, yielded one chunk
/// at a time.
struct ChunkStream {
    batches: mpsc::Receiver<Result<Vec<Bytes>, StoreError>>,
    pending: std::collections::VecDeque<Bytes>,
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

/// What the upload thread is told.
enum Upload {
    Data(Bytes),
    End,
}

#[async_trait::async_trait]
impl s3s::S3 for ObjectService {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            access::check_signed(&caller).map_err(denial)?;
            let acl = input
                .acl
                .as_ref()
                .map(|a| parse_acl(a.as_str()))
                .transpose()?;
            let ownership = match &input.object_ownership {
                Some(o) => Some(ObjectOwnership::parse(o.as_str()).ok_or_else(|| {
                    error(
                        "InvalidArgument",
                        400,
                        format!("Invalid ObjectOwnership: {}", o.as_str()),
                    )
                })?),
                None => None,
            };
            access::check_create_bucket_acl(acl, ownership).map_err(denial)?;
            let Caller::Signed { account, .. } = &caller else {
                return Err(denial(Denial::AccessDenied));
            };
            let store = Arc::clone(&self.store);
            let (name, account) = (input.bucket.clone(), account.clone());
            blocking(move || {
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
            .await?
            .map_err(|e| store_error(e, None))?;
            Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{}", input.bucket)),
            }))
        }
        .await;
        self.audited(
            "CreateBucket",
            &caller,
            &rid,
            Some(&input.bucket),
            None,
            result,
        )
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let caller = self.caller(&req)?;
        access::check_signed(&caller).map_err(denial)?;
        let Caller::Signed { account, .. } = &caller else {
            return Err(denial(Denial::AccessDenied));
        };
        let all = self.on_store(|store| store.list_buckets()).await?;
        let buckets = all
            .iter()
            .filter(|b| &b.owner_account == account)
            .map(|b| Bucket {
                bucket_region: Some(super::auth::REGION.to_string()),
                creation_date: timestamp(&b.created),
                name: Some(b.name.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner(account)),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let caller = self.caller(&req)?;
        let b = self.bucket(&req.input.bucket).await?;
        access::check_list_bucket(&caller, &bucket_view(&b)).map_err(denial)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(super::auth::REGION.to_string()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let name = req.input.bucket;
        let result = async {
            self.admin_bucket(&caller, &name).await?;
            let n = name.clone();
            self.on_store(move |store| store.delete_bucket(&n)).await?;
            Ok(S3Response::new(DeleteBucketOutput {}))
        }
        .await;
        self.audited("DeleteBucket", &caller, &rid, Some(&name), None, result)
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            self.admin_bucket(&caller, &input.bucket).await?;
            let rule = input
                .server_side_encryption_configuration
                .rules
                .first()
                .ok_or_else(|| error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"))?;
            let by_default = rule.apply_server_side_encryption_by_default.as_ref().ok_or_else(|| {
                error("InvalidArgument", 400, "ApplyServerSideEncryptionByDefault is required")
            })?;
            let algorithm = SseAlgorithm::parse(by_default.sse_algorithm.as_str()).ok_or_else(|| {
                error(
                    "InvalidArgument",
                    400,
                    format!("Unsupported SSEAlgorithm: {}", by_default.sse_algorithm.as_str()),
                )
            })?;
            let key = by_default.kms_master_key_id.clone();
            if key.is_some() && algorithm != SseAlgorithm::AwsKms {
                return Err(error(
                    "InvalidArgument",
                    400,
                    "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
                ));
            }
            let bucket_key = rule.bucket_key_enabled.unwrap_or(false);
            self.update_bucket(&input.bucket, move |b| {
                b.encryption = meta::BucketEncryption {
                    algorithm,
                    kms_key_id: key,
                    bucket_key_enabled: bucket_key,
                };
            })
            .await?;
            Ok(S3Response::new(PutBucketEncryptionOutput {}))
        }
        .await;
        self.audited(
            "PutBucketEncryption",
            &caller,
            &rid,
            Some(&input.bucket),
            None,
            result,
        )
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let caller = self.caller(&req)?;
        let b = self.admin_bucket(&caller, &req.input.bucket).await?;
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                kms_master_key_id: b.encryption.kms_key_id.clone(),
                sse_algorithm: ServerSideEncryption::from(
                    b.encryption.algorithm.as_str().to_string(),
                ),
            }),
            bucket_key_enabled: Some(b.encryption.bucket_key_enabled),
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        }))
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let caller = self.caller(&req)?;
        self.admin_bucket(&caller, &req.input.bucket).await?;
        self.update_bucket(&req.input.bucket, |b| {
            b.encryption = meta::BucketEncryption::default()
        })
        .await?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput {}))
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            self.admin_bucket(&caller, &input.bucket).await?;
            let c = &input.public_access_block_configuration;
            let bpa = PublicAccessBlock {
                block_public_acls: c.block_public_acls.unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
                block_public_policy: c.block_public_policy.unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
            };
            self.update_bucket(&input.bucket, move |b| b.public_access_block = Some(bpa))
                .await?;
            Ok(S3Response::new(PutPublicAccessBlockOutput {}))
        }
        .await;
        self.audited(
            "PutPublicAccessBlock",
            &caller,
            &rid,
            Some(&input.bucket),
            None,
            result,
        )
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let caller = self.caller(&req)?;
        let b = self.admin_bucket(&caller, &req.input.bucket).await?;
        let p = b.public_access_block.ok_or_else(|| {
            error(
                "NoSuchPublicAccessBlockConfiguration",
                404,
                "The public access block configuration was not found",
            )
        })?;
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(p.block_public_acls),
                block_public_policy: Some(p.block_public_policy),
                ignore_public_acls: Some(p.ignore_public_acls),
                restrict_public_buckets: Some(p.restrict_public_buckets),
            }),
        }))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let bucket = req.input.bucket;
        let result = async {
            self.admin_bucket(&caller, &bucket).await?;
            self.update_bucket(&bucket, |b| b.public_access_block = None)
                .await?;
            Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
        }
        .await;
        self.audited(
            "DeletePublicAccessBlock",
            &caller,
            &rid,
            Some(&bucket),
            None,
            result,
        )
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            self.admin_bucket(&caller, &input.bucket).await?;
            let rule =
                input.ownership_controls.rules.first().ok_or_else(|| {
                    error("MalformedXML", 400, "OwnershipControls needs one rule")
                })?;
            let o = ObjectOwnership::parse(rule.object_ownership.as_str()).ok_or_else(|| {
                error(
                    "InvalidArgument",
                    400,
                    format!(
                        "Invalid ObjectOwnership: {}",
                        rule.object_ownership.as_str()
                    ),
                )
            })?;
            self.update_bucket(&input.bucket, move |b| b.ownership = o)
                .await?;
            Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
        }
        .await;
        self.audited(
            "PutBucketOwnershipControls",
            &caller,
            &rid,
            Some(&input.bucket),
            None,
            result,
        )
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let caller = self.caller(&req)?;
        let b = self.admin_bucket(&caller, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: s3s::dto::ObjectOwnership::from(
                        b.ownership.as_str().to_string(),
                    ),
                }],
            }),
        }))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            let b = self.bucket(&input.bucket).await?;
            let acl = match &input.acl {
                Some(a) => parse_acl(a.as_str())?,
                None => return Err(not_canned()),
            };
            access::check_put_acl(&caller, &bucket_view(&b), acl).map_err(denial)?;
            self.update_bucket(&input.bucket, move |b| b.acl = acl)
                .await?;
            Ok(S3Response::new(PutBucketAclOutput {}))
        }
        .await;
        self.audited(
            "PutBucketAcl",
            &caller,
            &rid,
            Some(&input.bucket),
            None,
            result,
        )
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let caller = self.caller(&req)?;
        let b = self.admin_bucket(&caller, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants(&b.owner_account, b.acl, b.ownership.acls_enabled())),
            owner: Some(owner(&b.owner_account)),
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let (bucket_name, key) = (input.bucket.clone(), input.key.clone());
        let result = self.put_object_inner(&caller, input).await;
        self.record(
            "PutObject",
            &caller,
            &rid,
            Some(&bucket_name),
            Some(&key),
            result.as_ref().err(),
        );
        result
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = self.get_object_inner(&caller, &input).await;
        self.record(
            "GetObject",
            &caller,
            &rid,
            Some(&input.bucket),
            Some(&input.key),
            result.as_ref().err(),
        );
        result
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let caller = self.caller(&req)?;
        let b = self.bucket(&req.input.bucket).await?;
        let obj = self.object_for_read(&caller, &b, &req.input.key).await?;
        let m = &obj.meta;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: None,
            bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
            content_length: i64::try_from(m.size).ok(),
            content_type: m.content_type.parse().ok(),
            e_tag: Some(etag(m)),
            last_modified: timestamp(&m.last_modified),
            metadata: user_metadata(m),
            ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
            server_side_encryption: Some(ServerSideEncryption::from(
                m.protection.algorithm().as_str().to_string(),
            )),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let caller = self.caller(&req)?;
        let input = req.input;
        let b = self.bucket(&input.bucket).await?;
        access::check_list_bucket(&caller, &bucket_view(&b)).map_err(denial)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = usize::try_from(input.max_keys.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let token = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let start = token.clone().or_else(|| input.start_after.clone());
        let (name, p, s) = (input.bucket.clone(), prefix.clone(), start.clone());
        let (all, _) = self
            .on_store(move |store| store.list_objects(&name, &p, s.as_deref(), usize::MAX))
            .await?;
        let page = paginate(
            &all,
            &prefix,
            input.delimiter.as_deref(),
            start.as_deref(),
            max,
        );
        let contents: Vec<Object> = page
            .objects
            .iter()
            .map(|m| Object {
                e_tag: Some(etag(m)),
                key: Some(m.key.clone()),
                last_modified: timestamp(&m.last_modified),
                size: i64::try_from(m.size).ok(),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                owner: (input.fetch_owner == Some(true)).then(|| owner(&m.owner_account)),
                ..Default::default()
            })
            .collect();
        let common: Vec<CommonPrefix> = page
            .prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(p.clone()),
            })
            .collect();
        let key_count = i32::try_from(contents.len() + common.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(prefix),
            max_keys: Some(i32::try_from(max).unwrap_or(1000)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.as_deref().map(encode_token),
            contents: Some(contents),
            common_prefixes: (!common.is_empty()).then_some(common),
            delimiter: input.delimiter,
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            let b = self.bucket(&input.bucket).await?;
            access::check_write_object(&caller, &bucket_view(&b), None, SseAlgorithm::Aes256)
                .map_err(denial)?;
            let (bn, k) = (input.bucket.clone(), input.key.clone());
            self.on_store(move |store| store.delete_object(&bn, &k))
                .await?;
            Ok(S3Response::new(DeleteObjectOutput::default()))
        }
        .await;
        self.audited(
            "DeleteObject",
            &caller,
            &rid,
            Some(&input.bucket),
            Some(&input.key),
            result,
        )
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let caller = self.caller(&req)?;
        let rid = request_id(&req);
        let input = req.input;
        let result = async {
            let b = self.bucket(&input.bucket).await?;
            let acl = match &input.acl {
                Some(a) => parse_acl(a.as_str())?,
                None => return Err(not_canned()),
            };
            access::check_put_acl(&caller, &bucket_view(&b), acl).map_err(denial)?;
            let (bn, k) = (input.bucket.clone(), input.key.clone());
            self.on_store(move |store| store.set_object_acl(&bn, &k, acl))
                .await?;
            Ok(S3Response::new(PutObjectAclOutput::default()))
        }
        .await;
        self.audited(
            "PutObjectAcl",
            &caller,
            &rid,
            Some(&input.bucket),
            Some(&input.key),
            result,
        )
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let caller = self.caller(&req)?;
        let b = self.admin_bucket(&caller, &req.input.bucket).await?;
        let (bn, k) = (req.input.bucket.clone(), req.input.key.clone());
        let m = self
            .on_store(move |store| store.head_object(&bn, &k))
            .await?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(grants(&m.owner_account, m.acl, b.ownership.acls_enabled())),
            owner: Some(owner(&m.owner_account)),
            request_charged: None,
        }))
    }
}

fn not_canned() -> S3Error {
    error(
        "NotImplemented",
        501,
        "atrest supports canned ACLs only (x-amz-acl: private, public-read, ...)",
    )
}

fn user_metadata(m: &ObjectMeta) -> Option<Metadata> {
    (!m.user_metadata.is_empty()).then(|| m.user_metadata.clone().into_iter().collect())
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            error(
                "InvalidArgument",
                400,
                "The continuation token provided is incorrect",
            )
        })
}

/// One page of a listing: objects and common prefixes in key order, at most `max` entries.
struct Page<'a> {
    objects: Vec<&'a ObjectMeta>,
    prefixes: Vec<String>,
    /// Where the next page starts (the last key or common prefix returned), if truncated.
    next: Option<String>,
}

fn paginate<'a>(
    sorted: &'a [ObjectMeta],
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
) -> Page<'a> {
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        next: None,
    };
    let mut last: Option<String> = None;
    let mut count = 0usize;
    for m in sorted {
        let Some(rest) = m.key.strip_prefix(prefix) else {
            continue;
        };
        // A common prefix at or before the start point was returned on an earlier page.
        let cp = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        if let (Some(cp), Some(s)) = (&cp, start_after) {
            if s.starts_with(cp.as_str()) || cp.as_str() <= s {
                continue;
            }
        }
        if let Some(cp) = cp {
            if page.prefixes.last() == Some(&cp) {
                continue;
            }
            if count == max {
                page.next = last;
                return page;
            }
            page.prefixes.push(cp.clone());
            last = Some(cp);
        } else {
            if start_after.is_some_and(|s| m.key.as_str() <= s) {
                continue;
            }
            if count == max {
                page.next = last;
                return page;
            }
            page.objects.push(m);
            last = Some(m.key.clone());
        }
        count += 1;
    }
    page
}

impl ObjectService {
    async fn put_object_inner(
        &self,
        caller: &Caller,
        input: PutObjectInput,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let bucket = self.bucket(&input.bucket).await?;
        let acl = input
            .acl
            .as_ref()
            .map(|a| parse_acl(a.as_str()))
            .transpose()?;
        let requested = match &input.server_side_encryption {
            Some(s) => Some(SseAlgorithm::parse(s.as_str()).ok_or_else(|| {
                error(
                    "InvalidArgument",
                    400,
                    format!(
                        "The encryption method specified is not supported: {}",
                        s.as_str()
                    ),
                )
            })?),
            None => None,
        };
        if input.ssekms_key_id.is_some() && requested != Some(SseAlgorithm::AwsKms) {
            return Err(error(
                "InvalidArgument",
                400,
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            ));
        }
        if input.sse_customer_algorithm.is_some() {
            return Err(error(
                "NotImplemented",
                501,
                "SSE-C is not supported by atrest",
            ));
        }
        // Refused before a data key is made or a byte stored; the stream also stops at the
        // limit, for bodies that announce no length.
        if input
            .content_length
            .is_some_and(|n| u64::try_from(n).is_ok_and(|n| n > crate::s3::store::MAX_OBJECT_SIZE))
        {
            return Err(store_error(StoreError::EntityTooLarge, None));
        }
        let choice = SseChoice::resolve(
            &bucket,
            requested,
            input.ssekms_key_id.as_deref(),
            input.bucket_key_enabled,
        )
        .map_err(|e| store_error(e, None))?;
        access::check_write_object(caller, &bucket_view(&bucket), acl, choice.algorithm())
            .map_err(denial)?;
        let (principal, account) = match caller {
            Caller::Signed {
                principal, account, ..
            } => (principal.clone(), account.clone()),
            Caller::Anonymous => ("anonymous".to_string(), bucket.owner_account.clone()),
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
        let (b2, k2) = (bucket.clone(), input.key.clone());
        let writer = self
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
        let meta = write_task
            .await
            .map_err(join_error)?
            .map_err(|e| store_error(e, None))?;
        tracing::debug!(
            bytes = meta.size,
            body_ms = received.as_millis() as u64,
            committed_ms = started.elapsed().as_millis() as u64,
            "upload stored"
        );
        Ok(S3Response::new(PutObjectOutput {
            bucket_key_enabled: meta.protection.bucket_key_enabled().then_some(true),
            e_tag: Some(etag(&meta)),
            ssekms_key_id: meta.protection.kms_key_arn().map(str::to_string),
            server_side_encryption: Some(ServerSideEncryption::from(
                meta.protection.algorithm().as_str().to_string(),
            )),
            size: i64::try_from(meta.size).ok(),
            ..Default::default()
        }))
    }

    async fn get_object_inner(
        &self,
        caller: &Caller,
        input: &GetObjectInput,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let bucket = self.bucket(&input.bucket).await?;
        if input.range.is_some() || input.part_number.is_some() {
            return Err(error(
                "NotImplemented",
                501,
                "atrest does not serve byte ranges or parts yet",
            ));
        }
        let obj = self.object_for_read(caller, &bucket, &input.key).await?;
        let key_arn = obj.meta.protection.kms_key_arn().map(str::to_string);
        let principal = match caller {
            Caller::Signed { principal, .. } => principal.clone(),
            Caller::Anonymous => "anonymous".to_string(),
        };
        let store = Arc::clone(&self.store);
        let mut reader = blocking(move || store.open_reader(obj, &principal))
            .await?
            .map_err(|e| store_error(e, key_arn.as_deref()))?;
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
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(ChunkStream {
                batches: rx,
                pending: Default::default(),
            })),
            bucket_key_enabled: m.protection.bucket_key_enabled().then_some(true),
            content_length: i64::try_from(m.size).ok(),
            content_type: m.content_type.parse().ok(),
            e_tag: Some(etag(&m)),
            last_modified: timestamp(&m.last_modified),
            metadata: user_metadata(&m),
            ssekms_key_id: m.protection.kms_key_arn().map(str::to_string),
            server_side_encryption: Some(ServerSideEncryption::from(
                m.protection.algorithm().as_str().to_string(),
            )),
            ..Default::default()
        }))
    }
}

// ---- the service around s3s ------------------------------------------------------------------

/// Lets every request reach the operations, which decide with [`access`] (s3s's default
/// would refuse anonymous requests before S3's own rules could apply).
struct DecideInOperations;

#[async_trait::async_trait]
impl s3s::access::S3Access for DecideInOperations {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// Virtual-hosted-style addressing: `BUCKET.localhost[:port]` (and the AWS names); any other
/// host, IP literals included, is path-style.
struct LoopbackHost {
    domains: Vec<&'static str>,
}

impl s3s::host::S3Host for LoopbackHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        for d in &self.domains {
            if name == *d {
                return Ok(s3s::host::VirtualHost::new(*d));
            }
            if let Some(bucket) = name.strip_suffix(d).and_then(|b| b.strip_suffix('.')) {
                if !bucket.is_empty() {
                    return Ok(s3s::host::VirtualHost::new(*d).with_bucket(bucket));
                }
            }
        }
        Ok(s3s::host::VirtualHost::new(name))
    }
}

/// Builds the s3s service over a store and a keyring.
pub fn build_service(
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: audit::Trail,
) -> s3s::service::S3Service {
    build_service_with(store, keyring, trail, s3s::config::S3Config::default())
}

/// As [`build_service`], with explicit s3s settings (tests widen the clock-skew window to
/// verify AWS's dated example signatures).
pub fn build_service_with(
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    trail: audit::Trail,
    config: s3s::config::S3Config,
) -> s3s::service::S3Service {
    let mut b =
        s3s::service::S3ServiceBuilder::new(ObjectService::new(store, Arc::clone(&keyring), trail));
    b.set_auth(KeyringAuth(keyring));
    b.set_access(DecideInOperations);
    b.set_host(LoopbackHost {
        domains: vec![
            "s3.localhost",
            "localhost",
            "s3.us-east-1.amazonaws.com",
            "s3.amazonaws.com",
        ],
    });
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    b.build()
}

/// `Arc<Keyring>` as the s3s auth provider.
struct KeyringAuth(Arc<Keyring>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyringAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        s3s::auth::S3Auth::get_secret_key(self.0.as_ref(), access_key).await
    }
}

/// S3's messages for errors s3s raises without one.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "AccessDenied" => "Access Denied",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidURI" => "Couldn't parse the specified URI.",
        "KeyTooLongError" => "Your key is too long",
        "InvalidRequest" => "Invalid Request",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "RequestTimeTooSkewed" => "The difference between the request time and the current time is too large.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        _ => return None,
    })
}

/// Serves one request: runs s3s, then gives every response an `x-amz-request-id` and every
/// XML error a `Message` and `RequestId`, as S3 does.
pub async fn handle(
    svc: &s3s::service::S3Service,
    mut req: hyper::Request<s3s::Body>,
) -> hyper::Response<s3s::Body> {
    let rid = new_request_id();
    let is_head = req.method() == hyper::Method::HEAD;
    req.extensions_mut().insert(RequestId(rid.clone()));
    let resp = match svc.call(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "s3s failed");
            let mut r = hyper::Response::new(s3s::Body::empty());
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    };
    finish_response(resp, &rid, is_head)
}

fn finish_response(
    mut resp: hyper::Response<s3s::Body>,
    rid: &str,
    is_head: bool,
) -> hyper::Response<s3s::Body> {
    if let Ok(v) = hyper::header::HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    if resp.status().is_success() || is_head {
        return resp;
    }
    let Some(bytes) = resp.body().bytes() else {
        return resp;
    };
    let Ok(xml) = std::str::from_utf8(&bytes) else {
        return resp;
    };
    if !xml.contains("<Error>") || !xml.ends_with("</Error>") {
        return resp;
    }
    let mut xml = xml.to_string();
    if !xml.contains("<Message>") {
        let code = xml
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        if let Some(msg) = default_message(&code) {
            let at = xml
                .find("</Code>")
                .map_or(xml.len(), |i| i + "</Code>".len());
            xml.insert_str(at, &format!("<Message>{msg}</Message>"));
        }
    }
    if !xml.contains("<RequestId>") {
        let at = xml.len() - "</Error>".len();
        xml.insert_str(at, &format!("<RequestId>{rid}</RequestId>"));
    }
    let len = xml.len();
    *resp.body_mut() = s3s::Body::from(xml);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(hyper::header::CONTENT_LENGTH, v);
    }
    resp
}

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the endpoint address to {path}: {source}")]
    AddrFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "an object endpoint already serves this home at {addr} (named in {path}); stop it first"
    )]
    AlreadyServing { addr: SocketAddr, path: PathBuf },
}

/// What a failed request body means to the client. s3s checks a signed payload's
/// SHA-256 as the body streams and fails the stream on a mismatch; its error type lives
/// in a private module, so only its text can tell that case from a short body.
fn refused_body(e: &(dyn std::error::Error + 'static)) -> S3Error {
    if e.to_string().contains("Sha256Mismatch") {
        error(
            "XAmzContentSHA256Mismatch",
            400,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else {
        store_error(StoreError::Incomplete, None)
    }
}

/// The endpoint `addr_file` names, if one answers there: a second endpoint on the same
/// home would take the address file over, and the first one's exit would then delete it.
pub fn live_endpoint(addr_file: &Path) -> Option<SocketAddr> {
    let named: SocketAddr = std::fs::read_to_string(addr_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::net::TcpStream::connect_timeout(&named, std::time::Duration::from_millis(500))
        .ok()
        .map(|_| named)
}

/// Listens on `addr` (port 0: any free port), records the address it got in `addr_file`
/// atomically, and serves until `shutdown` resolves.
pub async fn serve(
    svc: s3s::service::S3Service,
    addr: SocketAddr,
    addr_file: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if let Some(addr) = live_endpoint(addr_file) {
        return Err(ServeError::AlreadyServing {
            addr,
            path: addr_file.to_path_buf(),
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    plumbing::durable::write_atomic(addr_file, format!("{local}\n").as_bytes(), 0o644).map_err(
        |source| ServeError::AddrFile {
            path: addr_file.to_path_buf(),
            source,
        },
    )?;
    tracing::info!(%local, "object endpoint listening");
    println!("atrest s3 endpoint listening on http://{local}");
    let server = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tracing::debug!(%peer, "connection");
        let svc = svc.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let svc = svc.clone();
            async move { Ok::<_, Infallible>(handle(&svc, req.map(s3s::Body::from)).await) }
        });
        let conn = server.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Only our own address: never a file that names another endpoint.
    if std::fs::read_to_string(addr_file).is_ok_and(|a| a.trim() == local.to_string()) {
        let _ = std::fs::remove_file(addr_file);
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_valid_for_more_than_a_week_are_refused() {
        assert!(check_presigned_expiry(None).is_ok());
        assert!(check_presigned_expiry(Some("X-Amz-Expires=604800&X-Amz-Date=x")).is_ok());
        for bad in [
            "X-Amz-Expires=604801",
            "a=b&X-Amz-Expires=-1",
            "X-Amz-Expires=lots",
        ] {
            let e = check_presigned_expiry(Some(bad)).unwrap_err();
            assert_eq!(
                e.code().as_str(),
                "AuthorizationQueryParametersError",
                "{bad}"
            );
        }
    }

    fn m(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            data_file: String::new(),
            size: 0,
            etag: String::new(),
            content_type: String::new(),
            last_modified: String::new(),
            owner_account: String::new(),
            acl: CannedAcl::Private,
            protection: meta::KeyProtection::StoreKey {
                wrapped_key: vec![],
            },
            nonce_prefix: [0; 7],
            chunk_size: 0,
            user_metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn listing_pages_and_groups_by_delimiter() {
        let all: Vec<_> = ["a/1", "a/2", "b", "c/x/1", "c/y", "d"]
            .iter()
            .map(|k| m(k))
            .collect();
        let p = paginate(&all, "", Some("/"), None, 1000);
        assert_eq!(p.prefixes, ["a/", "c/"]);
        assert_eq!(
            p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["b", "d"]
        );
        assert!(p.next.is_none());
        let p = paginate(&all, "", Some("/"), None, 2);
        assert_eq!(p.prefixes, ["a/"]);
        assert_eq!(p.next.as_deref(), Some("b"));
        let p2 = paginate(&all, "", Some("/"), p.next.as_deref(), 2);
        assert_eq!(p2.prefixes, ["c/"]);
        assert_eq!(
            p2.objects
                .iter()
                .map(|o| o.key.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
        assert!(p2.next.is_none());
        let p = paginate(&all, "c/", Some("/"), None, 10);
        assert_eq!(p.prefixes, ["c/x/"]);
        assert_eq!(
            p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["c/y"]
        );
        let p = paginate(&all, "", None, None, 4);
        assert_eq!(p.objects.len(), 4);
        assert_eq!(p.next.as_deref(), Some("c/x/1"));
    }

    #[test]
    fn sig_version_follows_the_request_shape() {
        let h = |v: &str| {
            let mut m = hyper::HeaderMap::new();
            m.insert(hyper::header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        let none = hyper::HeaderMap::new();
        let u = |s: &str| s.parse::<hyper::Uri>().unwrap();
        assert_eq!(sig_version(&h("AWS AKIA:sig"), &u("/b/k")), SigVersion::V2);
        assert_eq!(
            sig_version(&h("AWS4-HMAC-SHA256 Credential=x"), &u("/b/k")),
            SigVersion::V4
        );
        assert_eq!(
            sig_version(&none, &u("/b/k?AWSAccessKeyId=A&Expires=1&Signature=x")),
            SigVersion::V2
        );
        assert_eq!(
            sig_version(&none, &u("/b/k?X-Amz-Signature=x&X-Amz-Date=1")),
            SigVersion::V4
        );
    }

    #[test]
    fn error_bodies_get_message_and_request_id() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        let mut r = hyper::Response::new(s3s::Body::from(body.to_string()));
        *r.status_mut() = hyper::StatusCode::FORBIDDEN;
        let r = finish_response(r, "ABC123", false);
        let out = String::from_utf8(r.body().bytes().unwrap().to_vec()).unwrap();
        assert!(out.contains("<Message>The request signature we calculated"));
        assert!(out.ends_with("<RequestId>ABC123</RequestId></Error>"));
        assert_eq!(r.headers()["x-amz-request-id"], "ABC123");
    }
}
