//! Listing a bucket: ListObjectsV2 (continuation tokens), ListObjects (v1: `Marker`, and
//! `NextMarker` when a delimiter is given) and ListObjectVersions as an unversioned bucket
//! answers it (every object its own one version, `null`, the latest), all with prefixes,
//! delimiters (common prefixes) and `encoding-type=url`, over one [`paginate`].

use s3s::dto::{
    CommonPrefix, EncodingType, ListObjectVersionsInput, ListObjectVersionsOutput,
    ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, Object,
    ObjectStorageClass, ObjectVersion, ObjectVersionStorageClass,
};

use super::super::access;
use super::super::meta::ObjectMeta;
use super::call::Call;
use super::convert::{bucket_view, etag, owner, timestamp, url_encode};
use super::error::ApiError;

/// What every listing asks for.
struct Ask<'a> {
    bucket: &'a str,
    prefix: String,
    delimiter: Option<&'a str>,
    /// The last key (or common prefix) already listed.
    start_after: Option<String>,
    max_keys: Option<i32>,
}

/// A page size from the request: 1000 if absent, at most 1000.
fn page_size(asked: Option<i32>) -> usize {
    usize::try_from(asked.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000)
}

/// Lists one page of `ask` for a caller who may list the bucket.
async fn list_page(cx: &Call, ask: &Ask<'_>) -> Result<OwnedPage, ApiError> {
    let b = cx.bucket(ask.bucket).await?;
    access::check_list_bucket(&cx.caller, &bucket_view(&b))?;
    let (name, p, s) = (
        ask.bucket.to_string(),
        ask.prefix.clone(),
        ask.start_after.clone(),
    );
    let (all, _) = cx
        .on_store(move |store| store.list_objects(&name, &p, s.as_deref(), usize::MAX))
        .await?;
    let page = paginate(
        &all,
        &ask.prefix,
        ask.delimiter,
        ask.start_after.as_deref(),
        page_size(ask.max_keys),
    );
    let owned = OwnedPage {
        objects: page.objects.into_iter().cloned().collect(),
        prefixes: page.prefixes,
        next: page.next,
    };
    Ok(owned)
}

/// A page with its objects' metadata.
struct OwnedPage {
    objects: Vec<ObjectMeta>,
    prefixes: Vec<String>,
    next: Option<String>,
}

impl OwnedPage {
    fn common_prefixes(&self) -> Option<Vec<CommonPrefix>> {
        (!self.prefixes.is_empty()).then(|| {
            self.prefixes
                .iter()
                .map(|p| CommonPrefix {
                    prefix: Some(p.clone()),
                })
                .collect()
        })
    }
}

/// A listed object; ListObjects v1 always names its owner, v2 when asked (`fetch-owner`).
fn object(m: &ObjectMeta, with_owner: bool) -> Object {
    Object {
        e_tag: Some(etag(m)),
        key: Some(m.key.clone()),
        last_modified: timestamp(&m.last_modified),
        size: i64::try_from(m.size).ok(),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: with_owner.then(|| owner(&m.owner_account)),
        ..Default::default()
    }
}

fn wants_url(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str().eq_ignore_ascii_case(EncodingType::URL))
}

/// ListObjects (v1): `Marker` is where the page starts; `NextMarker` is sent (as S3 does)
/// only when a delimiter was given: otherwise clients continue from the last key.
pub async fn list_objects(
    cx: Call,
    input: ListObjectsInput,
) -> Result<ListObjectsOutput, ApiError> {
    let ask = Ask {
        bucket: &input.bucket,
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.as_deref(),
        start_after: input.marker.clone().filter(|m| !m.is_empty()),
        max_keys: input.max_keys,
    };
    let page = list_page(&cx, &ask).await?;
    let contents: Vec<Object> = page.objects.iter().map(|m| object(m, true)).collect();
    let with_delimiter = input.delimiter.as_deref().is_some_and(|d| !d.is_empty());
    let mut out = ListObjectsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(ask.prefix.clone()),
        marker: Some(input.marker.clone().unwrap_or_default()),
        max_keys: Some(i32::try_from(page_size(input.max_keys)).unwrap_or(1000)),
        is_truncated: Some(page.next.is_some()),
        next_marker: page.next.clone().filter(|_| with_delimiter),
        common_prefixes: page.common_prefixes(),
        contents: Some(contents),
        delimiter: input.delimiter.clone(),
        ..Default::default()
    };
    encode_names(&mut out, wants_url(input.encoding_type.as_ref()))?;
    Ok(out)
}

/// ListObjectVersions of an unversioned bucket: each object is one version, `null`, the
/// latest; no delete markers. `KeyMarker` (with `VersionIdMarker` `null` or absent) is the
/// last key already listed.
pub async fn list_object_versions(
    cx: Call,
    input: ListObjectVersionsInput,
) -> Result<ListObjectVersionsOutput, ApiError> {
    if input
        .version_id_marker
        .as_deref()
        .is_some_and(|v| !v.is_empty() && v != "null")
    {
        return Err(ApiError::invalid_argument("Invalid version id specified"));
    }
    let ask = Ask {
        bucket: &input.bucket,
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.as_deref(),
        start_after: input.key_marker.clone().filter(|m| !m.is_empty()),
        max_keys: input.max_keys,
    };
    let page = list_page(&cx, &ask).await?;
    let versions: Vec<ObjectVersion> = page
        .objects
        .iter()
        .map(|m| ObjectVersion {
            e_tag: Some(etag(m)),
            is_latest: Some(true),
            key: Some(m.key.clone()),
            last_modified: timestamp(&m.last_modified),
            owner: Some(owner(&m.owner_account)),
            size: i64::try_from(m.size).ok(),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            version_id: Some("null".to_string()),
            ..Default::default()
        })
        .collect();
    let mut out = ListObjectVersionsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(ask.prefix.clone()),
        key_marker: Some(input.key_marker.clone().unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.clone().unwrap_or_default()),
        max_keys: Some(i32::try_from(page_size(input.max_keys)).unwrap_or(1000)),
        is_truncated: Some(page.next.is_some()),
        next_key_marker: page.next.clone(),
        next_version_id_marker: page.next.as_ref().map(|_| "null".to_string()),
        common_prefixes: page.common_prefixes(),
        versions: Some(versions),
        delimiter: input.delimiter.clone(),
        ..Default::default()
    };
    encode_names(&mut out, wants_url(input.encoding_type.as_ref()))?;
    Ok(out)
}

pub async fn list_objects_v2(
    cx: Call,
    input: ListObjectsV2Input,
) -> Result<ListObjectsV2Output, ApiError> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = page_size(input.max_keys);
    let token = match &input.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let ask = Ask {
        bucket: &input.bucket,
        prefix: prefix.clone(),
        delimiter: input.delimiter.as_deref(),
        start_after: token.or_else(|| input.start_after.clone()),
        max_keys: input.max_keys,
    };
    let page = list_page(&cx, &ask).await?;
    let contents: Vec<Object> = page
        .objects
        .iter()
        .map(|m| object(m, input.fetch_owner == Some(true)))
        .collect();
    let common: Vec<CommonPrefix> = page
        .prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(p.clone()),
        })
        .collect();
    let key_count = i32::try_from(contents.len() + common.len()).unwrap_or(i32::MAX);
    let url = wants_url(input.encoding_type.as_ref());
    let mut out = ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(prefix),
        max_keys: Some(i32::try_from(max).unwrap_or(1000)),
        key_count: Some(key_count),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.next.is_some()),
        next_continuation_token: page.next.as_deref().map(encode_token),
        contents: Some(contents),
        common_prefixes: (!common.is_empty()).then_some(common),
        delimiter: input.delimiter,
        start_after: input.start_after,
        ..Default::default()
    };
    encode_names(&mut out, url)?;
    Ok(out)
}

/// What S3 does with names XML cannot carry: with `encoding-type=url` every key, prefix,
/// delimiter and marker in the listing is percent-encoded (UTF-8, `/` kept; the stock
/// clients ask for this and decode it), and the answer's `EncodingType` says so (the
/// returned `true`). Without it, a listing that would have to carry a character XML 1.0
/// cannot (NUL and the other C0 controls but tab and line feed, a carriage return that
/// parsers would turn into a line feed, U+FFFE and U+FFFF) is refused with
/// `InvalidArgument` instead of being sent as a document no parser accepts.
fn encode_names(out: &mut impl Names, url: bool) -> Result<(), ApiError> {
    if url {
        for n in out.names() {
            *n = url_encode(n);
        }
        out.mark_url_encoded();
        return Ok(());
    }
    if out.names().iter().any(|n| !xml_can_carry(n)) {
        return Err(ApiError::invalid_argument(
            "A key in this listing contains characters XML 1.0 cannot carry; list with encoding-type=url",
        ));
    }
    Ok(())
}

/// The names a listing carries: keys, prefixes, delimiter and markers.
trait Names {
    fn names(&mut self) -> Vec<&mut String>;
    fn mark_url_encoded(&mut self);
}

/// Implements [`Names`] for a listing output: its single-name members, its object list
/// (whose members have a `key`), and its common prefixes.
macro_rules! names {
    ($output:ty, [$($single:ident),*], $objects:ident) => {
        impl Names for $output {
            fn names(&mut self) -> Vec<&mut String> {
                let mut names: Vec<&mut String> = Vec::new();
                $( names.extend(self.$single.as_mut()); )*
                for o in self.$objects.iter_mut().flatten() {
                    names.extend(o.key.as_mut());
                }
                for p in self.common_prefixes.iter_mut().flatten() {
                    names.extend(p.prefix.as_mut());
                }
                names
            }
            fn mark_url_encoded(&mut self) {
                self.encoding_type = Some(EncodingType::from_static(EncodingType::URL));
            }
        }
    };
}

names!(
    ListObjectsV2Output,
    [prefix, delimiter, start_after],
    contents
);
names!(
    ListObjectsOutput,
    [prefix, delimiter, marker, next_marker],
    contents
);
names!(
    ListObjectVersionsOutput,
    [prefix, delimiter, key_marker, next_key_marker],
    versions
);

/// Whether `s` survives an XML 1.0 document unchanged (its `Char` production, less `\r`,
/// which parsers normalize to `\n`).
pub fn xml_can_carry(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_token(t: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid_argument("The continuation token provided is incorrect"))
}

/// One page of a listing: objects and common prefixes in key order, at most `max` entries.
struct Page<'a> {
    objects: Vec<&'a ObjectMeta>,
    prefixes: Vec<String>,
    /// Where the next page starts (the last key or common prefix returned), if truncated.
    next: Option<String>,
}

fn paginate<'a>(
    sorted: &'a [ObjectMeta],
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
) -> Page<'a> {
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        next: None,
    };
    let mut last: Option<String> = None;
    let mut count = 0usize;
    for m in sorted {
        let Some(rest) = m.key.strip_prefix(prefix) else {
            continue;
        };
        // A common prefix at or before the start point was returned on an earlier page.
        let cp = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        if let (Some(cp), Some(s)) = (&cp, start_after) {
            if s.starts_with(cp.as_str()) || cp.as_str() <= s {
                continue;
            }
        }
        if let Some(cp) = cp {
            if page.prefixes.last() == Some(&cp) {
                continue;
            }
            if count == max {
                page.next = last;
                return page;
            }
            page.prefixes.push(cp.clone());
            last = Some(cp);
        } else {
            if start_after.is_some_and(|s| m.key.as_str() <= s) {
                continue;
            }
            if count == max {
                page.next = last;
                return page;
            }
            page.objects.push(m);
            last = Some(m.key.clone());
        }
        count += 1;
    }
    page
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::s3::meta::{self, CannedAcl};

    fn m(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            data_file: String::new(),
            size: 0,
            etag: String::new(),
            content_type: String::new(),
            last_modified: String::new(),
            owner_account: String::new(),
            acl: CannedAcl::Private,
            protection: meta::KeyProtection::StoreKey {
                wrapped_key: vec![],
            },
            nonce_prefix: None,
            chunk_size: 0,
            user_metadata: BTreeMap::new(),
            multipart: None,
            checksum: None,
        }
    }

    fn listing(keys: &[&str]) -> ListObjectsV2Output {
        ListObjectsV2Output {
            prefix: Some(String::new()),
            contents: Some(
                keys.iter()
                    .map(|k| Object {
                        key: Some((*k).to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn keys(out: &ListObjectsV2Output) -> Vec<String> {
        out.contents
            .iter()
            .flatten()
            .filter_map(|o| o.key.clone())
            .collect()
    }

    #[test]
    fn keys_xml_cannot_carry_are_url_encoded_or_refused() {
        let hostile = ["a\0b", "c\rd", "e\u{1}f", "g\u{FFFF}"];
        for k in hostile {
            assert!(!xml_can_carry(k), "{k:?}");
            let mut out = listing(&["plain", k]);
            let e = encode_names(&mut out, false).expect_err(k);
            assert!(format!("{e:?}").contains("encoding-type=url"), "{e:?}");
        }
        let mut out = listing(&["a\0b", "dir/x y+(3).png", "caf\u{e9}", "tab\there"]);
        encode_names(&mut out, true).expect("url");
        assert_eq!(
            keys(&out),
            [
                "a%00b",
                "dir/x%20y%2B%283%29.png",
                "caf%C3%A9",
                "tab%09here"
            ]
        );
        assert_eq!(out.encoding_type.as_ref().map(|e| e.as_str()), Some("url"));
        for k in keys(&out) {
            let back = percent_encoding::percent_decode_str(&k)
                .decode_utf8()
                .expect("utf-8");
            assert!(["a\0b", "dir/x y+(3).png", "caf\u{e9}", "tab\there"].contains(&&*back));
        }
        let mut out = listing(&["tab\there", "caf\u{e9}", "<&>"]);
        encode_names(&mut out, false).expect("XML carries these");
        assert_eq!(keys(&out), ["tab\there", "caf\u{e9}", "<&>"]);
    }

    #[test]
    fn listing_pages_and_groups_by_delimiter() {
        let all: Vec<_> = ["a/1", "a/2", "b", "c/x/1", "c/y", "d"]
            .iter()
            .map(|k| m(k))
            .collect();
        let p = paginate(&all, "", Some("/"), None, 1000);
        assert_eq!(p.prefixes, ["a/", "c/"]);
        assert_eq!(
            p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["b", "d"]
        );
        assert!(p.next.is_none());
        let p = paginate(&all, "", Some("/"), None, 2);
        assert_eq!(p.prefixes, ["a/"]);
        assert_eq!(p.next.as_deref(), Some("b"));
        let p2 = paginate(&all, "", Some("/"), p.next.as_deref(), 2);
        assert_eq!(p2.prefixes, ["c/"]);
        assert_eq!(
            p2.objects
                .iter()
                .map(|o| o.key.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
        assert!(p2.next.is_none());
        let p = paginate(&all, "c/", Some("/"), None, 10);
        assert_eq!(p.prefixes, ["c/x/"]);
        assert_eq!(
            p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["c/y"]
        );
        let p = paginate(&all, "", None, None, 4);
        assert_eq!(p.objects.len(), 4);
        assert_eq!(p.next.as_deref(), Some("c/x/1"));
    }
}
