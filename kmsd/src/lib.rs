//! kmsd: atrest's key management daemon, as a library.
//!
//! The daemon binary (`src/main.rs`) is a thin shell over [`server`]; the CLI and the
//! volume and object services talk to it through [`client`], in the operation types
//! of [`api`] (one place per operation: its AWS-named types, its trail metadata; the
//! handlers are in [`service`]), framed by [`protocol`].

pub mod api;
pub mod blob;
pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod grants;
pub mod iam;
pub mod keystore;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod service;
pub mod trail;
