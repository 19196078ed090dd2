//! plumbing: what kmsd and atrest both need from the operating system, and nothing about
//! keys, volumes or objects.
//!
//! Both packages depend on this crate; it depends on neither. It is where a reader finds
//! how state reaches the disk ([`durable`]), where it lives ([`home`]), how one process
//! keeps another out of it ([`flock`]), how daemons start and are found ([`daemon`]), who
//! is at the other end of a Unix socket ([`peer`]), how a message crosses one ([`frame`]),
//! how AWS writes a timestamp ([`awstime`]), how the AWS CLI's shorthand syntax reads
//! ([`shorthand`]), and what a socket listener lets unauthenticated clients cost
//! ([`listener`]).
//!
//! Walls: nothing here knows an AWS operation, a key or a policy; nothing here imports
//! kmsd or atrest. `atrest`'s volume image, snapshot store and FUSE mount use this crate
//! for their file helpers and never import kmsd.

// Nothing read from a user, a file, a socket or the environment may panic
// (docs/SECURITY.md): outside tests, an unwrap() or expect() fails clippy.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod awstime;
pub mod daemon;
pub mod durable;
pub mod flock;
pub mod frame;
pub mod home;
pub mod listener;
pub mod logging;
pub mod peer;
pub mod shorthand;
