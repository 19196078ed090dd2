//! The kmsd socket protocol: length-prefixed postcard frames of serde types.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of postcard.
//! A request frame is a [`RequestEnvelope`], whose first field is the protocol
//! version (decoded first, so a peer speaking another version gets a clear error);
//! a reply frame is a [`ResponseEnvelope`]. Frames larger than [`MAX_FRAME`] are
//! refused. The byte layout is documented in docs/FORMAT.md ("Socket frames").
//!
//! STABILITY RULE: postcard encodes enum variants by index and struct fields by
//! position. Append new variants at the END of [`Request`], [`Response`] and every
//! other enum here; never reorder or remove. Adding a field to a struct is a
//! protocol change: bump [`PROTOCOL_VERSION`].

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crate::error::{ErrorCode, KmsError};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest frame (payload bytes, excluding the 4-byte length) either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// AWS's encryption context: bound to ciphertexts as additional authenticated data.
/// A `BTreeMap` so that its canonical encoding does not depend on insertion order.
pub type EncryptionContext = BTreeMap<String, String>;

/// A request as sent on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u16,
    /// Act as another principal (an IAM ARN). The config decides whether the peer's
    /// uid may (issue 3); the kernel-checked uid is always recorded as well.
    pub act_as: Option<String>,
    /// The request comes through an AWS-shaped service on behalf of a caller.
    /// Trusted only from peers the config lists as that service (issue 3).
    pub via: Option<ViaService>,
    pub request: Request,
}

/// "This request comes via service S (on behalf of P)": `kms:ViaService` and
/// `kms:GrantIsForAWSResource` in policy conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViaService {
    /// e.g. `ec2.amazonaws.com`.
    pub service: String,
    /// The principal ARN the service acts for.
    pub on_behalf_of: Option<String>,
    pub grant_is_for_aws_resource: bool,
}

/// A reply as sent on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u16,
    pub result: Result<Response, KmsError>,
}

/// The state of a KMS key. Append new states at the END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A tag on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

/// What `DescribeKey` says about a key (AWS's `KeyMetadata`). Times are Unix
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub key_id: String,
    pub arn: String,
    pub aws_account_id: String,
    pub creation_date_ms: i64,
    pub enabled: bool,
    pub description: String,
    /// `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    pub key_state: KeyState,
    pub deletion_date_ms: Option<i64>,
    pub pending_deletion_window_in_days: Option<u32>,
    /// `AWS_KMS`.
    pub origin: String,
    /// `CUSTOMER`.
    pub key_manager: String,
    /// `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    pub encryption_algorithms: Vec<String>,
    pub multi_region: bool,
    /// The backing-key version new ciphertexts use (1 until the first rotation).
    pub current_key_material_version: u32,
}

/// `ListKeys` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// `ListAliases` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: String,
    pub creation_date_ms: i64,
    pub last_updated_date_ms: i64,
}

/// `KeySpec` of a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataKeySpec {
    Aes256,
    Aes128,
}

impl DataKeySpec {
    /// The data key's length in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DataKeySpec::Aes256 => 32,
            DataKeySpec::Aes128 => 16,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DataKeySpec::Aes256 => "AES_256",
            DataKeySpec::Aes128 => "AES_128",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AES_256" => Some(DataKeySpec::Aes256),
            "AES_128" => Some(DataKeySpec::Aes128),
            _ => None,
        }
    }
}

/// The only encryption algorithm of a symmetric key.
pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateKeyRequest {
    pub description: Option<String>,
    /// The key policy document, stored as given (evaluated by issue 3).
    pub policy: Option<String>,
    pub tags: Vec<Tag>,
    /// `ENCRYPT_DECRYPT` (the default) is the only usage supported.
    pub key_usage: Option<String>,
    /// `SYMMETRIC_DEFAULT` (the default) is the only spec supported.
    pub key_spec: Option<String>,
    pub bypass_policy_lockout_safety_check: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListKeysRequest {
    pub limit: Option<u32>,
    pub marker: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListAliasesRequest {
    pub key_id: Option<String>,
    pub limit: Option<u32>,
    pub marker: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct EncryptRequest {
    pub key_id: String,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub encryption_context: EncryptionContext,
    pub grant_tokens: Vec<String>,
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecryptRequest {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    pub encryption_context: EncryptionContext,
    /// If given, must identify the key the blob was encrypted under.
    pub key_id: Option<String>,
    pub grant_tokens: Vec<String>,
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReEncryptRequest {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    pub source_encryption_context: EncryptionContext,
    pub source_key_id: Option<String>,
    pub destination_key_id: String,
    pub destination_encryption_context: EncryptionContext,
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateDataKeyRequest {
    pub key_id: String,
    pub key_spec: Option<DataKeySpec>,
    pub number_of_bytes: Option<u32>,
    pub encryption_context: EncryptionContext,
    pub grant_tokens: Vec<String>,
}

/// One request per AWS operation. APPEND NEW VARIANTS AT THE END (postcard indices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    CreateKey(CreateKeyRequest),
    DescribeKey {
        key_id: String,
        grant_tokens: Vec<String>,
    },
    ListKeys(ListKeysRequest),
    EnableKey {
        key_id: String,
    },
    DisableKey {
        key_id: String,
    },
    ScheduleKeyDeletion {
        key_id: String,
        pending_window_in_days: Option<u32>,
    },
    CancelKeyDeletion {
        key_id: String,
    },
    CreateAlias {
        alias_name: String,
        target_key_id: String,
    },
    UpdateAlias {
        alias_name: String,
        target_key_id: String,
    },
    DeleteAlias {
        alias_name: String,
    },
    ListAliases(ListAliasesRequest),
    Encrypt(EncryptRequest),
    Decrypt(DecryptRequest),
    ReEncrypt(ReEncryptRequest),
    GenerateDataKey(GenerateDataKeyRequest),
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyRequest),
    EnableKeyRotation {
        key_id: String,
        rotation_period_in_days: Option<u32>,
    },
    DisableKeyRotation {
        key_id: String,
    },
    GetKeyRotationStatus {
        key_id: String,
    },
    RotateKeyOnDemand {
        key_id: String,
    },
    ListKeyRotations {
        key_id: String,
    },
    UpdateKeyDescription {
        key_id: String,
        description: String,
    },
    ListResourceTags {
        key_id: String,
    },
    /// Moves the daemon's clock forward. Refused unless kmsd runs with
    /// `--allow-clock-control` (tests only).
    AdvanceClock {
        seconds: u64,
    },
    CreateGrant(CreateGrantRequest),
    ListGrants(ListGrantsRequest),
    ListRetirableGrants(ListRetirableGrantsRequest),
    RetireGrant(RetireGrantRequest),
    RevokeGrant {
        key_id: String,
        grant_id: String,
    },
    GetKeyPolicy {
        key_id: String,
        /// Only `default` exists.
        policy_name: Option<String>,
    },
    PutKeyPolicy {
        key_id: String,
        policy_name: Option<String>,
        policy: String,
        bypass_policy_lockout_safety_check: bool,
    },
    ListKeyPolicies {
        key_id: String,
    },
    /// A trusted service (volume, object) records one of its own events in the trail.
    RecordEvent(RecordEventRequest),
    /// CloudTrail LookupEvents over the trail kmsd writes.
    LookupEvents(LookupEventsRequest),
    /// Re-reads the configuration (like SIGHUP). Only kmsd's own uid and root may.
    ReloadConfig,
    /// Who the caller is evaluated as (STS GetCallerIdentity).
    GetCallerIdentity,
}

impl Request {
    /// The AWS operation name (CloudTrail's `eventName`).
    pub fn operation(&self) -> &'static str {
        match self {
            Request::CreateKey(_) => "CreateKey",
            Request::DescribeKey { .. } => "DescribeKey",
            Request::ListKeys(_) => "ListKeys",
            Request::EnableKey { .. } => "EnableKey",
            Request::DisableKey { .. } => "DisableKey",
            Request::ScheduleKeyDeletion { .. } => "ScheduleKeyDeletion",
            Request::CancelKeyDeletion { .. } => "CancelKeyDeletion",
            Request::CreateAlias { .. } => "CreateAlias",
            Request::UpdateAlias { .. } => "UpdateAlias",
            Request::DeleteAlias { .. } => "DeleteAlias",
            Request::ListAliases(_) => "ListAliases",
            Request::Encrypt(_) => "Encrypt",
            Request::Decrypt(_) => "Decrypt",
            Request::ReEncrypt(_) => "ReEncrypt",
            Request::GenerateDataKey(_) => "GenerateDataKey",
            Request::GenerateDataKeyWithoutPlaintext(_) => "GenerateDataKeyWithoutPlaintext",
            Request::EnableKeyRotation { .. } => "EnableKeyRotation",
            Request::DisableKeyRotation { .. } => "DisableKeyRotation",
            Request::GetKeyRotationStatus { .. } => "GetKeyRotationStatus",
            Request::RotateKeyOnDemand { .. } => "RotateKeyOnDemand",
            Request::ListKeyRotations { .. } => "ListKeyRotations",
            Request::UpdateKeyDescription { .. } => "UpdateKeyDescription",
            Request::ListResourceTags { .. } => "ListResourceTags",
            Request::AdvanceClock { .. } => "AdvanceClock",
            Request::CreateGrant(_) => "CreateGrant",
            Request::ListGrants(_) => "ListGrants",
            Request::ListRetirableGrants(_) => "ListRetirableGrants",
            Request::RetireGrant(_) => "RetireGrant",
            Request::RevokeGrant { .. } => "RevokeGrant",
            Request::GetKeyPolicy { .. } => "GetKeyPolicy",
            Request::PutKeyPolicy { .. } => "PutKeyPolicy",
            Request::ListKeyPolicies { .. } => "ListKeyPolicies",
            Request::RecordEvent(_) => "RecordEvent",
            Request::LookupEvents(_) => "LookupEvents",
            Request::ReloadConfig => "ReloadConfig",
            Request::GetCallerIdentity => "GetCallerIdentity",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    pub deletion_date_ms: i64,
    pub key_state: KeyState,
    pub pending_window_in_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptResponse {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    /// The key ARN.
    pub key_id: String,
    pub encryption_algorithm: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DecryptResponse {
    /// The key ARN.
    pub key_id: String,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub encryption_algorithm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReEncryptResponse {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct GenerateDataKeyResponse {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateDataKeyWithoutPlaintextResponse {
    #[serde(with = "serde_bytes")]
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRotationStatus {
    pub key_id: String,
    pub key_rotation_enabled: bool,
    pub rotation_period_in_days: Option<u32>,
    pub next_rotation_date_ms: Option<i64>,
    pub on_demand_rotation_start_date_ms: Option<i64>,
}

/// How a backing-key version came to be. Append new kinds at the END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    Automatic,
    OnDemand,
}

impl RotationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationType::Automatic => "AUTOMATIC",
            RotationType::OnDemand => "ON_DEMAND",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationEntry {
    pub key_id: String,
    pub rotation_date_ms: i64,
    pub rotation_type: RotationType,
}

/// One response per request kind. APPEND NEW VARIANTS AT THE END (postcard indices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// CreateKey, DescribeKey.
    KeyMetadata(KeyMetadata),
    ListKeys {
        keys: Vec<KeyListEntry>,
        next_marker: Option<String>,
        truncated: bool,
    },
    /// Operations with no response body (EnableKey, DisableKey, CreateAlias, ...).
    Empty,
    ScheduleKeyDeletion(ScheduleKeyDeletionResponse),
    /// CancelKeyDeletion, RotateKeyOnDemand: the key ARN... as AWS returns it.
    KeyId {
        key_id: String,
    },
    ListAliases {
        aliases: Vec<AliasListEntry>,
        next_marker: Option<String>,
        truncated: bool,
    },
    Encrypt(EncryptResponse),
    Decrypt(DecryptResponse),
    ReEncrypt(ReEncryptResponse),
    GenerateDataKey(GenerateDataKeyResponse),
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyWithoutPlaintextResponse),
    KeyRotationStatus(KeyRotationStatus),
    ListKeyRotations {
        rotations: Vec<RotationEntry>,
    },
    ListResourceTags {
        tags: Vec<Tag>,
    },
    /// AdvanceClock: the daemon's time after the move.
    Clock {
        now_ms: i64,
    },
    CreateGrant {
        grant_id: String,
        grant_token: String,
    },
    /// ListGrants, ListRetirableGrants.
    ListGrants {
        grants: Vec<GrantListEntry>,
        next_marker: Option<String>,
        truncated: bool,
    },
    KeyPolicy {
        policy_name: String,
        policy: String,
    },
    ListKeyPolicies {
        policy_names: Vec<String>,
        truncated: bool,
    },
    /// RecordEvent: the event's ID in the trail.
    EventRecorded {
        event_id: String,
    },
    /// LookupEvents: AWS's response JSON (`{"Events": [...], "NextToken": ...}`).
    LookupEvents {
        page_json: String,
    },
    ConfigReloaded {
        /// A short summary, e.g. `3 uid rules, 6 IAM users/roles with policies`.
        summary: String,
    },
    CallerIdentity(CallerIdentity),
}

/// A grant's `Constraints` on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantConstraints {
    pub encryption_context_equals: Option<EncryptionContext>,
    pub encryption_context_subset: Option<EncryptionContext>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateGrantRequest {
    pub key_id: String,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// AWS operation names: `Decrypt`, `GenerateDataKey`, ...
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListGrantsRequest {
    pub key_id: String,
    pub grant_id: Option<String>,
    pub grantee_principal: Option<String>,
    pub limit: Option<u32>,
    pub marker: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListRetirableGrantsRequest {
    pub retiring_principal: String,
    pub limit: Option<u32>,
    pub marker: Option<String>,
}

/// RetireGrant names the grant by its token, or by key and grant ID.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetireGrantRequest {
    pub grant_token: Option<String>,
    pub key_id: Option<String>,
    pub grant_id: Option<String>,
}

/// One entry of ListGrants (AWS's `GrantListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantListEntry {
    /// The key ARN.
    pub key_id: String,
    pub grant_id: String,
    pub name: Option<String>,
    pub creation_date_ms: i64,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// `arn:aws:iam::ACCOUNT:root`.
    pub issuing_account: String,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
}

/// An event a trusted service records (its `eventSource` must be a service the
/// peer is trusted as). JSON fields travel as text: postcard cannot carry
/// free-form JSON values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecordEventRequest {
    /// `ec2.amazonaws.com`, `s3.amazonaws.com`.
    pub event_source: String,
    /// `StartInstances`, `PutObject`, ...
    pub event_name: String,
    /// The principal the service served (default: the caller as admitted).
    pub principal: Option<String>,
    /// CloudTrail `requestParameters` as a JSON object text (`None`: null).
    pub request_parameters_json: Option<String>,
    /// CloudTrail `responseElements` as a JSON object text (`None`: null).
    pub response_elements_json: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub read_only: bool,
    /// `(type, ARN)`: `("AWS::EC2::Instance", "arn:aws:ec2:us-east-1:111122223333:instance/i-1")`.
    pub resources: Vec<(String, String)>,
    /// `userAgent` (default `atrest-cli`).
    pub user_agent: Option<String>,
    /// `sourceIPAddress` of the service's own caller (e.g. an HTTP client address).
    pub source_ip_address: Option<String>,
    /// The access key the caller signed with (S3), for `userIdentity.accessKeyId`.
    pub access_key_id: Option<String>,
}

/// LookupEvents' parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LookupEventsRequest {
    /// `(AttributeKey, AttributeValue)`, at most one, as in AWS.
    pub lookup_attributes: Vec<(String, String)>,
    /// Unix seconds, inclusive.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// GetCallerIdentity's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    /// The kernel-checked uid and the principal it maps to.
    pub uid: u32,
    pub uid_principal: String,
    /// The service the request came via, if any.
    pub via: Option<String>,
}

impl Response {
    /// The variant's name (for error messages; never the content, which may be
    /// plaintext).
    pub fn kind(&self) -> &'static str {
        match self {
            Response::KeyMetadata(_) => "KeyMetadata",
            Response::ListKeys { .. } => "ListKeys",
            Response::Empty => "Empty",
            Response::ScheduleKeyDeletion(_) => "ScheduleKeyDeletion",
            Response::KeyId { .. } => "KeyId",
            Response::ListAliases { .. } => "ListAliases",
            Response::Encrypt(_) => "Encrypt",
            Response::Decrypt(_) => "Decrypt",
            Response::ReEncrypt(_) => "ReEncrypt",
            Response::GenerateDataKey(_) => "GenerateDataKey",
            Response::GenerateDataKeyWithoutPlaintext(_) => "GenerateDataKeyWithoutPlaintext",
            Response::KeyRotationStatus(_) => "KeyRotationStatus",
            Response::ListKeyRotations { .. } => "ListKeyRotations",
            Response::ListResourceTags { .. } => "ListResourceTags",
            Response::Clock { .. } => "Clock",
            Response::CreateGrant { .. } => "CreateGrant",
            Response::ListGrants { .. } => "ListGrants",
            Response::KeyPolicy { .. } => "KeyPolicy",
            Response::ListKeyPolicies { .. } => "ListKeyPolicies",
            Response::EventRecorded { .. } => "EventRecorded",
            Response::LookupEvents { .. } => "LookupEvents",
            Response::ConfigReloaded { .. } => "ConfigReloaded",
            Response::CallerIdentity(_) => "CallerIdentity",
        }
    }
}

/// Why a frame could not be read: the framing is [`plumbing::frame`]'s.
pub use plumbing::frame::FrameError;

/// Serializes `value` as one frame (length prefix + postcard) into `buf`, which is
/// cleared first; the caller writes `buf` with a single `write_all`.
pub fn encode_frame<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    plumbing::frame::encode(value, buf, MAX_FRAME)
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(
    w: &mut W,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    plumbing::frame::write(w, value, buf, MAX_FRAME)
}

/// Reads one frame's payload into `buf` (resized to the payload length).
pub fn read_frame_bytes<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    plumbing::frame::read_bytes(r, buf, MAX_FRAME)
}

/// Decodes a request frame payload: the version first, then the rest.
pub fn decode_request(payload: &[u8]) -> Result<RequestEnvelope, FrameError> {
    plumbing::frame::decode_versioned(payload, PROTOCOL_VERSION)
}

/// Decodes a reply frame payload: the version first, then the rest.
pub fn decode_response(payload: &[u8]) -> Result<ResponseEnvelope, FrameError> {
    plumbing::frame::decode_versioned(payload, PROTOCOL_VERSION)
}

/// Debug output of the types that carry plaintext shows its length only, so a
/// stray `{:?}` in a log never leaks it.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

impl std::fmt::Debug for EncryptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptRequest")
            .field("key_id", &self.key_id)
            .field("plaintext", &Redacted(self.plaintext.len()))
            .field("encryption_context", &self.encryption_context)
            .field("grant_tokens", &self.grant_tokens)
            .field("encryption_algorithm", &self.encryption_algorithm)
            .finish()
    }
}

impl std::fmt::Debug for DecryptResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptResponse")
            .field("key_id", &self.key_id)
            .field("plaintext", &Redacted(self.plaintext.len()))
            .field("encryption_algorithm", &self.encryption_algorithm)
            .finish()
    }
}

impl std::fmt::Debug for GenerateDataKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateDataKeyResponse")
            .field("ciphertext_blob", &self.ciphertext_blob)
            .field("plaintext", &Redacted(self.plaintext.len()))
            .field("key_id", &self.key_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrips_through_a_frame() {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: Some("arn:aws:iam::111122223333:user/a".into()),
            via: None,
            request: Request::DescribeKey {
                key_id: "alias/x".into(),
                grant_tokens: vec![],
            },
        };
        let mut buf = Vec::new();
        encode_frame(&env, &mut buf).unwrap();
        let mut payload = Vec::new();
        read_frame_bytes(&mut &buf[..], &mut payload).unwrap();
        let back = decode_request(&payload).unwrap();
        assert_eq!(back.act_as, env.act_as);
        assert!(matches!(back.request, Request::DescribeKey { key_id, .. } if key_id == "alias/x"));
    }

    #[test]
    fn debug_never_shows_plaintext() {
        let r = DecryptResponse {
            key_id: "k".into(),
            plaintext: Zeroizing::new(b"SECRETSECRET".to_vec()),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("83, 69, 67") && shown.contains("12 bytes redacted"));
    }

    #[test]
    fn wrong_version_oversized_and_garbage_are_refused() {
        let mut buf = Vec::new();
        encode_frame(&(7u16, 0u8), &mut buf).unwrap();
        assert!(matches!(
            decode_request(&buf[4..]),
            Err(FrameError::Version { got: 7, .. })
        ));
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut payload = Vec::new();
        assert!(matches!(
            read_frame_bytes(&mut &huge[..], &mut payload),
            Err(FrameError::TooLarge { .. })
        ));
        // Right version, then an out-of-range variant index.
        assert!(matches!(
            decode_request(&[1, 0, 0, 200, 1]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[0u8, 0][..], &mut payload),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[][..], &mut payload),
            Err(FrameError::Closed)
        ));
    }
}
