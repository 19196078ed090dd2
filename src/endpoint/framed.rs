//! The endpoint's pools of connections to the two daemons behind it, kmsd.sock and
//! ec2.sock: both speak `plumbing::frame` (a length-prefixed postcard frame each way),
//! so one pool serves both, asynchronously, on the task that serves the request (a
//! frame written, a frame read: no hop to another thread and back, no new connection a
//! request).
//!
//! The rules, the same for both sockets:
//! - a connection is used by one call at a time, and goes back to the pool (at most
//!   [`MAX_IDLE`] kept) only after a whole reply was read;
//! - a connection the daemon had closed while it sat idle (its idle timeout, or an
//!   eviction at its connection cap) refuses the write: the request was not received,
//!   and it is sent again once, on a new connection;
//! - a connection that fails mid-call is dropped, never reused (it may be mid-frame). A
//!   request written whose connection then closed without a byte of answer may have been
//!   received: it is sent again only if the caller says it is safe (ec2.sock's
//!   read-only operations, as `ec2::client::Ec2Client` does), once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plumbing::frame::FrameError;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many idle connections a pool keeps.
pub const MAX_IDLE: usize = 64;

/// A pool of connections to one daemon's socket.
pub struct Pool {
    socket: PathBuf,
    max_frame: usize,
    idle: Mutex<Vec<Conn>>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing answers on the socket.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The request or its reply failed on the way (the daemon may have received it).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One connection, used by one call at a time.
struct Conn {
    stream: tokio::io::BufReader<tokio::net::UnixStream>,
    /// The frame being written or read.
    buf: Vec<u8>,
}

/// How a round trip failed.
enum Trip {
    /// The daemon had closed the connection before the request was written: not received.
    NotSent(FrameError),
    /// The request was written, and the connection closed before any reply.
    Unanswered(FrameError),
    /// Anything else: the request may have been received.
    Failed(FrameError),
}

impl Conn {
    async fn open(path: &Path) -> Result<Conn, CallError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| CallError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Conn {
            stream: tokio::io::BufReader::with_capacity(16 * 1024, stream),
            buf: Vec::with_capacity(1024),
        })
    }

    /// Writes `request` as one frame and reads the reply's payload into `self.buf`.
    async fn round_trip<T: Serialize>(&mut self, request: &T, max: usize) -> Result<(), Trip> {
        plumbing::frame::encode(request, &mut self.buf, max).map_err(Trip::Failed)?;
        if let Err(e) = self.stream.get_mut().write_all(&self.buf).await {
            return match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    // It may have said why first (a refusal at its connection cap).
                    match self.read_reply(max).await {
                        Ok(()) => Ok(()),
                        Err(_) => Err(Trip::NotSent(FrameError::Io(e))),
                    }
                }
                _ => Err(Trip::Failed(FrameError::Io(e))),
            };
        }
        self.read_reply(max).await
    }

    /// Reads one frame's payload (allocating only as its bytes arrive, as
    /// `plumbing::frame::read_bytes` does).
    async fn read_reply(&mut self, max: usize) -> Result<(), Trip> {
        let len = match self.stream.read_u32().await {
            Ok(n) => n as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Trip::Unanswered(FrameError::Closed))
            }
            Err(e) => return Err(Trip::Failed(FrameError::Io(e))),
        };
        if len > max {
            return Err(Trip::Failed(FrameError::TooLarge { len, max }));
        }
        self.buf.clear();
        let got = (&mut self.stream)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .await
            .map_err(|e| Trip::Failed(FrameError::Io(e)))?;
        if got != len {
            return Err(Trip::Failed(FrameError::Malformed(format!(
                "connection closed inside a frame of {len} bytes"
            ))));
        }
        Ok(())
    }
}

impl Pool {
    /// A pool for `socket`, whose frames are at most `max_frame` bytes either way.
    pub fn new(socket: &Path, max_frame: usize) -> Pool {
        Pool {
            socket: socket.to_path_buf(),
            max_frame,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` and returns its reply, decoded by `decode` from the payload, on a
    /// pooled connection (see the module's rules; `may_repeat`: the request may be sent
    /// again if its connection closed unanswered).
    pub async fn call<T: Serialize, R>(
        &self,
        request: &T,
        may_repeat: bool,
        decode: impl Fn(&[u8]) -> Result<R, FrameError>,
    ) -> Result<R, CallError> {
        let mut retried = false;
        loop {
            let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::open(&self.socket).await?,
            };
            match conn.round_trip(request, self.max_frame).await {
                Ok(()) => {
                    let reply = decode(&conn.buf);
                    // A reply that does not decode leaves the stream at a frame boundary,
                    // but says the daemon is not what this side expects: not reused.
                    if reply.is_ok() {
                        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                        if idle.len() < MAX_IDLE {
                            idle.push(conn);
                        }
                    }
                    return Ok(reply?);
                }
                Err(Trip::NotSent(_)) if !retried => retried = true,
                Err(Trip::Unanswered(_)) if may_repeat && !retried => retried = true,
                Err(Trip::NotSent(e) | Trip::Unanswered(e) | Trip::Failed(e)) => {
                    return Err(CallError::Frame(e))
                }
            }
        }
    }

    /// How many connections sit idle (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    const MAX: usize = 1 << 16;

    fn decode(p: &[u8]) -> Result<String, FrameError> {
        plumbing::frame::decode_versioned::<(u16, String)>(p, 1).map(|(_, s)| s)
    }

    fn read_request(s: &mut std::os::unix::net::UnixStream) -> Option<String> {
        let mut buf = Vec::new();
        plumbing::frame::read_bytes(s, &mut buf, MAX).ok()?;
        decode(&buf).ok()
    }

    fn answer(s: &mut std::os::unix::net::UnixStream, text: &str) {
        plumbing::frame::write(s, &(1u16, text.to_string()), &mut Vec::new(), MAX).expect("w");
    }

    /// A daemon that serves `script`, one entry a connection: how many requests to
    /// answer on it before closing it (0: close after reading one, unanswered).
    fn daemon(dir: &Path, script: Vec<usize>) -> std::thread::JoinHandle<Vec<String>> {
        let l = UnixListener::bind(dir.join("d.sock")).expect("bind");
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answers in script {
                let (mut s, _) = l.accept().expect("accept");
                if answers == 0 {
                    seen.extend(read_request(&mut s));
                    continue;
                }
                for _ in 0..answers {
                    match read_request(&mut s) {
                        Some(r) => {
                            answer(&mut s, &format!("re:{r}"));
                            seen.push(r);
                        }
                        None => break,
                    }
                }
            }
            seen
        })
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn one_connection_serves_calls_in_turn_and_an_idle_close_is_replaced_once() {
        let dir = tempfile::tempdir().expect("dir");
        // Connection 1 answers two requests then closes (an idle timeout); connection 2
        // answers the third.
        let d = daemon(dir.path(), vec![2, 1]);
        let pool = Pool::new(&dir.path().join("d.sock"), MAX);
        rt().block_on(async {
            for (i, want) in ["re:a", "re:b", "re:c"].iter().enumerate() {
                let req = (1u16, ["a", "b", "c"][i].to_string());
                let got = pool.call(&req, false, decode).await.expect("call");
                assert_eq!(&got, want);
                assert_eq!(pool.idle_count(), 1, "the connection is kept");
                // Let the daemon close connection 1 before the third call.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        assert_eq!(d.join().expect("daemon"), ["a", "b", "c"]);
    }

    #[test]
    fn an_unanswered_request_is_repeated_only_when_the_caller_allows_it() {
        let dir = tempfile::tempdir().expect("dir");
        let d = daemon(dir.path(), vec![0, 1, 0]);
        let pool = Pool::new(&dir.path().join("d.sock"), MAX);
        rt().block_on(async {
            let got = pool
                .call(&(1u16, "read".to_string()), true, decode)
                .await
                .expect("repeated once");
            assert_eq!(got, "re:read");
            // The answered connection was kept; take it away so the next call opens a new
            // one, which the daemon closes unanswered.
            pool.idle.lock().expect("lock").clear();
            let e = pool
                .call(&(1u16, "write".to_string()), false, decode)
                .await
                .expect_err("not repeated");
            assert!(matches!(e, CallError::Frame(FrameError::Closed)), "{e}");
            assert_eq!(pool.idle_count(), 0, "a failed connection is not kept");
        });
        assert_eq!(d.join().expect("daemon"), ["read", "read", "write"]);
    }

    #[test]
    fn a_torn_reply_fails_and_its_connection_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let l = UnixListener::bind(dir.path().join("d.sock")).expect("bind");
        let d = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let _ = read_request(&mut s);
            // A length of 100, then 3 bytes, then the end.
            s.write_all(&[0, 0, 0, 100, 1, 2, 3]).expect("w");
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let pool = Pool::new(&dir.path().join("d.sock"), MAX);
        rt().block_on(async {
            let e = pool
                .call(&(1u16, "x".to_string()), true, decode)
                .await
                .expect_err("torn");
            assert!(
                matches!(e, CallError::Frame(FrameError::Malformed(_))),
                "{e}"
            );
            assert_eq!(pool.idle_count(), 0);
        });
        d.join().expect("daemon");
        let none = Pool::new(&dir.path().join("none.sock"), MAX);
        let e = rt()
            .block_on(none.call(&(1u16, "x".to_string()), true, decode))
            .expect_err("nothing listens");
        assert!(matches!(e, CallError::Connect { .. }), "{e}");
    }
}
