//! The AWS policy grammar: a parsed, validated model of a key policy or an IAM policy.
//!
//! Parsing goes through `serde_json::Value` by hand rather than derived deserializers so that a
//! malformed document gets a message naming the element that is wrong (AWS answers
//! `MalformedPolicyDocumentException` with such messages).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::condition::{Condition, ConditionOperator};
use super::principal::{is_account_id, is_service_principal, Principal};
use super::PolicyError;

/// Largest key policy AWS KMS accepts, in bytes.
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One entry of `Principal: {"AWS": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsPrincipal {
    /// `"AWS": "*"`: every AWS principal.
    Any,
    /// `"AWS": "111122223333"` or `"arn:aws:iam::111122223333:root"`: the account. In a key
    /// policy this allows the account's root, which delegates to the account's IAM policies.
    Account(String),
    /// A user, role or assumed-role session ARN.
    Arn(String),
}

/// The `Principal` / `NotPrincipal` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSpec {
    /// `"Principal": "*"`: everyone.
    Everyone,
    /// `{"AWS": ..., "Service": ...}`.
    Listed {
        aws: Vec<AwsPrincipal>,
        services: Vec<String>,
    },
}

/// `Action` or `NotAction` patterns (`kms:*`, `kms:Generate*`), matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    Action(Vec<String>),
    NotAction(Vec<String>),
}

/// `Resource` or `NotResource` patterns; in a key policy `*` means "this key".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    Resource(Vec<String>),
    NotResource(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Option<PrincipalSpec>,
    pub not_principal: Option<PrincipalSpec>,
    pub action: ActionSpec,
    pub resource: ResourceSpec,
    pub conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PolicyDocument::from_value(&v).map_err(serde::de::Error::custom)
    }
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

/// A string or a non-empty array of strings (AWS accepts both shapes for most elements).
fn string_or_list(v: &Value, element: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(malformed(format!("{element} must not be an empty list")));
            }
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(malformed(format!(
                        "{element} must contain only strings, found {}",
                        kind(i)
                    ))),
                })
                .collect()
        }
        _ => Err(malformed(format!(
            "{element} must be a string or a list of strings, found {}",
            kind(v)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_action_pattern(a: &str) -> Result<String, PolicyError> {
    if a == "*" {
        return Ok(a.to_string());
    }
    let valid = a.split_once(':').is_some_and(|(svc, name)| {
        !svc.is_empty()
            && !name.is_empty()
            && svc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
    });
    if valid {
        Ok(a.to_string())
    } else {
        Err(malformed(format!(
            "Policy contains an invalid action '{a}': expected SERVICE:ACTION such as kms:Decrypt or kms:*"
        )))
    }
}

fn parse_aws_principal(s: &str) -> Result<AwsPrincipal, PolicyError> {
    let invalid = || {
        malformed(format!(
            "Policy contains a statement with one or more invalid principals: '{s}'"
        ))
    };
    if s == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(s) {
        return Ok(AwsPrincipal::Account(s.to_string()));
    }
    // Wildcards are not allowed inside principal ARNs.
    if s.contains('*') || s.contains('?') {
        return Err(invalid());
    }
    let p = Principal::parse(s).map_err(|_| invalid())?;
    if p.is_service() {
        return Err(invalid());
    }
    match (p.is_root(), p.account) {
        (true, Some(acct)) => Ok(AwsPrincipal::Account(acct)),
        _ => Ok(AwsPrincipal::Arn(p.arn)),
    }
}

fn parse_principal(v: &Value, element: &str) -> Result<PrincipalSpec, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(PrincipalSpec::Everyone),
        Value::Object(m) => {
            if m.is_empty() {
                return Err(malformed(format!("{element} must not be empty")));
            }
            let mut aws = Vec::new();
            let mut services = Vec::new();
            for (k, val) in m {
                let what = format!("{element}.{k}");
                match k.as_str() {
                    "AWS" => {
                        for s in string_or_list(val, &what)? {
                            aws.push(parse_aws_principal(&s)?);
                        }
                    }
                    "Service" => {
                        for s in string_or_list(val, &what)? {
                            if !is_service_principal(&s) {
                                return Err(malformed(format!(
                                    "Policy contains a statement with one or more invalid principals: '{s}' is not a service principal"
                                )));
                            }
                            services.push(s);
                        }
                    }
                    other => {
                        return Err(malformed(format!(
                            "{element} has an unsupported principal type '{other}' (expected AWS or Service)"
                        )))
                    }
                }
            }
            Ok(PrincipalSpec::Listed { aws, services })
        }
        _ => Err(malformed(format!(
            "{element} must be \"*\" or an object such as {{\"AWS\": ARN}}, found {}",
            kind(v)
        ))),
    }
}

fn condition_values(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |i: &Value| match i {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(format!(
            "Condition value for {what} must be a string, boolean or number, found {}",
            kind(i)
        ))),
    };
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(malformed(format!(
                    "Condition value for {what} must not be an empty list"
                )));
            }
            items.iter().map(scalar).collect()
        }
        other => Ok(vec![scalar(other)?]),
    }
}

fn parse_conditions(v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return Err(malformed(format!(
            "Condition must be an object of operators, found {}",
            kind(v)
        )));
    };
    let mut out = Vec::new();
    for (op_name, block) in ops {
        let operator = ConditionOperator::parse(op_name)?;
        let Value::Object(keys) = block else {
            return Err(malformed(format!(
                "Condition operator {op_name} must map condition keys to values, found {}",
                kind(block)
            )));
        };
        if keys.is_empty() {
            return Err(malformed(format!(
                "Condition operator {op_name} has no condition keys"
            )));
        }
        for (key, vals) in keys {
            if key.is_empty() || !key.contains(':') {
                return Err(malformed(format!(
                    "Condition key '{key}' under {op_name} is not a valid condition key (expected PREFIX:NAME such as kms:ViaService)"
                )));
            }
            let values = condition_values(vals, &format!("{op_name} {key}"))?;
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn opt_string(
    m: &Map<String, Value>,
    field: &str,
    ctx: &str,
) -> Result<Option<String>, PolicyError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(malformed(format!(
            "{ctx}{field} must be a string, found {}",
            kind(other)
        ))),
    }
}

fn parse_statement(v: &Value, index: usize) -> Result<Statement, PolicyError> {
    let Value::Object(m) = v else {
        return Err(malformed(format!(
            "Statement {index} must be an object, found {}",
            kind(v)
        )));
    };
    let sid = opt_string(m, "Sid", &format!("Statement {index}: "))?;
    let at = match &sid {
        Some(s) => format!("Statement {index} (Sid '{s}'): "),
        None => format!("Statement {index}: "),
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(malformed(format!("{at}unknown element '{k}'")));
        }
    }
    let effect = match m.get("Effect") {
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(malformed(format!(
                "{at}Effect must be \"Allow\" or \"Deny\", found {other}"
            )))
        }
        None => return Err(malformed(format!("{at}missing Effect"))),
    };
    let principal = match m.get("Principal") {
        Some(p) => Some(parse_principal(p, &format!("{at}Principal"))?),
        None => None,
    };
    let not_principal = match m.get("NotPrincipal") {
        Some(p) => Some(parse_principal(p, &format!("{at}NotPrincipal"))?),
        None => None,
    };
    if principal.is_some() && not_principal.is_some() {
        return Err(malformed(format!(
            "{at}has both Principal and NotPrincipal"
        )));
    }
    let action = match (m.get("Action"), m.get("NotAction")) {
        (Some(a), None) => ActionSpec::Action(
            string_or_list(a, &format!("{at}Action"))?
                .iter()
                .map(|s| parse_action_pattern(s))
                .collect::<Result<_, _>>()?,
        ),
        (None, Some(a)) => ActionSpec::NotAction(
            string_or_list(a, &format!("{at}NotAction"))?
                .iter()
                .map(|s| parse_action_pattern(s))
                .collect::<Result<_, _>>()?,
        ),
        (Some(_), Some(_)) => return Err(malformed(format!("{at}has both Action and NotAction"))),
        (None, None) => return Err(malformed(format!("{at}missing Action or NotAction"))),
    };
    let resource = match (m.get("Resource"), m.get("NotResource")) {
        (Some(r), None) => ResourceSpec::Resource(string_or_list(r, &format!("{at}Resource"))?),
        (None, Some(r)) => {
            ResourceSpec::NotResource(string_or_list(r, &format!("{at}NotResource"))?)
        }
        (Some(_), Some(_)) => {
            return Err(malformed(format!("{at}has both Resource and NotResource")))
        }
        (None, None) => return Err(malformed(format!("{at}missing Resource or NotResource"))),
    };
    let conditions = match m.get("Condition") {
        Some(c) => parse_conditions(c).map_err(|e| match e {
            PolicyError::Malformed(msg) => malformed(format!("{at}{msg}")),
            other => other,
        })?,
        None => Vec::new(),
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        not_principal,
        action,
        resource,
        conditions,
    })
}

impl PolicyDocument {
    /// Parse a policy in the AWS grammar (key policy or IAM policy). Principal presence is not
    /// checked here; see [`PolicyDocument::parse_key_policy`] and
    /// [`PolicyDocument::parse_identity_policy`].
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("The policy is not valid JSON: {e}")))?;
        Self::from_value(&v)
    }

    /// Parse a key policy: additionally every statement must name a `Principal` or
    /// `NotPrincipal`, and the text must fit AWS's 32 KB limit.
    pub fn parse_key_policy(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_KEY_POLICY_BYTES {
            return Err(malformed(format!(
                "The key policy is {} bytes; a key policy can be at most {MAX_KEY_POLICY_BYTES} bytes",
                text.len()
            )));
        }
        let doc = Self::parse(text)?;
        for (i, s) in doc.statements.iter().enumerate() {
            if s.principal.is_none() && s.not_principal.is_none() {
                return Err(malformed(format!(
                    "Statement {i}{}: a key policy statement must have a Principal",
                    s.sid
                        .as_deref()
                        .map(|s| format!(" (Sid '{s}')"))
                        .unwrap_or_default()
                )));
            }
        }
        Ok(doc)
    }

    /// Parse an IAM identity policy: statements must not name a `Principal`.
    pub fn parse_identity_policy(text: &str) -> Result<Self, PolicyError> {
        let doc = Self::parse(text)?;
        for (i, s) in doc.statements.iter().enumerate() {
            if s.principal.is_some() || s.not_principal.is_some() {
                return Err(malformed(format!(
                    "Statement {i}: an identity-based policy statement must not have a Principal"
                )));
            }
        }
        Ok(doc)
    }

    /// Build from an already-decoded JSON value.
    pub fn from_value(v: &Value) -> Result<Self, PolicyError> {
        let Value::Object(m) = v else {
            return Err(malformed(format!(
                "The policy must be a JSON object, found {}",
                kind(v)
            )));
        };
        for k in m.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!(
                    "The policy has an unknown element '{k}'"
                )));
            }
        }
        let version = opt_string(m, "Version", "")?;
        if let Some(ver) = &version {
            if ver != "2012-10-17" && ver != "2008-10-17" {
                return Err(malformed(format!(
                    "Version '{ver}' is not supported (use \"2012-10-17\")"
                )));
            }
        }
        let id = opt_string(m, "Id", "")?;
        let statements = match m.get("Statement") {
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(malformed("Statement must not be an empty list"));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, s)| parse_statement(s, i))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(obj @ Value::Object(_)) => vec![parse_statement(obj, 0)?],
            Some(other) => {
                return Err(malformed(format!(
                    "Statement must be an object or a list of objects, found {}",
                    kind(other)
                )))
            }
            None => return Err(malformed("The policy has no Statement")),
        };
        Ok(PolicyDocument {
            version,
            id,
            statements,
        })
    }
}
