//! The EC2/EBS control plane: the registry of volumes, snapshots, instances and
//! attachments, AWS's rules over it, the volume service behind `HOME/ec2.sock`, and
//! the instance lifecycle (grants, decrypt, serve, boot).
//!
//! Layers, each importing only those above it in this list (no circle):
//!
//! - [`error`]: the EC2 error codes the service answers with (the bottom).
//! - [`ids`], [`model`]: resource IDs; the shared types (registry records, the caller,
//!   wrapped keys).
//! - [`api`]: each operation's request and response types, with EC2's names and
//!   shapes: what ec2.sock carries and the CLI prints.
//! - [`rules`], [`filters`]: pure logic (AWS's rules, describe filters, pages).
//! - [`registry`]: the durable flock'd store; [`kms`]: every call to kmsd;
//!   [`storage`]: every call into the volume layer (images, snapshot store).
//! - [`worker`]: the one state machine of background work on volumes and snapshots;
//!   [`restores`]: lazy restores (who copies a volume restored from a snapshot, and when).
//! - [`runtime`]: what only the daemon has (the mount, loop devices, guests);
//!   [`keywatch`]: key changes reaching served volumes (from the trail).
//! - [`service`] with [`volumes`], [`snapshots`], [`images`], [`instances`],
//!   [`launch`], [`local`]: the operations' handlers.
//! - [`protocol`], [`server`], [`client`]: ec2.sock; [`daemon`]: the process.
//!
//! The AWS CLI's shorthand syntax is the CLI's (`plumbing::shorthand`).

pub mod api;
pub mod client;
pub mod daemon;
pub mod error;
pub mod filters;
pub mod ids;
pub mod images;
pub mod instances;
pub mod keywatch;
pub mod kms;
pub mod launch;
pub mod local;
pub mod model;
pub mod protocol;
pub mod registry;
pub mod restores;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod service;
pub mod snapshots;
pub mod storage;
pub mod volumes;
pub mod worker;

pub use error::{Ec2Code, Ec2Error};
pub use model::Caller;
pub use service::Ec2Service;
