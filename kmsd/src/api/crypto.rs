//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext. Handlers: `service/crypto.rs`.
//!
//! CloudTrail records their identifiers, encryption context and algorithm, never a
//! plaintext, a ciphertext or a grant token.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail;
use super::types::{Blob, DataKeySpec, EncryptionContext, SecretBlob, SYMMETRIC_DEFAULT};
use super::{Operation, Service};

/// Encrypt's and Decrypt's `requestParameters`, borrowed from the request:
/// `encryptionAlgorithm` (default `SYMMETRIC_DEFAULT`), `encryptionContext` and the
/// `keyId` given. Members in serde_json's sorted key order, so the text written
/// straight from it is the text of its `Value`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CryptoParameters<'a> {
    encryption_algorithm: &'a str,
    encryption_context: &'a EncryptionContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
}

impl<'a> CryptoParameters<'a> {
    fn new(
        key_id: Option<&'a str>,
        ctx: &'a EncryptionContext,
        algorithm: Option<&'a str>,
    ) -> Self {
        CryptoParameters {
            encryption_algorithm: algorithm.unwrap_or(SYMMETRIC_DEFAULT),
            encryption_context: ctx,
            key_id,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptRequest {
    pub key_id: String,
    /// 1 to 4096 bytes.
    pub plaintext: SecretBlob,
    #[serde(default)]
    pub encryption_context: EncryptionContext,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
    /// `SYMMETRIC_DEFAULT` (the default) only.
    #[serde(default)]
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    pub ciphertext_blob: Blob,
    /// The key ARN.
    pub key_id: String,
    pub encryption_algorithm: String,
}

impl EncryptRequest {
    fn trail_parameters(&self) -> CryptoParameters<'_> {
        CryptoParameters::new(
            Some(&self.key_id),
            &self.encryption_context,
            self.encryption_algorithm.as_deref(),
        )
    }
}

impl Operation for EncryptRequest {
    type Response = EncryptResponse;
    const NAME: &'static str = "Encrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun"];

    fn request_parameters(&self) -> Value {
        trail::value_of(&self.trail_parameters())
    }
    fn request_parameters_json(&self) -> Option<String> {
        trail::json_of(&self.trail_parameters())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptRequest {
    /// Optional in AWS's model (for `Recipient`); atrest needs it (1 to 6144 bytes).
    #[serde(default)]
    pub ciphertext_blob: Blob,
    #[serde(default)]
    pub encryption_context: EncryptionContext,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
    /// If given, must identify the key the blob was encrypted under.
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    /// The key ARN.
    pub key_id: String,
    pub plaintext: SecretBlob,
    pub encryption_algorithm: String,
}

impl DecryptRequest {
    fn trail_parameters(&self) -> CryptoParameters<'_> {
        CryptoParameters::new(
            self.key_id.as_deref(),
            &self.encryption_context,
            self.encryption_algorithm.as_deref(),
        )
    }
}

impl Operation for DecryptRequest {
    type Response = DecryptResponse;
    const NAME: &'static str = "Decrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["Recipient", "DryRun", "DryRunModifiers"];

    fn request_parameters(&self) -> Value {
        trail::value_of(&self.trail_parameters())
    }
    fn request_parameters_json(&self) -> Option<String> {
        trail::json_of(&self.trail_parameters())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptRequest {
    /// Optional in AWS's model; atrest needs it (1 to 6144 bytes).
    #[serde(default)]
    pub ciphertext_blob: Blob,
    #[serde(default)]
    pub source_encryption_context: EncryptionContext,
    #[serde(default)]
    pub source_key_id: Option<String>,
    pub destination_key_id: String,
    #[serde(default)]
    pub destination_encryption_context: EncryptionContext,
    #[serde(default)]
    pub source_encryption_algorithm: Option<String>,
    #[serde(default)]
    pub destination_encryption_algorithm: Option<String>,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResponse {
    pub ciphertext_blob: Blob,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
}

/// ReEncrypt's `requestParameters`, borrowed from the request (sorted key order,
/// as [`CryptoParameters`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReEncryptParameters<'a> {
    destination_encryption_algorithm: &'a str,
    destination_encryption_context: &'a EncryptionContext,
    destination_key_id: &'a str,
    source_encryption_algorithm: &'a str,
    source_encryption_context: &'a EncryptionContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_key_id: Option<&'a str>,
}

impl ReEncryptRequest {
    fn trail_parameters(&self) -> ReEncryptParameters<'_> {
        ReEncryptParameters {
            destination_encryption_algorithm: SYMMETRIC_DEFAULT,
            destination_encryption_context: &self.destination_encryption_context,
            destination_key_id: &self.destination_key_id,
            source_encryption_algorithm: SYMMETRIC_DEFAULT,
            source_encryption_context: &self.source_encryption_context,
            source_key_id: self.source_key_id.as_deref(),
        }
    }
}

impl Operation for ReEncryptRequest {
    type Response = ReEncryptResponse;
    const NAME: &'static str = "ReEncrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun", "DryRunModifiers"];

    fn request_parameters(&self) -> Value {
        trail::value_of(&self.trail_parameters())
    }
    fn request_parameters_json(&self) -> Option<String> {
        trail::json_of(&self.trail_parameters())
    }
}

/// The members GenerateDataKey and GenerateDataKeyWithoutPlaintext share.
macro_rules! data_key_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            pub key_id: String,
            #[serde(default)]
            pub encryption_context: EncryptionContext,
            /// 1 to 1024; exactly one of `NumberOfBytes` and `KeySpec`.
            #[serde(default)]
            pub number_of_bytes: Option<i32>,
            #[serde(default)]
            pub key_spec: Option<DataKeySpec>,
            #[serde(default)]
            pub grant_tokens: Vec<String>,
        }

        impl $name {
            /// The members both data key requests have.
            pub fn members(&self) -> DataKeyMembers<'_> {
                DataKeyMembers {
                    key_id: &self.key_id,
                    encryption_context: &self.encryption_context,
                    number_of_bytes: self.number_of_bytes,
                    key_spec: self.key_spec,
                    grant_tokens: &self.grant_tokens,
                }
            }
        }
    };
}

/// A data key request's members, borrowed (one handler serves both operations).
#[derive(Debug, Clone, Copy)]
pub struct DataKeyMembers<'a> {
    pub key_id: &'a str,
    pub encryption_context: &'a EncryptionContext,
    pub number_of_bytes: Option<i32>,
    pub key_spec: Option<DataKeySpec>,
    pub grant_tokens: &'a [String],
}

/// The data key calls' `requestParameters`, borrowed from the request (sorted key
/// order, as [`CryptoParameters`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataKeyParameters<'a> {
    encryption_context: &'a EncryptionContext,
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_spec: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    number_of_bytes: Option<i32>,
}

impl<'a> DataKeyMembers<'a> {
    fn trail_parameters(&self) -> DataKeyParameters<'a> {
        DataKeyParameters {
            encryption_context: self.encryption_context,
            key_id: self.key_id,
            key_spec: self.key_spec.map(DataKeySpec::as_str),
            number_of_bytes: self.number_of_bytes,
        }
    }
}

data_key_request!(GenerateDataKeyRequest);
data_key_request!(GenerateDataKeyWithoutPlaintextRequest);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    pub ciphertext_blob: Blob,
    pub plaintext: SecretBlob,
    /// The key ARN.
    pub key_id: String,
}

impl Operation for GenerateDataKeyRequest {
    type Response = GenerateDataKeyResponse;
    const NAME: &'static str = "GenerateDataKey";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["Recipient", "DryRun"];

    fn request_parameters(&self) -> Value {
        trail::value_of(&self.members().trail_parameters())
    }
    fn request_parameters_json(&self) -> Option<String> {
        trail::json_of(&self.members().trail_parameters())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyWithoutPlaintextResponse {
    pub ciphertext_blob: Blob,
    /// The key ARN.
    pub key_id: String,
}

impl Operation for GenerateDataKeyWithoutPlaintextRequest {
    type Response = GenerateDataKeyWithoutPlaintextResponse;
    const NAME: &'static str = "GenerateDataKeyWithoutPlaintext";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun"];

    fn request_parameters(&self) -> Value {
        trail::value_of(&self.members().trail_parameters())
    }
    fn request_parameters_json(&self) -> Option<String> {
        trail::json_of(&self.members().trail_parameters())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encryption contexts whose keys sort differently by bytes and by characters, and
    /// whose values need escaping.
    fn contexts() -> Vec<EncryptionContext> {
        let pairs: &[&[(&str, &str)]] = &[
            &[],
            &[("purpose", "test")],
            &[
                ("Zeta", "a\"b\\c"),
                ("alpha", "\u{7}\n\t"),
                ("é", "ü"),
                ("B", ""),
                ("\u{10000}", "</script>"),
            ],
        ];
        pairs
            .iter()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// The parameters an operation writes as text are byte for byte the serde_json
    /// rendering of its `requestParameters` value, and that value is the shape the
    /// trail's golden files hold (sorted camelCase keys, absent options left out).
    fn same_text<R: Operation>(r: &R) {
        let text = r.request_parameters_json().expect("rendered as text");
        let value = r.request_parameters();
        assert_eq!(
            text.as_bytes(),
            serde_json::to_vec(&value).unwrap(),
            "{r:?}"
        );
        assert!(value.is_object());
    }

    #[test]
    fn rendered_parameters_are_the_values_text() {
        for ctx in contexts() {
            for key_id in [None, Some("alias/x\"y"), Some("1234abcd-12ab")] {
                for algorithm in [None, Some("SYMMETRIC_DEFAULT"), Some("RSAES_OAEP_SHA_256")] {
                    let e = EncryptRequest {
                        key_id: key_id.unwrap_or_default().to_string(),
                        encryption_context: ctx.clone(),
                        encryption_algorithm: algorithm.map(str::to_string),
                        ..Default::default()
                    };
                    same_text(&e);
                    let d = DecryptRequest {
                        key_id: key_id.map(str::to_string),
                        encryption_context: ctx.clone(),
                        encryption_algorithm: algorithm.map(str::to_string),
                        ..Default::default()
                    };
                    same_text(&d);
                    if key_id.is_none() {
                        assert!(d.request_parameters().get("keyId").is_none());
                    }
                    let re = ReEncryptRequest {
                        source_key_id: key_id.map(str::to_string),
                        destination_key_id: "alias/dest".into(),
                        source_encryption_context: ctx.clone(),
                        destination_encryption_context: ctx.clone(),
                        ..Default::default()
                    };
                    same_text(&re);
                }
                for (spec, bytes) in [
                    (None, None),
                    (Some(DataKeySpec::Aes256), None),
                    (None, Some(-1)),
                    (Some(DataKeySpec::Aes128), Some(1024)),
                ] {
                    let g = GenerateDataKeyRequest {
                        key_id: key_id.unwrap_or_default().to_string(),
                        encryption_context: ctx.clone(),
                        number_of_bytes: bytes,
                        key_spec: spec,
                        grant_tokens: vec!["token".into()],
                    };
                    same_text(&g);
                    let w = GenerateDataKeyWithoutPlaintextRequest {
                        key_id: g.key_id.clone(),
                        encryption_context: ctx.clone(),
                        number_of_bytes: bytes,
                        key_spec: spec,
                        grant_tokens: Vec::new(),
                    };
                    same_text(&w);
                }
            }
        }
    }

    /// The shape itself, once written out (the golden files hold it for every
    /// operation; this pins the text).
    #[test]
    fn decrypt_parameters_text() {
        let d = DecryptRequest {
            key_id: Some("alias/k".into()),
            encryption_context: [
                ("b".to_string(), "2".to_string()),
                ("a".into(), "\"".into()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            d.request_parameters_json().unwrap(),
            r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"a":"\"","b":"2"},"keyId":"alias/k"}"#
        );
    }
}
