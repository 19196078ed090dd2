//! Access keys bound to principals, and SigV4 signing for atrest's own clients.
//!
//! The endpoint verifies signatures with `s3s` (SigV4 header and presigned, SigV2); it asks
//! the [`Keyring`] for the secret and principal of an access key. The keys themselves live
//! with kmsd (`HOME/kms/access-keys.json`, one store for every service); the AWS endpoint
//! gives the keyring a [`KeySource`] that asks kmsd on every request, so a deleted key stops
//! working at once. The CLI signs with [`sign`] (the `aws-sigv4` crate), which is checked
//! against AWS's SigV4 test suite.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The region atrest's endpoint signs and verifies in.
pub const REGION: &str = "us-east-1";

/// One access key pair and the principal it authenticates as.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot get an access key from kmsd: {0}")]
    Kmsd(#[from] kmsd::client::ClientError),
    #[error("kmsd sent an access key secret that is not UTF-8")]
    BadSecret,
    #[error("cannot sign request: {0}")]
    Signing(String),
}

/// The caller's own access key for the endpoint (the one `atrest env` prints), acting as
/// `principal` if given: kmsd makes it on first use, after checking that this uid may act
/// as `principal` (the config's `may_act_as`).
pub fn own_access_key(
    kmsd_socket: &std::path::Path,
    principal: Option<&str>,
) -> Result<AccessKey, AuthError> {
    let mut client = kmsd::client::KmsClient::connect(kmsd_socket)?;
    if let Some(p) = principal {
        client = client.acting_as(p);
    }
    let k = client.ensure_access_key()?;
    let secret =
        String::from_utf8(k.secret_access_key.to_vec()).map_err(|_| AuthError::BadSecret)?;
    Ok(AccessKey {
        access_key_id: k.access_key_id,
        secret_access_key: secret,
        principal: k.principal_arn,
    })
}

/// The key service could not be asked (kmsd down or restarting). Not an answer about the
/// key: S3 callers get a retryable 503 `ServiceUnavailable`, never `InvalidAccessKeyId`,
/// which tells a client its credentials are wrong and is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key service cannot be reached")]
pub struct KeysUnavailable;

/// Where the keyring finds a key: blocking, called once or twice per signed request.
pub trait KeySource: Send + Sync {
    /// The key with this id: `Ok(None)` if it does not exist or is not active, `Err` if
    /// the key service cannot answer.
    fn lookup(&self, access_key_id: &str) -> Result<Option<AccessKey>, KeysUnavailable>;
}

/// A fixed set of keys (in-process tests of the object service).
impl KeySource for Vec<AccessKey> {
    fn lookup(&self, access_key_id: &str) -> Result<Option<AccessKey>, KeysUnavailable> {
        Ok(self
            .iter()
            .find(|k| k.access_key_id == access_key_id)
            .cloned())
    }
}

/// The object service's view of the access keys.
#[derive(Clone)]
pub struct Keyring {
    source: Arc<dyn KeySource>,
}

impl Keyring {
    pub fn new(source: Arc<dyn KeySource>) -> Keyring {
        Keyring { source }
    }

    /// A keyring over a fixed set of keys.
    pub fn fixed(keys: Vec<AccessKey>) -> Keyring {
        Keyring::new(Arc::new(keys))
    }

    /// The key pair for an access key id, if it authenticates.
    pub fn lookup(&self, access_key_id: &str) -> Result<Option<AccessKey>, KeysUnavailable> {
        self.source.lookup(access_key_id)
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keyring {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        let source = Arc::clone(&self.source);
        let id = access_key.to_string();
        match tokio::task::spawn_blocking(move || source.lookup(&id)).await {
            Ok(Ok(Some(k))) => Ok(s3s::auth::SecretKey::from(k.secret_access_key)),
            Ok(Ok(None)) => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Ok(Err(KeysUnavailable)) => Err(s3s::s3_error!(
                ServiceUnavailable,
                "Service is unable to handle request."
            )),
            Err(e) => Err(s3s::s3_error!(e, InternalError)),
        }
    }
}

/// How to sign: S3's rules by default; the test suite varies them.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub service: String,
    pub region: String,
    /// Normalize `.`/`..`/`//` in the path before signing (S3: no).
    pub normalize_path: bool,
    /// Percent-encode the path a second time (S3: no).
    pub double_encode: bool,
    /// Send `x-amz-content-sha256` (S3: yes).
    pub content_sha256_header: bool,
    /// `Some` for a presigned URL (query-string auth) valid this long.
    pub presign_expires: Option<Duration>,
}

impl SigningConfig {
    pub fn s3() -> Self {
        SigningConfig {
            service: "s3".into(),
            region: REGION.into(),
            normalize_path: false,
            double_encode: false,
            content_sha256_header: true,
            presign_expires: None,
        }
    }
}

/// The payload as the signature covers it.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    /// `UNSIGNED-PAYLOAD`, for streamed uploads and presigned URLs.
    Unsigned,
}

/// What signing adds to a request.
#[derive(Debug, Clone, Default)]
pub struct Signed {
    /// Headers to add (`authorization`, `x-amz-date`, `x-amz-content-sha256`, ...).
    pub headers: Vec<(String, String)>,
    /// Query parameters to append (presigned URLs), already in signing order.
    pub query: Vec<(String, String)>,
    pub signature: String,
}

/// One request to sign. `url` must already be percent-encoded; `headers` must include every
/// header that will be sent and signed (the host comes from the URL).
#[derive(Debug, Clone, Copy)]
pub struct ToSign<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub payload: Payload<'a>,
    pub time: SystemTime,
    pub session_token: Option<&'a str>,
}

/// Signs a request with SigV4.
pub fn sign(cfg: &SigningConfig, key: &AccessKey, req: ToSign<'_>) -> Result<Signed, AuthError> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode,
    };

    let identity = aws_credential_types::Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.clone(),
        req.session_token.map(str::to_string),
        None,
        "atrest-access-keys",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = if cfg.double_encode {
        PercentEncodingMode::Double
    } else {
        PercentEncodingMode::Single
    };
    settings.uri_path_normalization_mode = if cfg.normalize_path {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    settings.payload_checksum_kind = if cfg.content_sha256_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    if let Some(exp) = cfg.presign_expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(exp);
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name(&cfg.service)
        .time(req.time)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into();
    let body = match req.payload {
        Payload::Bytes(b) => SignableBody::Bytes(b),
        Payload::Unsigned => SignableBody::UnsignedPayload,
    };
    let request = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .map_err(|e| AuthError::Signing(e.to_string()))?;
    let (instructions, signature) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into_parts();
    let (hdrs, query) = instructions.into_parts();
    Ok(Signed {
        headers: hdrs
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect(),
        query: query
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect(),
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_keyring_finds_its_keys_and_hides_secrets() {
        let k = AccessKey {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
        };
        let ring = Keyring::fixed(vec![k.clone()]);
        assert_eq!(ring.lookup("AKIAIOSFODNN7EXAMPLE"), Ok(Some(k.clone())));
        assert_eq!(ring.lookup("AKIANOTAKEY"), Ok(None));
        assert!(!format!("{k:?}").contains(&k.secret_access_key));
    }

    /// A key service that cannot be reached (kmsd restarting).
    struct Down;

    impl KeySource for Down {
        fn lookup(&self, _: &str) -> Result<Option<AccessKey>, KeysUnavailable> {
            Err(KeysUnavailable)
        }
    }

    #[tokio::test]
    async fn an_unreachable_key_service_is_a_retryable_503_not_an_unknown_key() {
        use s3s::auth::S3Auth;
        let down = Keyring::new(Arc::new(Down));
        let Err(e) = down.get_secret_key("AKIAIOSFODNN7EXAMPLE").await else {
            panic!("a key service that cannot answer authenticated a key");
        };
        assert_eq!(*e.code(), s3s::S3ErrorCode::ServiceUnavailable);
        assert_eq!(
            e.status_code(),
            Some(hyper::StatusCode::SERVICE_UNAVAILABLE)
        );
        let none = Keyring::fixed(Vec::new());
        let Err(e) = none.get_secret_key("AKIANOTAKEY").await else {
            panic!("an unknown key authenticated");
        };
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidAccessKeyId);
    }
}
