//! `atrest ec2 ...`.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Ec2Args {
    #[command(subcommand)]
    pub command: Ec2Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Ec2Command {}

pub fn run(_g: &Global, args: Ec2Args) -> i32 {
    match args.command {}
}
