//! The `Condition` element: operators, set qualifiers, `...IfExists`, and their evaluation.
//!
//! Semantics follow IAM:
//! - every operator block, and every key inside it, must hold (AND);
//! - several policy values for one key are alternatives (OR) for positive operators and must
//!   all fail (NOR) for negated ones (`StringNotEquals`, `StringNotLike`, `ArnNot*`, ...);
//! - a key missing from the request makes a positive operator false and a negated one true;
//!   `...IfExists` makes a missing key true; `Null` tests presence itself;
//! - `ForAnyValue:` holds when at least one request value satisfies the operator (false when
//!   the key is missing or empty), `ForAllValues:` when every request value does (true when the
//!   key is missing or empty);
//! - condition key names are case-insensitive, values are compared as the operator says.

use std::collections::BTreeMap;

use super::matching::{arn_match, glob_match};
use super::PolicyError;

/// The base comparison of a condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseOperator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
}

impl BaseOperator {
    fn from_name(name: &str) -> Option<Self> {
        use BaseOperator::*;
        Some(match name {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "ArnEquals" => ArnEquals,
            "ArnNotEquals" => ArnNotEquals,
            "ArnLike" => ArnLike,
            "ArnNotLike" => ArnNotLike,
            "Bool" => Bool,
            "Null" => Null,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            _ => return None,
        })
    }

    /// Negated operators hold when no policy value matches.
    fn is_negated(self) -> bool {
        use BaseOperator::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | ArnNotEquals
                | ArnNotLike
                | NumericNotEquals
        )
    }

    /// Does one request value match one policy value (the positive form of the operator)?
    fn matches_one(self, request: &str, policy: &str) -> bool {
        use BaseOperator::*;
        match self {
            StringEquals | StringNotEquals => request == policy,
            StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
                request.to_lowercase() == policy.to_lowercase()
            }
            StringLike | StringNotLike => glob_match(policy, request),
            ArnEquals | ArnNotEquals | ArnLike | ArnNotLike => arn_match(policy, request),
            Bool => request.eq_ignore_ascii_case(policy),
            // Presence is handled before per-value matching.
            Null => false,
            NumericEquals | NumericNotEquals => num_cmp(request, policy, |a, b| a == b),
            NumericLessThan => num_cmp(request, policy, |a, b| a < b),
            NumericLessThanEquals => num_cmp(request, policy, |a, b| a <= b),
            NumericGreaterThan => num_cmp(request, policy, |a, b| a > b),
            NumericGreaterThanEquals => num_cmp(request, policy, |a, b| a >= b),
        }
    }
}

fn num_cmp(request: &str, policy: &str, cmp: impl Fn(f64, f64) -> bool) -> bool {
    match (request.trim().parse::<f64>(), policy.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => cmp(a, b),
        _ => false,
    }
}

/// `ForAnyValue:` / `ForAllValues:` prefix of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

/// A full operator such as `ForAnyValue:StringLikeIfExists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionOperator {
    pub qualifier: SetQualifier,
    pub base: BaseOperator,
    pub if_exists: bool,
    /// The operator as written in the policy.
    pub name: String,
}

impl ConditionOperator {
    pub fn parse(name: &str) -> Result<Self, PolicyError> {
        let unknown = || {
            PolicyError::Malformed(format!(
                "Policy contains an unsupported condition operator '{name}'"
            ))
        };
        let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, r)
        } else {
            (SetQualifier::None, name)
        };
        let (base_name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let base = BaseOperator::from_name(base_name).ok_or_else(unknown)?;
        if base == BaseOperator::Null && (if_exists || qualifier != SetQualifier::None) {
            return Err(unknown());
        }
        Ok(ConditionOperator {
            qualifier,
            base,
            if_exists,
            name: name.to_string(),
        })
    }
}

/// One `operator: { key: values }` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: ConditionOperator,
    /// Condition key as written (`kms:EncryptionContext:Department`).
    pub key: String,
    /// Policy values (JSON strings, booleans and numbers, as strings).
    pub values: Vec<String>,
}

/// Request condition keys, looked up case-insensitively by key name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionKeys {
    map: BTreeMap<String, Vec<String>>,
}

impl ConditionKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` to `values` (replacing any earlier values).
    pub fn set(&mut self, key: &str, values: Vec<String>) {
        self.map.insert(key.to_ascii_lowercase(), values);
    }

    pub fn remove(&mut self, key: &str) {
        self.map.remove(&key.to_ascii_lowercase());
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.map
            .get(&key.to_ascii_lowercase())
            .map(|v| v.as_slice())
    }
}

impl Condition {
    /// Does this condition hold for the request's keys?
    pub fn holds(&self, keys: &ConditionKeys) -> bool {
        let op = &self.operator;
        let request = keys.get(&self.key).filter(|v| !v.is_empty());
        if op.base == BaseOperator::Null {
            let present = request.is_some();
            return self.values.iter().any(|v| {
                if v.eq_ignore_ascii_case("true") {
                    !present
                } else if v.eq_ignore_ascii_case("false") {
                    present
                } else {
                    false
                }
            });
        }
        let negated = op.base.is_negated();
        // Does one request value satisfy the operator against the policy values?
        let one = |r: &String| {
            let any = self.values.iter().any(|p| op.base.matches_one(r, p));
            if negated {
                !any
            } else {
                any
            }
        };
        match (op.qualifier, request) {
            (_, None) if op.if_exists => true,
            (SetQualifier::None, None) => negated,
            (SetQualifier::ForAnyValue, None) => false,
            (SetQualifier::ForAllValues, None) => true,
            (SetQualifier::None, Some(vals)) => {
                if negated {
                    vals.iter().all(one)
                } else {
                    vals.iter().any(one)
                }
            }
            (SetQualifier::ForAnyValue, Some(vals)) => vals.iter().any(one),
            (SetQualifier::ForAllValues, Some(vals)) => vals.iter().all(one),
        }
    }
}

/// Does every condition hold (an empty list holds)?
pub fn all_hold(conditions: &[Condition], keys: &ConditionKeys) -> bool {
    conditions.iter().all(|c| c.holds(keys))
}
