//! The endpoint's listener: one TCP port (TLS with rustls when it is not on loopback),
//! hyper's HTTP/1.1 (and HTTP/2 for clients that ask), bounded per connection and in
//! number, and the address file that tells the CLI and `atrest env` where it is.
//!
//! Limits, so that traffic nobody authenticated costs bounded memory, time and log
//! lines: at most [`MAX_CONNECTIONS`] connections, fewer when the open-file limit (whose
//! soft value is raised to the hard one at start) leaves less room after [`RESERVED_FDS`]
//! for everything else; when they are all open, the oldest one with no request in
//! progress is closed to make room (its client reconnects), as kmsd.sock and ec2.sock
//! do (`plumbing::listener`), and when every one is busy the newcomer gets `503
//! SlowDown`. Request headers within [`HEADER_TIMEOUT`] of a connection's first byte and
//! at most 64 KiB of them, a TLS handshake within [`HEADER_TIMEOUT`]; accept errors back
//! off (out of descriptors or memory: 100 ms) and, like evictions and refusals, are
//! logged once per 10 s however many there are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use super::Endpoint;

/// Connections served at once (at most: see [`connection_cap`]).
pub const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for everything but client connections (kmsd.sock connections of
/// requests in progress, object files, logs, the runtime).
pub const RESERVED_FDS: u64 = 64;
/// How long a client has to send a request's headers (and to finish a TLS handshake).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most header bytes one request may send.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}{hint}", hint = if source.kind() == std::io::ErrorKind::AddrInUse { format!(" (another program serves {addr}; stop it or pass --listen ADDR, e.g. --listen 127.0.0.1:0 for any free port)") } else { String::new() })]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to listen on {addr} without TLS: beyond loopback the endpoint needs --tls-cert FILE and --tls-key FILE (anyone on the network could otherwise read keys and plaintexts)")]
    NeedsTls { addr: SocketAddr },
    #[error("cannot read the TLS {what} {path}: {message}", path = .path.display())]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the TLS certificate and key do not go together: {0}")]
    TlsConfig(#[source] rustls::Error),
    #[error("cannot write the endpoint address to {path}: {source}", path = .path.display())]
    AddrFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an endpoint already serves this home at {url} (named in {path}); stop it first (atrest down)", path = .path.display())]
    AlreadyServing { url: String, path: PathBuf },
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Written with the endpoint's URL once it listens (`HOME/endpoint.url`).
    pub url_file: PathBuf,
    /// Written with `ADDR:PORT` for plain-HTTP clients of S3 (`HOME/s3.addr`).
    pub addr_file: Option<PathBuf>,
}

/// The URL a home's endpoint announced in its URL file, if one answers there.
pub fn live_endpoint(url_file: &Path) -> Option<String> {
    let url = std::fs::read_to_string(url_file).ok()?.trim().to_string();
    let hostport = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let addr: SocketAddr = hostport.trim_end_matches('/').parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .ok()
        .map(|_| url)
}

/// The address the URL file names for a listener bound to `local`: itself, or, bound
/// to every address (`0.0.0.0`, `::`), the loopback address of the same family, which
/// a client on this machine can connect to (`https://0.0.0.0:4566` is no server name a
/// certificate is made for; other machines use the host's own name).
pub fn announced_addr(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, local.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local.port()))
        }
        _ => local,
    }
}

/// The rustls server configuration of a certificate chain and key.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ListenError> {
    let file_err =
        |what: &'static str, path: &Path, e: rustls_pki_types::pem::Error| ListenError::TlsFile {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err("certificate", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(ListenError::TlsFile {
            what: "certificate",
            path: files.cert.clone(),
            message: "no PEM certificate in it".into(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err("key", &files.key, e))?;
    // ring: already in the tree (aws-lc-rs would add a C build). Its provider is marked
    // deprecated only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ListenError::TlsConfig)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ListenError::TlsConfig)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// One log line per interval for a stream of like events (accept failures, evictions,
/// refusals).
struct Throttled {
    what: &'static str,
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl Throttled {
    fn new(what: &'static str) -> Self {
        Throttled {
            what,
            last: None,
            unlogged: 0,
        }
    }

    fn note(&mut self, detail: &dyn std::fmt::Display) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(count = self.unlogged, "endpoint {}: {detail}", self.what);
            self.unlogged = 0;
            self.last = Some(now);
        }
    }

    /// Notes an accept failure; how long to wait before the next accept (out of
    /// descriptors or memory: wait instead of spinning).
    fn accept_failed(&mut self, e: &std::io::Error) -> Duration {
        self.note(e);
        if plumbing::listener::is_exhaustion(e) {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        }
    }
}

/// The connection cap: [`MAX_CONNECTIONS`], or what the soft open-file limit leaves
/// after [`RESERVED_FDS`] (at least 4).
pub fn connection_cap() -> usize {
    let soft = plumbing::listener::nofile_limit()
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .clamp(4, MAX_CONNECTIONS)
}

/// The open connections, oldest first, so that a full table can make room.
#[derive(Default)]
struct Table {
    next: u64,
    open: std::collections::BTreeMap<u64, Open>,
}

struct Open {
    /// Requests in progress on it.
    busy: Arc<std::sync::atomic::AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

impl Table {
    fn add(
        &mut self,
        busy: Arc<std::sync::atomic::AtomicUsize>,
    ) -> (u64, Arc<tokio::sync::Notify>) {
        let id = self.next;
        self.next += 1;
        let close = Arc::new(tokio::sync::Notify::new());
        self.open.insert(
            id,
            Open {
                busy,
                close: Arc::clone(&close),
            },
        );
        (id, close)
    }

    /// Tells the oldest connection with no request in progress to close; whether there
    /// was one.
    fn evict_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, o)| o.busy.load(std::sync::atomic::Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(o) => {
                o.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in progress on a connection while it lives.
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn start(n: &Arc<std::sync::atomic::AtomicUsize>) -> Busy {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(Arc::clone(n))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The answer to a connection that finds every slot busy (S3's throttling error; the
/// SDKs retry it with back-off).
const SLOW_DOWN: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 107\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

/// Listens (port 0: any free port), writes the address files atomically, and serves
/// until `shutdown` resolves; then removes the files if they still name this endpoint.
pub async fn serve(
    endpoint: Arc<Endpoint>,
    opts: ListenOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ListenError> {
    let tls = match &opts.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls_config(files)?)),
        None if !opts.addr.ip().is_loopback() => {
            return Err(ListenError::NeedsTls { addr: opts.addr })
        }
        None => None,
    };
    if let Some(url) = live_endpoint(&opts.url_file) {
        return Err(ListenError::AlreadyServing {
            url,
            path: opts.url_file.clone(),
        });
    }
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ListenError::Bind {
            addr: opts.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ListenError::Bind {
        addr: opts.addr,
        source,
    })?;
    let announced = announced_addr(local);
    let url = format!(
        "{}://{announced}",
        if tls.is_some() { "https" } else { "http" }
    );
    let write = |path: &Path, text: &str| {
        plumbing::durable::write_atomic(path, format!("{text}\n").as_bytes(), 0o644).map_err(
            |source| ListenError::AddrFile {
                path: path.to_path_buf(),
                source,
            },
        )
    };
    write(&opts.url_file, &url)?;
    if let Some(f) = &opts.addr_file {
        if tls.is_none() {
            write(f, &announced.to_string())?;
        }
    }
    // What SSE-C asks of the connection (plain HTTP is served on loopback only, above).
    let transport = crate::s3::http::Transport {
        confidential: tls.is_some() || local.ip().is_loopback(),
    };
    tracing::info!(%url, %local, "AWS endpoint listening");
    println!("atrest endpoint listening on {url}");

    let mut http =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    if let Err(e) = plumbing::listener::raise_nofile_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let cap = connection_cap();
    tracing::info!(connections = cap, "connection cap");
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let table = Arc::new(std::sync::Mutex::new(Table::default()));
    let mut accept_errors = Throttled::new("cannot accept connections");
    let mut evictions = Throttled::new("closed idle connections to make room");
    let mut refusals = Throttled::new("refused connections (every slot busy): 503 SlowDown");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    let wait = accept_errors.accept_failed(&e);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let evicted = table.lock().is_ok_and(|mut t| t.evict_idle());
                if evicted {
                    evictions.note(&cap);
                    tokio::time::timeout(Duration::from_secs(1), Arc::clone(&slots).acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                } else {
                    None
                }
            }
        };
        let Some(permit) = permit else {
            refusals.note(&peer);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(SLOW_DOWN)).await;
            });
            continue;
        };
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (id, close) = match table.lock() {
            Ok(mut t) => t.add(Arc::clone(&busy)),
            Err(_) => continue,
        };
        let forget = {
            let table = Arc::clone(&table);
            move || {
                if let Ok(mut t) = table.lock() {
                    t.open.remove(&id);
                }
            }
        };
        let ep = Arc::clone(&endpoint);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let ep = Arc::clone(&ep);
            let busy = Busy::start(&busy);
            req.extensions_mut().insert(transport);
            async move {
                let answer = ep.handle(req, peer).await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(answer)
            }
        });
        match &tls {
            None => {
                let conn = http
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        },
                        () = close.notified() => {
                            tracing::debug!(%peer, "idle connection closed to make room");
                        }
                    }
                    forget();
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let serve = async {
                        let handshake =
                            tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                        let stream = match handshake {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = http
                            .serve_connection_with_upgrades(
                                hyper_util::rt::TokioIo::new(stream),
                                service,
                            )
                            .into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        () = close.notified() => {
                            tracing::debug!(%peer, "idle connection closed to make room");
                        }
                    }
                    forget();
                    drop(permit);
                });
            }
        }
    }
    // Only our own address: never a file that names another endpoint.
    for (path, text) in [
        (Some(&opts.url_file), url.clone()),
        (opts.addr_file.as_ref(), announced.to_string()),
    ] {
        if let Some(path) = path {
            if std::fs::read_to_string(path).is_ok_and(|a| a.trim() == text) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_on_every_address_announces_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(announced_addr(a("0.0.0.0:4566")), a("127.0.0.1:4566"));
        assert_eq!(announced_addr(a("[::]:4566")), a("[::1]:4566"));
        assert_eq!(announced_addr(a("127.0.0.1:1")), a("127.0.0.1:1"));
        assert_eq!(announced_addr(a("192.0.2.7:443")), a("192.0.2.7:443"));
        assert_eq!(
            announced_addr(a("[2001:db8::1]:443")),
            a("[2001:db8::1]:443")
        );
    }
}
