//! kmsd: atrest's key management daemon, as a library.
//!
//! The daemon binary (`src/main.rs`) is a thin shell over [`server`]; the CLI and the
//! volume and object services talk to it through [`client`].

pub mod durable;
pub mod grants;
pub mod home;
pub mod policy;
