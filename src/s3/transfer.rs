//! Large transfers for `atrest s3 cp`, as the AWS CLI makes them: above a threshold a file
//! goes up as a multipart upload whose parts several threads send at once, and an object
//! comes down as ranged GETs run in parallel, each spliced straight into its place in the
//! file. The defaults are the AWS CLI's (8 MiB threshold and parts, 10 requests at once);
//! the part size grows so no upload needs more than 10000 parts.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::checksum;
use super::client::{Body, ClientError, Response, S3Client};
use super::meta::{ChecksumKind, StoredChecksum};
use super::parts::MAX_PART_NUMBER;
use super::request_options::{AnsweredChecksum, ChecksumAlgorithm, SseCustomerKey};
use super::xml;

/// How large transfers are cut up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferConfig {
    /// Files and objects above this many bytes go in parts.
    pub threshold: u64,
    /// Bytes per part or range (grown for files that would need more than 10000 parts).
    pub part_size: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            threshold: 8 << 20,
            part_size: 8 << 20,
            concurrency: 10,
        }
    }
}

impl TransferConfig {
    /// The part size for `len` bytes: the configured one, doubled until at most 10000
    /// parts are needed.
    pub fn part_size_for(&self, len: u64) -> u64 {
        let mut size = self.part_size.max(1);
        while len.div_ceil(size) > u64::from(MAX_PART_NUMBER) {
            size = size.saturating_mul(2);
        }
        size
    }
}

/// The pieces `len` bytes are cut into: `(index, offset, length)`, at least one.
pub fn pieces(len: u64, part_size: u64) -> Vec<(usize, u64, u64)> {
    let part_size = part_size.max(1);
    let n = len.div_ceil(part_size).max(1);
    (0..n)
        .map(|i| {
            let off = i * part_size;
            (i as usize, off, part_size.min(len - off.min(len)))
        })
        .collect()
}

/// Runs `work` on every piece with up to `concurrency` threads; the first error stops the
/// others (they finish the piece in hand) and is returned.
fn in_parallel<T: Send>(
    items: &[(usize, u64, u64)],
    concurrency: usize,
    work: impl Fn(usize, u64, u64) -> Result<T, ClientError> + Sync,
) -> Result<Vec<T>, ClientError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<ClientError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(idx, off, len)) = items.get(i) else {
                    return;
                };
                match work(idx, off, len) {
                    Ok(v) => {
                        if let Ok(mut r) = results.lock() {
                            r[i] = Some(v);
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    results
        .into_inner()
        .map_err(|_| ClientError::BadResponse("a transfer thread panicked".into()))?
        .into_iter()
        .map(|r| r.ok_or_else(|| ClientError::BadResponse("a part was never sent".into())))
        .collect()
}

/// `len` bytes of `file` from `offset`, read with positioned reads (each part its own
/// reader over one shared file), counting what was read into `progress`.
struct FileRange<'a> {
    file: &'a File,
    at: u64,
    left: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being uploaded",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// What a finished multipart upload answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub etag: String,
    pub parts: usize,
}

/// One object to move in parts: where, how, and who hears of the bytes moved.
pub struct Transfer<'a> {
    pub client: &'a S3Client,
    pub bucket: &'a str,
    pub key: &'a str,
    pub cfg: &'a TransferConfig,
    /// Told the size of every piece of data as it is sent or lands.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// The object's customer key (SSE-C), sent on every request of the transfer: the
    /// upload's creation, each part and the completion, or each range.
    pub sse_c: Option<&'a SseCustomerKey>,
    /// Uploads: the algorithm each part is checksummed with (named at creation, sent in
    /// each part's header, listed with each part at completion).
    pub checksum: Option<ChecksumAlgorithm>,
}

/// The object a multipart copy reads: `bucket/key`, under its customer key if it has one.
pub struct CopySource<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub sse_c: Option<&'a SseCustomerKey>,
}

/// Objects up to this size are copied with one CopyObject; larger ones in parts (S3's
/// limit for CopyObject).
pub const MAX_COPY_OBJECT: u64 = 5 << 30;

impl Transfer<'_> {
    /// Uploads `file` (`len` bytes) as a multipart upload: `headers` go on
    /// CreateMultipartUpload (encryption, content type, ACL, metadata), parts of
    /// [`TransferConfig::part_size_for`] are sent `concurrency` at a time, then completed.
    /// On any failure the upload is aborted, so no parts are left behind.
    pub fn upload(
        &self,
        file: &File,
        len: u64,
        headers: &[(String, String)],
    ) -> Result<Uploaded, ClientError> {
        upload_multipart(self, len, headers, |number, query, off, n| {
            let mut h = self.sse_c_headers();
            if let Some(alg) = self.checksum {
                // A first read of the part for its checksum header (the body streams
                // unsigned, so the signed header is what binds it), as botocore does
                // over plain HTTP.
                let noop = |_: u64| {};
                h.push(alg.header_for(FileRange {
                    file,
                    at: off,
                    left: n,
                    progress: &noop,
                })?);
            }
            let r = self
                .client
                .send(
                    "PUT",
                    Some(self.bucket),
                    Some(self.key),
                    query,
                    &h,
                    Body::Reader {
                        reader: Box::new(FileRange {
                            file,
                            at: off,
                            left: n,
                            progress: self.progress,
                        }),
                        len: n,
                    },
                )
                .map_err(ClientError::during("UploadPart"))?;
            let etag = r.header("etag").map(str::to_string).ok_or_else(|| {
                ClientError::BadResponse(format!("part {number} came back without an ETag"))
            })?;
            let sum = self
                .checksum
                .and_then(|a| r.header(&a.header()).map(|v| (a, v.to_string())));
            Ok((etag, sum))
        })
    }

    /// Copies `source` (`size` bytes) into this transfer's object as a multipart upload of
    /// UploadPartCopy ranges, each carrying both customer keys (the source's to read, the
    /// destination's to write). `headers` go on CreateMultipartUpload.
    pub fn copy(
        &self,
        source: &CopySource<'_>,
        size: u64,
        headers: &[(String, String)],
    ) -> Result<Uploaded, ClientError> {
        let source_header = copy_source_header(source.bucket, source.key);
        upload_multipart(self, size, headers, |number, query, off, n| {
            let mut h = self.sse_c_headers();
            if let Some(k) = source.sse_c {
                h.extend(k.copy_source_headers());
            }
            h.push(("x-amz-copy-source".into(), source_header.clone()));
            if n > 0 {
                h.push((
                    "x-amz-copy-source-range".into(),
                    format!("bytes={off}-{}", off + n - 1),
                ));
            }
            let doc = self
                .client
                .send(
                    "PUT",
                    Some(self.bucket),
                    Some(self.key),
                    query,
                    &h,
                    Body::Empty,
                )
                .and_then(parse_xml)
                .map_err(ClientError::during("UploadPartCopy"))?;
            let etag = doc.text_of("ETag").map(str::to_string).ok_or_else(|| {
                ClientError::BadResponse(format!("part {number} came back without an ETag"))
            })?;
            (self.progress)(n);
            let sum = self
                .checksum
                .and_then(|a| doc.text_of(&a.member()).map(|v| (a, v.to_string())));
            Ok((etag, sum))
        })
    }

    /// Downloads `size` bytes into `out` and checks them against `stored`, the checksum
    /// the object's HEAD answered (if it has one): a composite one part by part
    /// ([`download_parts`]), a whole-object one over the whole file, combined from each
    /// range's CRC as the ranges land (CRCs), or read back once (SHA-1, SHA-256).
    pub fn download(
        &self,
        size: u64,
        etag: &str,
        out: &File,
        stored: Option<&AnsweredChecksum>,
    ) -> Result<u64, ClientError> {
        if let Some((sum, count)) = stored.and_then(|s| s.parts.map(|n| (s, n))) {
            return download_parts(self, count, size, etag, out, sum);
        }
        let combinable = stored
            .map(|s| s.algorithm)
            .filter(|a| a.as_str().starts_with("CRC"));
        let ranges = download_ranges(self, size, etag, out, combinable)?;
        if let Some(sum) = stored {
            let computed = match combinable {
                Some(a) => {
                    let sums: Vec<(StoredChecksum, u64)> = ranges
                        .iter()
                        .map(|(crc, n)| {
                            (
                                StoredChecksum {
                                    algorithm: a.as_str().to_string(),
                                    value: crc.clone().unwrap_or_default(),
                                    kind: ChecksumKind::FullObject,
                                },
                                *n,
                            )
                        })
                        .collect();
                    let refs: Vec<_> = sums.iter().map(|(c, n)| (Some(c), *n)).collect();
                    checksum::full_object(&refs)
                        .ok_or_else(|| {
                            ClientError::BadResponse(format!(
                                "the ranges' {} checksums do not combine",
                                a.as_str()
                            ))
                        })?
                        .value
                }
                None => checksum_of(sum.algorithm, out, 0, size)?,
            };
            matches(sum, &computed, None)?;
        }
        Ok(ranges.iter().map(|(_, n)| n).sum())
    }

    fn sse_c_headers(&self) -> Vec<(String, String)> {
        self.sse_c.map(|k| k.headers()).unwrap_or_default()
    }
}

/// `BUCKET/KEY` as the `x-amz-copy-source` header carries it (the key percent-encoded,
/// `/` kept).
pub fn copy_source_header(bucket: &str, key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(key, KEEP)
    )
}

/// What one part answered: its ETag and, if the upload has a checksum algorithm, the
/// part's checksum under it.
type PartDone = (String, Option<(ChecksumAlgorithm, String)>);

fn upload_multipart(
    t: &Transfer<'_>,
    len: u64,
    headers: &[(String, String)],
    send_part: impl Fn(usize, &[(&str, &str)], u64, u64) -> Result<PartDone, ClientError> + Sync,
) -> Result<Uploaded, ClientError> {
    let (client, bucket, key, cfg) = (t.client, t.bucket, t.key, t.cfg);
    let mut create = headers.to_vec();
    create.extend(t.sse_c_headers());
    if let Some(a) = t.checksum {
        create.push(("x-amz-checksum-algorithm".into(), a.as_str().into()));
    }
    let doc = client
        .send(
            "POST",
            Some(bucket),
            Some(key),
            &[("uploads", "")],
            &create,
            Body::Empty,
        )
        .and_then(parse_xml)
        .map_err(ClientError::during("CreateMultipartUpload"))?;
    let upload_id = doc
        .text_of("UploadId")
        .ok_or_else(|| ClientError::BadResponse("CreateMultipartUpload gave no UploadId".into()))?
        .to_string();
    let result = (|| {
        let parts = pieces(len, cfg.part_size_for(len));
        let done = in_parallel(&parts, cfg.concurrency, |i, off, n| {
            let number = (i + 1).to_string();
            send_part(
                i + 1,
                &[("partNumber", &number), ("uploadId", &upload_id)],
                off,
                n,
            )
        })?;
        let mut body = String::from(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
        );
        for (i, (etag, sum)) in done.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                i + 1,
                xml::escape(etag)
            ));
            if let Some((alg, value)) = sum {
                let m = alg.member();
                body.push_str(&format!("<{m}>{}</{m}>", xml::escape(value)));
            }
            body.push_str("</Part>");
        }
        body.push_str("</CompleteMultipartUpload>");
        let mut h = vec![("content-type".to_string(), "application/xml".to_string())];
        h.extend(t.sse_c_headers());
        let doc = client
            .send(
                "POST",
                Some(bucket),
                Some(key),
                &[("uploadId", &upload_id)],
                &h,
                Body::Bytes(body.as_bytes()),
            )
            .and_then(parse_xml)
            .map_err(ClientError::during("CompleteMultipartUpload"))?;
        Ok(Uploaded {
            etag: doc.text_of("ETag").unwrap_or_default().to_string(),
            parts: done.len(),
        })
    })();
    if result.is_err() {
        // Best effort: the endpoint also drops the parts of uploads it forgets.
        let _ = client.send(
            "DELETE",
            Some(bucket),
            Some(key),
            &[("uploadId", &upload_id)],
            &[],
            Body::Empty,
        );
    }
    result
}

/// An XML answer, or the S3 error a 200 answer may carry (CompleteMultipartUpload and
/// CopyObject can fail after their status line was sent). Only an `Error` root is one: a
/// DeleteResult lists per-key `Error` elements of its own.
pub fn parse_xml(r: super::client::Response) -> Result<xml::Node, ClientError> {
    let text = r.text()?;
    let doc = xml::parse(&text).map_err(|e| ClientError::BadResponse(format!("{e}: {text}")))?;
    if doc.name == "Error" {
        let own = |name: &str| doc.child(name).map(|c| c.text.as_str());
        return Err(ClientError::Service {
            status: 200,
            code: own("Code").unwrap_or_default().to_string(),
            message: own("Message").unwrap_or_default().to_string(),
            request_id: own("RequestId").map(str::to_string),
        });
    }
    Ok(doc)
}

/// The checksum under `algorithm` of `len` bytes of `file` from `offset`, read back with
/// positioned reads (what a download just wrote, so from the page cache).
pub fn checksum_of(
    algorithm: ChecksumAlgorithm,
    file: &File,
    offset: u64,
    len: u64,
) -> std::io::Result<String> {
    let noop = |_: u64| {};
    algorithm.of_reader(FileRange {
        file,
        at: offset,
        left: len,
        progress: &noop,
    })
}

/// `computed` (base64) against the stored checksum `sum` (of one part, for `part`).
pub fn matches(
    sum: &AnsweredChecksum,
    computed: &str,
    part: Option<u32>,
) -> Result<(), ClientError> {
    let expected = match part {
        Some(_) => sum.digest.clone(),
        None => sum.value(),
    };
    if expected == computed {
        Ok(())
    } else {
        Err(ClientError::ChecksumMismatch {
            expected,
            computed: computed.to_string(),
            part,
        })
    }
}

/// `Content-Range: bytes FIRST-LAST/SIZE` of a part of an object of `size` bytes, as
/// `(FIRST, LEN)`.
fn part_span(content_range: &str, size: u64) -> Option<(u64, u64)> {
    let (span, total) = content_range.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
    (total.parse::<u64>().ok()? == size && first <= last && last < size)
        .then(|| (first, last - first + 1))
}

/// Downloads an object whose stored checksum is S3's composite of `count` parts, part by
/// part (`GET ?partNumber=N` with `x-amz-checksum-mode: ENABLED`, `concurrency` at a time),
/// each spliced where its `Content-Range` puts it: every part is checked against the
/// checksum answered with it, the parts must tile the object exactly, and the composite of
/// what arrived must be the stored one (so no part can be left out, repeated or swapped).
/// Ranges that do not follow part boundaries could not be checked at all.
fn download_parts(
    t: &Transfer<'_>,
    count: u32,
    size: u64,
    etag: &str,
    out: &File,
    sum: &AnsweredChecksum,
) -> Result<u64, ClientError> {
    let (client, bucket, key, cfg, progress) = (t.client, t.bucket, t.key, t.cfg, t.progress);
    let alg = sum.algorithm;
    let items: Vec<(usize, u64, u64)> = (0..count as usize).map(|i| (i, 0, 0)).collect();
    let parts = in_parallel(&items, cfg.concurrency, |i, _, _| {
        let number = i as u32 + 1;
        let n = number.to_string();
        let mut h = vec![("x-amz-checksum-mode".to_string(), "ENABLED".to_string())];
        h.extend(t.sse_c_headers());
        let r = client.get_object_with(bucket, key, &[("partNumber", &n)], h)?;
        same_object(&r, bucket, key, etag)?;
        let empty = r.header("content-length") == Some("0");
        let span = match r.header("content-range") {
            _ if empty => None,
            Some(cr) => Some(part_span(cr, size).ok_or_else(|| {
                ClientError::BadResponse(format!(
                    "part {number} of a {size}-byte object came with Content-Range {cr:?}"
                ))
            })?),
            None => {
                return Err(ClientError::BadResponse(format!(
                    "part {number} came without a Content-Range"
                )))
            }
        };
        let stated = AnsweredChecksum::from_headers(&r.headers)
            .map_err(|e| ClientError::BadResponse(e.to_string()))?;
        let (first, len) = span.unwrap_or((0, 0));
        if len > 0 {
            splice_whole(r, out, first, len, progress, &format!("part {number}"))?;
        }
        let computed = checksum_of(alg, out, first, len)?;
        if let Some(s) = stated.filter(|s| s.algorithm == alg) {
            matches(&s, &computed, Some(number))?;
        }
        Ok((span, computed))
    })?;
    let mut at = 0u64;
    for (number, (span, _)) in parts.iter().enumerate() {
        if let Some((first, len)) = span {
            if *first != at {
                return Err(ClientError::BadResponse(format!(
                    "part {} starts at byte {first}, not {at}: the parts do not tile the object",
                    number + 1
                )));
            }
            at += len;
        }
    }
    if at != size {
        return Err(ClientError::BadResponse(format!(
            "the parts cover {at} of {size} bytes"
        )));
    }
    let sums: Vec<StoredChecksum> = parts
        .iter()
        .map(|(_, c)| StoredChecksum {
            algorithm: alg.as_str().to_string(),
            value: c.clone(),
            kind: ChecksumKind::FullObject,
        })
        .collect();
    let refs: Vec<Option<&StoredChecksum>> = sums.iter().map(Some).collect();
    let composite = checksum::composite(&refs).ok_or_else(|| {
        ClientError::BadResponse(format!(
            "a composite {} checksum cannot be made of the parts",
            alg.as_str()
        ))
    })?;
    matches(sum, &composite.value, None)?;
    Ok(size)
}

/// Refuses a piece of a download that came from another version of the object than the
/// one whose ETag is `etag` (replaced during the download).
fn same_object(r: &Response, bucket: &str, key: &str, etag: &str) -> Result<(), ClientError> {
    if r.header("etag") == Some(etag) {
        return Ok(());
    }
    Err(ClientError::BadResponse(format!(
        "s3://{bucket}/{key} changed during the download (ETag {:?}, was {etag})",
        r.header("etag")
    )))
}

/// Splices a GET's whole body (`what`: the part or range, for errors) into `out` at `off`,
/// telling `progress`; anything but exactly `n` bytes is an error.
fn splice_whole(
    r: Response,
    out: &File,
    off: u64,
    n: u64,
    progress: impl FnMut(u64),
    what: &str,
) -> Result<(), ClientError> {
    let got = match r.into_stream() {
        super::client::BodyStream::Spliceable(raw) => raw.splice_at(out, off, progress)?,
        super::client::BodyStream::Reader(_) => {
            return Err(ClientError::BadResponse(format!(
                "the body of {what} was not spliceable"
            )))
        }
    };
    if got != n {
        return Err(ClientError::BadResponse(format!(
            "connection closed after {got} of {n} bytes of {what}"
        )));
    }
    Ok(())
}

/// Downloads `size` bytes of the object into `out` as ranged GETs, `concurrency` at a time,
/// each spliced into its place. Every range must come from the object whose ETag is `etag`:
/// an object replaced during the download fails it rather than mixing two versions. With
/// `crc`, each range's CRC is read back as it lands; returns each range's (CRC, length).
fn download_ranges(
    t: &Transfer<'_>,
    size: u64,
    etag: &str,
    out: &File,
    crc: Option<ChecksumAlgorithm>,
) -> Result<Vec<(Option<String>, u64)>, ClientError> {
    let (client, bucket, key, cfg, progress) = (t.client, t.bucket, t.key, t.cfg, t.progress);
    let ranges = pieces(size, cfg.part_size_for(size));
    in_parallel(&ranges, cfg.concurrency, |_, off, n| {
        if n == 0 {
            return Ok((crc.map(|a| checksum_of(a, out, 0, 0)).transpose()?, 0));
        }
        let range = format!("bytes={off}-{}", off + n - 1);
        let mut h = vec![("range".to_string(), range.clone())];
        h.extend(t.sse_c_headers());
        let r = client.get_object_with(bucket, key, &[], h)?;
        let expect = format!("bytes {off}-{}/{size}", off + n - 1);
        if r.status != 206 || r.header("content-range") != Some(expect.as_str()) {
            return Err(ClientError::BadResponse(format!(
                "asked for {range}, got {} {:?}",
                r.status,
                r.header("content-range")
            )));
        }
        same_object(&r, bucket, key, etag)?;
        splice_whole(r, out, off, n, progress, &range)?;
        Ok((crc.map(|a| checksum_of(a, out, off, n)).transpose()?, n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_length_exactly() {
        assert_eq!(pieces(0, 8), vec![(0, 0, 0)]);
        assert_eq!(pieces(8, 8), vec![(0, 0, 8)]);
        assert_eq!(pieces(9, 8), vec![(0, 0, 8), (1, 8, 1)]);
        let p = pieces(100 << 20, 8 << 20);
        assert_eq!(p.len(), 13);
        assert_eq!(p.iter().map(|x| x.2).sum::<u64>(), 100 << 20);
        assert!(p.windows(2).all(|w| w[0].1 + w[0].2 == w[1].1));
    }

    #[test]
    fn parts_grow_so_no_upload_needs_more_than_10000() {
        let cfg = TransferConfig::default();
        assert_eq!(cfg.part_size_for(1 << 30), 8 << 20);
        let huge = 5u64 << 40;
        let size = cfg.part_size_for(huge);
        assert!(huge.div_ceil(size) <= 10_000);
        assert!(size >= 8 << 20);
    }

    #[test]
    fn a_part_span_must_lie_inside_the_object() {
        assert_eq!(part_span("bytes 0-9/100", 100), Some((0, 10)));
        assert_eq!(part_span("bytes 90-99/100", 100), Some((90, 10)));
        assert_eq!(part_span("bytes 90-100/100", 100), None);
        assert_eq!(part_span("bytes 0-9/99", 100), None);
        assert_eq!(part_span("bytes 9-0/100", 100), None);
        assert_eq!(part_span("bytes */100", 100), None);
        assert_eq!(part_span("0-9/100", 100), None);
    }

    #[test]
    fn a_mismatch_names_what_was_expected_and_what_came() {
        let sum = AnsweredChecksum {
            algorithm: ChecksumAlgorithm::parse("CRC32").unwrap(),
            digest: "DUoRhQ==".into(),
            parts: Some(2),
        };
        assert!(matches(&sum, "DUoRhQ==-2", None).is_ok());
        assert!(matches(&sum, "DUoRhQ==", Some(1)).is_ok());
        let e = matches(&sum, "AAAAAA==-2", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Expected checksum DUoRhQ==-2 did not match calculated checksum: AAAAAA==-2"
        );
        let e = matches(&sum, "AAAAAA==", Some(2)).unwrap_err();
        assert!(e.to_string().ends_with("AAAAAA== (part 2)"), "{e}");
    }

    #[test]
    fn the_first_error_stops_the_others_and_is_returned() {
        let items = pieces(100, 1);
        let calls = AtomicUsize::new(0);
        let r = in_parallel(&items, 4, |i, _, _| {
            calls.fetch_add(1, Ordering::SeqCst);
            if i == 10 {
                Err(ClientError::BadRequest("part 10".into()))
            } else {
                Ok(i)
            }
        });
        assert!(matches!(r, Err(ClientError::BadRequest(ref m)) if m == "part 10"));
        assert!(calls.load(Ordering::SeqCst) < 100, "the others stopped");
        let all = in_parallel(&items, 4, |i, _, _| Ok(i)).unwrap();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
