//! The loopback HTTP endpoint: the S3 REST API over hyper via `s3s`, which parses requests,
//! verifies SigV4 (header and presigned) and SigV2 signatures and renders XML.
//!
//! One concept a module:
//! - [`operations`]: the operation table (every operation, its handler, whether it is
//!   recorded) and the plumbing run around each handler: caller, request id, error
//!   mapping, trail record;
//! - [`call`]: the per-request context handlers get (caller, store lookups);
//! - [`error`]: handler errors and their S3 codes, statuses and messages;
//! - the handlers, by resource: [`service`] (ListBuckets), [`bucket`], [`bucket_config`]
//!   (encryption, Block Public Access, Object Ownership), [`acl`], [`object`] (with
//!   [`span`]: ranges and parts of a read, and [`conditions`]: `If-*` headers), [`copy`]
//!   (CopyObject, and the copying UploadPartCopy shares), [`batch_delete`] (DeleteObjects),
//!   [`multipart`], [`listing`] (ListObjects v1 and v2, ListObjectVersions);
//! - [`customer`]: SSE-C keys from the headers, and the transport they need;
//! - [`upload`]: a request body streamed into the store, shared by PutObject and UploadPart,
//!   with [`digest`]: the `Content-MD5` and `x-amz-checksum-*` it is checked against;
//! - [`range_header`]: GETs whose `Range` s3s would refuse, served as S3 serves them;
//! - [`server`]: the s3s service, the finishing touches on every response, the listener.
//!
//! Access is decided with [`access`](super::access); S3's `RequestId` is on every response.

pub mod acl;
pub mod batch_delete;
pub mod bucket;
pub mod bucket_config;
pub mod call;
pub mod conditions;
pub mod convert;
pub mod copy;
pub mod customer;
pub mod digest;
pub mod error;
pub mod listing;
pub mod multipart;
pub mod object;
pub mod operations;
pub mod range_header;
pub mod server;
pub mod service;
pub mod span;
pub mod upload;

pub use customer::Transport;
pub use operations::ObjectService;
pub use server::{build_service, build_service_with, handle};
