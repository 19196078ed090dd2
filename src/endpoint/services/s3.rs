//! S3 on the endpoint's port: the object service (`crate::s3`) in process, behind the
//! same listener, its SigV4 checked by `s3s` with secrets kmsd resolves ([`KmsdKeys`]),
//! so S3 and every other service accept the same access keys.

use std::sync::Arc;

use crate::endpoint::credentials::Kmsd;
use crate::endpoint::{Body, Endpoint};
use crate::s3::auth::{AccessKey, KeySource, Keyring, KeysUnavailable};
use crate::s3::kms::KmsdDataKeys;
use crate::s3::store::{Store, StoreError};

/// kmsd as the object service's key source: asked on every request (no cache).
pub struct KmsdKeys(pub Arc<Kmsd>);

impl KeySource for KmsdKeys {
    fn lookup(&self, access_key_id: &str) -> Result<Option<AccessKey>, KeysUnavailable> {
        let r = match self
            .0
            .blocking(|c| c.resolve_access_key(access_key_id, None))
        {
            Ok(r) => r,
            // kmsd answered: the key does not exist or is not active.
            Err(e) if e.kms().is_some() => return Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "kmsd cannot resolve access keys");
                return Err(KeysUnavailable);
            }
        };
        let Ok(secret_access_key) = String::from_utf8(r.secret_access_key.to_vec()) else {
            return Ok(None);
        };
        Ok(Some(AccessKey {
            access_key_id: r.access_key_id,
            secret_access_key,
            principal: r.principal_arn,
        }))
    }
}

/// Opens the object store of `layout` and builds the S3 service over it.
pub fn open(
    layout: &plumbing::home::Layout,
    kmsd: &Arc<Kmsd>,
) -> Result<s3s::service::S3Service, StoreError> {
    let data_keys = Arc::new(KmsdDataKeys::new(kmsd.socket().to_path_buf()));
    let store = Store::open(&layout.s3_dir(), data_keys)?;
    let keyring = Arc::new(Keyring::new(Arc::new(KmsdKeys(Arc::clone(kmsd)))));
    Ok(crate::s3::http::build_service(
        store,
        keyring,
        crate::s3::audit::Trail::kmsd(kmsd.socket().to_path_buf()),
    ))
}

/// Serves one S3 request.
pub async fn handle(
    ep: &Endpoint,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    match &ep.s3 {
        Some(svc) => crate::s3::http::handle(svc, req.map(s3s::Body::from)).await,
        None => crate::endpoint::respond(
            501,
            "application/xml",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NotImplemented</Code><Message>This endpoint does not serve S3</Message></Error>".to_vec(),
            &crate::endpoint::request_id(),
        ),
    }
}
