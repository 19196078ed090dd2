//! The EC2/EBS control plane: the registry of volumes, snapshots, instances and
//! attachments, AWS's rules over it, the volume service behind `HOME/ec2.sock`, and
//! the instance lifecycle (grants, decrypt, serve, boot).
//!
//! - [`model`], [`ids`], [`registry`]: records, IDs, the durable flock'd store.
//! - [`rules`], [`filters`]: pure logic (AWS rules, describe filters;
//!   the AWS CLI's shorthand syntax is `plumbing::shorthand`).
//! - [`service`] with [`volumes`], [`snapshots`], [`instances`], [`local`]: operations.
//! - [`kms`]: every call the service makes to kmsd; [`storage`]: every call into the
//!   volume layer; [`runtime`]: the daemon's mount, loop devices and guests.
//! - [`protocol`], [`server`], [`client`]: ec2.sock; [`keywatch`]: key changes
//!   reaching served volumes (from the trail).
//! - [`aws`]: the AWS-shaped JSON the CLI prints.

pub mod aws;
pub mod client;
pub mod daemon;
pub mod error;
pub mod filters;
pub mod ids;
pub mod instances;
pub mod keywatch;
pub mod kms;
pub mod local;
pub mod model;
pub mod protocol;
pub mod registry;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod service;
pub mod snapshots;
pub mod storage;
pub mod volumes;

pub use error::{Ec2Code, Ec2Error};
pub use service::{Caller, Ec2Service};
