//! `atrest kms ...`.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct KmsArgs {
    #[command(subcommand)]
    pub command: KmsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KmsCommand {}

pub fn run(_g: &Global, args: KmsArgs) -> i32 {
    match args.command {}
}
