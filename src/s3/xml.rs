//! The little XML the client needs: parse S3 responses into a tree, escape text for the
//! request bodies it builds. (The endpoint's XML is done by s3s.)

use quick_xml::events::Event;

/// One element: name (without namespace prefix), text, children in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first descendant (depth-first) called `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        for c in &self.children {
            if c.name == name {
                return Some(&c.text);
            }
            if let Some(t) = c.text_of(name) {
                return Some(t);
            }
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(String);

/// Parses a document into its root element.
pub fn parse(xml: &str) -> Result<Node, XmlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        match reader.read_event().map_err(|e| XmlError(e.to_string()))? {
            Event::Start(e) => stack.push(Node {
                name: local_name(e.name().as_ref()),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let n = Node {
                    name: local_name(e.name().as_ref()),
                    ..Node::default()
                };
                stack
                    .last_mut()
                    .ok_or_else(|| XmlError("unbalanced".into()))?
                    .children
                    .push(n);
            }
            Event::Text(t) => {
                let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&unescape(&raw));
                }
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&unescape(&format!("&{name};")));
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| XmlError("unbalanced".into()))?;
                stack
                    .last_mut()
                    .ok_or_else(|| XmlError("unbalanced".into()))?
                    .children
                    .push(done);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut doc = stack.pop().ok_or_else(|| XmlError("empty".into()))?;
    if !stack.is_empty() {
        return Err(XmlError("unclosed element".into()));
    }
    doc.children
        .pop()
        .ok_or_else(|| XmlError("no root element".into()))
}

fn local_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.rsplit(':').next().unwrap_or_default().to_string()
}

/// Decodes the five XML entities and numeric character references.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let ent = &after[1..end];
        let decoded = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_shapes() {
        let x = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Contents><Key>a &amp; b/&#x1F600;</Key><Size>3</Size></Contents><Contents><Key>c</Key></Contents>
<CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes><IsTruncated>false</IsTruncated><Empty/></ListBucketResult>"#;
        let n = parse(x).unwrap();
        assert_eq!(n.name, "ListBucketResult");
        let keys: Vec<_> = n
            .children_named("Contents")
            .filter_map(|c| c.text_of("Key"))
            .collect();
        assert_eq!(keys, ["a & b/😀", "c"]);
        assert_eq!(n.text_of("Prefix"), Some("d/"));
        assert!(n.child("Empty").is_some());
    }

    #[test]
    fn rejects_garbage_and_round_trips_escapes() {
        assert!(parse("<a><b></a>").is_err());
        assert_eq!(unescape(&escape("<&'\">")), "<&'\">");
    }
}
