//! The S3-like object store: buckets and objects on disk, encrypted with per-object data keys
//! (SSE-S3 under a store key, SSE-KMS under kmsd), served over a loopback HTTP endpoint that
//! speaks the S3 REST API with SigV4.
//!
//! One concept per module: [`store`] (directories, object paths, atomic commits), [`meta`]
//! (on-disk metadata), [`sse`] (chunked AES-256-GCM), [`sealed`] (a stream sealed into a
//! file as it arrives), [`reader`] (the chunks under a byte span, authenticated),
//! [`multipart`] (uploads in parts), [`parts`] and [`range`] (S3's rules for part lists and
//! `Range` headers, pure), [`access`] (BPA, ownership, ACLs),
//! [`checksum`] (composite checksums, pure), [`precondition`] (conditional writes, pure),
//! [`kms`] (data keys), [`customer_key`] (SSE-C keys and their fingerprints, pure), [`request_options`] (a client's SSE-C and checksum headers, pure), [`bucket_key`] (S3 Bucket Keys), [`auth`] (access keys, SigV4
//! signing), [`http`] (the endpoint: operation table, handlers by resource, listener),
//! [`audit`] (the trail hook).

pub mod access;
pub mod audit;
pub mod auth;
pub mod bucket_key;
pub mod calls;
pub mod checksum;
pub mod client;
pub mod customer_key;
pub mod fetch;
pub mod http;
pub mod kms;
pub mod meta;
pub mod multipart;
pub mod parts;
pub mod precondition;
pub mod range;
pub mod reader;
pub mod request_options;
pub mod sealed;
pub mod sse;
pub mod store;
#[cfg(test)]
pub(crate) mod testkit;
pub mod transfer;
pub mod xml;
