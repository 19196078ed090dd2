//! kmsd's operations, each in one place: its request and response types with AWS's
//! member names, and its metadata (name, read-only or state-changing, what
//! CloudTrail records of it) beside them.
//!
//! The socket ([`crate::protocol`], postcard), the AWS JSON 1.1 edge
//! ([`Request::from_aws_json`], [`Response::to_aws_json`]) and the CLI's printout
//! ([`json::to_cli_value`]) all use these same types; the key service handles them
//! ([`Handle`]). Member names are botocore's KMS model's
//! (`botocore/data/kms/2014-11-01/service-2.json`); `kmsd/tests/api_model.rs` checks
//! every type against a vendored copy of it.
//!
//! # Encoding rules
//! - Structures are `#[serde(rename_all = "PascalCase")]`, with explicit renames where
//!   AWS differs (`AWSAccountId`).
//! - Blobs are [`Blob`] / [`SecretBlob`] (base64 in JSON, bytes in postcard; secrets are
//!   wiped on drop and redacted in `Debug`); timestamps are [`Timestamp`] (epoch
//!   seconds in JSON, milliseconds in postcard).
//! - `Option` members are written as `null` (postcard is positional, so no
//!   `skip_serializing_if`); the JSON edge drops null members. Optional and collection
//!   members are `#[serde(default)]` so JSON may omit them; a member without a
//!   default is required, and a request missing it is a `ValidationException`.
//! - Integers are `i32` as in AWS's model, so a negative or zero value reaches the
//!   handler and is refused there with AWS's own message.
//! - Postcard encodes enum variants by index and fields by position: the table below
//!   only ever grows at its END, and a field change bumps
//!   [`crate::protocol::PROTOCOL_VERSION`].
//!
//! # Adding an operation
//! 1. Its types and metadata, in the file of its area (`api/keys.rs`, ...): a request
//!    and a response struct, and `impl Operation for ThatRequest` (NAME, SERVICE,
//!    READ_ONLY, the AWS members atrest refuses in UNSUPPORTED, the PAGINATOR of a
//!    list, and `request_parameters` / `response_elements` for the trail).
//! 2. One line at the END of the [`operations!`] table below.
//! 3. Its handler, in the service file of its area:
//!    `impl Handle<Call<'_>, ThatRequest> for KeyService`. The compiler refuses a
//!    table entry without a handler.
//! 4. For a CLI verb, its flag struct in `src/cli/kms.rs`.
//! 5. Its members in `kmsd/tests/api_model.rs`'s samples (a complete value), so the
//!    model check and the round trips cover it, and its row in docs/FORMAT.md's table
//!    of socket variants (the same test compares that table with [`OPERATIONS`]).
//!
//! Nothing else changes: the socket, the JSON edge, the trail and the CLI printer
//! are generic over the table. A KMS operation botocore's model has that the trimmed
//! copy lacks also needs the copy regenerated (its name in `API` of
//! `scripts/vendor-botocore-models.py`, then rerun it).

pub mod aliases;
pub mod atrest;
pub mod cloudtrail;
pub mod credentials;
pub mod crypto;
pub mod default_policies;
pub mod deletion;
pub mod grants;
pub mod iam;
pub mod iam_access_keys;
pub mod iam_policies;
pub mod json;
pub mod keys;
pub mod policies;
pub mod rotation;
pub mod sts;
pub mod types;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::error::{ErrorCode, KmsError};
pub use aliases::*;
pub use atrest::*;
pub use cloudtrail::*;
pub use credentials::*;
pub use crypto::*;
pub use deletion::*;
pub use grants::*;
pub use iam::*;
pub use iam_access_keys::*;
pub use iam_policies::*;
pub use keys::*;
pub use policies::*;
pub use rotation::*;
pub use sts::*;
pub use types::*;

/// The AWS service an operation belongs to (its CloudTrail `eventSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `kms.amazonaws.com`, JSON 1.1 target prefix `TrentService`.
    Kms,
    /// `sts.amazonaws.com` (Query protocol).
    Sts,
    /// `cloudtrail.amazonaws.com`.
    CloudTrail,
    /// `iam.amazonaws.com` (Query protocol over the AWS endpoint).
    Iam,
    /// atrest's own calls (clock control, config reload, service events): on the
    /// socket only, recorded under `kms.amazonaws.com`.
    Atrest,
}

impl Service {
    /// CloudTrail's `eventSource` for the service's calls.
    pub fn event_source(self) -> &'static str {
        match self {
            Service::Kms | Service::Atrest => "kms.amazonaws.com",
            Service::Sts => "sts.amazonaws.com",
            Service::CloudTrail => "cloudtrail.amazonaws.com",
            Service::Iam => "iam.amazonaws.com",
        }
    }
}

/// A paginated list operation's members, as botocore's `paginators-1.json` names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paginator {
    pub input_token: &'static str,
    pub output_token: &'static str,
    pub more_results: &'static str,
    pub limit_key: &'static str,
    pub result_key: &'static str,
}

impl Paginator {
    /// KMS's list operations all page with `Marker` / `NextMarker` / `Truncated` / `Limit`.
    pub const fn marker(result_key: &'static str) -> Self {
        Paginator {
            input_token: "Marker",
            output_token: "NextMarker",
            more_results: "Truncated",
            limit_key: "Limit",
            result_key,
        }
    }
}

/// An operation: implemented by its request type, beside it.
pub trait Operation: Sized + Clone + fmt::Debug + Serialize + DeserializeOwned {
    type Response: Clone + fmt::Debug + Serialize + DeserializeOwned;
    /// The AWS operation name (CloudTrail's `eventName`, the `X-Amz-Target` suffix).
    const NAME: &'static str;
    const SERVICE: Service;
    /// CloudTrail's `readOnly`: reads and cryptographic calls.
    const READ_ONLY: bool;
    /// Members of AWS's request shape atrest does not implement (a nested one as a
    /// path: `Constraints.SourceArn`). A request that sets one (to anything but
    /// `null` or `false`) is refused with `UnsupportedOperationException` rather than
    /// silently ignored.
    const UNSUPPORTED: &'static [&'static str] = &[];
    /// How the operation pages, if it is a list.
    const PAGINATOR: Option<Paginator> = None;
    /// CloudTrail's `requestParameters`: identifiers and options in camelCase, never
    /// plaintext, blobs or grant tokens.
    fn request_parameters(&self) -> Value;
    /// [`Operation::request_parameters`] as the JSON text the trail records, written
    /// straight from a borrowed shape of the request by the frequent calls (Encrypt,
    /// Decrypt, ReEncrypt, the data key calls) rather than built as a `Value` (3k of
    /// kmsd's 85k instructions per Decrypt). Byte for byte
    /// `serde_json::to_vec(&self.request_parameters())` (the shape's members are in
    /// serde_json's sorted key order); `None` (the default): the trail renders the
    /// `Value`.
    fn request_parameters_json(&self) -> Option<String> {
        None
    }
    /// CloudTrail's `responseElements`: null for reads and cryptographic calls.
    fn response_elements(_response: &Self::Response) -> Value {
        Value::Null
    }
}

/// Where an operation sits in [`Request`] and [`Response`] (generated by the table).
pub trait Variant: Operation {
    fn into_request(self) -> Request;
    fn into_response(response: Self::Response) -> Response;
    /// The operation's response, or the name of the operation the response is
    /// to if it is another's.
    fn from_response(response: Response) -> Result<Self::Response, &'static str>;
}

/// A handler of operation `R`, given a per-call context `C` (the key service's is
/// the caller and the key the call names, for the trail).
pub trait Handle<C, R: Operation> {
    fn handle(&self, cx: &mut C, request: R) -> Result<R::Response, KmsError>;
}

/// The table: one line per operation, `Variant(RequestType)`, in postcard index order.
/// APPEND ONLY.
macro_rules! operations {
    ($( $(#[$doc:meta])* $name:ident($req:ty), )*) => {
        /// One request per operation. Variants are postcard indices: APPEND ONLY.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum Request {
            $( $(#[$doc])* $name($req), )*
        }

        /// One response per operation, in the same order as [`Request`].
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum Response {
            $( $name(<$req as Operation>::Response), )*
        }

        $(
            impl From<$req> for Request {
                fn from(r: $req) -> Request {
                    Request::$name(r)
                }
            }

            impl Variant for $req {
                fn into_request(self) -> Request {
                    Request::$name(self)
                }
                fn into_response(response: Self::Response) -> Response {
                    Response::$name(response)
                }
                fn from_response(response: Response) -> Result<Self::Response, &'static str> {
                    match response {
                        Response::$name(r) => Ok(r),
                        #[allow(unreachable_patterns)]
                        other => Err(other.operation()),
                    }
                }
            }
        )*

        /// Handles every operation of the table (implemented for anything that
        /// implements [`Handle`] for each of them).
        pub trait Handler<C>: $( Handle<C, $req> + )* {}

        impl<C, T: ?Sized $( + Handle<C, $req> )*> Handler<C> for T {}

        /// Every operation's name, in table order.
        pub const OPERATIONS: &[&str] = &[$( <$req as Operation>::NAME, )*];

        impl Request {
            /// The AWS operation name (CloudTrail's `eventName`).
            pub fn operation(&self) -> &'static str {
                match self {
                    $( Request::$name(_) => <$req as Operation>::NAME, )*
                }
            }

            pub fn service(&self) -> Service {
                match self {
                    $( Request::$name(_) => <$req as Operation>::SERVICE, )*
                }
            }

            /// CloudTrail's `readOnly` for this operation.
            pub fn read_only(&self) -> bool {
                match self {
                    $( Request::$name(_) => <$req as Operation>::READ_ONLY, )*
                }
            }

            /// The paginator of a list operation.
            pub fn paginator(&self) -> Option<Paginator> {
                match self {
                    $( Request::$name(_) => <$req as Operation>::PAGINATOR, )*
                }
            }

            /// CloudTrail's `requestParameters` for this request.
            pub fn request_parameters(&self) -> Value {
                match self {
                    $( Request::$name(r) => r.request_parameters(), )*
                }
            }

            /// [`Operation::request_parameters_json`] of this request.
            pub fn request_parameters_json(&self) -> Option<String> {
                match self {
                    $( Request::$name(r) => r.request_parameters_json(), )*
                }
            }

            /// Runs the request's handler.
            pub fn dispatch<C, H: Handler<C> + ?Sized>(
                self,
                handler: &H,
                cx: &mut C,
            ) -> Result<Response, KmsError> {
                match self {
                    $( Request::$name(r) => {
                        Handle::<C, $req>::handle(handler, cx, r).map(Response::$name)
                    } )*
                }
            }

            /// Decodes a KMS request from AWS JSON 1.1: `operation` is the part of
            /// `X-Amz-Target` after `TrentService.`, `body` the request body (empty is
            /// `{}`). Errors are AWS's: `UnknownOperationException` for a name KMS does
            /// not have (or atrest does not implement), `SerializationException` for
            /// malformed JSON or a member of the wrong type, `ValidationException` for a
            /// missing required member or a value outside its enum,
            /// `UnsupportedOperationException` for a member atrest does not implement.
            pub fn from_aws_json(operation: &str, body: &[u8]) -> Result<Request, KmsError> {
                Self::from_aws_json_of(Service::Kms, operation, body)
            }

            /// [`Request::from_aws_json`] for another JSON 1.1 service kmsd answers
            /// (CloudTrail's `LookupEvents`). atrest's own calls are never decoded
            /// from AWS JSON.
            pub fn from_aws_json_of(
                service: Service,
                operation: &str,
                body: &[u8],
            ) -> Result<Request, KmsError> {
                $(
                    if service != Service::Atrest
                        && <$req as Operation>::SERVICE == service
                        && operation == <$req as Operation>::NAME
                    {
                        return json::decode::<$req>(body).map(Request::$name);
                    }
                )*
                Err(json::unknown_operation(operation))
            }
        }

        impl Response {
            /// The operation this responds to.
            pub fn operation(&self) -> &'static str {
                match self {
                    $( Response::$name(_) => <$req as Operation>::NAME, )*
                }
            }

            /// CloudTrail's `responseElements` for this response.
            pub fn response_elements(&self) -> Value {
                match self {
                    $( Response::$name(r) => <$req as Operation>::response_elements(r), )*
                }
            }

            /// The response as AWS JSON 1.1 (null members left out).
            pub fn to_aws_json(&self) -> Result<Vec<u8>, KmsError> {
                match self {
                    $( Response::$name(r) => json::encode(r), )*
                }
            }

            /// The response as the AWS CLI prints it (see [`json::to_cli_value`]).
            pub fn to_cli_value(&self) -> Result<Value, KmsError> {
                match self {
                    $( Response::$name(r) => json::to_cli_value(r), )*
                }
            }
        }
    };
}

operations! {
    CreateKey(CreateKeyRequest),
    DescribeKey(DescribeKeyRequest),
    ListKeys(ListKeysRequest),
    EnableKey(EnableKeyRequest),
    DisableKey(DisableKeyRequest),
    ScheduleKeyDeletion(ScheduleKeyDeletionRequest),
    CancelKeyDeletion(CancelKeyDeletionRequest),
    CreateAlias(CreateAliasRequest),
    UpdateAlias(UpdateAliasRequest),
    DeleteAlias(DeleteAliasRequest),
    ListAliases(ListAliasesRequest),
    Encrypt(EncryptRequest),
    Decrypt(DecryptRequest),
    ReEncrypt(ReEncryptRequest),
    GenerateDataKey(GenerateDataKeyRequest),
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyWithoutPlaintextRequest),
    EnableKeyRotation(EnableKeyRotationRequest),
    DisableKeyRotation(DisableKeyRotationRequest),
    GetKeyRotationStatus(GetKeyRotationStatusRequest),
    RotateKeyOnDemand(RotateKeyOnDemandRequest),
    ListKeyRotations(ListKeyRotationsRequest),
    UpdateKeyDescription(UpdateKeyDescriptionRequest),
    ListResourceTags(ListResourceTagsRequest),
    /// Moves the daemon's clock forward. Refused unless kmsd runs with
    /// `--allow-clock-control` (tests only).
    AdvanceClock(AdvanceClockRequest),
    CreateGrant(CreateGrantRequest),
    ListGrants(ListGrantsRequest),
    ListRetirableGrants(ListRetirableGrantsRequest),
    RetireGrant(RetireGrantRequest),
    RevokeGrant(RevokeGrantRequest),
    GetKeyPolicy(GetKeyPolicyRequest),
    PutKeyPolicy(PutKeyPolicyRequest),
    ListKeyPolicies(ListKeyPoliciesRequest),
    /// A trusted service (volume, object) records one of its own events in the trail.
    RecordEvent(RecordEventRequest),
    /// CloudTrail LookupEvents over the trail kmsd writes.
    LookupEvents(LookupEventsRequest),
    /// Re-reads the configuration (like SIGHUP). Only kmsd's own uid and root may.
    ReloadConfig(ReloadConfigRequest),
    /// Who the caller is evaluated as (STS GetCallerIdentity).
    GetCallerIdentity(GetCallerIdentityRequest),
    TagResource(TagResourceRequest),
    UntagResource(UntagResourceRequest),
    /// An access key's secret and principal, for the AWS endpoint (its uids only).
    ResolveAccessKey(ResolveAccessKeyRequest),
    /// The caller's access key for the AWS endpoint (`atrest env`), made on first use.
    EnsureAccessKey(EnsureAccessKeyRequest),
    CreateUser(CreateUserRequest),
    GetUser(GetUserRequest),
    ListUsers(ListUsersRequest),
    DeleteUser(DeleteUserRequest),
    CreateGroup(CreateGroupRequest),
    GetGroup(GetGroupRequest),
    ListGroups(ListGroupsRequest),
    ListGroupsForUser(ListGroupsForUserRequest),
    AddUserToGroup(AddUserToGroupRequest),
    RemoveUserFromGroup(RemoveUserFromGroupRequest),
    DeleteGroup(DeleteGroupRequest),
    CreateRole(CreateRoleRequest),
    GetRole(GetRoleRequest),
    ListRoles(ListRolesRequest),
    DeleteRole(DeleteRoleRequest),
    PutUserPolicy(PutUserPolicyRequest),
    GetUserPolicy(GetUserPolicyRequest),
    DeleteUserPolicy(DeleteUserPolicyRequest),
    ListUserPolicies(ListUserPoliciesRequest),
    PutGroupPolicy(PutGroupPolicyRequest),
    GetGroupPolicy(GetGroupPolicyRequest),
    DeleteGroupPolicy(DeleteGroupPolicyRequest),
    ListGroupPolicies(ListGroupPoliciesRequest),
    PutRolePolicy(PutRolePolicyRequest),
    GetRolePolicy(GetRolePolicyRequest),
    DeleteRolePolicy(DeleteRolePolicyRequest),
    ListRolePolicies(ListRolePoliciesRequest),
    AssumeRole(AssumeRoleRequest),
    CreatePolicy(CreatePolicyRequest),
    GetPolicy(GetPolicyRequest),
    GetPolicyVersion(GetPolicyVersionRequest),
    ListPolicies(ListPoliciesRequest),
    DeletePolicy(DeletePolicyRequest),
    AttachUserPolicy(AttachUserPolicyRequest),
    DetachUserPolicy(DetachUserPolicyRequest),
    AttachGroupPolicy(AttachGroupPolicyRequest),
    DetachGroupPolicy(DetachGroupPolicyRequest),
    AttachRolePolicy(AttachRolePolicyRequest),
    DetachRolePolicy(DetachRolePolicyRequest),
    ListAttachedUserPolicies(ListAttachedUserPoliciesRequest),
    ListAttachedGroupPolicies(ListAttachedGroupPoliciesRequest),
    ListAttachedRolePolicies(ListAttachedRolePoliciesRequest),
    CreateAccessKey(CreateAccessKeyRequest),
    ListAccessKeys(ListAccessKeysRequest),
    DeleteAccessKey(DeleteAccessKeyRequest),
    /// kmsd's trail and listener state (`atrest status`), never recorded.
    Status(StatusRequest),
    /// Who a local uid is (its `--as` claim checked), for the services that serve
    /// local callers; recorded only when refused.
    ResolveCaller(ResolveCallerRequest),
    UpdateAccessKey(UpdateAccessKeyRequest),
    GetSessionToken(GetSessionTokenRequest),
}

/// CloudTrail `requestParameters` helpers for the operation files.
pub(crate) mod trail {
    use serde_json::{Map, Value};

    use super::types::{EncryptionContext, GrantConstraints};

    /// A JSON object builder that leaves out what is not given.
    #[derive(Default)]
    pub struct Params(Map<String, Value>);

    impl Params {
        pub fn new() -> Self {
            Self::default()
        }
        pub fn put(mut self, k: &str, v: impl serde::Serialize) -> Self {
            self.0.insert(
                k.to_string(),
                serde_json::to_value(v).unwrap_or(Value::Null),
            );
            self
        }
        pub fn opt(self, k: &str, v: Option<impl serde::Serialize>) -> Self {
            match v {
                Some(v) => self.put(k, v),
                None => self,
            }
        }
        pub fn put_value(mut self, k: &str, v: Value) -> Self {
            self.0.insert(k.to_string(), v);
            self
        }
        pub fn build(self) -> Value {
            Value::Object(self.0)
        }
    }

    /// The `requestParameters` of an operation's borrowed parameter shape (a
    /// `Serialize` struct beside the operation, members in sorted key order): its
    /// `Value`...
    pub fn value_of(shape: &impl serde::Serialize) -> Value {
        serde_json::to_value(shape).unwrap_or(Value::Null)
    }

    /// ... and the same written as JSON text, for
    /// [`super::Operation::request_parameters_json`].
    pub fn json_of(shape: &impl serde::Serialize) -> Option<String> {
        serde_json::to_string(shape).ok()
    }

    /// An IAM or STS request or response as CloudTrail records it: its members
    /// with camelCase names at every level, null members left out; a structure
    /// without members is null.
    pub fn camel_members(v: &impl serde::Serialize) -> Value {
        fn camel(v: Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.into_iter()
                        .filter(|(_, x)| !x.is_null())
                        .map(|(k, x)| {
                            let mut c = k.chars();
                            let k = match c.next() {
                                Some(f) => f.to_lowercase().chain(c).collect(),
                                None => k,
                            };
                            (k, camel(x))
                        })
                        .collect(),
                ),
                Value::Array(a) => Value::Array(a.into_iter().map(camel).collect()),
                other => other,
            }
        }
        match camel(serde_json::to_value(v).unwrap_or(Value::Null)) {
            Value::Object(m) if m.is_empty() => Value::Null,
            other => other,
        }
    }

    /// `{"keyId": ...}`: the parameters of the calls that name only a key.
    pub fn key_id(key_id: &str) -> Value {
        Params::new().put("keyId", key_id).build()
    }

    pub fn context(ctx: &EncryptionContext) -> Value {
        Value::Object(
            ctx.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    pub fn constraints(c: &GrantConstraints) -> Value {
        let mut m = Map::new();
        if let Some(e) = &c.encryption_context_equals {
            m.insert("encryptionContextEquals".into(), context(e));
        }
        if let Some(e) = &c.encryption_context_subset {
            m.insert("encryptionContextSubset".into(), context(e));
        }
        Value::Object(m)
    }
}
