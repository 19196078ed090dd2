//! The object service's trail hook.
//!
//! kmsd already records the KMS side of every object operation (`GenerateDataKey` on upload,
//! `Decrypt` on download, with the principal, key and `aws:s3:arn` context), which is what the
//! lab's Task 5 looks up. The S3 data events themselves (`PutObject`, `GetObject`, ...) are
//! reported here; until the trail library is wired in, this emits them as structured
//! `tracing` events (target `atrest::s3::audit`), so the call sites are final.

/// One S3 API call, shaped like a CloudTrail S3 data event.
#[derive(Debug, Clone)]
pub struct S3Event<'a> {
    /// `PutObject`, `GetObject`, `CreateBucket`, ...
    pub event_name: &'a str,
    /// The authenticated principal, `None` for anonymous requests.
    pub principal: Option<&'a str>,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub request_id: &'a str,
    /// AWS error code if the call failed.
    pub error_code: Option<&'a str>,
    /// `AES256` / `aws:kms` and key ARN, for object writes and reads.
    pub sse: Option<&'a str>,
    pub kms_key_arn: Option<&'a str>,
}

/// Records an S3 event in the trail (see the module comment for the current wiring).
pub fn record_s3_event(event: &S3Event<'_>) {
    tracing::info!(
        target: "atrest::s3::audit",
        event_source = "s3.amazonaws.com",
        event_name = event.event_name,
        principal = event.principal.unwrap_or("anonymous"),
        bucket = event.bucket.unwrap_or(""),
        key = event.key.unwrap_or(""),
        request_id = event.request_id,
        error_code = event.error_code.unwrap_or(""),
        sse = event.sse.unwrap_or(""),
        kms_key_arn = event.kms_key_arn.unwrap_or(""),
        "s3 event"
    );
}
