//! `atrest s3api` multipart verbs, as the AWS CLI spells them: create-multipart-upload,
//! upload-part, upload-part-copy, complete-multipart-upload, abort-multipart-upload,
//! list-parts and list-multipart-uploads (both follow every page, as the AWS CLI does).

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::s3::client::{Body, S3Client};
use crate::s3::xml::{self, Node};

use super::s3api::{
    checksum_members, open_input, shorthand_or_json, sse_fields, written_fields, xml_of,
    ChecksumArgs, CliError, CopySourceKeyArgs, CustomerKeyArgs, NewObjectArgs,
};

#[derive(Debug, clap::Subcommand)]
pub enum MultipartCommand {
    /// Start a multipart upload; prints its UploadId.
    CreateMultipartUpload {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        new_object: NewObjectArgs,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        checksum: ChecksumArgs,
        /// COMPOSITE or FULL_OBJECT (with --checksum-algorithm).
        #[arg(long)]
        checksum_type: Option<String>,
    },
    /// Upload one part (1 to 10000; 5 MiB to 5 GiB but the last) of a multipart upload.
    UploadPart {
        #[command(flatten)]
        upload: Upload,
        #[arg(long)]
        part_number: u32,
        /// File holding the part (an empty part if omitted).
        #[arg(long)]
        body: Option<PathBuf>,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        checksum: ChecksumArgs,
    },
    /// Copy an object, or a byte range of it, in as one part of a multipart upload.
    UploadPartCopy {
        #[command(flatten)]
        upload: Upload,
        #[arg(long)]
        part_number: u32,
        /// SOURCEBUCKET/SOURCEKEY.
        #[arg(long)]
        copy_source: String,
        /// `bytes=FIRST-LAST` of the source.
        #[arg(long)]
        copy_source_range: Option<String>,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
        #[command(flatten)]
        source_key: CopySourceKeyArgs,
    },
    /// Make the object from the uploaded parts listed.
    CompleteMultipartUpload {
        #[command(flatten)]
        upload: Upload,
        /// `{"Parts":[{"ETag":"...","PartNumber":1},...]}`, the shorthand
        /// `Parts=[{ETag=...,PartNumber=1},...]`, or file://PATH; a part may also give
        /// its `ChecksumCRC32` (`CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`).
        #[arg(long)]
        multipart_upload: String,
        #[command(flatten)]
        customer_key: CustomerKeyArgs,
    },
    /// Abort a multipart upload and remove its parts.
    AbortMultipartUpload {
        #[command(flatten)]
        upload: Upload,
    },
    /// List the parts uploaded so far (all pages).
    ListParts {
        #[command(flatten)]
        upload: Upload,
    },
    /// List the multipart uploads in progress in a bucket (all pages).
    ListMultipartUploads {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        delimiter: Option<String>,
    },
}

/// The upload a verb acts on: `--bucket`, `--key`, `--upload-id`.
#[derive(Debug, clap::Args)]
pub struct Upload {
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    key: String,
    #[arg(long)]
    upload_id: String,
}

impl MultipartCommand {
    pub fn operation_name(&self) -> &'static str {
        match self {
            MultipartCommand::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            MultipartCommand::UploadPart { .. } => "UploadPart",
            MultipartCommand::UploadPartCopy { .. } => "UploadPartCopy",
            MultipartCommand::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            MultipartCommand::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            MultipartCommand::ListParts { .. } => "ListParts",
            MultipartCommand::ListMultipartUploads { .. } => "ListMultipartUploads",
        }
    }
}

/// The body of a CompleteMultipartUpload from the AWS CLI's `--multipart-upload` value
/// (already JSON): every part needs a `PartNumber` (1 to 10000) and an `ETag`.
pub(crate) fn completion_xml(v: &Value) -> Result<String, CliError> {
    let parts = v
        .get("Parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            CliError::Param("--multipart-upload needs a non-empty \"Parts\" list".into())
        })?;
    let mut x =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (i, p) in parts.iter().enumerate() {
        let number = match p.get("PartNumber") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            CliError::Param(format!(
                "part {} of --multipart-upload needs a PartNumber from 1 to 10000",
                i + 1
            ))
        })?;
        let etag = p.get("ETag").and_then(Value::as_str).ok_or_else(|| {
            CliError::Param(format!(
                "part {} of --multipart-upload needs an ETag",
                i + 1
            ))
        })?;
        x.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag>",
            xml::escape(etag)
        ));
        for alg in crate::s3::checksum::ALGORITHMS {
            let m = format!("Checksum{alg}");
            if let Some(v) = p.get(&m).and_then(Value::as_str) {
                x.push_str(&format!("<{m}>{}</{m}>", xml::escape(v)));
            }
        }
        x.push_str("</Part>");
    }
    x.push_str("</CompleteMultipartUpload>");
    Ok(x)
}

fn named(n: Option<&Node>) -> Value {
    let n = match n {
        Some(n) => n,
        None => return Value::Null,
    };
    json!({
        "DisplayName": n.text_of("DisplayName").unwrap_or_default(),
        "ID": n.text_of("ID").unwrap_or_default(),
    })
}

/// `SOURCEBUCKET/SOURCEKEY` as the `x-amz-copy-source` header carries it (the key
/// percent-encoded, `/` kept).
pub(crate) fn copy_source_header(source: &str) -> Result<String, CliError> {
    let (bucket, key) = source
        .trim_start_matches('/')
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| CliError::Param(format!("--copy-source {source:?}: expected BUCKET/KEY")))?;
    Ok(crate::s3::transfer::copy_source_header(bucket, key))
}

pub(crate) fn execute(c: &S3Client, cmd: MultipartCommand) -> Result<Option<Value>, CliError> {
    use MultipartCommand::*;
    match cmd {
        CreateMultipartUpload {
            bucket,
            key,
            new_object,
            customer_key,
            checksum,
            checksum_type,
        } => {
            let mut h = new_object.headers()?;
            h.extend(customer_key.headers()?);
            if let Some(a) = checksum.algorithm()? {
                h.push(("x-amz-checksum-algorithm".to_string(), a.as_str().into()));
            }
            if let Some(t) = checksum_type {
                h.push(("x-amz-checksum-type".to_string(), t));
            }
            let r = c.send(
                "POST",
                Some(&bucket),
                Some(&key),
                &[("uploads", "")],
                &h,
                Body::Empty,
            )?;
            let base = json!({});
            let head = sse_fields(&r, base);
            let doc = xml_of(r)?;
            let mut out = json!({
                "Bucket": doc.text_of("Bucket").unwrap_or(&bucket),
                "Key": doc.text_of("Key").unwrap_or(&key),
                "UploadId": doc.text_of("UploadId").unwrap_or_default(),
            });
            merge(&mut out, head);
            Ok(Some(out))
        }
        UploadPart {
            upload:
                Upload {
                    bucket,
                    key,
                    upload_id,
                },
            part_number,
            body,
            customer_key,
            checksum,
        } => {
            let n = part_number.to_string();
            let q = [("partNumber", n.as_str()), ("uploadId", upload_id.as_str())];
            let mut h = customer_key.headers()?;
            let r = match body {
                Some(path) => {
                    let f = open_input(&path)?;
                    let len = f.metadata()?.len();
                    h.extend(checksum.header_for(Some(&f))?);
                    c.send(
                        "PUT",
                        Some(&bucket),
                        Some(&key),
                        &q,
                        &h,
                        Body::Reader {
                            reader: Box::new(f),
                            len,
                        },
                    )?
                }
                None => {
                    h.extend(checksum.header_for(None)?);
                    c.send("PUT", Some(&bucket), Some(&key), &q, &h, Body::Empty)?
                }
            };
            Ok(Some(written_fields(&r)))
        }
        UploadPartCopy {
            upload:
                Upload {
                    bucket,
                    key,
                    upload_id,
                },
            part_number,
            copy_source,
            copy_source_range,
            customer_key,
            source_key,
        } => {
            let n = part_number.to_string();
            let q = [("partNumber", n.as_str()), ("uploadId", upload_id.as_str())];
            let mut h = vec![(
                "x-amz-copy-source".to_string(),
                copy_source_header(&copy_source)?,
            )];
            if let Some(r) = copy_source_range {
                h.push(("x-amz-copy-source-range".to_string(), r));
            }
            h.extend(customer_key.headers()?);
            h.extend(source_key.headers()?);
            let r = c.send("PUT", Some(&bucket), Some(&key), &q, &h, Body::Empty)?;
            let head = sse_fields(&r, json!({}));
            let doc = xml_of(r)?;
            let mut out = json!({
                "CopyPartResult": {
                    "ETag": doc.text_of("ETag").unwrap_or_default(),
                    "LastModified": plumbing::awstime::rfc3339_to_cli(doc.text_of("LastModified").unwrap_or_default()),
                }
            });
            merge(&mut out, head);
            Ok(Some(out))
        }
        CompleteMultipartUpload {
            upload:
                Upload {
                    bucket,
                    key,
                    upload_id,
                },
            multipart_upload,
            customer_key,
        } => {
            let body = completion_xml(&shorthand_or_json(&multipart_upload)?)?;
            let mut h = vec![("content-type".to_string(), "application/xml".to_string())];
            h.extend(customer_key.headers()?);
            let r = c.send(
                "POST",
                Some(&bucket),
                Some(&key),
                &[("uploadId", &upload_id)],
                &h,
                Body::Bytes(body.as_bytes()),
            )?;
            let head = sse_fields(&r, json!({}));
            let doc = xml_of(r)?;
            let mut out = json!({
                "Location": doc.text_of("Location").unwrap_or_default(),
                "Bucket": doc.text_of("Bucket").unwrap_or(&bucket),
                "Key": doc.text_of("Key").unwrap_or(&key),
                "ETag": doc.text_of("ETag").unwrap_or_default(),
            });
            merge(&mut out, Value::Object(checksum_members(&doc)));
            merge(&mut out, head);
            Ok(Some(out))
        }
        AbortMultipartUpload {
            upload:
                Upload {
                    bucket,
                    key,
                    upload_id,
                },
        } => {
            c.send(
                "DELETE",
                Some(&bucket),
                Some(&key),
                &[("uploadId", &upload_id)],
                &[],
                Body::Empty,
            )?;
            Ok(None)
        }
        ListParts {
            upload:
                Upload {
                    bucket,
                    key,
                    upload_id,
                },
        } => {
            let mut parts = Vec::new();
            let mut marker = String::new();
            let mut first: Option<Node> = None;
            loop {
                let mut q = vec![("uploadId", upload_id.as_str())];
                if !marker.is_empty() {
                    q.push(("part-number-marker", marker.as_str()));
                }
                let doc =
                    xml_of(c.send("GET", Some(&bucket), Some(&key), &q, &[], Body::Empty)?)?;
                for p in doc.children_named("Part") {
                    parts.push(json!({
                        "PartNumber": p.text_of("PartNumber").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
                        "LastModified": plumbing::awstime::rfc3339_to_cli(p.text_of("LastModified").unwrap_or_default()),
                        "ETag": p.text_of("ETag").unwrap_or_default(),
                        "Size": p.text_of("Size").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
                    }));
                }
                let next = (doc.text_of("IsTruncated") == Some("true"))
                    .then(|| doc.text_of("NextPartNumberMarker").map(str::to_string))
                    .flatten();
                if first.is_none() {
                    first = Some(doc);
                }
                match next {
                    Some(m) if m != marker => marker = m,
                    _ => break,
                }
            }
            let first = first.unwrap_or_default();
            Ok(Some(json!({
                "Parts": parts,
                "Initiator": named(first.child("Initiator")),
                "Owner": named(first.child("Owner")),
                "StorageClass": first.text_of("StorageClass").unwrap_or("STANDARD"),
                "Bucket": bucket,
                "Key": key,
                "UploadId": upload_id,
            })))
        }
        ListMultipartUploads {
            bucket,
            prefix,
            delimiter,
        } => {
            let mut uploads = Vec::new();
            let mut prefixes = Vec::new();
            let (mut key_marker, mut id_marker) = (String::new(), String::new());
            loop {
                let mut q = vec![("uploads", "")];
                if let Some(p) = &prefix {
                    q.push(("prefix", p.as_str()));
                }
                if let Some(d) = &delimiter {
                    q.push(("delimiter", d.as_str()));
                }
                if !key_marker.is_empty() {
                    q.push(("key-marker", key_marker.as_str()));
                }
                if !id_marker.is_empty() {
                    q.push(("upload-id-marker", id_marker.as_str()));
                }
                let doc = xml_of(c.send("GET", Some(&bucket), None, &q, &[], Body::Empty)?)?;
                for u in doc.children_named("Upload") {
                    uploads.push(json!({
                        "UploadId": u.text_of("UploadId").unwrap_or_default(),
                        "Key": u.text_of("Key").unwrap_or_default(),
                        "Initiated": plumbing::awstime::rfc3339_to_cli(u.text_of("Initiated").unwrap_or_default()),
                        "StorageClass": u.text_of("StorageClass").unwrap_or("STANDARD"),
                        "Owner": named(u.child("Owner")),
                        "Initiator": named(u.child("Initiator")),
                    }));
                }
                for p in doc.children_named("CommonPrefixes") {
                    prefixes.push(json!({ "Prefix": p.text_of("Prefix").unwrap_or_default() }));
                }
                let next = (doc.text_of("IsTruncated") == Some("true")).then(|| {
                    (
                        doc.text_of("NextKeyMarker").unwrap_or_default().to_string(),
                        doc.text_of("NextUploadIdMarker")
                            .unwrap_or_default()
                            .to_string(),
                    )
                });
                match next {
                    Some((k, i))
                        if (k.as_str(), i.as_str())
                            != (key_marker.as_str(), id_marker.as_str()) =>
                    {
                        key_marker = k;
                        id_marker = i;
                    }
                    _ => break,
                }
            }
            let mut out = Map::new();
            if !uploads.is_empty() {
                out.insert("Uploads".into(), Value::Array(uploads));
            }
            if !prefixes.is_empty() {
                out.insert("CommonPrefixes".into(), Value::Array(prefixes));
            }
            out.insert("Bucket".into(), json!(bucket));
            Ok(Some(Value::Object(out)))
        }
    }
}

/// Adds `extra`'s fields to `out` (both JSON objects).
fn merge(out: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_lists_become_completion_xml() {
        // Shorthand quotes are quoting, as in the aws CLI: `ETag="abc"` is `abc`.
        let v = shorthand_or_json(r#"Parts=[{ETag="abc",PartNumber=1},{ETag=def,PartNumber=2}]"#)
            .unwrap();
        let x = completion_xml(&v).unwrap();
        assert!(x.contains("<Part><PartNumber>1</PartNumber><ETag>abc</ETag></Part><Part><PartNumber>2</PartNumber><ETag>def</ETag></Part>"), "{x}");
        let v = json!({"Parts": [{"ETag": "\"q\"", "PartNumber": 1}]});
        assert!(completion_xml(&v)
            .unwrap()
            .contains("<ETag>&quot;q&quot;</ETag>"));
        let v = json!({"Parts": [{"ETag": "\"e\"", "PartNumber": 10000}]});
        assert!(completion_xml(&v)
            .unwrap()
            .contains("<PartNumber>10000</PartNumber>"));
        for bad in [
            json!({}),
            json!({"Parts": []}),
            json!({"Parts": [{"ETag": "e"}]}),
            json!({"Parts": [{"ETag": "e", "PartNumber": 0}]}),
            json!({"Parts": [{"ETag": "e", "PartNumber": 10001}]}),
            json!({"Parts": [{"PartNumber": 1}]}),
        ] {
            assert!(completion_xml(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_sources_are_encoded_as_the_header_wants() {
        assert_eq!(copy_source_header("b/a b/c.png").unwrap(), "b/a%20b/c.png");
        assert_eq!(copy_source_header("/b/k").unwrap(), "b/k");
        assert!(copy_source_header("nokey").is_err());
        assert!(copy_source_header("b/").is_err());
    }
}
