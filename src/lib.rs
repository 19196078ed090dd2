//! atrest: encryption at rest for Linux dev boxes.
//!
//! The folder tree is the architecture: `volume/` (format, XTS sectors, images,
//! snapshots), `mount/` (the FUSE view), `boot/` (qemu guests), `ec2/` (registry and
//! instances), `s3/` (the object store), `supervise/` (starting, stopping and sweeping
//! one HOME's daemons), `cli/` (one module per AWS service: parses, calls, prints).

// Nothing read from a user, a file, a socket or the environment may panic
// (docs/SECURITY.md): outside tests, an unwrap() or expect() fails clippy.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod boot;
pub mod cli;
pub mod ec2;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod loopdev;
pub mod mount;
pub mod pagecache;
pub mod s3;
pub mod supervise;
pub mod volume;
