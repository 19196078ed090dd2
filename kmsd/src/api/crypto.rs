//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext. Handlers: `service/crypto.rs`.
//!
//! CloudTrail records their identifiers, encryption context and algorithm, never a
//! plaintext, a ciphertext or a grant token.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::{self, Params};
use super::types::{Blob, DataKeySpec, EncryptionContext, SecretBlob, SYMMETRIC_DEFAULT};
use super::{Operation, Service};

/// `encryptionContext` and `encryptionAlgorithm` (default `SYMMETRIC_DEFAULT`), as
/// Encrypt and Decrypt record them.
fn context_and_algorithm(p: Params, ctx: &EncryptionContext, algorithm: Option<&str>) -> Value {
    p.put_value("encryptionContext", trail::context(ctx))
        .put(
            "encryptionAlgorithm",
            algorithm.unwrap_or(SYMMETRIC_DEFAULT),
        )
        .build()
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

impl Operation for EncryptRequest {
    type Response = EncryptResponse;
    const NAME: &'static str = "Encrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun"];

    fn request_parameters(&self) -> Value {
        context_and_algorithm(
            Params::new().put("keyId", &self.key_id),
            &self.encryption_context,
            self.encryption_algorithm.as_deref(),
        )
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

impl Operation for DecryptRequest {
    type Response = DecryptResponse;
    const NAME: &'static str = "Decrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["Recipient", "DryRun", "DryRunModifiers"];

    fn request_parameters(&self) -> Value {
        context_and_algorithm(
            Params::new().opt("keyId", self.key_id.as_ref()),
            &self.encryption_context,
            self.encryption_algorithm.as_deref(),
        )
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

impl Operation for ReEncryptRequest {
    type Response = ReEncryptResponse;
    const NAME: &'static str = "ReEncrypt";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun", "DryRunModifiers"];

    fn request_parameters(&self) -> Value {
        Params::new()
            .opt("sourceKeyId", self.source_key_id.as_ref())
            .put("destinationKeyId", &self.destination_key_id)
            .put_value(
                "sourceEncryptionContext",
                trail::context(&self.source_encryption_context),
            )
            .put_value(
                "destinationEncryptionContext",
                trail::context(&self.destination_encryption_context),
            )
            .put("sourceEncryptionAlgorithm", SYMMETRIC_DEFAULT)
            .put("destinationEncryptionAlgorithm", SYMMETRIC_DEFAULT)
            .build()
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

impl DataKeyMembers<'_> {
    fn trail_parameters(&self) -> Value {
        Params::new()
            .put("keyId", self.key_id)
            .opt("keySpec", self.key_spec.map(DataKeySpec::as_str))
            .opt("numberOfBytes", self.number_of_bytes)
            .put_value("encryptionContext", trail::context(self.encryption_context))
            .build()
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
        self.members().trail_parameters()
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
        self.members().trail_parameters()
    }
}
