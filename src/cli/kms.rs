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
use kmsd::clock::format_aws;
use kmsd::protocol::{
    CreateKeyRequest, DataKeySpec, DecryptRequest, EncryptionContext, KeyMetadata,
    ReEncryptRequest, Request, Response, Tag,
};

use super::{print_json, report_error, Global};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// AWS CLI's exit code for a parameter error.
const EXIT_PARAM: i32 = 252;
/// AWS CLI's exit code when the service cannot be reached.
const EXIT_UNREACHABLE: i32 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

#[derive(Debug, clap::Args)]
pub struct KmsArgs {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "json")]
    pub output: OutputFormat,
    /// Print only this field of the result (e.g. `Plaintext`, `KeyMetadata.Arn`, `Keys[].KeyId`).
    #[arg(long, global = true, value_name = "PATH")]
    pub query: Option<String>,
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

/// Parses an encryption context: a JSON object of strings or `K=V,K2=V2`.
pub fn parse_context(name: &str, value: Option<&str>) -> Result<EncryptionContext, ParamError> {
    let Some(value) = value else {
        return Ok(EncryptionContext::new());
    };
    let value = read_text(name, value)?;
    let trimmed = value.trim();
    if trimmed.starts_with('{') {
        let map: EncryptionContext = serde_json::from_str(trimmed).map_err(|e| {
            param(format!(
                "Error parsing parameter '--{name}': Invalid JSON: {e}"
            ))
        })?;
        return Ok(map);
    }
    let mut out = EncryptionContext::new();
    for pair in trimmed.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            param(format!(
                "Error parsing parameter '--{name}': expected KEY=VALUE, got '{pair}'"
            ))
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `--tags`: `TagKey=K,TagValue=V` items or one JSON list.
pub fn parse_tags(items: &[String]) -> Result<Vec<Tag>, ParamError> {
    let mut tags = Vec::new();
    for item in items {
        let item = read_text("tags", item)?;
        let t = item.trim();
        if t.starts_with('[') {
            let list: Vec<Map<String, Value>> = serde_json::from_str(t).map_err(|e| {
                param(format!(
                    "Error parsing parameter '--tags': Invalid JSON: {e}"
                ))
            })?;
            for m in list {
                let get = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                tags.push(Tag {
                    tag_key: get("TagKey")
                        .ok_or_else(|| param("Error parsing parameter '--tags': missing TagKey"))?,
                    tag_value: get("TagValue").unwrap_or_default(),
                });
            }
            continue;
        }
        let mut key = None;
        let mut value = None;
        for part in t.split(',') {
            match part.split_once('=') {
                Some(("TagKey", k)) => key = Some(k.to_string()),
                Some(("TagValue", v)) => value = Some(v.to_string()),
                _ => {
                    return Err(param(format!(
                        "Error parsing parameter '--tags': expected TagKey=K,TagValue=V, got '{t}'"
                    )))
                }
            }
        }
        tags.push(Tag {
            tag_key: key
                .ok_or_else(|| param("Error parsing parameter '--tags': missing TagKey"))?,
            tag_value: value.unwrap_or_default(),
        });
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
    })
}

/// Applies a `--query` path: `A.B`, `A[].B`, `A[0]`.
pub fn apply_query(v: &Value, path: &str) -> Result<Value, ParamError> {
    let mut cur = vec![v.clone()];
    let mut projected = false;
    for seg in path.split('.') {
        let (name, index) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(&seg[i..])),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur
                .iter()
                .map(|c| c.get(name).cloned().unwrap_or(Value::Null))
                .collect();
        }
        match index {
            None => {}
            Some("[]") => {
                cur = cur
                    .into_iter()
                    .flat_map(|c| match c {
                        Value::Array(a) => a,
                        _ => Vec::new(),
                    })
                    .collect();
                projected = true;
            }
            Some(ix) => {
                let n: usize = ix
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| {
                        param(format!(
                            "Bad value for --query {path}: unsupported index {ix}"
                        ))
                    })?;
                cur = cur
                    .iter()
                    .map(|c| c.get(n).cloned().unwrap_or(Value::Null))
                    .collect();
            }
        }
    }
    if projected {
        Ok(Value::Array(cur))
    } else {
        Ok(cur.into_iter().next().unwrap_or(Value::Null))
    }
}

/// AWS CLI's text rendering: scalars bare, lists tab-separated, objects' values
/// tab-separated.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(a) => {
            if a.iter().all(|x| !x.is_object() && !x.is_array()) {
                a.iter().map(text_of).collect::<Vec<_>>().join("\t")
            } else {
                a.iter().map(text_of).collect::<Vec<_>>().join("\n")
            }
        }
        Value::Object(o) => o.values().map(text_of).collect::<Vec<_>>().join("\t"),
    }
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

pub fn run(g: &Global, args: KmsArgs) -> i32 {
    let request = match build_request(args.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\n{e}");
            return EXIT_PARAM;
        }
    };
    let operation = request.operation();
    let socket = g.kmsd_socket();
    let client = match KmsClient::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atrest: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    let client = match &g.act_as {
        Some(arn) => client.acting_as(arn.clone()),
        None => client,
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
    let value = match &args.query {
        Some(q) => match apply_query(&value, q) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("\n{e}");
                return EXIT_PARAM;
            }
        },
        None => value,
    };
    match args.output {
        OutputFormat::Json => print_json(&value),
        OutputFormat::Text => println!("{}", text_of(&value)),
    }
    0
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
    fn blobs_and_queries() {
        assert_eq!(&read_blob("p", "aGk=").unwrap()[..], b"hi");
        assert!(read_blob("p", "not base64!").is_err());
        let v = json!({"Keys": [{"KeyId": "a"}, {"KeyId": "b"}], "Plaintext": "aGk="});
        assert_eq!(apply_query(&v, "Plaintext").unwrap(), json!("aGk="));
        assert_eq!(apply_query(&v, "Keys[].KeyId").unwrap(), json!(["a", "b"]));
        assert_eq!(apply_query(&v, "Keys[1].KeyId").unwrap(), json!("b"));
        assert_eq!(text_of(&json!(["a", "b"])), "a\tb");
    }
}
