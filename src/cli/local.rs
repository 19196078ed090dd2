//! Local verbs that have no AWS counterpart: mount, attach, detach, up, down, status.

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {}

pub fn run(_g: &Global, c: LocalCommand) -> i32 {
    match c {}
}
