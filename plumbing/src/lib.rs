//! plumbing: what kmsd and atrest both need from the operating system, and nothing about
//! keys, volumes or objects.
//!
//! Both packages depend on this crate; it depends on neither. It is where a reader finds
//! how state reaches the disk ([`durable`]), where it lives ([`home`]) and how one
//! process keeps another out of it ([`flock`]).
//!
//! Walls: nothing here knows an AWS operation, a key or a policy; nothing here imports
//! kmsd or atrest. `atrest`'s volume image, snapshot store and FUSE mount use this crate
//! for their file helpers and never import kmsd.

pub mod durable;
pub mod flock;
pub mod home;
