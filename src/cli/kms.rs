//! `atrest kms ...`: the AWS CLI's `aws kms` verbs and flags, against kmsd.
//!
//! Output is AWS-shaped JSON (`KeyMetadata`, `CiphertextBlob` in base64, ...);
//! `--query FIELD` picks a field (dotted paths, `[]` to project a list) and
//! `--output text` prints it bare, so `--query Plaintext --output text | base64 -d`
//! works as with the AWS CLI. Blob inputs take `fileb://PATH` (raw bytes),
//! `file://PATH` (base64 text) or base64 inline, as AWS CLI v2 does.

use base64::Engine;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{
    CreateKeyRequest, DataKeySpec, DecryptRequest, EncryptionContext, KeyMetadata,
    ReEncryptRequest, Request, Response, Tag,
};
use plumbing::awstime::format_aws;

use super::{report_error, Global};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// AWS CLI's exit code for a parameter error.
const EXIT_PARAM: i32 = 252;
/// AWS CLI's exit code when the service cannot be reached.
const EXIT_UNREACHABLE: i32 = 255;

#[derive(Debug, clap::Args)]
pub struct KmsArgs {
    #[command(flatten)]
    pub output: super::output::OutputArgs,
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

#[derive(Debug, clap::Subcommand)]
pub enum KmsCommand {
    /// Create a symmetric encryption KMS key.
    CreateKey {
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
    },
    /// Show a key's metadata.
    DescribeKey {
        #[arg(long)]
        key_id: String,
    },
    /// List the keys of your account.
    ListKeys,
    EnableKey {
        #[arg(long)]
        key_id: String,
    },
    DisableKey {
        #[arg(long)]
        key_id: String,
    },
    /// Schedule a key's deletion after a waiting period of 7 to 30 days.
    ScheduleKeyDeletion {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        pending_window_in_days: Option<u32>,
    },
    /// Cancel a scheduled deletion (the key comes back Disabled).
    CancelKeyDeletion {
        #[arg(long)]
        key_id: String,
    },
    CreateAlias {
        #[arg(long)]
        alias_name: String,
        #[arg(long)]
        target_key_id: String,
    },
    UpdateAlias {
        #[arg(long)]
        alias_name: String,
        #[arg(long)]
        target_key_id: String,
    },
    DeleteAlias {
        #[arg(long)]
        alias_name: String,
    },
    ListAliases {
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Encrypt up to 4096 bytes under a key.
    Encrypt {
        #[arg(long)]
        key_id: String,
        /// fileb://PATH, file://PATH (base64) or base64.
        #[arg(long)]
        plaintext: String,
        /// `K=V,K2=V2` or a JSON object.
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Decrypt a ciphertext blob (the key is read from the blob).
    Decrypt {
        /// fileb://PATH, file://PATH (base64) or base64.
        #[arg(long)]
        ciphertext_blob: String,
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// Decrypt and encrypt again under another key, server-side.
    ReEncrypt {
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
    },
    /// A fresh data key, in plaintext and encrypted.
    GenerateDataKey {
        #[arg(long)]
        key_id: String,
        /// AES_256 or AES_128.
        #[arg(long)]
        key_spec: Option<String>,
        #[arg(long)]
        number_of_bytes: Option<u32>,
        #[arg(long)]
        encryption_context: Option<String>,
    },
    /// A fresh data key, encrypted only.
    GenerateDataKeyWithoutPlaintext {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        key_spec: Option<String>,
        #[arg(long)]
        number_of_bytes: Option<u32>,
        #[arg(long)]
        encryption_context: Option<String>,
    },
    EnableKeyRotation {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        rotation_period_in_days: Option<u32>,
    },
    DisableKeyRotation {
        #[arg(long)]
        key_id: String,
    },
    GetKeyRotationStatus {
        #[arg(long)]
        key_id: String,
    },
    RotateKeyOnDemand {
        #[arg(long)]
        key_id: String,
    },
    ListKeyRotations {
        #[arg(long)]
        key_id: String,
    },
    UpdateKeyDescription {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        description: String,
    },
    ListResourceTags {
        #[arg(long)]
        key_id: String,
    },
    /// Let a principal use a key for some operations (optionally within an
    /// encryption context).
    CreateGrant {
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
    },
    ListGrants {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        grant_id: Option<String>,
        #[arg(long)]
        grantee_principal: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    ListRetirableGrants {
        #[arg(long)]
        retiring_principal: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Retire a grant by its token, or by key and grant ID.
    RetireGrant {
        #[arg(long)]
        grant_token: Option<String>,
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        grant_id: Option<String>,
    },
    RevokeGrant {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        grant_id: String,
    },
    GetKeyPolicy {
        #[arg(long)]
        key_id: String,
        #[arg(long, default_value = "default")]
        policy_name: String,
    },
    PutKeyPolicy {
        #[arg(long)]
        key_id: String,
        #[arg(long, default_value = "default")]
        policy_name: String,
        /// Policy JSON (inline or file://PATH).
        #[arg(long)]
        policy: String,
        #[arg(long)]
        bypass_policy_lockout_safety_check: bool,
    },
    ListKeyPolicies {
        #[arg(long)]
        key_id: String,
    },
    /// Ask kmsd to re-read its configuration (as SIGHUP does; atrest extension).
    ReloadConfig,
    /// Who kmsd takes you for: principal, account, Unix uid (like `aws sts
    /// get-caller-identity`; atrest extension).
    GetCallerIdentity,
    /// Moves kmsd's clock forward (drills and tests: refused unless kmsd runs with
    /// `--allow-clock-control`), e.g. past a key's deletion date.
    #[command(hide = true)]
    AdvanceClock {
        #[arg(long)]
        seconds: u64,
    },
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

/// AWS's `KeyMetadata` JSON.
pub fn key_metadata_json(m: &KeyMetadata) -> Value {
    let mut o = Map::new();
    o.insert("AWSAccountId".into(), json!(m.aws_account_id));
    o.insert("KeyId".into(), json!(m.key_id));
    o.insert("Arn".into(), json!(m.arn));
    o.insert("CreationDate".into(), json!(format_aws(m.creation_date_ms)));
    o.insert("Enabled".into(), json!(m.enabled));
    o.insert("Description".into(), json!(m.description));
    o.insert("KeyUsage".into(), json!(m.key_usage));
    o.insert("KeyState".into(), json!(m.key_state.as_str()));
    if let Some(d) = m.deletion_date_ms {
        o.insert("DeletionDate".into(), json!(format_aws(d)));
    }
    o.insert("Origin".into(), json!(m.origin));
    o.insert("KeyManager".into(), json!(m.key_manager));
    o.insert("CustomerMasterKeySpec".into(), json!(m.key_spec));
    o.insert("KeySpec".into(), json!(m.key_spec));
    o.insert(
        "EncryptionAlgorithms".into(),
        json!(m.encryption_algorithms),
    );
    o.insert("MultiRegion".into(), json!(m.multi_region));
    Value::Object(o)
}

/// The AWS CLI's JSON for a response (None: the operation prints nothing).
pub fn response_json(r: &Response) -> Option<Value> {
    Some(match r {
        Response::KeyMetadata(m) => json!({ "KeyMetadata": key_metadata_json(m) }),
        Response::ListKeys { keys, .. } => json!({
            "Keys": keys.iter().map(|k| json!({"KeyId": k.key_id, "KeyArn": k.key_arn})).collect::<Vec<_>>()
        }),
        Response::Empty => return None,
        Response::ScheduleKeyDeletion(s) => json!({
            "KeyId": s.key_id,
            "DeletionDate": format_aws(s.deletion_date_ms),
            "KeyState": s.key_state.as_str(),
            "PendingWindowInDays": s.pending_window_in_days,
        }),
        Response::KeyId { key_id } => json!({ "KeyId": key_id }),
        Response::ListAliases { aliases, .. } => json!({
            "Aliases": aliases.iter().map(|a| json!({
                "AliasName": a.alias_name,
                "AliasArn": a.alias_arn,
                "TargetKeyId": a.target_key_id,
                "CreationDate": format_aws(a.creation_date_ms),
                "LastUpdatedDate": format_aws(a.last_updated_date_ms),
            })).collect::<Vec<_>>()
        }),
        Response::Encrypt(e) => json!({
            "CiphertextBlob": B64.encode(&e.ciphertext_blob),
            "KeyId": e.key_id,
            "EncryptionAlgorithm": e.encryption_algorithm,
        }),
        Response::Decrypt(d) => json!({
            "KeyId": d.key_id,
            "Plaintext": B64.encode(&d.plaintext[..]),
            "EncryptionAlgorithm": d.encryption_algorithm,
        }),
        Response::ReEncrypt(r) => json!({
            "CiphertextBlob": B64.encode(&r.ciphertext_blob),
            "SourceKeyId": r.source_key_id,
            "KeyId": r.key_id,
            "SourceEncryptionAlgorithm": r.source_encryption_algorithm,
            "DestinationEncryptionAlgorithm": r.destination_encryption_algorithm,
        }),
        Response::GenerateDataKey(g) => json!({
            "CiphertextBlob": B64.encode(&g.ciphertext_blob),
            "Plaintext": B64.encode(&g.plaintext[..]),
            "KeyId": g.key_id,
        }),
        Response::GenerateDataKeyWithoutPlaintext(g) => json!({
            "CiphertextBlob": B64.encode(&g.ciphertext_blob),
            "KeyId": g.key_id,
        }),
        Response::KeyRotationStatus(s) => {
            let mut o = Map::new();
            o.insert("KeyRotationEnabled".into(), json!(s.key_rotation_enabled));
            o.insert("KeyId".into(), json!(s.key_id));
            if let Some(d) = s.rotation_period_in_days {
                o.insert("RotationPeriodInDays".into(), json!(d));
            }
            if let Some(t) = s.next_rotation_date_ms {
                o.insert("NextRotationDate".into(), json!(format_aws(t)));
            }
            if let Some(t) = s.on_demand_rotation_start_date_ms {
                o.insert("OnDemandRotationStartDate".into(), json!(format_aws(t)));
            }
            Value::Object(o)
        }
        Response::ListKeyRotations { rotations } => json!({
            "Rotations": rotations.iter().map(|r| json!({
                "KeyId": r.key_id,
                "RotationDate": format_aws(r.rotation_date_ms),
                "RotationType": r.rotation_type.as_str(),
            })).collect::<Vec<_>>(),
            "Truncated": false,
        }),
        Response::ListResourceTags { tags } => json!({
            "Tags": tags.iter().map(|t| json!({"TagKey": t.tag_key, "TagValue": t.tag_value})).collect::<Vec<_>>(),
            "Truncated": false,
        }),
        Response::Clock { now_ms } => json!({ "Now": format_aws(*now_ms) }),
        Response::CreateGrant {
            grant_id,
            grant_token,
        } => json!({ "GrantToken": grant_token, "GrantId": grant_id }),
        Response::ListGrants {
            grants,
            next_marker,
            truncated,
        } => {
            let mut m = Map::new();
            m.insert(
                "Grants".into(),
                Value::Array(grants.iter().map(grant_json).collect()),
            );
            if let Some(n) = next_marker {
                m.insert("NextMarker".into(), json!(n));
            }
            m.insert("Truncated".into(), json!(truncated));
            Value::Object(m)
        }
        // Policy only: `--output text` then prints the document, as scripts expect.
        Response::KeyPolicy { policy, .. } => json!({ "Policy": policy }),
        Response::ListKeyPolicies {
            policy_names,
            truncated,
        } => json!({ "PolicyNames": policy_names, "Truncated": truncated }),
        Response::EventRecorded { event_id } => json!({ "EventId": event_id }),
        Response::LookupEvents { page_json } => {
            serde_json::from_str(page_json).unwrap_or(Value::Null)
        }
        Response::ConfigReloaded { summary } => json!({ "Reloaded": summary }),
        Response::CallerIdentity(c) => {
            let mut m = Map::new();
            m.insert(
                "UserId".into(),
                json!(c.arn.rsplit(['/', ':']).next().unwrap_or("")),
            );
            m.insert("Account".into(), json!(c.account));
            m.insert("Arn".into(), json!(c.arn));
            m.insert("UnixUid".into(), json!(c.uid));
            m.insert("UnixPrincipal".into(), json!(c.uid_principal));
            if let Some(v) = &c.via {
                m.insert("Via".into(), json!(v));
            }
            Value::Object(m)
        }
    })
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

fn constraints_json(c: &kmsd::protocol::GrantConstraints) -> Value {
    let mut m = Map::new();
    if let Some(e) = &c.encryption_context_subset {
        m.insert("EncryptionContextSubset".into(), json!(e));
    }
    if let Some(e) = &c.encryption_context_equals {
        m.insert("EncryptionContextEquals".into(), json!(e));
    }
    Value::Object(m)
}

fn grant_json(g: &kmsd::protocol::GrantListEntry) -> Value {
    let mut m = Map::new();
    m.insert("KeyId".into(), json!(g.key_id));
    m.insert("GrantId".into(), json!(g.grant_id));
    if let Some(n) = &g.name {
        m.insert("Name".into(), json!(n));
    }
    m.insert("CreationDate".into(), json!(format_aws(g.creation_date_ms)));
    m.insert("GranteePrincipal".into(), json!(g.grantee_principal));
    if let Some(r) = &g.retiring_principal {
        m.insert("RetiringPrincipal".into(), json!(r));
    }
    m.insert("IssuingAccount".into(), json!(g.issuing_account));
    m.insert("Operations".into(), json!(g.operations));
    if let Some(c) = &g.constraints {
        m.insert("Constraints".into(), constraints_json(c));
    }
    Value::Object(m)
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
    Ok(kmsd::policy::defaults::console_key_policy(&account, &a, &u))
}

fn build_request(cmd: KmsCommand) -> Result<Request, ParamError> {
    Ok(match cmd {
        KmsCommand::CreateKey {
            description,
            policy,
            tags,
            key_usage,
            key_spec,
            bypass_policy_lockout_safety_check,
            ..
        } => Request::CreateKey(CreateKeyRequest {
            description,
            policy: policy.map(|p| read_text("policy", &p)).transpose()?,
            tags: parse_tags(&tags)?,
            key_usage,
            key_spec,
            bypass_policy_lockout_safety_check,
        }),
        KmsCommand::DescribeKey { key_id } => Request::DescribeKey {
            key_id,
            grant_tokens: vec![],
        },
        KmsCommand::ListKeys => Request::ListKeys(Default::default()),
        KmsCommand::EnableKey { key_id } => Request::EnableKey { key_id },
        KmsCommand::DisableKey { key_id } => Request::DisableKey { key_id },
        KmsCommand::ScheduleKeyDeletion {
            key_id,
            pending_window_in_days,
        } => Request::ScheduleKeyDeletion {
            key_id,
            pending_window_in_days,
        },
        KmsCommand::CancelKeyDeletion { key_id } => Request::CancelKeyDeletion { key_id },
        KmsCommand::CreateAlias {
            alias_name,
            target_key_id,
        } => Request::CreateAlias {
            alias_name,
            target_key_id,
        },
        KmsCommand::UpdateAlias {
            alias_name,
            target_key_id,
        } => Request::UpdateAlias {
            alias_name,
            target_key_id,
        },
        KmsCommand::DeleteAlias { alias_name } => Request::DeleteAlias { alias_name },
        KmsCommand::ListAliases { key_id } => {
            Request::ListAliases(kmsd::protocol::ListAliasesRequest {
                key_id,
                ..Default::default()
            })
        }
        KmsCommand::Encrypt {
            key_id,
            plaintext,
            encryption_context,
        } => Request::Encrypt(kmsd::protocol::EncryptRequest {
            key_id,
            plaintext: read_blob("plaintext", &plaintext)?,
            encryption_context: parse_context("encryption-context", encryption_context.as_deref())?,
            grant_tokens: vec![],
            encryption_algorithm: None,
        }),
        KmsCommand::Decrypt {
            ciphertext_blob,
            key_id,
            encryption_context,
        } => Request::Decrypt(DecryptRequest {
            ciphertext_blob: read_blob("ciphertext-blob", &ciphertext_blob)?.to_vec(),
            encryption_context: parse_context("encryption-context", encryption_context.as_deref())?,
            key_id,
            grant_tokens: vec![],
            encryption_algorithm: None,
        }),
        KmsCommand::ReEncrypt {
            ciphertext_blob,
            destination_key_id,
            source_key_id,
            source_encryption_context,
            destination_encryption_context,
        } => Request::ReEncrypt(ReEncryptRequest {
            ciphertext_blob: read_blob("ciphertext-blob", &ciphertext_blob)?.to_vec(),
            source_encryption_context: parse_context(
                "source-encryption-context",
                source_encryption_context.as_deref(),
            )?,
            source_key_id,
            destination_key_id,
            destination_encryption_context: parse_context(
                "destination-encryption-context",
                destination_encryption_context.as_deref(),
            )?,
            grant_tokens: vec![],
        }),
        KmsCommand::GenerateDataKey {
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        } => Request::GenerateDataKey(gdk(key_id, key_spec, number_of_bytes, encryption_context)?),
        KmsCommand::GenerateDataKeyWithoutPlaintext {
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        } => Request::GenerateDataKeyWithoutPlaintext(gdk(
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        )?),
        KmsCommand::EnableKeyRotation {
            key_id,
            rotation_period_in_days,
        } => Request::EnableKeyRotation {
            key_id,
            rotation_period_in_days,
        },
        KmsCommand::DisableKeyRotation { key_id } => Request::DisableKeyRotation { key_id },
        KmsCommand::GetKeyRotationStatus { key_id } => Request::GetKeyRotationStatus { key_id },
        KmsCommand::RotateKeyOnDemand { key_id } => Request::RotateKeyOnDemand { key_id },
        KmsCommand::ListKeyRotations { key_id } => Request::ListKeyRotations { key_id },
        KmsCommand::UpdateKeyDescription {
            key_id,
            description,
        } => Request::UpdateKeyDescription {
            key_id,
            description,
        },
        KmsCommand::ListResourceTags { key_id } => Request::ListResourceTags { key_id },
        KmsCommand::CreateGrant {
            key_id,
            grantee_principal,
            operations,
            retiring_principal,
            constraints,
            name,
            grant_tokens,
        } => Request::CreateGrant(kmsd::protocol::CreateGrantRequest {
            key_id,
            grantee_principal,
            retiring_principal,
            operations: split_list(&operations),
            constraints: constraints.as_deref().map(parse_constraints).transpose()?,
            name,
            grant_tokens,
        }),
        KmsCommand::ListGrants {
            key_id,
            grant_id,
            grantee_principal,
            limit,
        } => Request::ListGrants(kmsd::protocol::ListGrantsRequest {
            key_id,
            grant_id,
            grantee_principal,
            limit,
            marker: None,
        }),
        KmsCommand::ListRetirableGrants {
            retiring_principal,
            limit,
        } => Request::ListRetirableGrants(kmsd::protocol::ListRetirableGrantsRequest {
            retiring_principal,
            limit,
            marker: None,
        }),
        KmsCommand::RetireGrant {
            grant_token,
            key_id,
            grant_id,
        } => Request::RetireGrant(kmsd::protocol::RetireGrantRequest {
            grant_token,
            key_id,
            grant_id,
        }),
        KmsCommand::RevokeGrant { key_id, grant_id } => Request::RevokeGrant { key_id, grant_id },
        KmsCommand::GetKeyPolicy {
            key_id,
            policy_name,
        } => Request::GetKeyPolicy {
            key_id,
            policy_name: Some(policy_name),
        },
        KmsCommand::PutKeyPolicy {
            key_id,
            policy_name,
            policy,
            bypass_policy_lockout_safety_check,
        } => Request::PutKeyPolicy {
            key_id,
            policy_name: Some(policy_name),
            policy: read_text("policy", &policy)?,
            bypass_policy_lockout_safety_check,
        },
        KmsCommand::ListKeyPolicies { key_id } => Request::ListKeyPolicies { key_id },
        KmsCommand::ReloadConfig => Request::ReloadConfig,
        KmsCommand::GetCallerIdentity => Request::GetCallerIdentity,
        KmsCommand::AdvanceClock { seconds } => Request::AdvanceClock { seconds },
    })
}

fn gdk(
    key_id: String,
    key_spec: Option<String>,
    number_of_bytes: Option<u32>,
    encryption_context: Option<String>,
) -> Result<kmsd::protocol::GenerateDataKeyRequest, ParamError> {
    let key_spec = match key_spec {
        None => None,
        Some(s) => Some(DataKeySpec::parse(&s).ok_or_else(|| {
            param(format!(
                "Invalid value for '--key-spec': '{s}' (valid values: AES_256, AES_128)"
            ))
        })?),
    };
    Ok(kmsd::protocol::GenerateDataKeyRequest {
        key_id,
        key_spec,
        number_of_bytes,
        encryption_context: parse_context("encryption-context", encryption_context.as_deref())?,
        grant_tokens: vec![],
    })
}

/// Sends the request, following pages for the list operations.
fn send(client: &KmsClient, request: Request) -> Result<Response, ClientError> {
    match request {
        Request::ListKeys(_) => Ok(Response::ListKeys {
            keys: client.list_keys()?,
            next_marker: None,
            truncated: false,
        }),
        Request::ListAliases(l) => Ok(Response::ListAliases {
            aliases: client.list_aliases(l.key_id.as_deref())?,
            next_marker: None,
            truncated: false,
        }),
        other => client.call(other),
    }
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
    if let KmsCommand::CreateKey {
        policy,
        key_administrators,
        key_users,
        ..
    } = &mut args.command
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
    let request = match build_request(args.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\n{e}");
            return EXIT_PARAM;
        }
    };
    let operation = request.operation();
    let client = match connect() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let response = match send(&client, request) {
        Ok(r) => r,
        Err(ClientError::Kms(e)) => return report_error(operation, e.code.as_str(), &e.message),
        Err(e) => {
            eprintln!("atrest: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    let Some(value) = response_json(&response) else {
        return 0;
    };
    args.output.emit(&value)
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
