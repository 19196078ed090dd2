//! The bucket-level calls of the client that take or give more than a header: DeleteObjects,
//! the three listings (ListObjects v1 and v2, ListObjectVersions) and GetBucketLocation,
//! each built and parsed here once, so `atrest s3api`, `atrest s3 rm` and `atrest s3 mv`
//! send the same request and read the answer the same way. As botocore does, a listing
//! asks for `encoding-type=url` unless told otherwise and decodes the names it gets back,
//! so no key (control characters included) has to survive XML.

use base64::Engine as _;
use md5::Digest as _;
use percent_encoding::percent_decode_str;

use super::client::{Body, ClientError, S3Client};
use super::transfer::parse_xml;
use super::xml::{self, Node};

/// One object a DeleteObjects names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    pub key: String,
    pub version_id: Option<String>,
}

/// The XML body of a DeleteObjects.
pub fn delete_objects_body(objects: &[ObjectId], quiet: bool) -> String {
    let mut x = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for o in objects {
        x.push_str("<Object><Key>");
        x.push_str(&xml::escape(&o.key));
        x.push_str("</Key>");
        if let Some(v) = &o.version_id {
            x.push_str("<VersionId>");
            x.push_str(&xml::escape(v));
            x.push_str("</VersionId>");
        }
        x.push_str("</Object>");
    }
    if quiet {
        x.push_str("<Quiet>true</Quiet>");
    }
    x.push_str("</Delete>");
    x
}

/// Which listing a [`S3Client::list_page`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// ListObjects (v1: `marker`).
    V1,
    /// ListObjectsV2 (`list-type=2`: `continuation-token`, `start-after`).
    V2,
    /// ListObjectVersions (`versions`: `key-marker`, `version-id-marker`).
    Versions,
}

impl Listing {
    /// The elements whose text is a name S3 URL-encodes under `encoding-type=url`
    /// (botocore's lists, per operation).
    fn encoded(self) -> &'static [&'static str] {
        match self {
            Listing::V1 => &["Delimiter", "Marker", "NextMarker", "Prefix", "Key"],
            Listing::V2 => &["Delimiter", "Prefix", "StartAfter", "Key"],
            Listing::Versions => &["KeyMarker", "NextKeyMarker", "Prefix", "Delimiter", "Key"],
        }
    }
}

/// The text of `node`'s own child `name` (not of a deeper descendant).
pub fn own_text<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
    node.child(name).map(|c| c.text.as_str())
}

/// URL-decodes, as botocore's `unquote_plus`, the names of an `encoding-type=url` answer.
fn decode_names(node: &mut Node, names: &[&str]) {
    for c in &mut node.children {
        if c.children.is_empty() && names.contains(&c.name.as_str()) {
            let plus = c.text.replace('+', " ");
            c.text = percent_decode_str(&plus).decode_utf8_lossy().into_owned();
        } else {
            decode_names(c, names);
        }
    }
}

impl S3Client {
    /// DeleteObjects: deletes up to 1000 keys in one request, with the Content-MD5 S3
    /// requires of it. Answers the `DeleteResult` (per key: `Deleted` or `Error`).
    pub fn delete_objects(
        &self,
        bucket: &str,
        objects: &[ObjectId],
        quiet: bool,
    ) -> Result<Node, ClientError> {
        let body = delete_objects_body(objects, quiet);
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let r = self.send(
            "POST",
            Some(bucket),
            None,
            &[("delete", "")],
            &[
                ("content-type".into(), "application/xml".into()),
                ("content-md5".into(), md5),
            ],
            Body::Bytes(body.as_bytes()),
        )?;
        parse_xml(r)
    }

    /// One page of a listing. `query` is the caller's parameters (`prefix`, `delimiter`,
    /// `max-keys`, a marker or token...); without an `encoding-type` of its own the page
    /// is asked URL-encoded and its names are decoded here.
    pub fn list_page(
        &self,
        bucket: &str,
        listing: Listing,
        query: &[(&str, &str)],
    ) -> Result<Node, ClientError> {
        let mut q: Vec<(&str, &str)> = match listing {
            Listing::V1 => Vec::new(),
            Listing::V2 => vec![("list-type", "2")],
            Listing::Versions => vec![("versions", "")],
        };
        q.extend_from_slice(query);
        let auto = !query.iter().any(|(k, _)| *k == "encoding-type");
        if auto {
            q.push(("encoding-type", "url"));
        }
        let r = self.send("GET", Some(bucket), None, &q, &[], Body::Empty)?;
        let mut doc = parse_xml(r)?;
        if auto {
            decode_names(&mut doc, listing.encoded());
        }
        Ok(doc)
    }

    /// Every page of a listing from `query` on, each next one asked from where the last
    /// ended, as botocore's paginators do: v2 by `NextContinuationToken`, v1 by
    /// `NextMarker` (else the last key), versions by `NextKeyMarker` and
    /// `NextVersionIdMarker`. Stops at the first page not truncated, or one whose marker
    /// would not move (an endpoint that repeats itself is not followed forever).
    pub fn list_pages(
        &self,
        bucket: &str,
        listing: Listing,
        query: &[(&str, &str)],
    ) -> Result<Vec<Node>, ClientError> {
        let mut pages = Vec::new();
        let mut next: Vec<(&'static str, String)> = Vec::new();
        loop {
            let mut q: Vec<(&str, &str)> = query
                .iter()
                .filter(|(k, _)| !next.iter().any(|(n, _)| n == k))
                .copied()
                .collect();
            q.extend(next.iter().map(|(k, v)| (*k, v.as_str())));
            let doc = self.list_page(bucket, listing, &q)?;
            let truncated = own_text(&doc, "IsTruncated") == Some("true");
            let text = |name: &str| own_text(&doc, name).map(str::to_string);
            let after: Vec<(&'static str, String)> = match listing {
                Listing::V2 => text("NextContinuationToken")
                    .map(|t| vec![("continuation-token", t)])
                    .unwrap_or_default(),
                Listing::V1 => text("NextMarker")
                    .or_else(|| {
                        doc.children_named("Contents")
                            .last()
                            .and_then(|c| own_text(c, "Key"))
                            .map(str::to_string)
                    })
                    .map(|m| vec![("marker", m)])
                    .unwrap_or_default(),
                Listing::Versions => match (text("NextKeyMarker"), text("NextVersionIdMarker")) {
                    (Some(k), v) => {
                        let mut m = vec![("key-marker", k)];
                        m.extend(v.map(|v| ("version-id-marker", v)));
                        m
                    }
                    (None, _) => Vec::new(),
                },
            };
            pages.push(doc);
            if !truncated || after.is_empty() || after == next {
                return Ok(pages);
            }
            next = after;
        }
    }

    /// GetBucketLocation: the bucket's `LocationConstraint` (none for us-east-1).
    pub fn bucket_location(&self, bucket: &str) -> Result<Option<String>, ClientError> {
        let r = self.send(
            "GET",
            Some(bucket),
            None,
            &[("location", "")],
            &[],
            Body::Empty,
        )?;
        let doc = parse_xml(r)?;
        Ok(Some(doc.text.trim().to_string()).filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_body_escapes_keys_and_says_quiet() {
        let b = delete_objects_body(
            &[
                ObjectId {
                    key: "a<&>".into(),
                    version_id: None,
                },
                ObjectId {
                    key: "b".into(),
                    version_id: Some("v1".into()),
                },
            ],
            true,
        );
        assert!(
            b.contains("<Object><Key>a&lt;&amp;&gt;</Key></Object>"),
            "{b}"
        );
        assert!(b.contains("<Key>b</Key><VersionId>v1</VersionId>"), "{b}");
        assert!(b.ends_with("<Quiet>true</Quiet></Delete>"), "{b}");
    }

    #[test]
    fn encoded_names_are_decoded_as_botocore_does() {
        let mut doc = xml::parse(
            "<ListBucketResult><Prefix>c%2F</Prefix><Contents><Key>sp+ace%2Bplus%01</Key><ETag>a+b</ETag></Contents>\
             <CommonPrefixes><Prefix>c%2Fx%2F</Prefix></CommonPrefixes></ListBucketResult>",
        )
        .unwrap();
        decode_names(&mut doc, Listing::V2.encoded());
        assert_eq!(own_text(&doc, "Prefix"), Some("c/"));
        let c = doc.child("Contents").unwrap();
        assert_eq!(own_text(c, "Key"), Some("sp ace+plus\u{1}"));
        assert_eq!(own_text(c, "ETag"), Some("a+b"));
        let p = doc.child("CommonPrefixes").unwrap();
        assert_eq!(own_text(p, "Prefix"), Some("c/x/"));
    }
}
