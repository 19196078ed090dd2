//! The object service's trail hook.
//!
//! kmsd records the KMS side of every object operation (`GenerateDataKey` on upload,
//! `Decrypt` on download, with the principal, key and `aws:s3:arn` context): that is
//! what the lab's Task 5 looks up. Of the S3 calls themselves, the bucket-level ones
//! (`CreateBucket`, `PutBucketEncryption`, `PutPublicAccessBlock`, ...) are management
//! events and go to kmsd's trail through `RecordEvent`, as CloudTrail's event history
//! shows them. Object reads and writes are data events, which AWS keeps out of the event
//! history unless a trail opts in; here they are `tracing` events (target
//! `atrest::s3::audit`), so `atrest s3 serve`'s log answers "who read this object".

use std::path::PathBuf;

use kmsd::protocol::{RecordEventRequest, ViaService};

/// The service principal the object store speaks as.
pub const S3_SERVICE: &str = "s3.amazonaws.com";

/// One S3 API call.
#[derive(Debug, Clone)]
pub struct S3Event<'a> {
    /// `PutObject`, `GetObject`, `CreateBucket`, ...
    pub event_name: &'a str,
    /// The authenticated principal, `None` for anonymous requests.
    pub principal: Option<&'a str>,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub request_id: &'a str,
    /// AWS error code and message if the call failed.
    pub error: Option<(&'a str, &'a str)>,
}

/// Is this a management event (CloudTrail's event history) rather than a data event?
/// Object calls, the multipart ones included, are data events, as in CloudTrail.
pub fn is_management_event(event_name: &str) -> bool {
    const MULTIPART: [&str; 7] = [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "ListParts",
        "ListMultipartUploads",
    ];
    !event_name.contains("Object") && !MULTIPART.contains(&event_name)
}

/// Where S3 events go.
pub struct Trail {
    /// kmsd's socket; `None` keeps every event in the log only (servers built
    /// without a kmsd, e.g. signature tests).
    kmsd: Option<PathBuf>,
}

impl Trail {
    pub fn kmsd(socket: impl Into<PathBuf>) -> Trail {
        Trail {
            kmsd: Some(socket.into()),
        }
    }

    pub fn log_only() -> Trail {
        Trail { kmsd: None }
    }

    /// Logs `event`, and records it in kmsd's trail when it is a signed management
    /// event. A trail failure is logged, not raised: the bucket change has been made,
    /// and every key use it implies is a kmsd call that kmsd itself refuses when it
    /// cannot record it.
    pub fn record(&self, event: &S3Event<'_>) {
        tracing::info!(
            target: "atrest::s3::audit",
            event_source = S3_SERVICE,
            event_name = event.event_name,
            principal = event.principal.unwrap_or("anonymous"),
            bucket = event.bucket.unwrap_or(""),
            key = event.key.unwrap_or(""),
            request_id = event.request_id,
            error_code = event.error.map(|e| e.0).unwrap_or(""),
            "s3 event"
        );
        let (Some(socket), Some(principal)) = (&self.kmsd, event.principal) else {
            return;
        };
        if !is_management_event(event.event_name) {
            return;
        }
        let send = || {
            kmsd::client::KmsClient::connect(socket).and_then(|c| {
                c.acting_as(principal)
                    .via(ViaService {
                        service: S3_SERVICE.into(),
                        on_behalf_of: Some(principal.to_string()),
                        grant_is_for_aws_resource: false,
                    })
                    .record_event(record_request(event, principal))
            })
        };
        // A blocking socket call from an async handler: tell the runtime, so the
        // worker's other tasks move to another thread meanwhile (these are rare
        // bucket-level calls, and the reply should follow the trail record).
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let res = if multi_thread {
            tokio::task::block_in_place(send)
        } else {
            send()
        };
        if let Err(e) = res {
            tracing::error!(
                event = event.event_name,
                principal,
                "cannot record the s3 event in the trail: {e}"
            );
        }
    }
}

/// The RecordEvent request for a signed S3 event: CloudTrail's `requestParameters`
/// (`bucketName`, `key`) and the bucket as the resource.
pub fn record_request(event: &S3Event<'_>, principal: &str) -> RecordEventRequest {
    let mut params = serde_json::Map::new();
    if let Some(b) = event.bucket {
        params.insert("bucketName".into(), b.into());
    }
    if let Some(k) = event.key {
        params.insert("key".into(), k.into());
    }
    RecordEventRequest {
        event_source: S3_SERVICE.into(),
        event_name: event.event_name.to_string(),
        principal: Some(principal.to_string()),
        request_parameters_json: Some(serde_json::Value::Object(params).to_string()),
        response_elements_json: None,
        error_code: event.error.map(|e| e.0.to_string()),
        error_message: event.error.map(|e| e.1.to_string()),
        read_only: false,
        resources: event
            .bucket
            .map(|b| ("AWS::S3::Bucket".to_string(), format!("arn:aws:s3:::{b}")))
            .into_iter()
            .collect(),
        user_agent: None,
        source_ip_address: None,
        access_key_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_calls_are_management_events_object_calls_are_data_events() {
        for m in [
            "CreateBucket",
            "DeleteBucket",
            "PutBucketEncryption",
            "PutPublicAccessBlock",
            "PutBucketOwnershipControls",
            "PutBucketAcl",
        ] {
            assert!(is_management_event(m), "{m}");
        }
        for d in [
            "PutObject",
            "GetObject",
            "DeleteObject",
            "PutObjectAcl",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "ListMultipartUploads",
        ] {
            assert!(!is_management_event(d), "{d}");
        }
    }

    #[test]
    fn request_names_bucket_and_error() {
        let e = S3Event {
            event_name: "PutBucketEncryption",
            principal: Some("arn:aws:iam::111122223333:role/voclabs"),
            bucket: Some("b1"),
            key: None,
            request_id: "R",
            error: Some(("AccessDenied", "Access Denied")),
        };
        let r = record_request(&e, "arn:aws:iam::111122223333:role/voclabs");
        assert_eq!(r.event_source, "s3.amazonaws.com");
        assert_eq!(
            r.request_parameters_json.as_deref(),
            Some(r#"{"bucketName":"b1"}"#)
        );
        assert_eq!(r.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(
            r.resources,
            vec![("AWS::S3::Bucket".to_string(), "arn:aws:s3:::b1".to_string())]
        );
    }
}
