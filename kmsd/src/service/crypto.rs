//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(+WithoutPlaintext).
//!
//! The hot path takes the state's read lock only to clone an `Arc<KeyEntry>`; the
//! AES-GCM cipher of each backing version is initialized once when the key loads.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::authz::RequestContext;
use super::{rules, Call, Caller, KeyEntry, KeyService};
use crate::api::{
    Blob, DataKeyMembers, DataKeySpec, DecryptRequest, DecryptResponse, EncryptRequest,
    EncryptResponse, EncryptionContext, ErrorCode, GenerateDataKeyRequest, GenerateDataKeyResponse,
    GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse, Handle,
    KmsError, ReEncryptRequest, ReEncryptResponse, SecretBlob, SYMMETRIC_DEFAULT,
};
use crate::blob;

pub const MAX_PLAINTEXT: usize = 4096;
pub const MAX_CIPHERTEXT: usize = 6144;
pub const MAX_DATA_KEY_BYTES: i32 = 1024;

fn check_algorithm(alg: Option<&str>) -> Result<(), KmsError> {
    match alg {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other) => Err(KmsError::new(
            ErrorCode::InvalidKeyUsageException,
            format!("The encryption algorithm {other} is not supported by a SYMMETRIC_DEFAULT key"),
        )),
    }
}

fn check_ciphertext_len(field: &str, blob: &[u8]) -> Result<(), KmsError> {
    if blob.is_empty() {
        return Err(KmsError::constraint(
            field,
            "Member must have length greater than or equal to 1",
        ));
    }
    if blob.len() > MAX_CIPHERTEXT {
        return Err(KmsError::constraint(
            field,
            "Member must have length less than or equal to 6144",
        ));
    }
    Ok(())
}

/// Seals `plaintext` with `key`'s newest backing version.
fn seal_with(key: &KeyEntry, ctx: &EncryptionContext, plaintext: &[u8]) -> Result<Blob, KmsError> {
    let (version, cipher) = key
        .current()
        .ok_or_else(|| KmsError::internal("key has no backing key material"))?;
    blob::seal(cipher, &key.arn, version, ctx, plaintext)
        .map(Blob)
        .map_err(|_| KmsError::internal("encryption failed"))
}

impl KeyService {
    /// Resolves, authorizes and state-checks a key for a cryptographic `action`.
    fn usable_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        ctx: &RequestContext<'_>,
        key_arn: &mut Option<String>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        self.ensure_managed_key(caller, key_id)?;
        let key = self.resolve(caller, key_id)?;
        *key_arn = Some(key.arn.clone());
        self.authorize(caller, action, Some(&key), ctx)?;
        rules::check(action, &key)?;
        Ok(key)
    }

    /// A fresh data key sealed under `key_id`: `(ciphertext, plaintext, key ARN)`.
    fn new_data_key(
        &self,
        cx: &mut Call<'_>,
        p: DataKeyMembers<'_>,
        action: &str,
    ) -> Result<(Blob, SecretBlob, String), KmsError> {
        let len = data_key_len(p.key_spec, p.number_of_bytes)?;
        let ctx = RequestContext {
            encryption_context: Some(p.encryption_context),
            grant_tokens: p.grant_tokens,
            create_grant: None,
        };
        let key = self.usable_key(cx.caller, p.key_id, action, &ctx, &mut cx.key_arn)?;
        let mut plaintext = Zeroizing::new(vec![0u8; len]);
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), plaintext.as_mut_slice());
        let ciphertext_blob = seal_with(&key, p.encryption_context, &plaintext)?;
        Ok((ciphertext_blob, SecretBlob(plaintext), key.arn.clone()))
    }
}

impl Handle<Call<'_>, EncryptRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: EncryptRequest) -> Result<EncryptResponse, KmsError> {
        if req.plaintext.is_empty() {
            return Err(KmsError::constraint(
                "plaintext",
                "Member must have length greater than or equal to 1",
            ));
        }
        if req.plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::constraint(
                "plaintext",
                "Member must have length less than or equal to 4096",
            ));
        }
        check_algorithm(req.encryption_algorithm.as_deref())?;
        let ctx = RequestContext {
            encryption_context: Some(&req.encryption_context),
            grant_tokens: &req.grant_tokens,
            create_grant: None,
        };
        let key = self.usable_key(cx.caller, &req.key_id, "kms:Encrypt", &ctx, &mut cx.key_arn)?;
        let ciphertext_blob = seal_with(&key, &req.encryption_context, &req.plaintext)?;
        Ok(EncryptResponse {
            ciphertext_blob,
            key_id: key.arn.clone(),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }
}

impl KeyService {
    /// The Decrypt core shared with ReEncrypt: finds the key from the blob itself
    /// (before any state or authorization check), checks a caller-given key ID
    /// matches, authorizes `action`, checks the key state, then authenticates.
    fn open_blob(
        &self,
        caller: &Caller,
        ciphertext: &[u8],
        rctx: &RequestContext<'_>,
        given_key_id: Option<&str>,
        action: &str,
        key_arn: &mut Option<String>,
    ) -> Result<(Arc<KeyEntry>, Zeroizing<Vec<u8>>), KmsError> {
        let empty = EncryptionContext::new();
        let ctx = rctx.encryption_context.unwrap_or(&empty);
        let header = blob::parse(ciphertext).map_err(|_| KmsError::invalid_ciphertext())?;
        let key = {
            let state = self.read();
            let key_id = header
                .key_arn
                .rsplit_once(":key/")
                .map(|(_, id)| id)
                .ok_or_else(KmsError::invalid_ciphertext)?;
            let key = state
                .keys
                .get(key_id)
                .filter(|k| k.arn == header.key_arn)
                .cloned()
                .ok_or_else(KmsError::invalid_ciphertext)?;
            if let Some(given) = given_key_id {
                let named = self.resolve_in(&state, caller, given)?;
                if named.record.key_id != key.record.key_id {
                    return Err(KmsError::new(
                        ErrorCode::IncorrectKeyException,
                        "The key ID in the request does not identify a CMK that can perform this operation.",
                    ));
                }
            }
            key
        };
        *key_arn = Some(key.arn.clone());
        self.authorize(caller, action, Some(&key), rctx)?;
        rules::check(action, &key)?;
        let cipher = key
            .version(header.backing_version)
            .ok_or_else(KmsError::invalid_ciphertext)?;
        let plaintext =
            blob::open(cipher, &header, ctx).map_err(|_| KmsError::invalid_ciphertext())?;
        Ok((key, plaintext))
    }
}

impl Handle<Call<'_>, DecryptRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: DecryptRequest) -> Result<DecryptResponse, KmsError> {
        check_ciphertext_len("ciphertextBlob", &req.ciphertext_blob)?;
        check_algorithm(req.encryption_algorithm.as_deref())?;
        let (key, plaintext) = self.open_blob(
            cx.caller,
            &req.ciphertext_blob,
            &RequestContext {
                encryption_context: Some(&req.encryption_context),
                grant_tokens: &req.grant_tokens,
                create_grant: None,
            },
            req.key_id.as_deref(),
            "kms:Decrypt",
            &mut cx.key_arn,
        )?;
        Ok(DecryptResponse {
            key_id: key.arn.clone(),
            plaintext: SecretBlob(plaintext),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }
}

impl Handle<Call<'_>, ReEncryptRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ReEncryptRequest,
    ) -> Result<ReEncryptResponse, KmsError> {
        check_ciphertext_len("ciphertextBlob", &req.ciphertext_blob)?;
        check_algorithm(req.source_encryption_algorithm.as_deref())?;
        check_algorithm(req.destination_encryption_algorithm.as_deref())?;
        let (source, plaintext) = self.open_blob(
            cx.caller,
            &req.ciphertext_blob,
            &RequestContext {
                encryption_context: Some(&req.source_encryption_context),
                grant_tokens: &req.grant_tokens,
                create_grant: None,
            },
            req.source_key_id.as_deref(),
            "kms:ReEncryptFrom",
            &mut cx.key_arn,
        )?;
        let ctx = RequestContext {
            encryption_context: Some(&req.destination_encryption_context),
            grant_tokens: &req.grant_tokens,
            create_grant: None,
        };
        let mut dest_arn = None;
        let dest = self.usable_key(
            cx.caller,
            &req.destination_key_id,
            "kms:ReEncryptTo",
            &ctx,
            &mut dest_arn,
        )?;
        let ciphertext_blob = seal_with(&dest, &req.destination_encryption_context, &plaintext)?;
        Ok(ReEncryptResponse {
            ciphertext_blob,
            source_key_id: source.arn.clone(),
            key_id: dest.arn.clone(),
            source_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            destination_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }
}

impl Handle<Call<'_>, GenerateDataKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        let (ciphertext_blob, plaintext, key_id) =
            self.new_data_key(cx, req.members(), "kms:GenerateDataKey")?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob,
            plaintext,
            key_id,
        })
    }
}

impl Handle<Call<'_>, GenerateDataKeyWithoutPlaintextRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse, KmsError> {
        let (ciphertext_blob, _plaintext, key_id) =
            self.new_data_key(cx, req.members(), "kms:GenerateDataKeyWithoutPlaintext")?;
        Ok(GenerateDataKeyWithoutPlaintextResponse {
            ciphertext_blob,
            key_id,
        })
    }
}

/// The data key length from `KeySpec` or `NumberOfBytes` (exactly one of them).
pub fn data_key_len(spec: Option<DataKeySpec>, bytes: Option<i32>) -> Result<usize, KmsError> {
    match (spec, bytes) {
        (Some(s), None) => Ok(s.byte_len()),
        (None, Some(n)) if n < 1 => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ))),
        (None, Some(n)) if n > MAX_DATA_KEY_BYTES => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
        ))),
        (None, Some(n)) => Ok(n.unsigned_abs() as usize),
        _ => Err(KmsError::validation(
            "Please specify either number of bytes or key spec.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture};
    use super::*;
    use crate::protocol::*;
    use crate::protocol::{CreateKeyRequest, Request};

    fn create(f: &super::super::testing::Fixture) -> String {
        match f
            .svc
            .handle(&alice(), Request::CreateKey(CreateKeyRequest::default()))
            .unwrap()
        {
            Response::CreateKey(m) => m.key_metadata.key_id,
            _ => panic!(),
        }
    }

    fn ctx(k: &str, v: &str) -> EncryptionContext {
        [(k.to_string(), v.to_string())].into_iter().collect()
    }

    #[test]
    fn encrypt_decrypt_and_context() {
        let f = fixture();
        let id = create(&f);
        let Response::Encrypt(e) = f
            .svc
            .handle(
                &alice(),
                Request::Encrypt(EncryptRequest {
                    key_id: id.clone(),
                    plaintext: SecretBlob::new(b"hi".to_vec()),
                    encryption_context: ctx("a", "b"),
                    grant_tokens: vec![],
                    encryption_algorithm: None,
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        let dec = |c: EncryptionContext, key_id: Option<String>| {
            f.svc.handle(
                &alice(),
                Request::Decrypt(DecryptRequest {
                    ciphertext_blob: e.ciphertext_blob.clone(),
                    encryption_context: c,
                    key_id,
                    grant_tokens: vec![],
                    encryption_algorithm: None,
                }),
            )
        };
        let Response::Decrypt(d) = dec(ctx("a", "b"), None).unwrap() else {
            panic!()
        };
        assert_eq!(&d.plaintext[..], b"hi");
        let err = dec(ctx("a", "c"), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidCiphertextException);
        assert_eq!(err.message, "");
        let other = create(&f);
        let err = dec(ctx("a", "b"), Some(other)).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncorrectKeyException);
    }

    #[test]
    fn audit_sees_every_request_and_never_plaintext() {
        let f = fixture();
        let id = create(&f);
        f.sink.take();
        let secret = b"SECRET-PLAINTEXT-MARKER";
        let Response::Encrypt(e) = f
            .svc
            .handle(
                &alice(),
                Request::Encrypt(EncryptRequest {
                    key_id: id.clone(),
                    plaintext: SecretBlob::new(secret.to_vec()),
                    encryption_context: ctx("purpose", "audit"),
                    grant_tokens: vec![],
                    encryption_algorithm: None,
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        let Response::GenerateDataKey(g) = f
            .svc
            .handle(
                &alice(),
                Request::GenerateDataKey(GenerateDataKeyRequest {
                    key_id: id.clone(),
                    key_spec: Some(DataKeySpec::Aes256),
                    number_of_bytes: None,
                    encryption_context: EncryptionContext::new(),
                    grant_tokens: vec![],
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        let refused = f.svc.handle(
            &alice(),
            Request::Decrypt(DecryptRequest {
                ciphertext_blob: e.ciphertext_blob.clone(),
                encryption_context: EncryptionContext::new(),
                key_id: None,
                grant_tokens: vec![],
                encryption_algorithm: None,
            }),
        );
        assert!(refused.is_err());
        let events = f.sink.take();
        assert_eq!(
            events
                .iter()
                .map(|e| e.event_name.as_ref())
                .collect::<Vec<_>>(),
            vec!["Encrypt", "GenerateDataKey", "Decrypt"]
        );
        assert!(events
            .iter()
            .all(|e| e.read_only && e.response_elements.is_null()));
        assert_eq!(
            events[2].error_code.as_deref(),
            Some("InvalidCiphertextException")
        );
        assert_eq!(
            events[2].request_parameters["encryptionAlgorithm"],
            "SYMMETRIC_DEFAULT"
        );
        assert_eq!(
            events[0].request_parameters["encryptionContext"]["purpose"],
            "audit"
        );
        assert!(events
            .iter()
            .all(|ev| ev.key_arn.as_deref().is_some_and(|a| a.ends_with(&id))));
        let dump = format!("{events:?}");
        assert!(!dump.contains("SECRET-PLAINTEXT-MARKER"));
        let dk_hex = hex::encode(&g.plaintext[..]);
        let dk_b64 =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &g.plaintext[..]);
        let dk_dbg = format!("{:?}", &g.plaintext[..]);
        assert!(!dump.contains(&dk_hex) && !dump.contains(&dk_b64) && !dump.contains(&dk_dbg));
    }

    #[test]
    fn data_key_sizes() {
        assert_eq!(data_key_len(Some(DataKeySpec::Aes128), None).unwrap(), 16);
        assert_eq!(data_key_len(None, Some(64)).unwrap(), 64);
        assert!(data_key_len(None, None).is_err());
        assert!(data_key_len(Some(DataKeySpec::Aes256), Some(32)).is_err());
        assert!(data_key_len(None, Some(0)).is_err());
        assert!(data_key_len(None, Some(1025)).is_err());
    }
}
