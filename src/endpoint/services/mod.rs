//! The services behind the endpoint, one module per protocol family: [`json`] (KMS and
//! CloudTrail, AWS JSON 1.1), [`query`] (STS and IAM, and EC2 through [`ec2`], the
//! client of ec2.sock), [`s3`] (the object service in process). Within a family a service is a
//! row of a table (target prefix or model, signing name, kmsd's service), not a module
//! of its own: they differ in nothing else.

pub mod ec2;
pub mod json;
pub mod query;
pub mod s3;
