//! `atrest s3 ...`.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct S3Args {
    #[command(subcommand)]
    pub command: S3Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum S3Command {}

pub fn run(_g: &Global, args: S3Args) -> i32 {
    match args.command {}
}
