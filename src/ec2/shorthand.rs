//! The AWS CLI's "shorthand syntax" for structured parameters, e.g.
//! `ResourceType=volume,Tags=[{Key=Name,Value=X}]` or `Name=tag:Name,Values=a,b`,
//! parsed into JSON; arguments that start with `[` or `{` are read as JSON instead,
//! as the AWS CLI does.
//!
//! Grammar (what the AWS CLI accepts, minus its rarely used `@=` forms):
//! ```text
//! struct := pair ("," pair)*
//! pair   := key "=" value
//! value  := "[" [value ("," value)*] "]" | "{" struct "}" | scalar ("," scalar)*
//! ```
//! where a bare `a,b` after `key=` continues the value as a list as long as the next
//! comma-separated token has no `=` (so `Values=a,b,Name=x` works). Scalars may be
//! quoted with `"` or `'`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error parsing parameter: {message} (at character {pos} of {input:?})")]
pub struct ShorthandError {
    pub message: String,
    pub pos: usize,
    pub input: String,
}

/// Parses one argument: JSON if it looks like JSON, shorthand otherwise.
pub fn parse(input: &str) -> Result<Value, ShorthandError> {
    let t = input.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        if let Ok(v) = serde_json::from_str(t) {
            return Ok(v);
        }
    }
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        input,
    };
    let v = p.structure(None)?;
    if p.pos < p.chars.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    input: &'a str,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> ShorthandError {
        ShorthandError {
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
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || "_-.:".contains(c))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("expected a key"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// A value; if `continue_list`, trailing `,scalar` tokens without `=` join it as a list.
    fn value(&mut self, close: Option<char>, continue_list: bool) -> Result<Value, ShorthandError> {
        self.skip_ws();
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
}
