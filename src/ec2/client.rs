//! The ec2.sock client the CLI uses.

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::api::{Operation, Request, Response};
use super::error::Ec2Error;
use super::protocol::{
    read_frame, write_frame, FrameError, RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION,
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
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    act_as: Option<String>,
}

impl Ec2Client {
    pub fn connect(path: &Path, act_as: Option<String>) -> Result<Ec2Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
        let w = stream
            .try_clone()
            .map_err(|e| ClientError::Transport(FrameError::Io(e)))?;
        Ok(Ec2Client {
            reader: BufReader::new(stream),
            writer: BufWriter::new(w),
            act_as,
        })
    }

    /// Sends one operation and returns its output.
    pub fn send<O: Operation>(&mut self, request: O) -> Result<O::Output, ClientError> {
        let response = self.call(request.into())?;
        let got = response.operation();
        O::output(response).ok_or(ClientError::Mismatch { sent: O::NAME, got })
    }

    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: self.act_as.clone(),
            request,
        };
        write_frame(&mut self.writer, &env)?;
        let reply: ResponseEnvelope = read_frame(&mut self.reader)?;
        Ok(reply.result?)
    }
}
