//! A GET whose body goes straight into a file: the response head is parsed with
//! `httparse`, and the body moves socket -> pipe -> file with splice(2), so no byte of it
//! passes through this process's memory.
//!
//! Why not the general client: through `ureq` a body byte is copied four times on its way
//! into a file (socket into the HTTP client's buffer, into the body reader's, into ours,
//! into the page cache), which made `atrest s3 cp s3://... FILE` take half as long again as
//! the endpoint needs to serve it. With splice only the last copy is left. Used for object
//! downloads only; every other request goes through [`super::client::S3Client::send`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Bytes moved per splice(2) call, and the pipe's capacity when the kernel allows it.
const PIPE_BYTES: usize = 1 << 20;
/// A download that receives nothing for this long fails instead of hanging.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a fetch failed before any S3 answer could be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: io::Error,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed response head: {0}")]
    Head(String),
    #[error("{0}")]
    Request(String),
}

/// The status line and headers of a response.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// The body of a response with a known `Content-Length`, still on the socket (apart from
/// the bytes that arrived with the head).
pub struct RawBody {
    stream: TcpStream,
    leftover: Vec<u8>,
    at: usize,
    remaining: u64,
}

impl Read for RawBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.at);
            buf[..n].copy_from_slice(&self.leftover[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.stream.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl RawBody {
    /// Moves the whole body into `out` at its current position; `progress` is told the
    /// running total. Fails if the connection ends before `Content-Length` bytes arrived.
    pub fn splice_into(self, out: &mut File, progress: impl FnMut(u64)) -> io::Result<u64> {
        self.splice_to(out, None, progress)
    }

    /// Moves the whole body into `out` at `offset` (the file position is neither used nor
    /// moved, so several bodies can fill one file at once); `progress` is told each piece's
    /// length as it lands.
    pub fn splice_at(
        self,
        out: &File,
        offset: u64,
        mut progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        let mut last = 0;
        self.splice_to(out, Some(offset), |total| {
            progress(total - last);
            last = total;
        })
    }

    fn splice_to(
        mut self,
        out: &File,
        offset: Option<u64>,
        mut progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        let mut total = 0u64;
        let mut at = offset;
        if self.at < self.leftover.len() {
            let rest = &self.leftover[self.at..];
            match at.as_mut() {
                Some(o) => {
                    crate::pagecache::write_all_at(out, rest, *o)?;
                    *o += rest.len() as u64;
                }
                None => crate::pagecache::write_all(&mut &*out, rest)?,
            }
            total += rest.len() as u64;
            progress(total);
        }
        let (pipe_r, pipe_w) = pipe()?;
        while self.remaining > 0 {
            let want = usize::try_from(self.remaining)
                .unwrap_or(PIPE_BYTES)
                .min(PIPE_BYTES);
            let n =
                splice(self.stream.as_raw_fd(), pipe_w.as_raw_fd(), want, None).map_err(|e| {
                    // SO_RCVTIMEO expiring shows up as EAGAIN: say what it means.
                    if e.kind() == io::ErrorKind::WouldBlock {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the endpoint sent nothing for {} s", IDLE_TIMEOUT.as_secs()),
                        )
                    } else {
                        e
                    }
                })?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed with {} body bytes still to come",
                        self.remaining
                    ),
                ));
            }
            let mut moved = 0;
            while moved < n {
                // Into the page cache in the pieces it takes fast (see `pagecache`).
                let piece = (n - moved).min(crate::pagecache::WRITE_PIECE);
                let m = splice(pipe_r.as_raw_fd(), out.as_raw_fd(), piece, at.as_mut())?;
                if m == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file accepted no more bytes",
                    ));
                }
                moved += m;
            }
            self.remaining -= n as u64;
            total += n as u64;
            progress(total);
        }
        Ok(total)
    }
}

/// Sends `GET path_and_query` to `authority` (`HOST:PORT`) with `headers` and reads the
/// response head. The body is returned unread when the answer has a `Content-Length`.
pub fn get(
    authority: &str,
    path_and_query: &str,
    headers: &[(String, String)],
) -> Result<(Head, RawBody), FetchError> {
    let connect_err = |source| FetchError::Connect {
        authority: authority.to_string(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::from(io::ErrorKind::AddrNotAvailable)))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(connect_err)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(&request_head(authority, path_and_query, headers)?)?;

    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    let (head, head_len) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(FetchError::Head(
                "connection closed before the response head ended".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(FetchError::Head(format!(
                "response head longer than {MAX_HEAD} bytes"
            )));
        }
    };
    let length = content_length(&head)?;
    let leftover = buf.split_off(head_len);
    if leftover.len() as u64 > length {
        return Err(FetchError::Head(format!(
            "{} body bytes arrived for a Content-Length of {length}",
            leftover.len()
        )));
    }
    let remaining = length - leftover.len() as u64;
    Ok((
        head,
        RawBody {
            stream,
            leftover,
            at: 0,
            remaining,
        },
    ))
}

/// The request line and headers; `Connection: close`, one request per connection.
fn request_head(
    authority: &str,
    path_and_query: &str,
    headers: &[(String, String)],
) -> Result<Vec<u8>, FetchError> {
    let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if bad(authority) || bad(path_and_query) || path_and_query.contains(' ') {
        return Err(FetchError::Request(format!(
            "cannot send {path_and_query:?} to {authority:?} in a request line"
        )));
    }
    let mut head = format!("GET {path_and_query} HTTP/1.1\r\nhost: {authority}\r\n");
    for (k, v) in headers {
        if bad(k) || bad(v) || k.contains(':') {
            return Err(FetchError::Request(format!("header {k:?} cannot be sent")));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    Ok(head.into_bytes())
}

/// The parsed head and its length in bytes, or `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, FetchError> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let status = resp
                .code
                .ok_or_else(|| FetchError::Head("no status code".into()))?;
            let headers = resp
                .headers
                .iter()
                .map(|h| {
                    let v = std::str::from_utf8(h.value)
                        .map_err(|_| FetchError::Head(format!("header {} is not UTF-8", h.name)))?;
                    Ok((h.name.to_ascii_lowercase(), v.trim().to_string()))
                })
                .collect::<Result<Vec<_>, FetchError>>()?;
            Ok(Some((Head { status, headers }, len)))
        }
        Err(e) => Err(FetchError::Head(e.to_string())),
    }
}

/// The body length: `Content-Length` (the endpoint always sends one for a GET); a chunked
/// or unbounded body is refused rather than guessed at.
fn content_length(head: &Head) -> Result<u64, FetchError> {
    let mut found = head
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v);
    match (found.next(), found.next()) {
        (Some(v), None) => v
            .parse()
            .map_err(|_| FetchError::Head(format!("Content-Length {v:?} is not a number"))),
        (Some(_), Some(_)) => Err(FetchError::Head("two Content-Length headers".into())),
        (None, _) => Err(FetchError::Head(
            "no Content-Length (a chunked body is not supported for downloads)".into(),
        )),
    }
}

/// A pipe of [`PIPE_BYTES`] if the kernel allows (else its default size).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe means fewer calls; a refusal (over pipe-max-size) only costs speed.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
    Ok((r, w))
}

/// One splice(2) from `from` to `to`, at `to_offset` (advanced by what moved) or else at
/// their current positions; retried on EINTR.
fn splice(from: i32, to: i32, len: usize, mut to_offset: Option<&mut u64>) -> io::Result<usize> {
    loop {
        let mut off = match to_offset.as_deref() {
            Some(&o) => Some(libc::loff_t::try_from(o).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "file offset past 2^63")
            })?),
            None => None,
        };
        let off_ptr = off
            .as_mut()
            .map_or(std::ptr::null_mut(), |o| o as *mut libc::loff_t);
        // SAFETY: plain syscall on descriptors the caller holds open; a null offset means
        // "use and advance the file position", a non-null one points at a live loff_t on
        // this stack frame that the kernel reads and updates; no other memory is passed.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                off_ptr,
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            if let (Some(o), Some(new)) = (to_offset.as_deref_mut(), off) {
                *o = u64::try_from(new).unwrap_or(*o);
            }
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(&response).unwrap();
            req
        });
        (authority, t)
    }

    #[test]
    fn body_is_spliced_into_the_file_exactly() {
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"x\"\r\n\r\n",
            body.len()
        )
        .into_bytes();
        resp.extend_from_slice(&body);
        let (auth, t) = serve_once(resp);
        let hdrs = vec![("authorization".to_string(), "AWS4 sig".to_string())];
        let (head, raw) = get(&auth, "/b/k%20x?a=1", &hdrs).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.headers.contains(&("etag".into(), "\"x\"".into())));
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("out")).unwrap();
        let mut seen = 0;
        let n = raw.splice_into(&mut f, |t| seen = t).unwrap();
        assert_eq!(n, body.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), body);
        let req = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /b/k%20x?a=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nauthorization: AWS4 sig\r\n"), "{req}");
    }

    #[test]
    fn bodies_land_at_their_offsets_whatever_the_file_position() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("out")).unwrap();
        f.set_len(2_000_000).unwrap();
        let pieces: Vec<Vec<u8>> = (0..2u8).map(|i| vec![i + 1; 1_000_000]).collect();
        // The second half first: offsets, not the position, decide where bytes go.
        for i in [1usize, 0] {
            let mut resp = "HTTP/1.1 206 Partial Content\r\nContent-Length: 1000000\r\n\r\n"
                .to_string()
                .into_bytes();
            resp.extend_from_slice(&pieces[i]);
            let (auth, t) = serve_once(resp);
            let (_, raw) = get(&auth, "/b/k", &[]).unwrap();
            let mut seen = 0;
            let n = raw
                .splice_at(&f, i as u64 * 1_000_000, |d| seen += d)
                .unwrap();
            t.join().unwrap();
            assert_eq!((n, seen), (1_000_000, 1_000_000));
        }
        assert_eq!(
            std::fs::read(dir.path().join("out")).unwrap(),
            pieces.concat()
        );
    }

    #[test]
    fn a_short_body_is_an_error_not_a_smaller_file() {
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        resp.extend_from_slice(&[7u8; 5000]);
        let (auth, t) = serve_once(resp);
        let (_, raw) = get(&auth, "/b/k", &[]).unwrap();
        t.join().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("out")).unwrap();
        let e = raw.splice_into(&mut f, |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn error_bodies_can_be_read_and_bad_heads_are_refused() {
        let xml = "<Error><Code>NoSuchKey</Code></Error>";
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        let (auth, t) = serve_once(resp.into_bytes());
        let (head, mut raw) = get(&auth, "/b/k", &[]).unwrap();
        t.join().unwrap();
        assert_eq!(head.status, 404);
        let mut s = String::new();
        raw.read_to_string(&mut s).unwrap();
        assert_eq!(s, xml);

        let (auth, t) =
            serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec());
        let e = get(&auth, "/b/k", &[]).err().unwrap();
        t.join().unwrap();
        assert!(e.to_string().contains("no Content-Length"), "{e}");

        let (auth, t) = serve_once(b"NOT HTTP AT ALL\r\n\r\n".to_vec());
        assert!(matches!(get(&auth, "/b/k", &[]), Err(FetchError::Head(_))));
        t.join().unwrap();

        let bad = vec![("x-evil".to_string(), "a\r\nhost: other".to_string())];
        assert!(matches!(
            request_head("127.0.0.1:1", "/b/k", &bad),
            Err(FetchError::Request(_))
        ));
        assert!(matches!(
            request_head("127.0.0.1:1", "/b/k x", &[]),
            Err(FetchError::Request(_))
        ));
    }
}
