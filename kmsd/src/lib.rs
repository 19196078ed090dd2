//! kmsd: atrest's key management daemon, as a library.
//!
//! Its public surface is what other processes need to talk to it, nothing more:
//! - [`client`]: the socket client (and [`client::site`], the settings of
//!   `HOME/config.toml` the other services share with kmsd);
//! - [`protocol`]: the frames, in the operation types of [`api`] (one place per
//!   operation: its AWS-named types, its trail metadata);
//! - [`trail::reader`]: reading the audit trail back (read-only);
//! - [`run`]: the daemon binary's entry point (`src/main.rs` is a thin shell over it).
//!
//! Everything else (the server, the key service and its handlers, the key store, the
//! policy engine, the trail writer, the configuration) is `pub(crate)`: atrest asks
//! kmsd, over the socket, what it needs of them (scripts/walls.sh checks the `use`
//! lines). Tests and fuzz targets that run kmsd in-process or exercise its internals
//! go through [`testing`], compiled only with the cargo feature `testing` (a
//! dev-dependency of kmsd's and atrest's tests and of kmsd/fuzz).

// Nothing read from a user, a file, a socket or the environment may panic
// (docs/SECURITY.md): outside tests, an unwrap() or expect() fails clippy.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub(crate) mod blob;
pub mod client;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod daemon;
pub(crate) mod error;
pub(crate) mod grants;
pub(crate) mod iam;
pub(crate) mod keystore;
pub(crate) mod policy;
pub mod protocol;
pub(crate) mod server;
pub(crate) mod service;
pub mod trail;

#[cfg(feature = "testing")]
pub mod testing;

/// The kmsd binary: parses its command line and serves until SIGTERM or SIGINT.
pub fn run() {
    daemon::main()
}
