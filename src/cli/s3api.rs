//! `atrest s3api ...`.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct S3apiArgs {
    #[command(subcommand)]
    pub command: S3apiCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum S3apiCommand {}

pub fn run(_g: &Global, args: S3apiArgs) -> i32 {
    match args.command {}
}
