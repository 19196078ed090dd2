//! One request as the operations see it: who is calling (resolved once, from the verified
//! signature) and the store, with the lookups most operations share.

use std::ops::Range;
use std::sync::Arc;

use s3s::S3Request;

use super::super::access::{self, Caller, SigVersion};
use super::super::auth::Keyring;
use super::super::meta::{BucketMeta, ObjectMeta};
use super::super::store::{Store, StoreError, StoredObject};
use super::convert::{bucket_view, object_view};
use super::error::ApiError;
use super::range_header::PreVerified;

/// Request id of the current request (set by the HTTP layer, read by the plumbing).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn request_id<T>(req: &S3Request<T>) -> String {
    req.extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

pub fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

/// The context every operation handler gets.
pub struct Call {
    pub caller: Caller,
    pub store: Arc<Store>,
    /// The trailers of an `aws-chunked` request body, readable once the body has ended.
    pub trailers: Option<s3s::TrailingHeaders>,
    /// `x-amz-trailer`: the trailing header an `aws-chunked` body declares (`digest.rs`).
    pub trailer: Option<String>,
    /// The request's headers, for what s3s's inputs do not carry (a batch delete's
    /// `Content-MD5` and `x-amz-checksum-*`).
    pub headers: hyper::HeaderMap,
    /// The digests of an XML request body s3s has read whole (`batch_delete.rs`).
    pub body_digests: Option<super::batch_delete::BodyDigests>,
    /// Whether the request came over TLS or to a loopback endpoint (SSE-C needs one).
    pub confidential: bool,
}

/// The caller of a request whose signature s3s has verified (or that carries none).
pub fn caller<T>(keyring: &Keyring, req: &S3Request<T>) -> Result<Caller, ApiError> {
    // The second pass of a request whose Range header was rewritten: s3s verified its
    // signature on the first (range_header.rs).
    if let Some(pre) = req.extensions.get::<PreVerified>() {
        return match &pre.access_key {
            None => Ok(Caller::Anonymous),
            Some(id) => {
                let key = keyring.lookup(id)?.ok_or(access::Denial::AccessDenied)?;
                Ok(Caller::signed(&key.principal, pre.sig))
            }
        };
    }
    let Some(creds) = &req.credentials else {
        return Ok(Caller::Anonymous);
    };
    let key = keyring
        .lookup(&creds.access_key)?
        .ok_or(access::Denial::AccessDenied)?;
    check_presigned_expiry(req.uri.query())?;
    Ok(Caller::signed(
        &key.principal,
        sig_version(&req.headers, &req.uri),
    ))
}

/// S3 refuses presigned URLs valid for more than seven days, whatever their signature
/// says (the signature library checks only that they have not yet expired).
pub fn check_presigned_expiry(query: Option<&str>) -> Result<(), ApiError> {
    const MAX_EXPIRES: u64 = 7 * 24 * 3600;
    let Some(q) = query else { return Ok(()) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("X-Amz-Expires=") {
            return match v.parse::<u64>() {
                Ok(n) if n <= MAX_EXPIRES => Ok(()),
                _ => Err(ApiError::refused(
                    "AuthorizationQueryParametersError",
                    400,
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                )),
            };
        }
    }
    Ok(())
}

/// The signature version of a request `s3s` has verified (same order s3s checks them in).
pub fn sig_version(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> SigVersion {
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

impl Call {
    /// The principal the store records as the reader or writer.
    pub fn principal(&self) -> String {
        match &self.caller {
            Caller::Signed { principal, .. } => principal.clone(),
            Caller::Anonymous => "anonymous".to_string(),
        }
    }

    /// Runs `f` on the store in the blocking pool (file I/O and KMS calls never run on
    /// the async threads).
    pub async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<Store>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.store);
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketMeta, ApiError> {
        let name = name.to_string();
        self.on_store(move |store| store.get_bucket(&name)).await
    }

    pub async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketMeta) + Send + 'static,
    ) -> Result<BucketMeta, ApiError> {
        let name = name.to_string();
        self.on_store(move |store| store.update_bucket(&name, change))
            .await
    }

    /// The bucket, if the caller may administer it.
    pub async fn admin_bucket(&self, name: &str) -> Result<BucketMeta, ApiError> {
        let b = self.bucket(name).await?;
        access::check_bucket_admin(&self.caller, &bucket_view(&b))?;
        Ok(b)
    }

    /// Loads an object for a read of the bytes `span_of(meta)` (only the data files under
    /// them are opened), applying S3's rule that callers who may not list the bucket learn
    /// nothing about missing keys (403, not 404).
    pub async fn object_for_read(
        &self,
        bucket: &BucketMeta,
        key: &str,
        span_of: impl Fn(&ObjectMeta) -> Range<u64> + Send + 'static,
    ) -> Result<StoredObject, ApiError> {
        let (b, k) = (bucket.name.clone(), key.to_string());
        match self
            .on_store(move |store| store.load_object(&b, &k, span_of))
            .await
        {
            Ok(o) => {
                access::check_read_object(
                    &self.caller,
                    &bucket_view(bucket),
                    &object_view(&o.meta),
                )?;
                Ok(o)
            }
            Err(ApiError::Store {
                source: StoreError::NoSuchKey,
                ..
            }) => {
                access::check_list_bucket(&self.caller, &bucket_view(bucket))?;
                Err(StoreError::NoSuchKey.into())
            }
            Err(e) => Err(e),
        }
    }
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
            let e = s3s::S3Error::from(check_presigned_expiry(Some(bad)).unwrap_err());
            assert_eq!(
                e.code().as_str(),
                "AuthorizationQueryParametersError",
                "{bad}"
            );
        }
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
}
