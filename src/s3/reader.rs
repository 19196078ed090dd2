//! Reading an object back: the chunks of its sealed streams that a byte span touches, read
//! a batch at a time, each authenticated before any of its plaintext is handed out. A whole
//! object is the span `0..size`; a range or a part reads only the chunks under it, so one
//! byte of a 5 GiB object costs one 64 KiB chunk.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use super::meta::ObjectMeta;
use super::sse::{Opener, CHUNK_SIZE, SEALED_CHUNK_SIZE};
use super::store::StoreError;

/// Chunks read (and returned as one batch) per read(2).
pub const READ_BATCH: u64 = 16;

/// Batch buffers a reader keeps to read into again (see [`ObjectReader::buffer_for`]):
/// the two batches the endpoint queues ahead of the socket, the one being sent, and one
/// to fill.
const KEPT_BUFFERS: usize = 4;

/// The part of one sealed stream a read covers.
pub(super) struct SegmentReader {
    file: File,
    opener: Opener,
    /// The data file's name, for errors.
    name: String,
    /// The span, in this stream's own plaintext offsets.
    start: u64,
    end: u64,
    /// The next chunk to read, and the last one (inclusive) the span needs.
    next: u64,
    last: u64,
}

impl SegmentReader {
    /// Reads `start..end` of the stream in `file` (an empty span still reads, and so
    /// authenticates, the chunk holding `start`). The file is positioned at that chunk.
    pub(super) fn new(
        mut file: File,
        opener: Opener,
        name: &str,
        span: Range<u64>,
    ) -> Result<SegmentReader, StoreError> {
        let chunk = CHUNK_SIZE as u64;
        let first = span.start / chunk;
        let last = if span.end > span.start {
            (span.end - 1) / chunk
        } else {
            first
        };
        if last >= opener.layout().chunks {
            return Err(StoreError::Corrupt(format!(
                "{name}: span {span:?} is past the end of the stream"
            )));
        }
        let at = first
            .checked_mul(SEALED_CHUNK_SIZE as u64)
            .ok_or_else(|| StoreError::Corrupt(format!("{name}: offset overflow")))?;
        file.seek(SeekFrom::Start(at))
            .map_err(|source| StoreError::Io {
                path: name.to_string(),
                source,
            })?;
        Ok(SegmentReader {
            file,
            opener,
            name: name.to_string(),
            start: span.start,
            end: span.end,
            next: first,
            last,
        })
    }

    fn done(&self) -> bool {
        self.next > self.last
    }
}

/// Decrypts a span of an object chunk by chunk; every chunk is authenticated before any of
/// its bytes are returned.
pub struct ObjectReader {
    meta: ObjectMeta,
    span: Range<u64>,
    segments: VecDeque<SegmentReader>,
    /// Authenticated plaintext pieces (slices of one read buffer) not yet handed out.
    ready: VecDeque<bytes::Bytes>,
    /// The buffers of earlier batches, whole: once every piece of one has been sent and
    /// dropped, this is its only handle left and the next batch is read into it.
    kept: VecDeque<bytes::Bytes>,
    chunks_read: u64,
}

impl ObjectReader {
    pub(super) fn new(
        meta: ObjectMeta,
        span: Range<u64>,
        segments: Vec<SegmentReader>,
    ) -> ObjectReader {
        ObjectReader {
            meta,
            span,
            segments: segments.into(),
            ready: VecDeque::new(),
            kept: VecDeque::new(),
            chunks_read: 0,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// The bytes of the object this reader returns.
    pub fn span(&self) -> Range<u64> {
        self.span.clone()
    }

    /// Chunks read and authenticated so far.
    pub fn chunks_read(&self) -> u64 {
        self.chunks_read
    }

    /// The next piece of authenticated plaintext (at most one chunk), or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, StoreError> {
        while self.ready.is_empty() {
            if !self.read_chunks(READ_BATCH)? {
                return Ok(None);
            }
        }
        Ok(self.ready.pop_front())
    }

    /// Every authenticated piece of the next read (up to [`READ_BATCH`] chunks), handed
    /// over together so the endpoint wakes its writer once per read, not once per chunk;
    /// empty at the end.
    pub fn next_batch(&mut self) -> Result<Vec<bytes::Bytes>, StoreError> {
        while self.ready.is_empty() {
            if !self.read_chunks(READ_BATCH)? {
                break;
            }
        }
        Ok(self.ready.drain(..).collect())
    }

    /// Reads up to `max` sealed chunks of the current stream with one read and opens each
    /// in place; only when all of them authenticate are the parts of their plaintexts
    /// inside the span queued (as zero-copy slices of the buffer). `false` at the end.
    pub(super) fn read_chunks(&mut self, max: u64) -> Result<bool, StoreError> {
        while self.segments.front().is_some_and(SegmentReader::done) {
            self.segments.pop_front();
        }
        let Some(seg) = self.segments.front_mut() else {
            return Ok(false);
        };
        let layout = seg.opener.layout();
        let first = seg.next;
        let count = (seg.last - first + 1).min(max);
        let mut lens = Vec::with_capacity(count as usize);
        for i in first..first + count {
            lens.push(layout.chunk_len(i).ok_or_else(|| {
                StoreError::Corrupt(format!("{}: chunk {i} is past the end", seg.name))
            })?);
        }
        let total: usize = lens.iter().sum();
        // read_to_end into reserved capacity: no zero-fill of a buffer about to be
        // overwritten (it was a tenth of the endpoint's GET time).
        let mut buf = Self::buffer_for(&mut self.kept, total);
        let io_err = |source| StoreError::Io {
            path: seg.name.clone(),
            source,
        };
        (&mut seg.file)
            .take(total as u64)
            .read_to_end(&mut buf)
            .map_err(io_err)?;
        if buf.len() != total {
            return Err(io_err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("object data ends {} bytes early", total - buf.len()),
            )));
        }
        let mut pieces = Vec::with_capacity(lens.len());
        let mut at = 0usize;
        for (i, len) in lens.iter().enumerate() {
            let index = first + i as u64;
            let n = seg
                .opener
                .open_in_place(index, &mut buf[at..at + len])
                .map_err(|source| StoreError::Integrity {
                    key: self.meta.key.clone(),
                    source,
                })?;
            // This chunk's plaintext, cut to the span.
            let base = index * CHUNK_SIZE as u64;
            let lo = seg.start.max(base) - base;
            let hi = seg.end.min(base + n as u64).saturating_sub(base);
            if lo < hi {
                pieces.push(at + lo as usize..at + hi as usize);
            }
            at += len;
        }
        self.chunks_read += count;
        seg.next = first + count;
        let buf = bytes::Bytes::from(buf);
        self.ready.extend(pieces.into_iter().map(|r| buf.slice(r)));
        if self.kept.len() == KEPT_BUFFERS {
            self.kept.pop_front();
        }
        self.kept.push_back(buf);
        Ok(true)
    }

    /// An empty buffer of at least `total` bytes' capacity: a kept one whose pieces have
    /// all been sent, or a new one. Reusing it spares the allocator handing back memory the
    /// kernel must map and zero again for every batch. Its old bytes are plaintext this
    /// reader already served, and are overwritten by the read before anything is sliced
    /// from it.
    fn buffer_for(kept: &mut VecDeque<bytes::Bytes>, total: usize) -> Vec<u8> {
        if let Some(i) = kept.iter().position(bytes::Bytes::is_unique) {
            if let Some(Ok(m)) = kept.remove(i).map(bytes::Bytes::try_into_mut) {
                let mut v = Vec::from(m);
                if v.capacity() >= total {
                    v.clear();
                    return v;
                }
            }
        }
        Vec::with_capacity(total)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, P};
    use super::*;

    #[test]
    fn a_batch_is_read_into_a_sent_batchs_buffer_and_every_byte_is_the_objects() {
        let (_d, store, _kms, b) = testkit::setup();
        let chunk = CHUNK_SIZE;
        let body = testkit::random_body(chunk * (READ_BATCH as usize) * 5 + 123, 9);
        testkit::put(&store, &b, "k", &body, testkit::kms_choice());
        let obj = store
            .load_object(&b.name, "k", |m| 0..m.size)
            .expect("load");
        let mut r = store.open_reader(obj, P).expect("open");
        let mut out = Vec::new();
        loop {
            let batch = r.next_batch().expect("batch");
            if batch.is_empty() {
                break;
            }
            for piece in &batch {
                out.extend_from_slice(piece);
            }
            // The batch is sent and dropped here, as the endpoint's writer does, so the
            // next one is read into its buffer.
        }
        assert!(out == body, "the bytes read back are the object's");
        assert!(r.kept.len() <= KEPT_BUFFERS);
    }

    #[test]
    fn a_kept_buffer_is_reused_only_once_every_piece_of_it_is_dropped() {
        let mut kept = VecDeque::new();
        let whole = bytes::Bytes::from(vec![7u8; 1000]);
        let at = whole.as_ptr();
        let piece = whole.slice(10..20);
        kept.push_back(whole);
        // A piece is still out (queued for the socket): never read into.
        let other = ObjectReader::buffer_for(&mut kept, 1000);
        assert_ne!(other.as_ptr(), at);
        assert_eq!(kept.len(), 1);
        drop(piece);
        // Sent: the same memory, empty, for the next batch.
        let again = ObjectReader::buffer_for(&mut kept, 1000);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= 1000);
        assert!(kept.is_empty());
        // Too small for the batch: a new buffer instead.
        kept.push_back(bytes::Bytes::from(again));
        let bigger = ObjectReader::buffer_for(&mut kept, 5000);
        assert!(bigger.capacity() >= 5000);
    }
}
