//! The ec2.sock server: one thread per connection, the caller identified by
//! SO_PEERCRED, requests answered by the [`Ec2Service`]. What a connection may cost
//! before it is authenticated by a request (time, a slot, log lines) is bounded by
//! `plumbing::listener` with [`limits`].

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use plumbing::listener::{Conn, Connections, End, Limits};

use super::error::{Ec2Code, Ec2Error};
use super::model::Caller;
use super::protocol::{
    write_frame, FrameError, RequestEnvelope, ResponseEnvelope, MAX_FRAME, PROTOCOL_VERSION,
};
use super::service::Ec2Service;

/// Why ec2.sock could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another volume service already listens on {}", .0.display())]
    InUse(PathBuf),
    #[error("cannot listen on {}", .path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the mode of {}", .path.display())]
    Mode {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `path` (replacing a stale socket, refusing a live one) with `mode` (kmsd's
/// `socket_mode` from the config, 0660 by default: the same users may talk to both).
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, ListenError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| ListenError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ListenError::Mode {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(l)
}

/// The listener's limits: at most [`MAX_CONNECTIONS`] (fewer if the open-file limit
/// says so, keeping [`RESERVED_FDS`] for the rest of the daemon), a first frame within
/// 10 s of the connect and each later one within 60 s of the previous answer.
pub fn limits() -> Limits {
    Limits {
        max_connections: MAX_CONNECTIONS,
        first_frame_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(30),
    }
    .fitted(RESERVED_FDS)
}

/// Connections served at once, at most.
pub const MAX_CONNECTIONS: usize = 512;
/// Descriptors kept for everything but connections: the FUSE device and served images,
/// registry and snapshot files, kmsd connections, loop-helper and qemu pipes, the log.
pub const RESERVED_FDS: u64 = 64;

/// Accepts connections until `stop` is set (the accept loop is woken by a connect): a
/// thread per connection, within [`limits`] (see `plumbing::listener`).
pub fn serve(listener: UnixListener, svc: Arc<Ec2Service>, stop: Arc<AtomicBool>) {
    let conns = Connections::new("ec2.sock", limits());
    let max = conns.limits().max_connections;
    conns.accept_loop(
        &listener,
        &stop,
        |conn| {
            let svc = Arc::clone(&svc);
            std::thread::Builder::new()
                .name("ec2-conn".into())
                .spawn(move || handle_conn(conn, svc))
                .is_ok()
        },
        |stream| refuse(stream, max),
    );
}

/// The one frame a connection over the cap gets before it is closed.
fn refuse(stream: UnixStream, max: usize) {
    // The accept loop must not wait on a client that does not read.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let reply = ResponseEnvelope {
        version: PROTOCOL_VERSION,
        result: Err(Ec2Error::new(
            Ec2Code::RequestLimitExceeded,
            format!(
                "the volume service is serving {max} connections, its limit, and none can be \
                 closed now; try again"
            ),
        )),
    };
    let _ = write_frame(&mut &stream, &reply);
}

fn handle_conn(conn: Conn, svc: Arc<Ec2Service>) {
    let cred = match plumbing::peer::peer_cred(conn.stream()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot identify an ec2.sock peer: {e}");
            return;
        }
    };
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        let env: RequestEnvelope = match conn.next_frame(&mut payload, MAX_FRAME) {
            Ok(()) if plumbing::frame::is_ping(&payload) => {
                if plumbing::frame::write_ping(&mut conn.stream()).is_err() {
                    return;
                }
                conn.answered();
                continue;
            }
            Ok(()) => match plumbing::frame::decode_versioned(&payload, PROTOCOL_VERSION) {
                Ok(env) => env,
                Err(e) => return bad_request(&conn, &e),
            },
            Err(End::Bad(e)) => return bad_request(&conn, &e),
            Err(End::Closed | End::TimedOut | End::Evicted) => return,
        };
        let op = env.request.operation();
        let result = svc
            .kms
            .request_principal(cred.uid, env.act_as.as_deref(), env.signer.as_ref())
            .and_then(|principal| {
                let caller = Caller {
                    uid: cred.uid,
                    gid: cred.gid,
                    pid: cred.pid as u32,
                    principal,
                    signer: env.signer,
                };
                svc.handle(&caller, env.request)
            });
        match &result {
            Ok(_) => tracing::info!(uid = cred.uid, "{op}"),
            Err(e) => tracing::info!(uid = cred.uid, "{op} refused: {e}"),
        }
        let reply = ResponseEnvelope {
            version: PROTOCOL_VERSION,
            result,
        };
        if let Err(e) = plumbing::frame::encode(&reply, &mut out, MAX_FRAME)
            .and_then(|()| conn.write_all(&out).map_err(FrameError::Io))
        {
            tracing::warn!("cannot answer on ec2.sock: {e}");
            return;
        }
        conn.answered();
    }
}

/// A frame that does not decode gets one error frame (counted, not logged one by one:
/// see `plumbing::listener`), then the connection is closed.
fn bad_request(conn: &Conn, e: &FrameError) {
    let reply = ResponseEnvelope {
        version: PROTOCOL_VERSION,
        result: Err(Ec2Error::invalid_parameter(format!("bad request: {e}"))),
    };
    let _ = write_frame(&mut conn.stream(), &reply);
}
