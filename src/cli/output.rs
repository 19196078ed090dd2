//! `--output` and `--query`, as the AWS CLI has them: one implementation for every service.

use serde_json::Value;

use super::print_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

/// The output options every AWS-shaped service command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "json")]
    pub output: OutputFormat,
    /// Print only this field of the result (e.g. `VolumeId`, `KeyMetadata.Arn`, `Keys[].KeyId`).
    #[arg(long, global = true, value_name = "PATH")]
    pub query: Option<String>,
}

/// A `--query` the path syntax does not support.
#[derive(Debug, thiserror::Error)]
#[error("Bad value for --query {path}: unsupported index {index}")]
pub struct QueryError {
    pub path: String,
    pub index: String,
}

impl OutputArgs {
    /// Prints `value` as asked; returns the AWS CLI's exit code (252 for a bad --query).
    pub fn emit(&self, value: &Value) -> i32 {
        let value = match &self.query {
            Some(q) => match apply_query(value, q) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("\n{e}");
                    return 252;
                }
            },
            None => value.clone(),
        };
        match self.output {
            OutputFormat::Json => print_json(&value),
            OutputFormat::Text => println!("{}", text_of(&value)),
        }
        0
    }
}

/// Applies a `--query` path: `A.B`, `A[].B`, `A[0]`.
pub fn apply_query(v: &Value, path: &str) -> Result<Value, QueryError> {
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
                    .map_err(|_| QueryError {
                        path: path.to_string(),
                        index: ix.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_paths_and_text() {
        let v = json!({"Keys": [{"KeyId": "a"}, {"KeyId": "b"}], "VolumeId": "vol-1"});
        assert_eq!(apply_query(&v, "VolumeId").unwrap(), json!("vol-1"));
        assert_eq!(apply_query(&v, "Keys[].KeyId").unwrap(), json!(["a", "b"]));
        assert_eq!(apply_query(&v, "Keys[1].KeyId").unwrap(), json!("b"));
        assert!(apply_query(&v, "Keys[x]").is_err());
        assert_eq!(text_of(&json!(["a", "b"])), "a\tb");
        assert_eq!(text_of(&Value::Null), "None");
    }
}
