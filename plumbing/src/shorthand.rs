//! The AWS CLI's "shorthand syntax" for structured parameters, e.g.
//! `ResourceType=volume,Tags=[{Key=Name,Value=X}]`, `Name=tag:Name,Values=a,b`,
//! `TagKey=env,TagValue=dev` or `EncryptionContextSubset={k=v}`, parsed into JSON;
//! arguments that start with `[` or `{` are read as JSON instead, as the AWS CLI does.
//! Every verb of every service parses its structured parameters here, then reads the
//! members it expects out of the JSON value (so the shorthand and the JSON form of a
//! parameter always mean the same thing).
//!
//! Grammar (what the AWS CLI accepts, minus its rarely used `@=` forms):
//! ```text
//! struct := pair ("," pair)*
//! pair   := key "=" value
//! value  := "[" [value ("," value)*] "]" | "{" [struct] "}" | scalar ("," scalar)*
//! ```
//! where a bare `a,b` after `key=` continues the value as a list as long as the next
//! comma-separated token has no `=` (so `Values=a,b,Name=x` works). A key is any text up to
//! its `=` without `,`, brackets, braces or quotes (an encryption-context key may be
//! `aws:s3:arn` or `my/key`); surrounding spaces are dropped. Scalars may be quoted with
//! `"` or `'`. Values are always strings: `Enabled=true` is `"true"`.

use serde_json::{Map, Value};

/// Why an argument is neither valid shorthand nor valid JSON.
#[derive(Debug, thiserror::Error)]
pub enum ShorthandError {
    #[error("Error parsing parameter: {message} (at character {pos} of {input:?})")]
    Syntax {
        message: String,
        pos: usize,
        input: String,
    },
    #[error("Error parsing parameter: Invalid JSON: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
}

impl ShorthandError {
    /// The AWS CLI's wording for parameter `--name`:
    /// `Error parsing parameter '--name': ...`.
    pub fn for_parameter(&self, name: &str) -> String {
        match self {
            ShorthandError::Syntax {
                message,
                pos,
                input,
            } => format!(
                "Error parsing parameter '--{name}': {message} (at character {pos} of {input:?})"
            ),
            ShorthandError::Json { source } => {
                format!("Error parsing parameter '--{name}': Invalid JSON: {source}")
            }
        }
    }
}

/// Parses one argument: JSON if it looks like JSON, shorthand otherwise.
pub fn parse(input: &str) -> Result<Value, ShorthandError> {
    let t = input.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        // Shorthand never starts with a bracket or a brace: this is JSON or a mistake.
        return serde_json::from_str(t).map_err(|source| ShorthandError::Json { source });
    }
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        input,
    };
    let v = p.structure(None)?;
    if p.pos < p.chars.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

/// The deepest nesting of `[` and `{` a value may have (serde_json's own limit for the
/// JSON form is 128): the parser recurses per level, and without a bound a long enough
/// `{a={a={...` overflowed the stack (found by the `shorthand` fuzz target).
pub const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    /// How many `[` / `{` enclose `pos`.
    depth: usize,
    input: &'a str,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ShorthandError {
        ShorthandError::Syntax {
            message: message.to_string(),
            pos: self.pos,
            input: self.input.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == ' ') {
            self.pos += 1;
        }
    }

    /// `key=value,...` up to `close` (or the end).
    fn structure(&mut self, close: Option<char>) -> Result<Value, ShorthandError> {
        let mut map = Map::new();
        loop {
            self.skip_ws();
            if close.is_some() && self.peek() == close {
                break;
            }
            let key = self.key()?;
            if self.peek() != Some('=') {
                return Err(self.err(&format!("expected '=' after key {key:?}")));
            }
            self.pos += 1;
            let value = self.value(close, true)?;
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                c if c == close => break,
                None => break,
                Some(_) => return Err(self.err("expected ',' between key=value pairs")),
            }
        }
        Ok(Value::Object(map))
    }

    fn key(&mut self) -> Result<String, ShorthandError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| !"=,[]{}\"'".contains(c)) {
            self.pos += 1;
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        let key = key.trim_end();
        if key.is_empty() {
            self.pos = start;
            return Err(self.err("expected a key"));
        }
        Ok(key.to_string())
    }

    /// A value; if `continue_list`, trailing `,scalar` tokens without `=` join it as a list.
    fn value(&mut self, close: Option<char>, continue_list: bool) -> Result<Value, ShorthandError> {
        self.skip_ws();
        if matches!(self.peek(), Some('[' | '{')) {
            if self.depth >= MAX_DEPTH {
                return Err(self.err(&format!("nested deeper than {MAX_DEPTH} levels")));
            }
            self.depth += 1;
            let v = self.nested(close, continue_list);
            self.depth -= 1;
            return v;
        }
        self.nested(close, continue_list)
    }

    /// [`Self::value`] below the depth check.
    fn nested(
        &mut self,
        close: Option<char>,
        continue_list: bool,
    ) -> Result<Value, ShorthandError> {
        match self.peek() {
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(Some(']'), false)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some(']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.err("expected ',' or ']' in a list")),
                    }
                }
                Ok(Value::Array(items))
            }
            Some('{') => {
                self.pos += 1;
                let v = self.structure(Some('}'))?;
                if self.peek() != Some('}') {
                    return Err(self.err("expected '}'"));
                }
                self.pos += 1;
                Ok(v)
            }
            _ => {
                let first = self.scalar(close)?;
                if !continue_list {
                    return Ok(Value::String(first));
                }
                let mut items = vec![Value::String(first)];
                while self.peek() == Some(',') && !self.next_token_is_pair(close) {
                    self.pos += 1;
                    items.push(Value::String(self.scalar(close)?));
                }
                if items.len() == 1 {
                    Ok(items.remove(0))
                } else {
                    Ok(Value::Array(items))
                }
            }
        }
    }

    /// Whether the token after the comma at `pos` is a `key=...` pair.
    fn next_token_is_pair(&self, close: Option<char>) -> bool {
        let mut i = self.pos + 1;
        while let Some(&c) = self.chars.get(i) {
            if c == '=' {
                return true;
            }
            if c == ',' || Some(c) == close || c == '"' || c == '\'' {
                return false;
            }
            i += 1;
        }
        false
    }

    fn scalar(&mut self, close: Option<char>) -> Result<String, ShorthandError> {
        self.skip_ws();
        if let Some(q) = self.peek().filter(|c| *c == '"' || *c == '\'') {
            self.pos += 1;
            let start = self.pos;
            while self.peek().is_some_and(|c| c != q) {
                self.pos += 1;
            }
            if self.peek() != Some(q) {
                return Err(self.err("unterminated quoted value"));
            }
            let s: String = self.chars[start..self.pos].iter().collect();
            self.pos += 1;
            return Ok(s);
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c != ',' && Some(c) != close && c != ']' && c != '}')
        {
            self.pos += 1;
        }
        Ok(self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting_is_bounded_instead_of_overflowing_the_stack() {
        // Found by the shorthand fuzz smoke: `Key=k,Value={e={e={...` thousands deep.
        let deep = "a=".to_string() + &"{e=".repeat(100_000) + "x" + &"}".repeat(100_000);
        let err = parse(&deep).expect_err("too deep");
        assert!(err.to_string().contains("nested deeper than 64"), "{err}");
        let lists = "a=".to_string() + &"[".repeat(100_000);
        assert!(parse(&lists).is_err());
        let ok = "a=".to_string() + &"{e=".repeat(MAX_DEPTH) + "x" + &"}".repeat(MAX_DEPTH);
        let v = parse(&ok).expect("at the limit");
        let mut at = &v["a"];
        for _ in 0..MAX_DEPTH {
            at = &at["e"];
        }
        assert_eq!(at, &json!("x"));
    }

    #[test]
    fn tag_specifications() {
        assert_eq!(
            parse("ResourceType=volume,Tags=[{Key=Name,Value=Encrypted Root},{Key=env,Value=lab}]")
                .unwrap(),
            json!({"ResourceType": "volume", "Tags": [
                {"Key": "Name", "Value": "Encrypted Root"},
                {"Key": "env", "Value": "lab"}]})
        );
    }

    #[test]
    fn filters_with_bare_lists() {
        assert_eq!(
            parse("Name=tag:Name,Values=a,b").unwrap(),
            json!({"Name": "tag:Name", "Values": ["a", "b"]})
        );
        assert_eq!(
            parse("Values=a,b,Name=x").unwrap(),
            json!({"Values": ["a", "b"], "Name": "x"})
        );
        assert_eq!(
            parse("Key=Name,Value=X").unwrap(),
            json!({"Key": "Name", "Value": "X"})
        );
        assert_eq!(
            parse("AvailabilityZone=us-east-1a").unwrap(),
            json!({"AvailabilityZone": "us-east-1a"})
        );
    }

    #[test]
    fn json_and_quotes() {
        assert_eq!(
            parse(r#"[{"Name":"status","Values":["available"]}]"#).unwrap(),
            json!([{"Name": "status", "Values": ["available"]}])
        );
        assert_eq!(
            parse("Key=a,Value='x,y'").unwrap(),
            json!({"Key": "a", "Value": "x,y"})
        );
    }

    #[test]
    fn errors_name_the_position() {
        for bad in ["Key", "=x", "Tags=[{Key=a", "Key=\"open", "Tags=[a b"] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("Error parsing parameter"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn free_form_keys_empty_structs_and_bad_json() {
        assert_eq!(
            parse("aws:s3:arn=arn:aws:s3:::b/k,my/key = x=y").unwrap(),
            json!({"aws:s3:arn": "arn:aws:s3:::b/k", "my/key": "x=y"})
        );
        assert_eq!(
            parse("EncryptionContextSubset={k=v,k2=v2},EncryptionContextEquals={}").unwrap(),
            json!({"EncryptionContextSubset": {"k": "v", "k2": "v2"},
                   "EncryptionContextEquals": {}})
        );
        let e = parse("{\"a\": ").unwrap_err();
        assert!(matches!(e, ShorthandError::Json { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("Error parsing parameter: Invalid JSON"));
    }
}
