//! kmsd's operation types (`kmsd::api`) against AWS's KMS model and their encodings.
//!
//! The model is botocore's (`kmsd/tests/botocore/kms-2014-11-01.json`, trimmed from
//! `botocore/data/kms/2014-11-01/service-2.json` by `scripts/vendor-botocore-models.py`,
//! botocore version in the file). For every operation a complete sample (every member set) is checked:
//! - postcard round trip of its request and response (the socket);
//! - AWS JSON round trip (`Request::from_aws_json` / `Response::to_aws_json`);
//! - for KMS operations, against the model: the JSON member names at every level,
//!   which request members are required (found by leaving each one out and asking
//!   `from_aws_json`, so the check is of the behaviour, not of a list), each value's
//!   type and enum values, the paginator;
//!
//! and then golden JSON of a few responses, the AWS JSON decoding errors, and the
//! socket frame layout documented in docs/FORMAT.md.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use kmsd::api::json::{encode, to_cli_value};
use kmsd::api::*;
use kmsd::protocol::{
    encode_frame, RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION, SYMMETRIC_DEFAULT,
};
use serde_json::{json, Value};

const MODEL: &str = include_str!("botocore/kms-2014-11-01.json");
const IAM_MODEL: &str = include_str!("botocore/iam-2010-05-08.json");
const STS_MODEL: &str = include_str!("botocore/sts-2011-06-15.json");
const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE: &str = "arn:aws:iam::111122223333:role/worker";
const GRANT: &str = "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60";

struct Model(Value);

/// The models of the services whose operations are checked against AWS's.
struct Models {
    kms: Model,
    iam: Model,
    sts: Model,
}

impl Models {
    fn load() -> Models {
        let m = |t: &str| Model(serde_json::from_str(t).unwrap());
        Models {
            kms: m(MODEL),
            iam: m(IAM_MODEL),
            sts: m(STS_MODEL),
        }
    }
    fn of(&self, s: Service) -> Option<&Model> {
        match s {
            Service::Kms => Some(&self.kms),
            Service::Iam => Some(&self.iam),
            Service::Sts => Some(&self.sts),
            Service::CloudTrail | Service::Atrest => None,
        }
    }
}

impl Model {
    fn shape(&self, name: &str) -> &Value {
        &self.0["shapes"][name]
    }
    fn io(&self, op: &str, which: &str) -> Option<&str> {
        self.0["operations"][op][which].as_str()
    }
    fn members(&self, shape: &str) -> BTreeSet<String> {
        self.shape(shape)["members"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
    fn required(&self, shape: &str) -> BTreeSet<String> {
        self.shape(shape)["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

/// Checks JSON value `v` against model shape `shape`: its type, enum values and (for
/// structures) that every member is the model's. `rel` is the member path from the
/// request or response root (`Constraints.SourceArn`), `label` names it in
/// messages. With `complete` (request samples set every member), every model member
/// must be there too, except the paths the operation lists as unsupported.
fn check_value(
    m: &Model,
    shape: &str,
    v: &Value,
    rel: &str,
    label: &str,
    complete: Option<&BTreeSet<String>>,
) {
    let s = m.shape(shape);
    let join = |k: &str| {
        if rel.is_empty() {
            k.to_string()
        } else {
            format!("{rel}.{k}")
        }
    };
    match s["type"].as_str().unwrap() {
        "structure" => {
            let ours = keys(v);
            let model = m.members(shape);
            assert!(
                ours.is_subset(&model),
                "{label}: members {:?} are not in AWS's {shape}",
                ours.difference(&model).collect::<Vec<_>>()
            );
            if let Some(unsupported) = complete {
                let expected: BTreeSet<String> = model
                    .iter()
                    .filter(|k| !unsupported.contains(&join(k)))
                    .cloned()
                    .collect();
                assert_eq!(
                    ours, expected,
                    "{label}: members differ from AWS's {shape} (less UNSUPPORTED)"
                );
                assert!(
                    ours.iter().all(|k| !unsupported.contains(&join(k))),
                    "{label}: a member is both here and UNSUPPORTED"
                );
            }
            for (k, x) in v.as_object().unwrap() {
                let member_shape = s["members"][k].as_str().unwrap();
                check_value(
                    m,
                    member_shape,
                    x,
                    &join(k),
                    &format!("{label}.{k}"),
                    complete,
                );
            }
        }
        "list" => {
            let items = v
                .as_array()
                .unwrap_or_else(|| panic!("{label}: not a list"));
            assert!(
                !items.is_empty() || complete.is_none(),
                "{label}: empty sample list"
            );
            for x in items {
                check_value(m, s["member"].as_str().unwrap(), x, rel, label, complete);
            }
        }
        "map" => {
            for x in v
                .as_object()
                .unwrap_or_else(|| panic!("{label}: not a map"))
                .values()
            {
                check_value(m, s["value"].as_str().unwrap(), x, rel, label, complete);
            }
        }
        "string" => {
            let text = v
                .as_str()
                .unwrap_or_else(|| panic!("{label}: not a string"));
            if let Some(allowed) = s["enum"].as_array() {
                assert!(
                    allowed.iter().any(|a| a == text),
                    "{label}: {text:?} is not one of AWS's {shape} values {allowed:?}"
                );
            }
        }
        "blob" => {
            let text = v
                .as_str()
                .unwrap_or_else(|| panic!("{label}: not base64 text"));
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        "integer" | "long" => assert!(v.is_i64(), "{label}: not an integer: {v}"),
        "boolean" => assert!(v.is_boolean(), "{label}: not a boolean: {v}"),
        "timestamp" => assert!(v.is_number(), "{label}: not epoch seconds: {v}"),
        other => panic!("{label}: model type {other} not handled"),
    }
}

/// Whether member path `path` (`Constraints.SourceArn`) exists under `shape`.
fn model_has(m: &Model, shape: &str, path: &str) -> bool {
    let (first, rest) = match path.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (path, None),
    };
    match m.shape(shape)["members"][first].as_str() {
        None => false,
        Some(inner) => rest.is_none_or(|r| model_has(m, inner, r)),
    }
}

/// `v` with member path `path` set to `x` (objects made on the way).
fn with_member(v: &Value, path: &str, x: Value) -> Value {
    let mut out = v.clone();
    let mut cur = &mut out;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = x.clone();
        } else {
            if !cur[*p].is_object() {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }
    out
}

/// Everything about one operation, given a complete request and response.
fn check<R: Variant>(models: &Models, req: R, resp: R::Response) {
    let name = R::NAME;
    // The socket: postcard both ways, through the enums.
    let req_bytes = postcard(&req.clone().into_request());
    let back: Request = postcard::from_bytes(&req_bytes).unwrap();
    assert_eq!(back.operation(), name);
    assert_eq!(
        postcard(&back),
        req_bytes,
        "{name}: request postcard round trip"
    );
    let resp_enum = R::into_response(resp.clone());
    let resp_bytes = postcard(&resp_enum);
    let back: Response = postcard::from_bytes(&resp_bytes).unwrap();
    assert_eq!(back.operation(), name);
    assert_eq!(
        postcard(&back),
        resp_bytes,
        "{name}: response postcard round trip"
    );

    // AWS JSON: the response encodes and decodes to the same JSON.
    let resp_json = resp_enum.to_aws_json().unwrap();
    let decoded: R::Response = serde_json::from_slice(&resp_json).unwrap();
    assert_eq!(
        encode(&decoded).unwrap(),
        resp_json,
        "{name}: response JSON round trip"
    );
    let resp_value: Value = serde_json::from_slice(&resp_json).unwrap();
    assert_eq!(
        resp_value,
        kmsd::api::json::encode_through_value(&resp).unwrap(),
        "{name}: the direct encoding has the Value pass's members"
    );

    let req_json = encode(&req).unwrap();
    let req_value: Value = serde_json::from_slice(&req_json).unwrap();
    let Some(m) = models.of(R::SERVICE) else {
        // atrest's own calls and CloudTrail: JSON round trip of the request only.
        let decoded: R = serde_json::from_slice(&req_json).unwrap();
        assert_eq!(
            postcard(&decoded),
            postcard(&req),
            "{name}: request JSON round trip"
        );
        assert!(
            Request::from_aws_json(name, &req_json).is_err(),
            "{name} is not a KMS operation"
        );
        let of_its_own = Request::from_aws_json_of(R::SERVICE, name, &req_json);
        if R::SERVICE == Service::Atrest {
            assert!(of_its_own.is_err(), "{name} is socket-only");
        } else {
            let decoded = of_its_own.unwrap();
            assert_eq!(
                postcard(&decoded),
                req_bytes,
                "{name}: from {:?}",
                R::SERVICE
            );
        }
        return;
    };
    let decode = |body: &[u8]| Request::from_aws_json_of(R::SERVICE, name, body);
    if R::SERVICE != Service::Kms {
        assert!(
            Request::from_aws_json(name, &req_json).is_err(),
            "{name} is not a KMS operation"
        );
    }
    let decoded = decode(&req_json).unwrap();
    assert_eq!(
        postcard(&decoded),
        req_bytes,
        "{name}: request JSON round trip"
    );

    // The model: member names at every level, and the values' types.
    let input = m
        .io(name, "input")
        .unwrap_or_else(|| panic!("{name}: not in the model"));
    let unsupported: BTreeSet<String> = R::UNSUPPORTED.iter().map(|s| s.to_string()).collect();
    for u in &unsupported {
        assert!(
            model_has(m, input, u),
            "{name}: UNSUPPORTED {u} is not in AWS's {input}"
        );
    }
    check_value(m, input, &req_value, "", name, Some(&unsupported));
    // Required members: exactly those whose absence is a ValidationException.
    let required = m.required(input);
    assert!(
        required.is_disjoint(&unsupported),
        "{name}: a required member is unsupported"
    );
    for k in keys(&req_value) {
        let mut without = req_value.clone();
        without.as_object_mut().unwrap().remove(&k);
        let body = serde_json::to_vec(&without).unwrap();
        match decode(&body) {
            Ok(_) => assert!(
                !required.contains(&k),
                "{name}: {k} is required by AWS, optional here"
            ),
            Err(e) => {
                assert!(
                    required.contains(&k),
                    "{name}: {k} is optional in AWS, required here: {e}"
                );
                assert_eq!(e.code, ErrorCode::ValidationException);
                let camel = format!("{}{}", k[..1].to_lowercase(), &k[1..]);
                assert_eq!(
                    e.message,
                    format!("1 validation error detected: Value null at '{camel}' failed to satisfy constraint: Member must not be null")
                );
            }
        }
    }
    // Unsupported members are refused, not ignored (false is no request at all).
    for u in R::UNSUPPORTED {
        let with = with_member(&req_value, u, json!("x"));
        let e = decode(&serde_json::to_vec(&with).unwrap()).unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::UnsupportedOperationException,
            "{name}.{u}"
        );
        assert!(e.message.contains(u), "{e}");
        let with = with_member(&req_value, u, json!(false));
        decode(&serde_json::to_vec(&with).unwrap()).unwrap();
    }
    match m.io(name, "output") {
        Some(output) => check_value(
            m,
            output,
            &resp_value,
            "",
            &format!("{name} response"),
            None,
        ),
        None => assert_eq!(resp_value, json!({}), "{name}: AWS answers no members"),
    }
    let paginator = &m.0["paginators"][name];
    match R::PAGINATOR {
        Some(p) => {
            assert_eq!(paginator["input_token"], p.input_token);
            assert_eq!(paginator["output_token"], p.output_token);
            assert_eq!(paginator["more_results"], p.more_results);
            assert_eq!(paginator["limit_key"], p.limit_key);
            assert_eq!(paginator["result_key"], p.result_key);
        }
        None => assert!(paginator.is_null(), "{name}: AWS pages it"),
    }
}

fn ctx() -> EncryptionContext {
    [(
        "aws:s3:arn".to_string(),
        "arn:aws:s3:::bucket/key".to_string(),
    )]
    .into()
}

fn tags() -> Vec<Tag> {
    vec![Tag {
        tag_key: "env".into(),
        tag_value: "dev".into(),
    }]
}

fn metadata() -> KeyMetadata {
    KeyMetadata {
        aws_account_id: "111122223333".into(),
        key_id: KEY.into(),
        arn: ARN.into(),
        creation_date: Timestamp::from_millis(1_795_000_000_123),
        enabled: false,
        description: "lab key".into(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_state: KeyState::PendingDeletion,
        deletion_date: Some(Timestamp::from_millis(1_797_592_000_000)),
        pending_deletion_window_in_days: Some(30),
        origin: "AWS_KMS".into(),
        key_manager: "CUSTOMER".into(),
        customer_master_key_spec: SYMMETRIC_DEFAULT.into(),
        key_spec: SYMMETRIC_DEFAULT.into(),
        encryption_algorithms: vec![SYMMETRIC_DEFAULT.into()],
        multi_region: false,
        current_key_material_version: 3,
    }
}

fn grants() -> ListGrantsResponse {
    ListGrantsResponse {
        grants: vec![GrantListEntry {
            key_id: ARN.into(),
            grant_id: GRANT.into(),
            name: Some("g1".into()),
            creation_date: Timestamp::from_secs(1_795_000_000),
            grantee_principal: ROLE.into(),
            retiring_principal: Some(ROLE.into()),
            issuing_account: "arn:aws:iam::111122223333:root".into(),
            operations: vec!["Decrypt".into(), "GenerateDataKey".into()],
            constraints: Some(GrantConstraints {
                encryption_context_subset: Some(ctx()),
                encryption_context_equals: Some(ctx()),
            }),
        }],
        next_marker: Some(GRANT.into()),
        truncated: true,
    }
}

fn blob() -> Blob {
    Blob(b"AKB1\x01 a ciphertext".to_vec())
}

fn secret() -> SecretBlob {
    SecretBlob::new(vec![7u8; 32])
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
const IDENTITY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#;

fn user() -> User {
    User {
        path: "/".into(),
        user_name: "bob".into(),
        user_id: "AIDAEXAMPLEEXAMPLE12".into(),
        arn: "arn:aws:iam::111122223333:user/bob".into(),
        create_date: Timestamp::from_secs(1_795_000_000),
    }
}

fn group() -> Group {
    Group {
        path: "/".into(),
        group_name: "devs".into(),
        group_id: "AGPAEXAMPLEEXAMPLE12".into(),
        arn: "arn:aws:iam::111122223333:group/devs".into(),
        create_date: Timestamp::from_secs(1_795_000_000),
    }
}

fn groups() -> ListGroupsResponse {
    ListGroupsResponse {
        groups: vec![group()],
        is_truncated: true,
        marker: Some("ops".into()),
    }
}

fn role() -> Role {
    Role {
        path: "/".into(),
        role_name: "worker".into(),
        role_id: "AROAEXAMPLEEXAMPLE12".into(),
        arn: ROLE.into(),
        create_date: Timestamp::from_secs(1_795_000_000),
        assume_role_policy_document: Some(TRUST.into()),
        description: Some("builds".into()),
        max_session_duration: Some(7200),
    }
}

fn membership() -> GroupMembershipRequest {
    GroupMembershipRequest {
        group_name: "devs".into(),
        user_name: "bob".into(),
    }
}

fn policy_names() -> ListPolicyNamesResponse {
    ListPolicyNamesResponse {
        policy_names: vec!["p".into()],
        is_truncated: true,
        marker: Some("q".into()),
    }
}

const POLICY: &str = "arn:aws:iam::111122223333:policy/KmsKeyUsagePolicy";

fn policy() -> Policy {
    Policy {
        policy_name: "KmsKeyUsagePolicy".into(),
        policy_id: "ANPAEXAMPLEEXAMPLE12".into(),
        arn: POLICY.into(),
        path: "/".into(),
        default_version_id: "v1".into(),
        attachment_count: 1,
        permissions_boundary_usage_count: 0,
        is_attachable: true,
        description: Some("use keys".into()),
        create_date: Timestamp::from_secs(1_795_000_000),
        update_date: Timestamp::from_secs(1_795_000_000),
    }
}

fn user_policy_arn() -> UserPolicyArn {
    UserPolicyArn {
        user_name: "bob".into(),
        policy_arn: POLICY.into(),
    }
}

fn group_policy_arn() -> GroupPolicyArn {
    GroupPolicyArn {
        group_name: "devs".into(),
        policy_arn: POLICY.into(),
    }
}

fn role_policy_arn() -> RolePolicyArn {
    RolePolicyArn {
        role_name: "worker".into(),
        policy_arn: POLICY.into(),
    }
}

fn attached() -> ListAttachedPoliciesResponse {
    ListAttachedPoliciesResponse {
        attached_policies: vec![AttachedPolicy {
            policy_name: "KmsKeyUsagePolicy".into(),
            policy_arn: POLICY.into(),
        }],
        is_truncated: true,
        marker: Some("Z".into()),
    }
}

/// Checks every operation's complete sample, in table order; returns their names.
fn every_operation(m: &Models) -> Vec<&'static str> {
    fn name_of<R: Operation>(_: &R) -> &'static str {
        R::NAME
    }
    let mut seen = Vec::new();
    macro_rules! case {
        ($req:expr, $resp:expr) => {{
            let req = $req;
            seen.push(name_of(&req));
            check(m, req, $resp);
        }};
    }
    case!(
        CreateKeyRequest {
            policy: Some("{}".into()),
            description: Some("lab key".into()),
            key_usage: Some("ENCRYPT_DECRYPT".into()),
            customer_master_key_spec: Some(SYMMETRIC_DEFAULT.into()),
            key_spec: Some(SYMMETRIC_DEFAULT.into()),
            origin: Some("AWS_KMS".into()),
            bypass_policy_lockout_safety_check: true,
            tags: tags(),
            multi_region: Some(false),
        },
        CreateKeyResponse {
            key_metadata: metadata()
        }
    );
    case!(
        DescribeKeyRequest {
            key_id: "alias/lab".into(),
            grant_tokens: vec!["token".into()],
        },
        DescribeKeyResponse {
            key_metadata: metadata()
        }
    );
    case!(
        ListKeysRequest {
            limit: Some(10),
            marker: Some(KEY.into()),
        },
        ListKeysResponse {
            keys: vec![KeyListEntry {
                key_id: KEY.into(),
                key_arn: ARN.into(),
            }],
            next_marker: Some(KEY.into()),
            truncated: true,
        }
    );
    case!(EnableKeyRequest::new(KEY), Empty {});
    case!(DisableKeyRequest::new(KEY), Empty {});
    case!(
        ScheduleKeyDeletionRequest {
            key_id: KEY.into(),
            pending_window_in_days: Some(7),
        },
        ScheduleKeyDeletionResponse {
            key_id: ARN.into(),
            deletion_date: Timestamp::from_secs(1_797_592_000),
            key_state: KeyState::PendingDeletion,
            pending_window_in_days: 7,
        }
    );
    case!(
        CancelKeyDeletionRequest::new(KEY),
        KeyIdResponse { key_id: ARN.into() }
    );
    case!(
        CreateAliasRequest {
            alias_name: "alias/lab".into(),
            target_key_id: KEY.into(),
        },
        Empty {}
    );
    case!(
        UpdateAliasRequest {
            alias_name: "alias/lab".into(),
            target_key_id: KEY.into(),
        },
        Empty {}
    );
    case!(
        DeleteAliasRequest {
            alias_name: "alias/lab".into(),
        },
        Empty {}
    );
    case!(
        ListAliasesRequest {
            key_id: Some(KEY.into()),
            limit: Some(1),
            marker: Some("alias/a".into()),
        },
        ListAliasesResponse {
            aliases: vec![AliasListEntry {
                alias_name: "alias/lab".into(),
                alias_arn: "arn:aws:kms:us-east-1:111122223333:alias/lab".into(),
                target_key_id: KEY.into(),
                creation_date: Timestamp::from_millis(1_795_000_000_500),
                last_updated_date: Timestamp::from_millis(1_795_000_001_000),
            }],
            next_marker: Some("alias/lab".into()),
            truncated: true,
        }
    );
    case!(
        EncryptRequest {
            key_id: KEY.into(),
            plaintext: SecretBlob::new(b"hello".to_vec()),
            encryption_context: ctx(),
            grant_tokens: vec!["token".into()],
            encryption_algorithm: Some(SYMMETRIC_DEFAULT.into()),
        },
        EncryptResponse {
            ciphertext_blob: blob(),
            key_id: ARN.into(),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        }
    );
    case!(
        DecryptRequest {
            ciphertext_blob: blob(),
            encryption_context: ctx(),
            grant_tokens: vec!["token".into()],
            key_id: Some(KEY.into()),
            encryption_algorithm: Some(SYMMETRIC_DEFAULT.into()),
        },
        DecryptResponse {
            key_id: ARN.into(),
            plaintext: secret(),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        }
    );
    case!(
        ReEncryptRequest {
            ciphertext_blob: blob(),
            source_encryption_context: ctx(),
            source_key_id: Some(KEY.into()),
            destination_key_id: "alias/other".into(),
            destination_encryption_context: ctx(),
            source_encryption_algorithm: Some(SYMMETRIC_DEFAULT.into()),
            destination_encryption_algorithm: Some(SYMMETRIC_DEFAULT.into()),
            grant_tokens: vec!["token".into()],
        },
        ReEncryptResponse {
            ciphertext_blob: blob(),
            source_key_id: ARN.into(),
            key_id: ARN.into(),
            source_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            destination_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        }
    );
    case!(
        GenerateDataKeyRequest {
            key_id: KEY.into(),
            encryption_context: ctx(),
            number_of_bytes: Some(64),
            key_spec: Some(DataKeySpec::Aes256),
            grant_tokens: vec!["token".into()],
        },
        GenerateDataKeyResponse {
            ciphertext_blob: blob(),
            plaintext: secret(),
            key_id: ARN.into(),
        }
    );
    case!(
        GenerateDataKeyWithoutPlaintextRequest {
            key_id: KEY.into(),
            encryption_context: ctx(),
            number_of_bytes: Some(64),
            key_spec: Some(DataKeySpec::Aes128),
            grant_tokens: vec!["token".into()],
        },
        GenerateDataKeyWithoutPlaintextResponse {
            ciphertext_blob: blob(),
            key_id: ARN.into(),
        }
    );
    case!(
        EnableKeyRotationRequest {
            key_id: KEY.into(),
            rotation_period_in_days: Some(90),
        },
        Empty {}
    );
    case!(DisableKeyRotationRequest::new(KEY), Empty {});
    case!(
        GetKeyRotationStatusRequest::new(KEY),
        GetKeyRotationStatusResponse {
            key_rotation_enabled: true,
            key_id: ARN.into(),
            rotation_period_in_days: Some(365),
            next_rotation_date: Some(Timestamp::from_secs(1_826_536_000)),
            on_demand_rotation_start_date: Some(Timestamp::from_millis(1_795_000_000_001)),
        }
    );
    case!(
        RotateKeyOnDemandRequest::new(KEY),
        KeyIdResponse { key_id: ARN.into() }
    );
    case!(
        ListKeyRotationsRequest {
            key_id: KEY.into(),
            limit: Some(5),
            marker: Some("2".into()),
        },
        ListKeyRotationsResponse {
            rotations: vec![RotationsListEntry {
                key_id: ARN.into(),
                rotation_date: Timestamp::from_secs(1_795_000_000),
                rotation_type: RotationType::OnDemand,
            }],
            next_marker: Some("3".into()),
            truncated: true,
        }
    );
    case!(
        UpdateKeyDescriptionRequest {
            key_id: KEY.into(),
            description: "new".into(),
        },
        Empty {}
    );
    case!(
        ListResourceTagsRequest {
            key_id: KEY.into(),
            limit: Some(50),
            marker: Some("env".into()),
        },
        ListResourceTagsResponse {
            tags: tags(),
            next_marker: Some("env".into()),
            truncated: true,
        }
    );
    case!(
        AdvanceClockRequest { seconds: 86_400 },
        AdvanceClockResponse {
            now: Timestamp::from_millis(1_795_086_400_000),
        }
    );
    case!(
        CreateGrantRequest {
            key_id: KEY.into(),
            grantee_principal: ROLE.into(),
            retiring_principal: Some(ROLE.into()),
            operations: vec!["Decrypt".into()],
            constraints: Some(GrantConstraints {
                encryption_context_subset: Some(ctx()),
                encryption_context_equals: Some(ctx()),
            }),
            grant_tokens: vec!["token".into()],
            name: Some("g1".into()),
        },
        CreateGrantResponse {
            grant_token: "token".into(),
            grant_id: GRANT.into(),
        }
    );
    case!(
        ListGrantsRequest {
            limit: Some(10),
            marker: Some(GRANT.into()),
            key_id: KEY.into(),
            grant_id: Some(GRANT.into()),
            grantee_principal: Some(ROLE.into()),
        },
        grants()
    );
    case!(
        ListRetirableGrantsRequest {
            limit: Some(10),
            marker: Some(GRANT.into()),
            retiring_principal: ROLE.into(),
        },
        grants()
    );
    case!(
        RetireGrantRequest {
            grant_token: Some("token".into()),
            key_id: Some(KEY.into()),
            grant_id: Some(GRANT.into()),
        },
        Empty {}
    );
    case!(
        RevokeGrantRequest {
            key_id: KEY.into(),
            grant_id: GRANT.into(),
        },
        Empty {}
    );
    case!(
        GetKeyPolicyRequest {
            key_id: KEY.into(),
            policy_name: Some("default".into()),
        },
        GetKeyPolicyResponse {
            policy: "{}".into(),
            policy_name: "default".into(),
        }
    );
    case!(
        PutKeyPolicyRequest {
            key_id: KEY.into(),
            policy_name: Some("default".into()),
            policy: "{}".into(),
            bypass_policy_lockout_safety_check: true,
        },
        Empty {}
    );
    case!(
        ListKeyPoliciesRequest {
            key_id: KEY.into(),
            limit: Some(1),
            marker: Some("a".into()),
        },
        ListKeyPoliciesResponse {
            policy_names: vec!["default".into()],
            next_marker: Some("default".into()),
            truncated: true,
        }
    );
    case!(
        RecordEventRequest {
            event_source: "ec2.amazonaws.com".into(),
            event_name: "StartInstances".into(),
            principal: Some(ROLE.into()),
            request_parameters_json: Some("{}".into()),
            response_elements_json: Some("{}".into()),
            error_code: Some("X".into()),
            error_message: Some("y".into()),
            read_only: true,
            resources: vec![("AWS::EC2::Instance".into(), "i-1".into())],
            user_agent: Some("atrest-cli".into()),
            source_ip_address: Some("127.0.0.1".into()),
            access_key_id: Some("AKIA".into()),
        },
        RecordEventResponse {
            event_id: "e".into()
        }
    );
    case!(
        LookupEventsRequest {
            lookup_attributes: vec![LookupAttribute::new("EventName", "Decrypt")],
            start_time: Some(Timestamp::from_secs(1_700_000_000)),
            end_time: Some(Timestamp::from_secs(1_800_000_000)),
            max_results: Some(5),
            next_token: Some("t".into()),
        },
        LookupEventsResponse {
            events: vec![Event {
                event_id: "e".into(),
                event_name: "Decrypt".into(),
                read_only: "true".into(),
                access_key_id: Some("AKIA".into()),
                event_time: Timestamp::from_secs(1_795_000_000),
                event_source: "kms.amazonaws.com".into(),
                username: Some("alice".into()),
                resources: vec![Resource {
                    resource_type: "AWS::KMS::Key".into(),
                    resource_name: ARN.into(),
                }],
                cloud_trail_event: "{}".into(),
            }],
            next_token: Some("t2".into()),
        }
    );
    case!(
        ReloadConfigRequest {},
        ReloadConfigResponse {
            reloaded: "ok".into()
        }
    );
    case!(
        GetCallerIdentityRequest {},
        GetCallerIdentityResponse {
            user_id: "AIDAEXAMPLEEXAMPLE12".into(),
            account: "111122223333".into(),
            arn: "arn:aws:iam::111122223333:user/alice".into(),
        }
    );
    case!(
        TagResourceRequest {
            key_id: KEY.into(),
            tags: tags(),
        },
        Empty {}
    );
    case!(
        UntagResourceRequest {
            key_id: KEY.into(),
            tag_keys: vec!["env".into()],
        },
        Empty {}
    );
    case!(
        ResolveAccessKeyRequest {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            session_token: Some("token".into()),
        },
        ResolveAccessKeyResponse {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: secret(),
            principal_arn: ROLE.into(),
            expiration: Some(Timestamp::from_secs(1_795_000_000)),
        }
    );
    case!(
        EnsureAccessKeyRequest {},
        EnsureAccessKeyResponse {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: secret(),
            principal_arn: ROLE.into(),
            created: true,
        }
    );
    case!(
        CreateUserRequest {
            path: Some("/".into()),
            user_name: "bob".into(),
        },
        CreateUserResponse { user: user() }
    );
    case!(
        GetUserRequest {
            user_name: Some("bob".into()),
        },
        GetUserResponse { user: user() }
    );
    case!(
        ListUsersRequest {
            path_prefix: Some("/".into()),
            marker: Some("bob".into()),
            max_items: Some(10),
        },
        ListUsersResponse {
            users: vec![user()],
            is_truncated: true,
            marker: Some("carol".into()),
        }
    );
    case!(
        DeleteUserRequest {
            user_name: "bob".into()
        },
        Empty {}
    );
    case!(
        CreateGroupRequest {
            path: Some("/".into()),
            group_name: "devs".into(),
        },
        CreateGroupResponse { group: group() }
    );
    case!(
        GetGroupRequest {
            group_name: "devs".into(),
            marker: Some("bob".into()),
            max_items: Some(10),
        },
        GetGroupResponse {
            group: group(),
            users: vec![user()],
            is_truncated: true,
            marker: Some("carol".into()),
        }
    );
    case!(
        ListGroupsRequest {
            path_prefix: Some("/".into()),
            marker: Some("devs".into()),
            max_items: Some(10),
        },
        groups()
    );
    case!(
        ListGroupsForUserRequest {
            user_name: "bob".into(),
            marker: Some("devs".into()),
            max_items: Some(10),
        },
        groups()
    );
    case!(AddUserToGroupRequest(membership()), Empty {});
    case!(RemoveUserFromGroupRequest(membership()), Empty {});
    case!(
        DeleteGroupRequest {
            group_name: "devs".into()
        },
        Empty {}
    );
    case!(
        CreateRoleRequest {
            path: Some("/".into()),
            role_name: "worker".into(),
            assume_role_policy_document: TRUST.into(),
            description: Some("builds".into()),
            max_session_duration: Some(7200),
        },
        CreateRoleResponse { role: role() }
    );
    case!(
        GetRoleRequest {
            role_name: "worker".into()
        },
        GetRoleResponse { role: role() }
    );
    case!(
        ListRolesRequest {
            path_prefix: Some("/".into()),
            marker: Some("worker".into()),
            max_items: Some(10),
        },
        ListRolesResponse {
            roles: vec![role()],
            is_truncated: true,
            marker: Some("x".into()),
        }
    );
    case!(
        DeleteRoleRequest {
            role_name: "worker".into()
        },
        Empty {}
    );
    case!(
        PutUserPolicyRequest {
            user_name: "bob".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        },
        Empty {}
    );
    case!(
        GetUserPolicyRequest {
            user_name: "bob".into(),
            policy_name: "p".into(),
        },
        GetUserPolicyResponse {
            user_name: "bob".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        }
    );
    case!(
        DeleteUserPolicyRequest(GetUserPolicyRequest {
            user_name: "bob".into(),
            policy_name: "p".into(),
        }),
        Empty {}
    );
    case!(
        ListUserPoliciesRequest {
            user_name: "bob".into(),
            marker: Some("p".into()),
            max_items: Some(10),
        },
        policy_names()
    );
    case!(
        PutGroupPolicyRequest {
            group_name: "devs".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        },
        Empty {}
    );
    case!(
        GetGroupPolicyRequest {
            group_name: "devs".into(),
            policy_name: "p".into(),
        },
        GetGroupPolicyResponse {
            group_name: "devs".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        }
    );
    case!(
        DeleteGroupPolicyRequest(GetGroupPolicyRequest {
            group_name: "devs".into(),
            policy_name: "p".into(),
        }),
        Empty {}
    );
    case!(
        ListGroupPoliciesRequest {
            group_name: "devs".into(),
            marker: Some("p".into()),
            max_items: Some(10),
        },
        policy_names()
    );
    case!(
        PutRolePolicyRequest {
            role_name: "worker".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        },
        Empty {}
    );
    case!(
        GetRolePolicyRequest {
            role_name: "worker".into(),
            policy_name: "p".into(),
        },
        GetRolePolicyResponse {
            role_name: "worker".into(),
            policy_name: "p".into(),
            policy_document: IDENTITY.into(),
        }
    );
    case!(
        DeleteRolePolicyRequest(GetRolePolicyRequest {
            role_name: "worker".into(),
            policy_name: "p".into(),
        }),
        Empty {}
    );
    case!(
        ListRolePoliciesRequest {
            role_name: "worker".into(),
            marker: Some("p".into()),
            max_items: Some(10),
        },
        policy_names()
    );
    case!(
        AssumeRoleRequest {
            role_arn: ROLE.into(),
            role_session_name: "ci-run".into(),
            duration_seconds: Some(900),
            external_id: Some("xyz-123".into()),
        },
        AssumeRoleResponse {
            credentials: Credentials {
                access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
                secret_access_key: zeroize::Zeroizing::new("s".repeat(40)),
                session_token: zeroize::Zeroizing::new("token".into()),
                expiration: Timestamp::from_secs(1_795_000_900),
            },
            assumed_role_user: AssumedRoleUser {
                assumed_role_id: "AROAEXAMPLEEXAMPLE12:ci-run".into(),
                arn: "arn:aws:sts::111122223333:assumed-role/worker/ci-run".into(),
            },
        }
    );
    case!(
        CreatePolicyRequest {
            policy_name: "KmsKeyUsagePolicy".into(),
            path: Some("/".into()),
            policy_document: IDENTITY.into(),
            description: Some("use keys".into()),
        },
        PolicyResponse { policy: policy() }
    );
    case!(
        GetPolicyRequest {
            policy_arn: POLICY.into()
        },
        PolicyResponse { policy: policy() }
    );
    case!(
        GetPolicyVersionRequest {
            policy_arn: POLICY.into(),
            version_id: "v1".into(),
        },
        GetPolicyVersionResponse {
            policy_version: PolicyVersion {
                document: IDENTITY.into(),
                version_id: "v1".into(),
                is_default_version: true,
                create_date: Timestamp::from_secs(1_795_000_000),
            }
        }
    );
    case!(
        ListPoliciesRequest {
            scope: Some("Local".into()),
            only_attached: true,
            path_prefix: Some("/".into()),
            marker: Some("A".into()),
            max_items: Some(10),
        },
        ListPoliciesResponse {
            policies: vec![policy()],
            is_truncated: true,
            marker: Some("Z".into()),
        }
    );
    case!(
        DeletePolicyRequest {
            policy_arn: POLICY.into()
        },
        Empty {}
    );
    case!(AttachUserPolicyRequest(user_policy_arn()), Empty {});
    case!(DetachUserPolicyRequest(user_policy_arn()), Empty {});
    case!(AttachGroupPolicyRequest(group_policy_arn()), Empty {});
    case!(DetachGroupPolicyRequest(group_policy_arn()), Empty {});
    case!(AttachRolePolicyRequest(role_policy_arn()), Empty {});
    case!(DetachRolePolicyRequest(role_policy_arn()), Empty {});
    case!(
        ListAttachedUserPoliciesRequest {
            user_name: "bob".into(),
            path_prefix: Some("/".into()),
            marker: Some("A".into()),
            max_items: Some(10),
        },
        attached()
    );
    case!(
        ListAttachedGroupPoliciesRequest {
            group_name: "devs".into(),
            path_prefix: Some("/".into()),
            marker: Some("A".into()),
            max_items: Some(10),
        },
        attached()
    );
    case!(
        ListAttachedRolePoliciesRequest {
            role_name: "worker".into(),
            path_prefix: Some("/".into()),
            marker: Some("A".into()),
            max_items: Some(10),
        },
        attached()
    );
    case!(
        CreateAccessKeyRequest {
            user_name: Some("bob".into()),
        },
        CreateAccessKeyResponse {
            access_key: AccessKey {
                user_name: "bob".into(),
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                status: "Active".into(),
                secret_access_key: zeroize::Zeroizing::new("s".repeat(40)),
                create_date: Timestamp::from_secs(1_795_000_000),
            }
        }
    );
    case!(
        ListAccessKeysRequest {
            user_name: Some("bob".into()),
            marker: Some("A".into()),
            max_items: Some(10),
        },
        ListAccessKeysResponse {
            access_key_metadata: vec![AccessKeyMetadata {
                user_name: "bob".into(),
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                status: "Inactive".into(),
                create_date: Timestamp::from_secs(1_795_000_000),
            }],
            is_truncated: true,
            marker: Some("Z".into()),
        }
    );
    case!(
        DeleteAccessKeyRequest {
            user_name: Some("bob".into()),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        },
        Empty {}
    );
    case!(
        StatusRequest {},
        StatusResponse {
            pid: 42,
            trail: Some(TrailStatus {
                sync: "interval".into(),
                sync_interval_ms: Some(20),
                problem: Some("no space".into()),
                events: 3,
                writes: 2,
                syncs: 1,
                last_sync_micros: 250,
            }),
            connections: ConnectionStatus {
                open: 1,
                max: 1024,
                refused: 2,
                first_frame_timeouts: 3,
                idle_timeouts: 4,
                evicted: 5,
            },
        }
    );
    case!(
        ResolveCallerRequest {
            uid: 1000,
            act_as: Some(ROLE.into()),
            signer: None,
        },
        ResolveCallerResponse {
            principal_arn: "arn:aws:sts::111122223333:assumed-role/voclabs/alice".into(),
            account: "111122223333".into(),
            trusted_as_endpoint: false,
        }
    );
    case!(
        UpdateAccessKeyRequest {
            user_name: Some("bob".into()),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            status: "Inactive".into(),
        },
        Empty {}
    );
    case!(
        GetSessionTokenRequest {
            duration_seconds: Some(900),
        },
        GetSessionTokenResponse {
            credentials: Credentials {
                access_key_id: "ASIAEXAMPLEEXAMPLE13".into(),
                secret_access_key: zeroize::Zeroizing::new("s".repeat(40)),
                session_token: zeroize::Zeroizing::new("token".into()),
                expiration: Timestamp::from_secs(1_795_000_900),
            },
        }
    );
    seen
}

#[test]
fn every_operation_matches_the_model_and_round_trips() {
    let models = Models::load();
    let seen = every_operation(&models);
    let m = &models.kms;
    assert_eq!(seen, OPERATIONS, "a sample per operation, in table order");
    // The KMS operations atrest implements are the model's trimmed set, no more.
    let ours: BTreeSet<&str> = seen
        .iter()
        .copied()
        .filter(|n| {
            Request::from_aws_json(n, b"{}")
                .err()
                .is_none_or(|e| e.code != ErrorCode::UnknownOperationException)
        })
        .collect();
    let model: BTreeSet<&str> = m.0["operations"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ours, model);
    // The IAM and STS operations are exactly those of the trimmed models.
    for (service, model) in [(Service::Iam, &models.iam), (Service::Sts, &models.sts)] {
        let ours: BTreeSet<&str> = seen
            .iter()
            .copied()
            .filter(|n| Request::from_aws_json_of(service, n, b"{}").is_ok_or_required())
            .collect();
        let theirs: BTreeSet<&str> = model.0["operations"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(ours, theirs, "{service:?}");
    }
}

trait KnownOperation {
    /// The operation exists (it decoded, or refused `{}` for a missing member).
    fn is_ok_or_required(&self) -> bool;
}

impl KnownOperation for Result<Request, KmsError> {
    fn is_ok_or_required(&self) -> bool {
        self.as_ref()
            .err()
            .is_none_or(|e| e.code != ErrorCode::UnknownOperationException)
    }
}

fn golden(name: &str, got: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/api")
        .join(name);
    if std::env::var_os("KMSD_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&want),
        "{name} changed (KMSD_UPDATE_GOLDEN=1 rewrites)"
    );
}

#[test]
fn responses_match_golden_json() {
    let describe = Response::DescribeKey(DescribeKeyResponse {
        key_metadata: metadata(),
    });
    golden("DescribeKey.json", &describe.to_aws_json().unwrap());
    let cli = serde_json::to_vec_pretty(&describe.to_cli_value().unwrap()).unwrap();
    golden("DescribeKey.cli.json", &cli);
    let decrypt = Response::Decrypt(DecryptResponse {
        key_id: ARN.into(),
        plaintext: SecretBlob::new(b"hello".to_vec()),
        encryption_algorithm: SYMMETRIC_DEFAULT.into(),
    });
    golden("Decrypt.json", &decrypt.to_aws_json().unwrap());
    golden(
        "ListGrants.json",
        &Response::ListGrants(grants()).to_aws_json().unwrap(),
    );
    let rotation = Response::GetKeyRotationStatus(GetKeyRotationStatusResponse {
        key_rotation_enabled: false,
        key_id: ARN.into(),
        rotation_period_in_days: None,
        next_rotation_date: None,
        on_demand_rotation_start_date: None,
    });
    golden(
        "GetKeyRotationStatus.json",
        &rotation.to_aws_json().unwrap(),
    );
    golden(
        "EnableKey.json",
        &Response::EnableKey(Empty {}).to_aws_json().unwrap(),
    );
    // What the JSON edge writes, botocore reads: timestamps as epoch seconds.
    let v: Value = serde_json::from_slice(&describe.to_aws_json().unwrap()).unwrap();
    assert_eq!(v["KeyMetadata"]["CreationDate"], json!(1_795_000_000.123));
    assert_eq!(v["KeyMetadata"]["DeletionDate"], json!(1_797_592_000));
    assert!(v["KeyMetadata"].get("CurrentKeyMaterialVersion").is_none());
}

fn refused(op: &str, body: &str) -> KmsError {
    Request::from_aws_json(op, body.as_bytes()).unwrap_err()
}

#[test]
fn aws_json_decoding_errors_are_aws_shaped() {
    use ErrorCode::*;
    let e = refused("DescribeKey", r#"{"KeyId": "#);
    assert_eq!(e.code, SerializationException, "{e}");
    let e = refused("DescribeKey", "[]");
    assert_eq!(e.code, SerializationException, "{e}");
    let e = refused("DescribeKey", r#"{"KeyId": 5}"#);
    assert_eq!(e.code, SerializationException, "{e}");
    assert!(e.message.contains("'keyId'"), "{e}");
    let e = refused("ListKeys", r#"{"Limit": "ten"}"#);
    assert_eq!(e.code, SerializationException, "{e}");
    let e = refused("Encrypt", r#"{"KeyId": "k", "Plaintext": "not base64!"}"#);
    assert_eq!(e.code, SerializationException, "{e}");
    assert!(!e.message.contains("not base64!"), "{e}");
    let e = refused("DescribeKey", "{}");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ValidationException,
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
        )
    );
    let e = refused(
        "CreateKey",
        r#"{"Tags": [{"TagKey": "a", "TagValue": "b"}, {"TagValue": "c"}]}"#,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ValidationException,
            "1 validation error detected: Value null at 'tags.2.member.tagKey' failed to satisfy constraint: Member must not be null"
        )
    );
    let e = refused("GenerateDataKey", r#"{"KeyId": "k", "KeySpec": "AES_512"}"#);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ValidationException,
            "1 validation error detected: Value 'AES_512' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
        )
    );
    let e = refused("Decrypt", r#"{"CiphertextBlob": "AAAA", "DryRun": true}"#);
    assert_eq!(e.code, UnsupportedOperationException, "{e}");
    for op in [
        "Sign",
        "NoSuchOperation",
        "AdvanceClock",
        "LookupEvents",
        "",
    ] {
        let e = refused(op, "{}");
        assert_eq!(e.code, UnknownOperationException, "{op}: {e}");
    }
    // null is absent, an empty body is {}.
    let r = Request::from_aws_json(
        "ListAliases",
        br#"{"KeyId": null, "Limit": null, "Marker": null}"#,
    )
    .unwrap();
    assert!(matches!(r, Request::ListAliases(l) if l.key_id.is_none() && l.limit.is_none()));
    assert!(matches!(
        Request::from_aws_json("ListKeys", b"").unwrap(),
        Request::ListKeys(_)
    ));
    let r = Request::from_aws_json(
        "Encrypt",
        br#"{"KeyId": "alias/a", "Plaintext": "aGVsbG8=", "EncryptionContext": {"k": "v"}, "GrantTokens": null}"#,
    )
    .unwrap();
    let Request::Encrypt(enc) = r else { panic!() };
    assert_eq!(&enc.plaintext[..], b"hello");
    assert_eq!(enc.encryption_context["k"], "v");
    // The error body of the JSON protocol.
    let body: Value = serde_json::from_slice(&refused("DescribeKey", "{}").to_aws_json()).unwrap();
    assert_eq!(body["__type"], "ValidationException");
    assert!(body["message"].as_str().unwrap().contains("'keyId'"));
}

#[test]
fn arbitrary_bodies_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"KeyId\"",
        b":",
        b",",
        b"null",
        b"1",
        b"-1",
        b"1e999",
        b"\"Plaintext\"",
        b"\"aGk=\"",
        b"\"Tags\"",
        b"{\"TagKey\":1}",
        b"true",
        b"\"\\u0000\"",
    ];
    for op in OPERATIONS {
        for _ in 0..200 {
            let mut body = Vec::new();
            for _ in 0..(next() % 12) {
                if next() % 4 == 0 {
                    body.push(next() as u8);
                } else {
                    body.extend_from_slice(pieces[(next() as usize) % pieces.len()]);
                }
            }
            let _ = Request::from_aws_json(op, &body);
        }
    }
}

#[test]
fn secrets_are_redacted_in_debug() {
    let r = EncryptRequest {
        key_id: "k".into(),
        plaintext: SecretBlob::new(b"SECRETSECRET".to_vec()),
        ..Default::default()
    };
    let shown = format!("{:?}", Request::Encrypt(r));
    assert!(
        shown.contains("<12 bytes redacted>") && !shown.contains("83, 69, 67"),
        "{shown}"
    );
}

#[test]
fn format_md_documents_the_socket_frames() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    let table = doc
        .split("<!-- operations table: checked by kmsd/tests/api_model.rs -->")
        .nth(1)
        .unwrap();
    let rows: Vec<(usize, String)> = table
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].parse().unwrap(), cells[2].to_string())
        })
        .collect();
    let ours: Vec<(usize, String)> = OPERATIONS
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.to_string()))
        .collect();
    assert_eq!(rows, ours, "docs/FORMAT.md's operations table");

    let hex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let example = doc
        .split("is the frame\n\n```text\n")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    let mut buf = Vec::new();
    encode_frame(
        &RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: None,
            via: None,
            request: Request::DescribeKey(DescribeKeyRequest {
                key_id: "alias/x".into(),
                grant_tokens: vec![],
            }),
            signer: None,
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(buf, hex(example));
    let reply = doc.split("with message `nope` is\n`").nth(1).unwrap();
    let reply = reply.split('`').next().unwrap();
    encode_frame(
        &ResponseEnvelope {
            version: PROTOCOL_VERSION,
            result: Err(KmsError::not_found("nope")),
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(buf, hex(reply));
    assert!(doc.contains(&format!("currently **{PROTOCOL_VERSION}**")));
    let codes = doc
        .split("`ErrorCode` being the variant index")
        .nth(1)
        .unwrap();
    let codes = codes.split("in this order").next().unwrap();
    let names: Vec<&str> = codes.split('`').skip(1).step_by(2).collect();
    for (i, name) in names.iter().enumerate() {
        let code: ErrorCode = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(
            postcard(&code),
            postcard(&(i as u32)),
            "{name} is not code {i}"
        );
    }
    // Every code is listed: the next index is none.
    assert!(
        postcard::from_bytes::<ErrorCode>(&postcard(&(names.len() as u32))).is_err(),
        "docs/FORMAT.md lists {} error codes; kmsd has more",
        names.len()
    );
}

#[test]
fn cli_printout_is_aws_json_with_cli_timestamps() {
    let resp = ScheduleKeyDeletionResponse {
        key_id: ARN.into(),
        deletion_date: Timestamp::from_millis(1_797_592_000_250),
        key_state: KeyState::PendingDeletion,
        pending_window_in_days: 30,
    };
    assert_eq!(
        to_cli_value(&resp).unwrap(),
        json!({
            "KeyId": ARN,
            "DeletionDate": "2026-12-18T11:06:40.250000+00:00",
            "KeyState": "PendingDeletion",
            "PendingWindowInDays": 30,
        })
    );
    // The style is scoped: the wire encoding right after is epoch seconds again.
    let v: Value = serde_json::from_slice(&encode(&resp).unwrap()).unwrap();
    assert_eq!(v["DeletionDate"], json!(1_797_592_000.25));
}
