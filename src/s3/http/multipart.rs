//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads. The store
//! side (data keys, part files, the atomic completion) is `s3::multipart`.

use super::digest::DeclaresDigests as _;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, ChecksumAlgorithm, ChecksumType,
    CommonPrefix, CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CopyPartResult,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, ETag, Initiator,
    ListMultipartUploadsInput, ListMultipartUploadsOutput, ListPartsInput, ListPartsOutput,
    MultipartUpload, Part, StorageClass, UploadPartCopyInput, UploadPartCopyOutput,
    UploadPartInput, UploadPartOutput,
};

use super::super::access;
use super::super::checksum::UploadChecksum;
use super::super::meta::{BucketMeta, ChecksumKind, KeyProtection};
use super::super::multipart::{CompleteChecks, Upload};
use super::super::parts::{self, Requested, MAX_PART_SIZE};
use super::super::range::{self, ByteRange, RangeHeader};
use super::super::store::{check_customer_key, StoreError};
use super::call::Call;
use super::conditions::write_condition;
use super::convert::{bucket_view, etag, owner, set_checksum, timestamp, url_encode};
use super::copy::{copy_into, source, source_conditions};
use super::customer::{customer_key_of, set_echo, source_customer_key};
use super::digest;
use super::error::ApiError;
use super::object::{new_object, new_object_of, sse_header, NewObject};
use super::upload::stream_into;

/// The upload `id` of `key` in `bucket`, if the caller may write into the bucket.
async fn writable_upload(
    cx: &Call,
    bucket: &BucketMeta,
    key: &str,
    id: &str,
) -> Result<std::sync::Arc<Upload>, ApiError> {
    let (b, k, i) = (bucket.name.clone(), key.to_string(), id.to_string());
    let upload = cx
        .on_store(move |store| store.find_upload(&b, &k, &i))
        .await?;
    access::check_write_object(
        &cx.caller,
        &bucket_view(bucket),
        None,
        upload.protection.algorithm(),
    )?;
    Ok(upload)
}

fn part_number(n: i32) -> Result<u32, ApiError> {
    parts::part_number(n).map_err(|e| ApiError::invalid_argument(e.to_string()))
}

fn kms_fields(p: &KeyProtection) -> (Option<bool>, Option<String>) {
    (
        p.bucket_key_enabled().then_some(true),
        p.kms_key_arn().map(str::to_string),
    )
}

fn part_etag(etag: &[u8; 16]) -> ETag {
    ETag::Strong(hex::encode(etag))
}

pub async fn create(
    cx: Call,
    input: CreateMultipartUploadInput,
) -> Result<CreateMultipartUploadOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    let customer = customer_key_of!(cx, input)?;
    let req = new_object(&cx, &bucket, new_object_of!(input, customer.clone()))?;
    let checksum = UploadChecksum::resolve(
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        input.checksum_type.as_ref().map(|t| t.as_str()),
    )
    .map_err(|e| ApiError::refused("InvalidRequest", 400, e.to_string()))?;
    let (b, k, principal) = (bucket.clone(), input.key.clone(), cx.principal());
    let upload = cx
        .on_store(move |store| store.create_upload_with(&b, &k, &principal, req, checksum))
        .await?;
    let (bucket_key_enabled, ssekms_key_id) = kms_fields(&upload.protection);
    let mut out = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.id.clone()),
        bucket_key_enabled,
        ssekms_key_id,
        server_side_encryption: sse_header(&upload.protection),
        checksum_algorithm: upload
            .checksum
            .as_ref()
            .map(|c| ChecksumAlgorithm::from(c.algorithm.clone())),
        checksum_type: upload
            .checksum
            .as_ref()
            .map(|c| ChecksumType::from(c.kind.as_str().to_string())),
        ..Default::default()
    };
    set_echo!(out, &upload.protection, customer.as_deref());
    Ok(out)
}

pub async fn upload_part(cx: Call, input: UploadPartInput) -> Result<UploadPartOutput, ApiError> {
    let number = part_number(input.part_number)?;
    let bucket = cx.bucket(&input.bucket).await?;
    let customer = customer_key_of!(cx, input)?;
    let upload = writable_upload(&cx, &bucket, &input.key, &input.upload_id).await?;
    check_customer_key(&upload.protection, customer.as_deref())?;
    // Refused from its headers: no key is recovered and no byte read.
    if input
        .content_length
        .is_some_and(|n| u64::try_from(n).is_ok_and(|n| n > MAX_PART_SIZE))
    {
        return Err(StoreError::EntityTooLarge.into());
    }
    let declared = input.declared(cx.trailer.as_deref());
    let checks = digest::checks(&declared)?;
    // A part of an upload that named an algorithm is summed under it (the store computes
    // it, unless the client declared that checksum, which `checks` verifies and stores);
    // a part checked against another is refused, as S3 refuses it.
    // (A checksum header or trailer makes `checks` verify one; x-amz-sdk-checksum-algorithm
    // alone names an algorithm without a value, so the store still sums the part.)
    let client_sums =
        upload.checksum.is_some() && (!declared.checksums.is_empty() || declared.trailer.is_some());
    if let (Some(c), Some(alg)) = (&upload.checksum, declared.algorithm()) {
        if c.algorithm != alg {
            return Err(ApiError::refused(
                "InvalidRequest",
                400,
                format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    c.algorithm.to_lowercase(),
                    alg.to_lowercase()
                ),
            ));
        }
    }
    let (b, k, id, principal) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
        cx.principal(),
    );
    let ck = customer.clone();
    let writer = cx
        .on_store(move |store| {
            let mut w = store.begin_part(&b, &k, &id, number, &principal, ck.as_deref())?;
            if client_sums {
                w.summed_by_caller();
            }
            Ok(w)
        })
        .await
        .map_err(|e| with_key(e, &upload.protection))?;
    let part = stream_into(writer, input.body, checks, cx.trailers.clone()).await?;
    let (bucket_key_enabled, ssekms_key_id) = kms_fields(&upload.protection);
    let mut out = UploadPartOutput {
        e_tag: Some(part_etag(&part.etag)),
        bucket_key_enabled,
        ssekms_key_id,
        server_side_encryption: sse_header(&upload.protection),
        ..Default::default()
    };
    set_echo!(out, &upload.protection, customer.as_deref());
    set_checksum!(out, part.checksum.as_ref());
    Ok(out)
}

/// A store error naming the upload's KMS key where S3's message does.
fn with_key(e: ApiError, p: &KeyProtection) -> ApiError {
    match e {
        ApiError::Store {
            source,
            key_arn: None,
        } => ApiError::store_for_key(source, p.kms_key_arn()),
        other => other,
    }
}

/// `x-amz-copy-source-range`: S3 takes only `bytes=FIRST-LAST`.
fn copy_source_range(value: &str) -> Result<ByteRange, ApiError> {
    match range::parse(value.as_bytes()) {
        RangeHeader::Single(r @ ByteRange::FromTo { .. }) => Ok(r),
        _ => Err(ApiError::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )),
    }
}

pub async fn upload_part_copy(
    cx: Call,
    input: UploadPartCopyInput,
) -> Result<UploadPartCopyOutput, ApiError> {
    let number = part_number(input.part_number)?;
    let bucket = cx.bucket(&input.bucket).await?;
    let source_customer = source_customer_key!(cx, input)?;
    let customer = customer_key_of!(cx, input)?;
    let upload = writable_upload(&cx, &bucket, &input.key, &input.upload_id).await?;
    check_customer_key(&upload.protection, customer.as_deref())?;
    let (src_bucket, src_key) = source(&input.copy_source)?;
    let range = input
        .copy_source_range
        .as_deref()
        .map(copy_source_range)
        .transpose()?;
    let source_bucket = cx.bucket(&src_bucket).await?;
    let mut obj = cx
        .object_for_read(&source_bucket, &src_key, move |m| match range {
            Some(r) => r.resolve(m.size).unwrap_or(0..0),
            None => 0..m.size,
        })
        .await?;
    check_customer_key(&obj.meta.protection, source_customer.as_deref())?;
    obj.customer = source_customer;
    source_conditions(
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )
    .check(&obj.meta, true)?;
    let size = obj.meta.size;
    if let Some(r) = range {
        if r.resolve(size).is_err() || matches!(r, ByteRange::FromTo { last, .. } if last >= size) {
            return Err(ApiError::invalid_argument(format!(
                "Range specified is not valid for source object of size: {size}"
            )));
        }
    }
    let span_len = match range {
        Some(r) => r.resolve(size).map(|s| s.end - s.start).unwrap_or(0),
        None => size,
    };
    if span_len > MAX_PART_SIZE {
        return Err(StoreError::EntityTooLarge.into());
    }
    let (b, k, id) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let ck = customer.clone();
    let part = copy_into(&cx, obj, move |store, principal| {
        store.begin_part(&b, &k, &id, number, principal, ck.as_deref())
    })
    .await?;
    let (bucket_key_enabled, ssekms_key_id) = kms_fields(&upload.protection);
    let mut out = UploadPartCopyOutput {
        copy_part_result: Some({
            let mut r = CopyPartResult {
                e_tag: Some(part_etag(&part.etag)),
                last_modified: timestamp(&part.last_modified),
                ..Default::default()
            };
            set_checksum!(r, part.checksum.as_ref());
            r
        }),
        bucket_key_enabled,
        ssekms_key_id,
        server_side_encryption: sse_header(&upload.protection),
        ..Default::default()
    };
    set_echo!(out, &upload.protection, customer.as_deref());
    Ok(out)
}

pub async fn complete(
    cx: Call,
    input: CompleteMultipartUploadInput,
) -> Result<CompleteMultipartUploadOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let customer = customer_key_of!(cx, input)?;
    let input_checksums = CompleteHeaders {
        values: [
            ("CRC32", input.checksum_crc32.clone()),
            ("CRC32C", input.checksum_crc32c.clone()),
            ("CRC64NVME", input.checksum_crc64nvme.clone()),
            ("SHA1", input.checksum_sha1.clone()),
            ("SHA256", input.checksum_sha256.clone()),
        ],
        kind: input.checksum_type.as_ref().map(|t| t.as_str().to_string()),
        object_size: input.mpu_object_size,
    };
    let requested: Vec<Requested> = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| Requested {
            number: p.part_number,
            etag: p.e_tag.map(|e| e.value().to_string()),
            checksums: [
                ("CRC32", p.checksum_crc32),
                ("CRC32C", p.checksum_crc32c),
                ("CRC64NVME", p.checksum_crc64nvme),
                ("SHA1", p.checksum_sha1),
                ("SHA256", p.checksum_sha256),
            ]
            .into_iter()
            .filter_map(|(a, v)| Some((a.to_string(), v?)))
            .collect(),
        })
        .collect();
    let (b, k, id, principal) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
        cx.principal(),
    );
    // A retried completion of an upload that made the current object answers it again,
    // so it is looked up only if the upload is still in progress.
    match cx
        .on_store({
            let (b, k, id) = (b.clone(), k.clone(), id.clone());
            move |store| store.find_upload(&b, &k, &id)
        })
        .await
    {
        Ok(upload) => {
            access::check_write_object(
                &cx.caller,
                &bucket_view(&bucket),
                None,
                upload.protection.algorithm(),
            )?;
            // S3 does not require the customer key here; one given must be the upload's.
            if customer.is_some() {
                check_customer_key(&upload.protection, customer.as_deref())?;
            }
        }
        Err(ApiError::Store {
            source: StoreError::NoSuchUpload,
            ..
        }) => {
            access::check_write_object(
                &cx.caller,
                &bucket_view(&bucket),
                None,
                super::super::meta::SseAlgorithm::Aes256,
            )?;
        }
        Err(e) => return Err(e),
    }
    let checks = complete_checks(&input_checksums)?;
    let meta = cx
        .on_store(move |store| {
            store.complete_upload_with(&b, &k, &id, &requested, &principal, &condition, &checks)
        })
        .await?;
    let (bucket_key_enabled, ssekms_key_id) = kms_fields(&meta.protection);
    let mut out = CompleteMultipartUploadOutput {
        location: Some(format!(
            "/{}/{}",
            url_encode(&input.bucket),
            url_encode(&input.key)
        )),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(etag(&meta)),
        bucket_key_enabled,
        ssekms_key_id,
        server_side_encryption: sse_header(&meta.protection),
        ..Default::default()
    };
    set_checksum!(out, meta.checksum.as_ref(), typed);
    Ok(out)
}

/// CompleteMultipartUpload's headers about the object: `x-amz-checksum-<algorithm>`,
/// `x-amz-checksum-type`, `x-amz-mp-object-size`.
struct CompleteHeaders {
    values: [(&'static str, Option<String>); 5],
    kind: Option<String>,
    object_size: Option<i64>,
}

fn complete_checks(h: &CompleteHeaders) -> Result<CompleteChecks, ApiError> {
    let invalid = |m: String| ApiError::refused("InvalidRequest", 400, m);
    let mut given = h
        .values
        .iter()
        .filter_map(|(a, v)| v.as_ref().map(|v| (a.to_string(), v.clone())));
    let checksum = given.next();
    if given.next().is_some() {
        return Err(invalid(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                .into(),
        ));
    }
    let kind = match h.kind.as_deref().map(str::trim) {
        None => None,
        Some(k) if k.eq_ignore_ascii_case("COMPOSITE") => Some(ChecksumKind::Composite),
        Some(k) if k.eq_ignore_ascii_case("FULL_OBJECT") => Some(ChecksumKind::FullObject),
        Some(k) => {
            return Err(invalid(format!(
                "Value for x-amz-checksum-type header is invalid: {k}"
            )))
        }
    };
    let object_size = match h.object_size {
        None => None,
        Some(n) => Some(
            u64::try_from(n)
                .map_err(|_| invalid("Value for x-amz-mp-object-size header is invalid.".into()))?,
        ),
    };
    Ok(CompleteChecks {
        kind,
        checksum,
        object_size,
    })
}

pub async fn abort(
    cx: Call,
    input: AbortMultipartUploadInput,
) -> Result<AbortMultipartUploadOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    writable_upload(&cx, &bucket, &input.key, &input.upload_id).await?;
    let (b, k, id) = (input.bucket, input.key, input.upload_id);
    cx.on_store(move |store| store.abort_upload(&b, &k, &id))
        .await?;
    Ok(AbortMultipartUploadOutput::default())
}

fn initiator(principal: &str) -> Initiator {
    Initiator {
        display_name: Some(principal.to_string()),
        id: Some(principal.to_string()),
    }
}

/// A page size from the request: 1000 if absent, at most 1000.
fn page_size(asked: Option<i32>) -> usize {
    usize::try_from(asked.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000)
}

pub async fn list_parts(cx: Call, input: ListPartsInput) -> Result<ListPartsOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    access::check_list_bucket(&cx.caller, &bucket_view(&bucket))?;
    let max = page_size(input.max_parts);
    let after = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
    let (b, k, id) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let page = cx
        .on_store(move |store| store.list_parts(&b, &k, &id, after, max))
        .await?;
    let next = page.parts.last().and_then(|p| i32::try_from(p.number).ok());
    let parts: Vec<Part> = page
        .parts
        .iter()
        .map(|p| {
            let mut part = Part {
                e_tag: Some(part_etag(&p.etag)),
                last_modified: timestamp(&p.last_modified),
                part_number: i32::try_from(p.number).ok(),
                size: i64::try_from(p.size).ok(),
                ..Default::default()
            };
            set_checksum!(part, p.checksum.as_ref());
            part
        })
        .collect();
    let checksum = page.upload.checksum.as_ref();
    Ok(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        initiator: Some(initiator(&page.upload.initiator)),
        owner: Some(owner(&page.upload.owner_account)),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: page.truncated.then_some(next).flatten(),
        max_parts: i32::try_from(max).ok(),
        is_truncated: Some(page.truncated),
        parts: Some(parts),
        checksum_algorithm: checksum.map(|c| ChecksumAlgorithm::from(c.algorithm.clone())),
        checksum_type: checksum.map(|c| ChecksumType::from(c.kind.as_str().to_string())),
        ..Default::default()
    })
}

/// One page of ListMultipartUploads: the uploads and common prefixes after the markers,
/// in key order, at most `max` entries.
struct UploadsPage<'a> {
    uploads: Vec<&'a Upload>,
    prefixes: Vec<String>,
    /// Where the next page starts (key marker, upload id marker), if truncated.
    next: Option<(String, Option<String>)>,
}

fn paginate_uploads<'a>(
    sorted: &'a [std::sync::Arc<Upload>],
    prefix: &str,
    delimiter: Option<&str>,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    max: usize,
) -> UploadsPage<'a> {
    let mut page = UploadsPage {
        uploads: Vec::new(),
        prefixes: Vec::new(),
        next: None,
    };
    let mut last: Option<(String, Option<String>)> = None;
    for u in sorted {
        let Some(rest) = u.key.strip_prefix(prefix) else {
            continue;
        };
        // After the key marker; of the marker key itself, only uploads whose id sorts
        // after the upload id marker (S3's rule; the store lists by key, then id).
        if let Some(km) = key_marker {
            let after = match u.key.as_str().cmp(km) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => upload_id_marker.is_some_and(|m| u.id.as_str() > m),
                std::cmp::Ordering::Less => false,
            };
            if !after {
                continue;
            }
        }
        let cp = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        let count = page.uploads.len() + page.prefixes.len();
        if let Some(cp) = cp {
            if page.prefixes.last() == Some(&cp) || key_marker.is_some_and(|k| k.starts_with(&cp)) {
                continue;
            }
            if count == max {
                page.next = last;
                return page;
            }
            page.prefixes.push(cp.clone());
            last = Some((cp, None));
        } else {
            if count == max {
                page.next = last;
                return page;
            }
            page.uploads.push(u);
            last = Some((u.key.clone(), Some(u.id.clone())));
        }
    }
    page
}

pub async fn list_uploads(
    cx: Call,
    input: ListMultipartUploadsInput,
) -> Result<ListMultipartUploadsOutput, ApiError> {
    let bucket = cx.bucket(&input.bucket).await?;
    access::check_list_bucket(&cx.caller, &bucket_view(&bucket))?;
    let url = match input.encoding_type.as_ref().map(|e| e.as_str()) {
        None => false,
        Some("url") => true,
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid Encoding Method specified in Request: {other}"
            )))
        }
    };
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let max = page_size(input.max_uploads);
    let prefix = input.prefix.clone().unwrap_or_default();
    let b = input.bucket.clone();
    let all = cx.on_store(move |store| store.list_uploads(&b)).await?;
    let page = paginate_uploads(
        &all,
        &prefix,
        input.delimiter.as_deref(),
        input.key_marker.as_deref(),
        input.upload_id_marker.as_deref(),
        max,
    );
    let uploads: Vec<MultipartUpload> = page
        .uploads
        .iter()
        .map(|u| MultipartUpload {
            initiated: timestamp(&u.initiated),
            initiator: Some(initiator(&u.initiator)),
            key: Some(enc(&u.key)),
            owner: Some(owner(&u.owner_account)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            upload_id: Some(u.id.clone()),
            ..Default::default()
        })
        .collect();
    let common: Vec<CommonPrefix> = page
        .prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc(p)),
        })
        .collect();
    let (next_key, next_id) = match &page.next {
        Some((k, id)) => (Some(enc(k)), id.clone()),
        None => (None, None),
    };
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(enc(&prefix)),
        delimiter: input.delimiter.as_deref().map(enc),
        encoding_type: input.encoding_type,
        key_marker: Some(input.key_marker.as_deref().map(enc).unwrap_or_default()),
        upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
        max_uploads: i32::try_from(max).ok(),
        is_truncated: Some(page.next.is_some()),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        uploads: Some(uploads),
        common_prefixes: (!common.is_empty()).then_some(common),
        ..Default::default()
    })
}
