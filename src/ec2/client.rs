//! The ec2.sock client the CLI uses.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::api::{Operation, Request, Response};
use super::error::Ec2Error;
use super::protocol::{
    read_frame, write_frame, FrameError, RequestEnvelope, ResponseEnvelope, Signer,
    PROTOCOL_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: the daemon is not running.
    #[error(
        "the volume service is not running at {path} (start it with `atrest mount`): {source}"
    )]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Service(#[from] Ec2Error),
    #[error("volume service connection failed: {0}")]
    Transport(#[from] FrameError),
    /// The service answered another operation than the one asked (a protocol bug).
    #[error("the volume service answered {got} to {sent}")]
    Mismatch {
        sent: &'static str,
        got: &'static str,
    },
}

pub struct Ec2Client {
    path: PathBuf,
    stream: UnixStream,
    act_as: Option<String>,
    signer: Option<Signer>,
}

impl Ec2Client {
    pub fn connect(path: &Path, act_as: Option<String>) -> Result<Ec2Client, ClientError> {
        Ok(Ec2Client {
            path: path.to_path_buf(),
            stream: Self::open(path)?,
            act_as,
            signer: None,
        })
    }

    /// Every request from now on speaks for `signer` (the AWS endpoint's verified SigV4
    /// signer; ec2.sock trusts it only from the endpoint's uids).
    pub fn for_signer(mut self, signer: Signer) -> Ec2Client {
        self.signer = Some(signer);
        self
    }

    fn open(path: &Path) -> Result<UnixStream, ClientError> {
        UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Sends one operation and returns its output.
    pub fn send<O: Operation>(&mut self, request: O) -> Result<O::Output, ClientError> {
        let response = self.call(request.into())?;
        let got = response.operation();
        O::output(response).ok_or(ClientError::Mismatch { sent: O::NAME, got })
    }

    /// Sends one request and waits for its answer. A service at its connection cap may
    /// have closed this connection to make room for others (it only closes connections
    /// with no request under way): if the request could not be written, or a read-only
    /// one got no answer, it is sent again once on a new connection.
    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: self.act_as.clone(),
            request,
            signer: self.signer.clone(),
        };
        match self.round_trip(&env) {
            Err(Attempt::Unsent(_)) => {}
            Err(Attempt::Unanswered(_)) if env.request.read_only() => {}
            Err(Attempt::Unanswered(e)) => return Err(e),
            Ok(r) => return r,
        }
        self.stream = Self::open(&self.path)?;
        match self.round_trip(&env) {
            Ok(r) => r,
            Err(Attempt::Unsent(e) | Attempt::Unanswered(e)) => Err(e),
        }
    }

    fn round_trip(
        &mut self,
        env: &RequestEnvelope,
    ) -> Result<Result<Response, ClientError>, Attempt> {
        write_frame(&mut &self.stream, env).map_err(|e| Attempt::Unsent(e.into()))?;
        let reply: ResponseEnvelope = match read_frame(&mut &self.stream) {
            Ok(r) => r,
            Err(e @ FrameError::Closed) => return Err(Attempt::Unanswered(e.into())),
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(reply.result.map_err(ClientError::from))
    }
}

/// A request that failed on the way.
enum Attempt {
    /// It could not be written: the service never saw it.
    Unsent(ClientError),
    /// The connection closed before any answer.
    Unanswered(ClientError),
}
