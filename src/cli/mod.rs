//! The `atrest` command line, shaped like the AWS CLI: one module per service.
//!
//! Every subcommand prints its AWS-shaped result through [`output`] (`--output
//! json|text|table`, `--query JMESPATH`, as the AWS CLI) and, on failure, an AWS-style
//! error line on stderr (`An error occurred (Code) when calling the Op operation: msg`)
//! with a non-zero exit.

pub mod cloudtrail;
pub mod ec2;
pub mod kms;
pub mod local;
pub mod output;
pub mod s3;
pub mod s3api;
pub mod s3api_multipart;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Options every subcommand shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// State directory (overrides $ATREST_HOME and $XDG_STATE_HOME/atrest).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Act as another principal (an IAM ARN the config lets your uid assume).
    #[arg(long = "as", global = true, value_name = "ARN")]
    pub act_as: Option<String>,
    /// kmsd socket (default HOME/kmsd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub output: output::OutputArgs,
}

impl Global {
    pub fn home_dir(&self) -> PathBuf {
        plumbing::home::resolve(self.home.as_deref())
    }
    pub fn layout(&self) -> plumbing::home::Layout {
        plumbing::home::Layout::new(self.home_dir())
    }
    pub fn kmsd_socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.layout().kmsd_socket())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "atrest",
    version,
    // Unambiguous prefixes of long options work (`--instance-id` for
    // `--instance-ids`), as with the AWS CLI's argparse.
    infer_long_args = true,
    about = "Encryption at rest for Linux dev boxes, shaped like AWS KMS, EBS, S3 and CloudTrail"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Key management (AWS KMS).
    Kms(kms::KmsArgs),
    /// Volumes, snapshots and instances (AWS EC2/EBS).
    Ec2(ec2::Ec2Args),
    /// Object store API (AWS S3 API).
    S3api(s3api::S3apiArgs),
    /// Object store high-level commands and the HTTP endpoint.
    S3(s3::S3Args),
    /// The audit trail (AWS CloudTrail).
    Cloudtrail(cloudtrail::CloudtrailArgs),
    /// Runs the AWS endpoint in the foreground: KMS, STS, IAM, CloudTrail and S3 on one
    /// port, for the aws CLI, boto3 and the AWS SDKs (`atrest up` starts it).
    Serve(serve::ListenArgs),
    /// Prints the shell lines that point AWS tools at the endpoint:
    /// `eval "$(atrest env)"` (with --as ARN: as a principal the config lets you act as).
    Env,
    #[command(flatten)]
    Local(local::LocalCommand),
}

/// Runs the parsed command line, returning the process exit code.
pub fn run(cli: Cli) -> i32 {
    let g = cli.global;
    // A bad --query is refused before anything is sent, as the AWS CLI does.
    if let Err(code) = g.output.check() {
        return code;
    }
    match cli.command {
        Command::Kms(a) => kms::run(&g, a),
        Command::Ec2(a) => ec2::run(&g, a),
        Command::S3api(a) => s3api::run(&g, a),
        Command::S3(a) => s3::run(&g, a),
        Command::Cloudtrail(a) => cloudtrail::run(&g, a),
        Command::Serve(a) => serve::run(&g, a.options()),
        Command::Env => serve::env(&g),
        Command::Local(c) => local::run(&g, c),
    }
}

/// The AWS CLI's return codes, every command's in this one place (the documented ones of
/// AWS CLI v2, "AWS CLI return codes"; v1, the venv's, exits 255 where v2 exits 252 or
/// 254, and the same 1 and 2).
pub mod exit {
    /// A high-level `s3` command whose transfer failed (`upload failed: ...`, `fatal
    /// error: ...`): the service error is in the line, the exit says only "it failed".
    pub const S3_FAILED: i32 = 1;
    /// A parameter the command cannot take (a bad flag value, a missing companion flag).
    pub const PARAM: i32 = 252;
    /// The service answered with an error (`An error occurred (Code) when calling ...`).
    pub const SERVICE: i32 = 254;
    /// Anything else: the endpoint cannot be reached, the output cannot be written, a
    /// waiter gave up.
    pub const OTHER: i32 = 255;
}

/// The AWS CLI's words for a service error: `An error occurred (Code) when calling the Op
/// operation: message`.
pub fn service_error_words(operation: &str, code: &str, message: &str) -> String {
    format!("An error occurred ({code}) when calling the {operation} operation: {message}")
}

/// Prints an AWS-CLI-style error and returns the exit code AWS CLI uses for service errors.
pub fn report_error(operation: &str, code: &str, message: &str) -> i32 {
    eprintln!("\n{}", service_error_words(operation, code, message));
    exit::SERVICE
}
