//! `atrest kms ...`: the AWS CLI's `aws kms` verbs and flags, against kmsd.
//!
//! Each verb is a flag struct that builds its operation's typed request
//! ([`kmsd::api`]); the response is printed through the same JSON edge the AWS
//! endpoint uses ([`kmsd::api::json::to_cli_value`]): AWS's JSON minus null members,
//! timestamps as the AWS CLI prints them, through the shared `--query`/`--output`
//! ([`super::output`]), so `--query Plaintext --output text | base64 -d` works as
//! with the AWS CLI. Blob
//! inputs take `fileb://PATH` (raw bytes), `file://PATH` (base64 text) or base64
//! inline, as AWS CLI v2 does.
//!
//! A new verb is one flag struct with its [`Verb`] impl and one line in the
//! [`verbs!`] table.

use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use kmsd::api::json::to_cli_value;
use kmsd::api::*;
use kmsd::client::{ClientError, KmsClient};

use super::{report_error, Global};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// AWS CLI's exit code for a parameter error.
const EXIT_PARAM: i32 = super::exit::PARAM;
/// AWS CLI's exit code when the service cannot be reached.
const EXIT_UNREACHABLE: i32 = super::exit::OTHER;

#[derive(Debug, clap::Args)]
pub struct KmsArgs {
    /// Send the request as the service SERVICE would (`ec2.amazonaws.com`,
    /// `s3.amazonaws.com`): sets `kms:ViaService`. kmsd accepts it only from uids its
    /// config trusts as that service (atrest extension, for drills and services).
    #[arg(long, global = true, value_name = "SERVICE")]
    pub via_service: Option<String>,
    /// With --via-service: the principal the service acts for (any principal, or
    /// EC2's grantee `ACCOUNT:aws:ec2-infrastructure:INSTANCE`).
    #[arg(long, global = true, value_name = "ARN", requires = "via_service")]
    pub on_behalf_of: Option<String>,
    /// With --via-service: the grant is for an AWS resource (`kms:GrantIsForAWSResource`).
    #[arg(long, global = true, requires = "via_service")]
    pub grant_is_for_aws_resource: bool,
    #[command(subcommand)]
    pub command: KmsCommand,
}

/// A verb: its flags build one operation's request.
pub trait Verb {
    type Op: Variant;
    /// Follow every page and print the merged list, as the AWS CLI does for its
    /// paginated verbs (the others print one page, `NextMarker` and `Truncated`).
    const ALL_PAGES: bool = false;
    fn request(self) -> Result<Self::Op, ParamError>;
}

/// The verb table: `Variant(FlagStruct)`, each struct implementing [`Verb`].
macro_rules! verbs {
    ($( $(#[$meta:meta])* $name:ident($args:ty), )*) => {
        #[derive(Debug, clap::Subcommand)]
        pub enum KmsCommand {
            $( $(#[$meta])* $name($args), )*
        }

        impl KmsCommand {
            fn execute(self, cx: &RunContext<'_>) -> i32 {
                match self {
                    $( KmsCommand::$name(a) => execute(a, cx), )*
                }
            }
        }
    };
}

verbs! {
    /// Create a symmetric encryption KMS key.
    CreateKey(CreateKeyArgs),
    /// Show a key's metadata.
    DescribeKey(DescribeKeyArgs),
    /// List the keys of your account.
    ListKeys(ListKeysArgs),
    EnableKey(EnableKeyArgs),
    DisableKey(DisableKeyArgs),
    /// Schedule a key's deletion after a waiting period of 7 to 30 days.
    ScheduleKeyDeletion(ScheduleKeyDeletionArgs),
    /// Cancel a scheduled deletion (the key comes back Disabled).
    CancelKeyDeletion(CancelKeyDeletionArgs),
    CreateAlias(CreateAliasArgs),
    UpdateAlias(UpdateAliasArgs),
    DeleteAlias(DeleteAliasArgs),
    ListAliases(ListAliasesArgs),
    /// Encrypt up to 4096 bytes under a key.
    Encrypt(EncryptArgs),
    /// Decrypt a ciphertext blob (the key is read from the blob).
    Decrypt(DecryptArgs),
    /// Decrypt and encrypt again under another key, server-side.
    ReEncrypt(ReEncryptArgs),
    /// A fresh data key, in plaintext and encrypted.
    GenerateDataKey(GenerateDataKeyArgs),
    /// A fresh data key, encrypted only.
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyWithoutPlaintextArgs),
    EnableKeyRotation(EnableKeyRotationArgs),
    DisableKeyRotation(DisableKeyRotationArgs),
    GetKeyRotationStatus(GetKeyRotationStatusArgs),
    RotateKeyOnDemand(RotateKeyOnDemandArgs),
    ListKeyRotations(ListKeyRotationsArgs),
    UpdateKeyDescription(UpdateKeyDescriptionArgs),
    ListResourceTags(ListResourceTagsArgs),
    /// Add tags to a key, or change their values.
    TagResource(TagResourceArgs),
    /// Remove tags from a key.
    UntagResource(UntagResourceArgs),
    /// Let a principal use a key for some operations (optionally within an
    /// encryption context).
    CreateGrant(CreateGrantArgs),
    ListGrants(ListGrantsArgs),
    ListRetirableGrants(ListRetirableGrantsArgs),
    /// Retire a grant by its token, or by key and grant ID.
    RetireGrant(RetireGrantArgs),
    RevokeGrant(RevokeGrantArgs),
    GetKeyPolicy(GetKeyPolicyArgs),
    PutKeyPolicy(PutKeyPolicyArgs),
    ListKeyPolicies(ListKeyPoliciesArgs),
    /// Ask kmsd to re-read its configuration (as SIGHUP does; atrest extension).
    ReloadConfig(ReloadConfigArgs),
    /// Who kmsd takes you for: principal, account, Unix uid (like `aws sts
    /// get-caller-identity`; atrest extension).
    GetCallerIdentity(GetCallerIdentityArgs),
    /// Moves kmsd's clock forward (drills and tests: refused unless kmsd runs with
    /// `--allow-clock-control`), e.g. past a key's deletion date.
    #[command(hide = true)]
    AdvanceClock(AdvanceClockArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateKeyArgs {
    #[arg(long)]
    description: Option<String>,
    /// Key policy JSON (inline or file://PATH).
    #[arg(long)]
    policy: Option<String>,
    /// `TagKey=K,TagValue=V` (repeatable) or a JSON list.
    #[arg(long, num_args = 1..)]
    tags: Vec<String>,
    #[arg(long)]
    key_usage: Option<String>,
    #[arg(long)]
    key_spec: Option<String>,
    #[arg(long)]
    bypass_policy_lockout_safety_check: bool,
    /// Principals (ARNs) that administer the key: the console's "Allow access for
    /// Key Administrators" statement (atrest extension; not with --policy).
    #[arg(long, num_args = 1.., value_name = "ARN")]
    key_administrators: Vec<String>,
    /// Principals (ARNs) that use the key: the console's "Allow use of the key" and
    /// "Allow attachment of persistent resources" statements.
    #[arg(long, num_args = 1.., value_name = "ARN")]
    key_users: Vec<String>,
}

impl Verb for CreateKeyArgs {
    type Op = CreateKeyRequest;
    fn request(self) -> Result<CreateKeyRequest, ParamError> {
        Ok(CreateKeyRequest {
            description: self.description,
            policy: self.policy.map(|p| read_text("policy", &p)).transpose()?,
            tags: parse_tags(&self.tags)?,
            key_usage: self.key_usage,
            key_spec: self.key_spec,
            bypass_policy_lockout_safety_check: self.bypass_policy_lockout_safety_check,
            ..Default::default()
        })
    }
}

/// A verb whose only flag is `--key-id`.
macro_rules! key_id_verb {
    ($args:ident => $op:ident) => {
        #[derive(Debug, clap::Args)]
        pub struct $args {
            #[arg(long)]
            key_id: String,
        }

        impl Verb for $args {
            type Op = $op;
            // Some of these requests have paging members too, some only `KeyId`.
            #[allow(clippy::needless_update)]
            fn request(self) -> Result<$op, ParamError> {
                Ok($op {
                    key_id: self.key_id,
                    ..Default::default()
                })
            }
        }
    };
}

key_id_verb!(DescribeKeyArgs => DescribeKeyRequest);
key_id_verb!(EnableKeyArgs => EnableKeyRequest);
key_id_verb!(DisableKeyArgs => DisableKeyRequest);
key_id_verb!(CancelKeyDeletionArgs => CancelKeyDeletionRequest);
key_id_verb!(DisableKeyRotationArgs => DisableKeyRotationRequest);
key_id_verb!(GetKeyRotationStatusArgs => GetKeyRotationStatusRequest);
key_id_verb!(RotateKeyOnDemandArgs => RotateKeyOnDemandRequest);
key_id_verb!(ListKeyRotationsArgs => ListKeyRotationsRequest);
key_id_verb!(ListResourceTagsArgs => ListResourceTagsRequest);
key_id_verb!(ListKeyPoliciesArgs => ListKeyPoliciesRequest);

/// A verb without flags.
macro_rules! no_flags_verb {
    ($args:ident => $op:ident $(, all_pages = $pages:expr)?) => {
        #[derive(Debug, clap::Args)]
        pub struct $args {}

        impl Verb for $args {
            type Op = $op;
            $(const ALL_PAGES: bool = $pages;)?
            fn request(self) -> Result<$op, ParamError> {
                Ok($op::default())
            }
        }
    };
}

no_flags_verb!(ListKeysArgs => ListKeysRequest, all_pages = true);
no_flags_verb!(ReloadConfigArgs => ReloadConfigRequest);
no_flags_verb!(GetCallerIdentityArgs => GetCallerIdentityRequest);

#[derive(Debug, clap::Args)]
pub struct ScheduleKeyDeletionArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long, allow_negative_numbers = true)]
    pending_window_in_days: Option<i32>,
}

impl Verb for ScheduleKeyDeletionArgs {
    type Op = ScheduleKeyDeletionRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(ScheduleKeyDeletionRequest {
            key_id: self.key_id,
            pending_window_in_days: self.pending_window_in_days,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateAliasArgs {
    #[arg(long)]
    alias_name: String,
    #[arg(long)]
    target_key_id: String,
}

impl Verb for CreateAliasArgs {
    type Op = CreateAliasRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(CreateAliasRequest {
            alias_name: self.alias_name,
            target_key_id: self.target_key_id,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct UpdateAliasArgs {
    #[arg(long)]
    alias_name: String,
    #[arg(long)]
    target_key_id: String,
}

impl Verb for UpdateAliasArgs {
    type Op = UpdateAliasRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(UpdateAliasRequest {
            alias_name: self.alias_name,
            target_key_id: self.target_key_id,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct DeleteAliasArgs {
    #[arg(long)]
    alias_name: String,
}

impl Verb for DeleteAliasArgs {
    type Op = DeleteAliasRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(DeleteAliasRequest {
            alias_name: self.alias_name,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ListAliasesArgs {
    #[arg(long)]
    key_id: Option<String>,
}

impl Verb for ListAliasesArgs {
    type Op = ListAliasesRequest;
    const ALL_PAGES: bool = true;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(ListAliasesRequest {
            key_id: self.key_id,
            ..Default::default()
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct EncryptArgs {
    #[arg(long)]
    key_id: String,
    /// fileb://PATH, file://PATH (base64) or base64.
    #[arg(long)]
    plaintext: String,
    /// `K=V,K2=V2` or a JSON object.
    #[arg(long)]
    encryption_context: Option<String>,
}

impl Verb for EncryptArgs {
    type Op = EncryptRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(EncryptRequest {
            key_id: self.key_id,
            plaintext: read_blob("plaintext", &self.plaintext)?.into(),
            encryption_context: parse_context(
                "encryption-context",
                self.encryption_context.as_deref(),
            )?,
            ..Default::default()
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// fileb://PATH, file://PATH (base64) or base64.
    #[arg(long)]
    ciphertext_blob: String,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    encryption_context: Option<String>,
}

impl Verb for DecryptArgs {
    type Op = DecryptRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(DecryptRequest {
            ciphertext_blob: read_blob("ciphertext-blob", &self.ciphertext_blob)?
                .to_vec()
                .into(),
            encryption_context: parse_context(
                "encryption-context",
                self.encryption_context.as_deref(),
            )?,
            key_id: self.key_id,
            ..Default::default()
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ReEncryptArgs {
    #[arg(long)]
    ciphertext_blob: String,
    #[arg(long)]
    destination_key_id: String,
    #[arg(long)]
    source_key_id: Option<String>,
    #[arg(long)]
    source_encryption_context: Option<String>,
    #[arg(long)]
    destination_encryption_context: Option<String>,
}

impl Verb for ReEncryptArgs {
    type Op = ReEncryptRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(ReEncryptRequest {
            ciphertext_blob: read_blob("ciphertext-blob", &self.ciphertext_blob)?
                .to_vec()
                .into(),
            source_encryption_context: parse_context(
                "source-encryption-context",
                self.source_encryption_context.as_deref(),
            )?,
            source_key_id: self.source_key_id,
            destination_key_id: self.destination_key_id,
            destination_encryption_context: parse_context(
                "destination-encryption-context",
                self.destination_encryption_context.as_deref(),
            )?,
            ..Default::default()
        })
    }
}

/// The flags GenerateDataKey and GenerateDataKeyWithoutPlaintext share.
macro_rules! data_key_verb {
    ($args:ident => $op:ident) => {
        #[derive(Debug, clap::Args)]
        pub struct $args {
            #[arg(long)]
            key_id: String,
            /// AES_256 or AES_128.
            #[arg(long)]
            key_spec: Option<String>,
            #[arg(long, allow_negative_numbers = true)]
            number_of_bytes: Option<i32>,
            #[arg(long)]
            encryption_context: Option<String>,
        }

        impl Verb for $args {
            type Op = $op;
            fn request(self) -> Result<$op, ParamError> {
                Ok($op {
                    key_id: self.key_id,
                    key_spec: self.key_spec.as_deref().map(data_key_spec).transpose()?,
                    number_of_bytes: self.number_of_bytes,
                    encryption_context: parse_context(
                        "encryption-context",
                        self.encryption_context.as_deref(),
                    )?,
                    grant_tokens: vec![],
                })
            }
        }
    };
}

data_key_verb!(GenerateDataKeyArgs => GenerateDataKeyRequest);
data_key_verb!(GenerateDataKeyWithoutPlaintextArgs => GenerateDataKeyWithoutPlaintextRequest);

fn data_key_spec(s: &str) -> Result<DataKeySpec, ParamError> {
    DataKeySpec::parse(s).ok_or_else(|| {
        param(format!(
            "Invalid value for '--key-spec': '{s}' (valid values: AES_256, AES_128)"
        ))
    })
}

#[derive(Debug, clap::Args)]
pub struct EnableKeyRotationArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long, allow_negative_numbers = true)]
    rotation_period_in_days: Option<i32>,
}

impl Verb for EnableKeyRotationArgs {
    type Op = EnableKeyRotationRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(EnableKeyRotationRequest {
            key_id: self.key_id,
            rotation_period_in_days: self.rotation_period_in_days,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct UpdateKeyDescriptionArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long)]
    description: String,
}

impl Verb for UpdateKeyDescriptionArgs {
    type Op = UpdateKeyDescriptionRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(UpdateKeyDescriptionRequest {
            key_id: self.key_id,
            description: self.description,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct TagResourceArgs {
    #[arg(long)]
    key_id: String,
    /// `TagKey=K,TagValue=V` (repeatable) or a JSON list.
    #[arg(long, num_args = 1.., required = true)]
    tags: Vec<String>,
}

impl Verb for TagResourceArgs {
    type Op = TagResourceRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(TagResourceRequest {
            key_id: self.key_id,
            tags: parse_tags(&self.tags)?,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct UntagResourceArgs {
    #[arg(long)]
    key_id: String,
    /// Tag keys (several, or comma-separated).
    #[arg(long, num_args = 1.., required = true)]
    tag_keys: Vec<String>,
}

impl Verb for UntagResourceArgs {
    type Op = UntagResourceRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(UntagResourceRequest {
            key_id: self.key_id,
            tag_keys: split_list(&self.tag_keys),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateGrantArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long)]
    grantee_principal: String,
    /// Decrypt, Encrypt, GenerateDataKey, ... (several).
    #[arg(long, num_args = 1.., required = true)]
    operations: Vec<String>,
    #[arg(long)]
    retiring_principal: Option<String>,
    /// `EncryptionContextSubset={k=v,k2=v2}`, `EncryptionContextEquals={k=v}` or JSON
    /// `{"EncryptionContextSubset": {"k": "v"}}`.
    #[arg(long)]
    constraints: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, num_args = 1..)]
    grant_tokens: Vec<String>,
}

impl Verb for CreateGrantArgs {
    type Op = CreateGrantRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(CreateGrantRequest {
            key_id: self.key_id,
            grantee_principal: self.grantee_principal,
            retiring_principal: self.retiring_principal,
            operations: split_list(&self.operations),
            constraints: self
                .constraints
                .as_deref()
                .map(parse_constraints)
                .transpose()?,
            name: self.name,
            grant_tokens: self.grant_tokens,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ListGrantsArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long)]
    grant_id: Option<String>,
    #[arg(long)]
    grantee_principal: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    limit: Option<i32>,
}

impl Verb for ListGrantsArgs {
    type Op = ListGrantsRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(ListGrantsRequest {
            key_id: self.key_id,
            grant_id: self.grant_id,
            grantee_principal: self.grantee_principal,
            limit: self.limit,
            marker: None,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ListRetirableGrantsArgs {
    #[arg(long)]
    retiring_principal: String,
    #[arg(long, allow_negative_numbers = true)]
    limit: Option<i32>,
}

impl Verb for ListRetirableGrantsArgs {
    type Op = ListRetirableGrantsRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(ListRetirableGrantsRequest {
            retiring_principal: self.retiring_principal,
            limit: self.limit,
            marker: None,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct RetireGrantArgs {
    #[arg(long)]
    grant_token: Option<String>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    grant_id: Option<String>,
}

impl Verb for RetireGrantArgs {
    type Op = RetireGrantRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(RetireGrantRequest {
            grant_token: self.grant_token,
            key_id: self.key_id,
            grant_id: self.grant_id,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct RevokeGrantArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long)]
    grant_id: String,
}

impl Verb for RevokeGrantArgs {
    type Op = RevokeGrantRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(RevokeGrantRequest {
            key_id: self.key_id,
            grant_id: self.grant_id,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct GetKeyPolicyArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long, default_value = "default")]
    policy_name: String,
}

impl Verb for GetKeyPolicyArgs {
    type Op = GetKeyPolicyRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(GetKeyPolicyRequest {
            key_id: self.key_id,
            policy_name: Some(self.policy_name),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct PutKeyPolicyArgs {
    #[arg(long)]
    key_id: String,
    #[arg(long, default_value = "default")]
    policy_name: String,
    /// Policy JSON (inline or file://PATH).
    #[arg(long)]
    policy: String,
    #[arg(long)]
    bypass_policy_lockout_safety_check: bool,
}

impl Verb for PutKeyPolicyArgs {
    type Op = PutKeyPolicyRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(PutKeyPolicyRequest {
            key_id: self.key_id,
            policy_name: Some(self.policy_name),
            policy: read_text("policy", &self.policy)?,
            bypass_policy_lockout_safety_check: self.bypass_policy_lockout_safety_check,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct AdvanceClockArgs {
    #[arg(long)]
    seconds: u64,
}

impl Verb for AdvanceClockArgs {
    type Op = AdvanceClockRequest;
    fn request(self) -> Result<Self::Op, ParamError> {
        Ok(AdvanceClockRequest {
            seconds: self.seconds,
        })
    }
}

/// A bad command-line value, reported before anything is sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(String);

fn param(msg: impl Into<String>) -> ParamError {
    ParamError(msg.into())
}

/// Reads a blob parameter: `fileb://` raw, `file://` base64 text, else base64.
pub fn read_blob(name: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, ParamError> {
    if let Some(path) = value.strip_prefix("fileb://") {
        return std::fs::read(path).map(Zeroizing::new).map_err(|e| {
            param(format!(
                "Error parsing parameter '--{name}': Unable to load paramfile {value}: {e}"
            ))
        });
    }
    let text = match value.strip_prefix("file://") {
        Some(path) => Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            param(format!(
                "Error parsing parameter '--{name}': Unable to load paramfile {value}: {e}"
            ))
        })?),
        None => Zeroizing::new(value.to_string()),
    };
    B64.decode(text.trim()).map(Zeroizing::new).map_err(|_| {
        param(format!(
            "Invalid base64 for '--{name}': use fileb://PATH for raw bytes, or base64 text"
        ))
    })
}

/// Reads a text parameter that may be `file://PATH`.
fn read_text(name: &str, value: &str) -> Result<String, ParamError> {
    match value.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            param(format!(
                "Error parsing parameter '--{name}': Unable to load paramfile {value}: {e}"
            ))
        }),
        None => Ok(value.to_string()),
    }
}

/// Parses a structured parameter: shorthand or JSON (`plumbing::shorthand`).
fn structured(name: &str, text: &str) -> Result<Value, ParamError> {
    plumbing::shorthand::parse(text).map_err(|e| param(e.for_parameter(name)))
}

/// A JSON object whose members are all strings (an encryption context).
fn string_map(name: &str, v: Value) -> Result<EncryptionContext, ParamError> {
    let Value::Object(m) = v else {
        return Err(param(format!(
            "Error parsing parameter '--{name}': expected KEY=VALUE pairs or a JSON object, got {v}"
        )));
    };
    m.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(param(format!(
                "Error parsing parameter '--{name}': the value of {k:?} must be a string, not {other}"
            ))),
        })
        .collect()
}

/// Parses an encryption context: a JSON object of strings or `K=V,K2=V2`.
pub fn parse_context(name: &str, value: Option<&str>) -> Result<EncryptionContext, ParamError> {
    let Some(value) = value else {
        return Ok(EncryptionContext::new());
    };
    let value = read_text(name, value)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(EncryptionContext::new());
    }
    string_map(name, structured(name, trimmed)?)
}

/// Parses `--tags`: `TagKey=K,TagValue=V` items or one JSON list.
pub fn parse_tags(items: &[String]) -> Result<Vec<Tag>, ParamError> {
    let mut tags = Vec::new();
    for item in items {
        let text = read_text("tags", item)?;
        let list = match structured("tags", text.trim())? {
            Value::Array(list) => list,
            one => vec![one],
        };
        for t in list {
            let Value::Object(m) = &t else {
                return Err(param(format!(
                    "Error parsing parameter '--tags': expected TagKey=K,TagValue=V, got {t}"
                )));
            };
            if let Some(k) = m.keys().find(|k| *k != "TagKey" && *k != "TagValue") {
                return Err(param(format!(
                    "Error parsing parameter '--tags': unknown member {k:?}; expected TagKey=K,TagValue=V"
                )));
            }
            let get = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            tags.push(Tag {
                tag_key: get("TagKey")
                    .ok_or_else(|| param("Error parsing parameter '--tags': missing TagKey"))?,
                tag_value: get("TagValue").unwrap_or_default(),
            });
        }
    }
    Ok(tags)
}

/// `--operations Decrypt GenerateDataKey` or `--operations Decrypt,GenerateDataKey`.
fn split_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|i| i.split(','))
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// `--constraints`: `EncryptionContextSubset={k=v,k2=v2}` (and/or
/// `EncryptionContextEquals={...}`) or JSON.
pub fn parse_constraints(raw: &str) -> Result<kmsd::protocol::GrantConstraints, ParamError> {
    let bad = |why: &str| {
        param(format!(
            "Error parsing parameter '--constraints': {why}; expected EncryptionContextSubset={{k=v,...}}, EncryptionContextEquals={{k=v,...}} or JSON"
        ))
    };
    let mut out = kmsd::protocol::GrantConstraints::default();
    let Value::Object(m) =
        plumbing::shorthand::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?
    else {
        return Err(bad("not an object"));
    };
    for (k, v) in m {
        if !v.is_object() {
            return Err(bad(&format!("the value of {k} must be in braces")));
        }
        let ctx = string_map("constraints", v)?;
        match k.as_str() {
            "EncryptionContextSubset" => out.encryption_context_subset = Some(ctx),
            "EncryptionContextEquals" => out.encryption_context_equals = Some(ctx),
            other => return Err(bad(&format!("unknown constraint {other}"))),
        }
    }
    Ok(out)
}

/// `--key-administrators` / `--key-users`: the console's key policy for the
/// caller's account (asked of kmsd, so `--as` is honoured).
fn console_policy(
    client: &KmsClient,
    admins: &[String],
    users: &[String],
) -> Result<String, ClientError> {
    let account = client.get_caller_identity()?.account;
    let a: Vec<&str> = admins.iter().map(String::as_str).collect();
    let u: Vec<&str> = users.iter().map(String::as_str).collect();
    Ok(kmsd::api::default_policies::console_key_policy(
        &account, &a, &u,
    ))
}

/// Why a verb printed nothing.
enum Failure {
    Kms(KmsError),
    Unreachable(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Kms(e) => Failure::Kms(e),
            other => Failure::Unreachable(other.to_string()),
        }
    }
}

impl From<KmsError> for Failure {
    fn from(e: KmsError) -> Self {
        Failure::Kms(e)
    }
}

/// What every verb needs to run: how to reach kmsd, how to print.
struct RunContext<'a> {
    connect: &'a dyn Fn() -> Result<KmsClient, i32>,
    output: &'a super::output::OutputArgs,
}

/// Sends `request` and follows its pages, merging them as the AWS CLI's paginator
/// does: the result lists concatenated, the page token and `Truncated` left out.
fn all_pages<R: Variant>(client: &KmsClient, mut request: R) -> Result<Value, Failure> {
    let Some(p) = R::PAGINATOR else {
        return Ok(to_cli_value(&client.send(request)?)?);
    };
    let mut merged: Option<Map<String, Value>> = None;
    loop {
        let Value::Object(mut page) = to_cli_value(&client.send(request.clone())?)? else {
            return Err(KmsError::internal("a list page is not a JSON object").into());
        };
        let next = page.remove(p.output_token);
        page.remove(p.more_results);
        match &mut merged {
            None => merged = Some(page),
            Some(m) => {
                if let (Some(Value::Array(all)), Some(Value::Array(more))) =
                    (m.get_mut(p.result_key), page.remove(p.result_key))
                {
                    all.extend(more);
                }
            }
        }
        let Some(Value::String(marker)) = next else {
            return Ok(Value::Object(merged.unwrap_or_default()));
        };
        let mut v = serde_json::to_value(&request)
            .map_err(|e| KmsError::internal(format!("cannot page {}: {e}", R::NAME)))?;
        v[p.input_token] = Value::String(marker);
        request = serde_json::from_value(v)
            .map_err(|e| KmsError::internal(format!("cannot page {}: {e}", R::NAME)))?;
    }
}

/// Runs one verb: build the request (a bad flag exits 252 before anything is
/// sent), call kmsd, print the response.
fn execute<V: Verb>(verb: V, cx: &RunContext<'_>) -> i32 {
    let operation = V::Op::NAME;
    let request = match verb.request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\n{e}");
            return EXIT_PARAM;
        }
    };
    let client = match (cx.connect)() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let value = if V::ALL_PAGES {
        all_pages(&client, request)
    } else {
        client
            .send(request)
            .map_err(Failure::from)
            .and_then(|r| Ok(to_cli_value(&r)?))
    };
    let mut value = match value {
        Ok(v) => v,
        Err(Failure::Kms(e)) => return report_error(operation, e.code.as_str(), &e.message),
        Err(Failure::Unreachable(e)) => {
            eprintln!("atrest: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    // `--output text` prints the policy document alone, as atrest's scripts expect
    // (AWS now also returns `PolicyName`; `--query Policy` works either way).
    if operation == GetKeyPolicyRequest::NAME {
        if let Value::Object(m) = &mut value {
            m.remove("PolicyName");
        }
    }
    cx.output.emit(operation, &value)
}

pub fn run(g: &Global, mut args: KmsArgs) -> i32 {
    let socket = g.kmsd_socket();
    let connect = || -> Result<KmsClient, i32> {
        let client = KmsClient::connect(&socket).map_err(|e| {
            eprintln!("atrest: {e}");
            EXIT_UNREACHABLE
        })?;
        let client = match &g.act_as {
            Some(arn) => client.acting_as(arn.clone()),
            None => client,
        };
        Ok(match &args.via_service {
            Some(service) => client.via(kmsd::protocol::ViaService {
                service: service.clone(),
                on_behalf_of: args.on_behalf_of.clone(),
                grant_is_for_aws_resource: args.grant_is_for_aws_resource,
            }),
            None => client,
        })
    };
    if let KmsCommand::CreateKey(CreateKeyArgs {
        policy,
        key_administrators,
        key_users,
        ..
    }) = &mut args.command
    {
        if !key_administrators.is_empty() || !key_users.is_empty() {
            if policy.is_some() {
                eprintln!("\n--policy cannot be combined with --key-administrators/--key-users");
                return EXIT_PARAM;
            }
            let client = match connect() {
                Ok(c) => c,
                Err(code) => return code,
            };
            match console_policy(&client, key_administrators, key_users) {
                Ok(p) => *policy = Some(p),
                Err(ClientError::Kms(e)) => {
                    return report_error("CreateKey", e.code.as_str(), &e.message)
                }
                Err(e) => {
                    eprintln!("atrest: {e}");
                    return EXIT_UNREACHABLE;
                }
            }
        }
    }
    let cx = RunContext {
        connect: &connect,
        output: &g.output,
    };
    args.command.execute(&cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_parse_in_both_forms() {
        let a = parse_context("c", Some("b=2,a=1")).unwrap();
        let b = parse_context("c", Some(r#"{"a":"1","b":"2"}"#)).unwrap();
        assert_eq!(a, b);
        assert!(parse_context("c", Some("novalue")).is_err());
        assert!(parse_context("c", None).unwrap().is_empty());
    }

    #[test]
    fn tags_parse_in_both_forms() {
        let t = parse_tags(&["TagKey=env,TagValue=dev".into()]).unwrap();
        assert_eq!(
            t,
            vec![Tag {
                tag_key: "env".into(),
                tag_value: "dev".into()
            }]
        );
        let j = parse_tags(&[r#"[{"TagKey":"env","TagValue":"dev"}]"#.into()]).unwrap();
        assert_eq!(t, j);
        assert!(parse_tags(&["env=dev".into()]).is_err());
    }

    #[test]
    fn blobs() {
        assert_eq!(&read_blob("p", "aGk=").unwrap()[..], b"hi");
        assert!(read_blob("p", "not base64!").is_err());
    }
}
