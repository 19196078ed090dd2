//! `--output text`: awscli's `text.py`, line for line.
//!
//! A scalar prints alone. An object prints its scalar members on one line,
//! tab-separated in member-name order, then each list or object member below it, under
//! the member's name in capitals. A list of objects prints one line per object with
//! the union of their scalar members (empty where one lacks it); a list of scalars
//! prints on one line, tab-separated, or one `NAME\tvalue` line each under a name.

use serde_json::{Map, Value};

use super::scalar::py_str;

/// The text layout of `value`.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    item(value, &mut out, None, None);
    out
}

fn is_scalar(v: &Value) -> bool {
    !v.is_array() && !v.is_object()
}

fn item(v: &Value, out: &mut String, identifier: Option<&str>, scalar_keys: Option<&[String]>) {
    match v {
        Value::Object(m) => dict(m, out, identifier, scalar_keys),
        Value::Array(a) => list(a, out, identifier),
        scalar => {
            out.push_str(&py_str(scalar));
            out.push('\n');
        }
    }
}

fn list(items: &[Value], out: &mut String, identifier: Option<&str>) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(Value::is_object) {
        let keys = all_scalar_keys(items);
        for element in items {
            item(element, out, identifier, Some(&keys));
        }
    } else if items.iter().any(Value::is_array) {
        let (scalars, nested): (Vec<&Value>, Vec<&Value>) =
            items.iter().partition(|e| is_scalar(e));
        if !scalars.is_empty() {
            scalar_list(&scalars, out, identifier);
        }
        for n in nested {
            item(n, out, identifier, None);
        }
    } else {
        scalar_list(&items.iter().collect::<Vec<_>>(), out, identifier);
    }
}

fn scalar_list(items: &[&Value], out: &mut String, identifier: Option<&str>) {
    match identifier {
        Some(id) => {
            for i in items {
                out.push_str(&format!("{}\t{}\n", id.to_uppercase(), py_str(i)));
            }
        }
        None => {
            out.push_str(
                &items
                    .iter()
                    .map(|i| py_str(i))
                    .collect::<Vec<_>>()
                    .join("\t"),
            );
            out.push('\n');
        }
    }
}

fn dict(
    m: &Map<String, Value>,
    out: &mut String,
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
) {
    let mut scalars = Vec::new();
    let mut nested: Vec<(&str, &Value)> = Vec::new();
    match scalar_keys {
        None => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in members {
                if is_scalar(v) {
                    scalars.push(py_str(v));
                } else {
                    nested.push((k, v));
                }
            }
        }
        Some(keys) => {
            for k in keys {
                scalars.push(m.get(k).map(py_str).unwrap_or_default());
            }
            let mut rest: Vec<&String> = m.keys().filter(|k| !keys.contains(k)).collect();
            rest.sort();
            nested.extend(rest.into_iter().map(|k| (k.as_str(), &m[k])));
        }
    }
    if !scalars.is_empty() {
        if let Some(id) = identifier {
            scalars.insert(0, id.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (k, v) in nested {
        item(v, out, Some(k), None);
    }
}

/// The sorted names of the scalar members of the objects in `items`.
fn all_scalar_keys(items: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| {
            m.iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(k, _)| k.clone())
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layouts_of_awscli_text() {
        assert_eq!(render(&json!("vol-1")), "vol-1\n");
        assert_eq!(render(&json!(null)), "None\n");
        assert_eq!(render(&json!(["a", "b"])), "a\tb\n");
        assert_eq!(render(&json!([])), "");
        assert_eq!(render(&json!([["a", "b"], ["c"]])), "a\tb\nc\n");
        let v = json!({
            "Keys": [{"KeyId": "k1", "KeyArn": "arn:1"}, {"KeyId": "k2"}],
            "Truncated": false
        });
        assert_eq!(render(&v), "False\nKEYS\tarn:1\tk1\nKEYS\t\tk2\n");
        let v = json!({"Tags": ["x", "y"], "Name": "n"});
        assert_eq!(render(&v), "n\nTAGS\tx\nTAGS\ty\n");
    }
}
