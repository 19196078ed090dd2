//! botocore's service models, trimmed to what atrest serves: the shapes the Query and
//! EC2 Query codecs walk. The JSON files beside this module are written by
//! `scripts/vendor-botocore-models.py` from the botocore pinned in the project venv
//! (each records its version); they are compiled in and parsed once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// A service model.
#[derive(Debug, Deserialize)]
pub struct Model {
    /// The botocore version the file was trimmed from.
    pub botocore: String,
    pub metadata: Metadata,
    pub operations: BTreeMap<String, OperationModel>,
    pub shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub api_version: String,
    pub protocol: String,
    #[serde(default)]
    pub xml_namespace: Option<String>,
    #[serde(default)]
    pub signing_name: Option<String>,
    pub endpoint_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationModel {
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub result_wrapper: Option<String>,
}

/// A reference to a shape from a structure member, a list member or a map key or
/// value, with how it is named on the wire.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRef {
    pub shape: String,
    #[serde(default)]
    pub location_name: Option<String>,
    /// EC2 only: the query parameter name.
    #[serde(default)]
    pub query_name: Option<String>,
    #[serde(default)]
    pub flattened: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeType {
    Structure,
    List,
    Map,
    String,
    Integer,
    Long,
    Float,
    Double,
    Boolean,
    Timestamp,
    Blob,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    #[serde(rename = "type")]
    pub kind: ShapeType,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub flattened: bool,
    #[serde(default)]
    pub members: BTreeMap<String, MemberRef>,
    #[serde(default)]
    pub member: Option<MemberRef>,
    #[serde(default)]
    pub key: Option<MemberRef>,
    #[serde(default)]
    pub value: Option<MemberRef>,
    /// An error shape's wire code and status.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

/// What an error shape says about its wire form.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub http_status_code: Option<u16>,
}

impl Model {
    /// A shape by name. Every name a vendored model references is in it
    /// (`tests` check), so a miss is a build of a broken model: an error, not a panic.
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The wire code and HTTP status of an error the model declares, found by its shape
    /// name (`NoSuchEntityException`) or its code (`NoSuchEntity`).
    pub fn error(&self, name: &str) -> Option<(String, u16)> {
        let known = |shape: &str, e: &ErrorInfo| {
            (
                e.code.clone().unwrap_or_else(|| shape.to_string()),
                e.http_status_code.unwrap_or(400),
            )
        };
        if let Some(e) = self.shapes.get(name).and_then(|s| s.error.as_ref()) {
            return Some(known(name, e));
        }
        self.shapes.iter().find_map(|(shape, s)| {
            s.error
                .as_ref()
                .filter(|e| e.code.as_deref() == Some(name))
                .map(|e| known(shape, e))
        })
    }

    /// The XML namespace of responses (EC2's with the trailing `/` AWS sends).
    pub fn namespace(&self) -> String {
        let ns = self.metadata.xml_namespace.clone().unwrap_or_default();
        if self.metadata.protocol == "ec2" && !ns.ends_with('/') {
            format!("{ns}/")
        } else {
            ns
        }
    }

    /// The name SigV4 credential scopes use for the service.
    pub fn signing_name(&self) -> &str {
        self.metadata
            .signing_name
            .as_deref()
            .unwrap_or(&self.metadata.endpoint_prefix)
    }
}

fn parse(text: &str) -> Model {
    // The files are vendored and checked by the tests; an unreadable one is an empty
    // model (every operation unknown) rather than a panic at run time.
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::error!("a vendored botocore model does not parse: {e}");
        Model {
            botocore: String::new(),
            metadata: Metadata {
                api_version: String::new(),
                protocol: String::new(),
                xml_namespace: None,
                signing_name: None,
                endpoint_prefix: String::new(),
            },
            operations: BTreeMap::new(),
            shapes: BTreeMap::new(),
        }
    })
}

macro_rules! vendored {
    ($fn:ident, $file:literal) => {
        pub fn $fn() -> &'static Model {
            static M: OnceLock<Model> = OnceLock::new();
            M.get_or_init(|| parse(include_str!($file)))
        }
    };
}

vendored!(sts, "models/sts.json");
vendored!(iam, "models/iam.json");
vendored!(ec2, "models/ec2.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_models_are_whole() {
        for (m, protocol) in [(sts(), "query"), (iam(), "query"), (ec2(), "ec2")] {
            assert_eq!(m.metadata.protocol, protocol);
            assert!(!m.botocore.is_empty());
            assert!(!m.operations.is_empty());
            let refs = |s: &Shape| -> Vec<String> {
                let mut v: Vec<String> = s.members.values().map(|r| r.shape.clone()).collect();
                v.extend(
                    [&s.member, &s.key, &s.value]
                        .into_iter()
                        .flatten()
                        .map(|r| r.shape.clone()),
                );
                v
            };
            for (name, s) in &m.shapes {
                for r in refs(s) {
                    assert!(m.shape(&r).is_some(), "{name} references missing {r}");
                }
            }
            for (name, op) in &m.operations {
                for s in [&op.input, &op.output].into_iter().flatten() {
                    assert!(m.shape(s).is_some(), "{name}: missing {s}");
                }
            }
        }
        assert_eq!(sts().signing_name(), "sts");
        assert_eq!(
            iam().error("NoSuchEntityException"),
            Some(("NoSuchEntity".into(), 404))
        );
        assert_eq!(
            iam().error("EntityAlreadyExists"),
            Some(("EntityAlreadyExists".into(), 409))
        );
        assert_eq!(iam().error("Nope"), None);
        assert_eq!(
            ec2().namespace(),
            "http://ec2.amazonaws.com/doc/2016-11-15/"
        );
        assert_eq!(
            iam().namespace(),
            "https://iam.amazonaws.com/doc/2010-05-08/"
        );
    }
}
