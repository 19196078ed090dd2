//! `atrest cloudtrail ...`.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct CloudtrailArgs {
    #[command(subcommand)]
    pub command: CloudtrailCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CloudtrailCommand {}

pub fn run(_g: &Global, args: CloudtrailArgs) -> i32 {
    match args.command {}
}
