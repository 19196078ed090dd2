//! The ec2.sock server: one thread per connection, the caller identified by
//! SO_PEERCRED, requests answered by the [`Ec2Service`].

use std::io::{BufReader, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error::Ec2Error;
use super::model::Caller;
use super::protocol::{
    read_frame, write_frame, FrameError, RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION,
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

/// Accepts connections until `stop` is set (the accept loop is woken by a connect).
pub fn serve(listener: UnixListener, svc: Arc<Ec2Service>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let svc = Arc::clone(&svc);
                let _ = std::thread::Builder::new()
                    .name("ec2-conn".into())
                    .spawn(move || handle_conn(stream, svc));
            }
            Err(e) => tracing::warn!("accept on ec2.sock failed: {e}"),
        }
    }
}

fn handle_conn(stream: UnixStream, svc: Arc<Ec2Service>) {
    let cred = match plumbing::peer::peer_cred(&stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot identify an ec2.sock peer: {e}");
            return;
        }
    };
    let Ok(w) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(w);
    loop {
        let env: RequestEnvelope = match read_frame(&mut reader) {
            Ok(e) => e,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::warn!(uid = cred.uid, "bad frame on ec2.sock: {e}");
                let reply = ResponseEnvelope {
                    version: PROTOCOL_VERSION,
                    result: Err(Ec2Error::invalid_parameter(format!("bad request: {e}"))),
                };
                let _ = write_frame(&mut writer, &reply);
                return;
            }
        };
        let op = env.request.operation();
        let result = svc
            .kms
            .caller_principal(cred.uid, env.act_as.as_deref())
            .and_then(|principal| {
                let caller = Caller {
                    uid: cred.uid,
                    gid: cred.gid,
                    pid: cred.pid as u32,
                    principal,
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
        if let Err(e) = write_frame(&mut writer, &reply) {
            tracing::warn!("cannot answer on ec2.sock: {e}");
            return;
        }
    }
}
