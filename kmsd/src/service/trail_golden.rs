//! The trail's `requestParameters` / `responseElements` of every operation, compared
//! with a golden file, so that moving them next to the operation types changes no byte.

use serde_json::{json, Value};

use super::testing::{alice, fixture};
use crate::protocol::*;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/trail_parameters.json"
);

fn key_id(r: Response) -> (String, String) {
    match r {
        Response::CreateKey(m) => (m.key_metadata.key_id, m.key_metadata.arn),
        other => panic!("{other:?}"),
    }
}

/// Replaces what changes from run to run (IDs, dates) by placeholders.
fn normalize(v: &mut Value, subst: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (from, to) in subst {
                if s.contains(from.as_str()) {
                    *s = s.replace(from.as_str(), to);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, subst)),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "creationDate" || k == "deletionDate" {
                    *x = json!("<date>");
                } else {
                    normalize(x, subst);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn trail_parameters_of_every_operation_match_the_golden_file() {
    let f = fixture();
    let c = alice();
    let call = |r: Request| f.svc.handle(&c, r);
    let ctx: EncryptionContext = [("purpose".to_string(), "test".to_string())].into();

    let (k1, arn1) = key_id(
        call(Request::CreateKey(CreateKeyRequest {
            description: Some("first".into()),
            tags: vec![Tag {
                tag_key: "env".into(),
                tag_value: "dev".into(),
            }],
            ..Default::default()
        }))
        .unwrap(),
    );
    let policy = crate::api::default_policies::default_key_policy("111122223333");
    let (k2, arn2) = key_id(
        call(Request::CreateKey(CreateKeyRequest {
            description: None,
            policy: Some(policy.clone()),
            tags: vec![],
            key_usage: Some("ENCRYPT_DECRYPT".into()),
            key_spec: Some("SYMMETRIC_DEFAULT".into()),
            bypass_policy_lockout_safety_check: true,
            ..Default::default()
        }))
        .unwrap(),
    );
    call(Request::DescribeKey(DescribeKeyRequest {
        key_id: k1.clone(),
        grant_tokens: vec![],
    }))
    .unwrap();
    call(Request::DescribeKey(DescribeKeyRequest {
        key_id: "alias/none".into(),
        grant_tokens: vec![],
    }))
    .unwrap_err();
    call(Request::ListKeys(ListKeysRequest {
        limit: Some(5),
        marker: None,
    }))
    .unwrap();
    call(Request::ListKeys(ListKeysRequest::default())).unwrap();
    call(Request::DisableKey(DisableKeyRequest {
        key_id: k2.clone(),
    }))
    .unwrap();
    call(Request::EnableKey(EnableKeyRequest { key_id: k2.clone() })).unwrap();
    call(Request::UpdateKeyDescription(UpdateKeyDescriptionRequest {
        key_id: k2.clone(),
        description: "second".into(),
    }))
    .unwrap();
    call(Request::ListResourceTags(ListResourceTagsRequest {
        key_id: k1.clone(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::CreateAlias(CreateAliasRequest {
        alias_name: "alias/one".into(),
        target_key_id: k1.clone(),
    }))
    .unwrap();
    call(Request::UpdateAlias(UpdateAliasRequest {
        alias_name: "alias/one".into(),
        target_key_id: k2.clone(),
    }))
    .unwrap();
    call(Request::ListAliases(ListAliasesRequest {
        key_id: Some(k2.clone()),
        limit: Some(10),
        marker: None,
    }))
    .unwrap();
    call(Request::ListAliases(ListAliasesRequest::default())).unwrap();
    call(Request::DeleteAlias(DeleteAliasRequest {
        alias_name: "alias/one".into(),
    }))
    .unwrap();

    let Response::Encrypt(e) = call(Request::Encrypt(EncryptRequest {
        key_id: k1.clone(),
        plaintext: SecretBlob::new(b"secret".to_vec()),
        encryption_context: ctx.clone(),
        grant_tokens: vec![],
        encryption_algorithm: None,
    }))
    .unwrap() else {
        panic!()
    };
    call(Request::Encrypt(EncryptRequest {
        key_id: k1.clone(),
        plaintext: SecretBlob::new(b"secret".to_vec()),
        encryption_context: EncryptionContext::new(),
        grant_tokens: vec!["t".into()],
        encryption_algorithm: Some("SYMMETRIC_DEFAULT".into()),
    }))
    .unwrap();
    call(Request::Decrypt(DecryptRequest {
        ciphertext_blob: e.ciphertext_blob.clone(),
        encryption_context: ctx.clone(),
        key_id: None,
        grant_tokens: vec![],
        encryption_algorithm: None,
    }))
    .unwrap();
    call(Request::Decrypt(DecryptRequest {
        ciphertext_blob: e.ciphertext_blob.clone(),
        encryption_context: ctx.clone(),
        key_id: Some(k1.clone()),
        grant_tokens: vec![],
        encryption_algorithm: Some("SYMMETRIC_DEFAULT".into()),
    }))
    .unwrap();
    call(Request::ReEncrypt(ReEncryptRequest {
        ciphertext_blob: e.ciphertext_blob.clone(),
        source_encryption_context: ctx.clone(),
        source_key_id: Some(k1.clone()),
        destination_key_id: k2.clone(),
        destination_encryption_context: EncryptionContext::new(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::ReEncrypt(ReEncryptRequest {
        ciphertext_blob: e.ciphertext_blob.clone(),
        source_encryption_context: ctx.clone(),
        source_key_id: None,
        destination_key_id: k2.clone(),
        destination_encryption_context: ctx.clone(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::GenerateDataKey(GenerateDataKeyRequest {
        key_id: k1.clone(),
        key_spec: Some(DataKeySpec::Aes256),
        number_of_bytes: None,
        encryption_context: ctx.clone(),
        grant_tokens: vec![],
    }))
    .unwrap();
    call(Request::GenerateDataKey(GenerateDataKeyRequest {
        key_id: k1.clone(),
        key_spec: None,
        number_of_bytes: Some(64),
        encryption_context: EncryptionContext::new(),
        grant_tokens: vec![],
    }))
    .unwrap();
    call(Request::GenerateDataKeyWithoutPlaintext(
        GenerateDataKeyWithoutPlaintextRequest {
            key_id: k1.clone(),
            key_spec: Some(DataKeySpec::Aes128),
            number_of_bytes: None,
            encryption_context: ctx.clone(),
            grant_tokens: vec![],
        },
    ))
    .unwrap();

    call(Request::EnableKeyRotation(EnableKeyRotationRequest {
        key_id: k1.clone(),
        rotation_period_in_days: None,
    }))
    .unwrap();
    call(Request::EnableKeyRotation(EnableKeyRotationRequest {
        key_id: k1.clone(),
        rotation_period_in_days: Some(180),
    }))
    .unwrap();
    call(Request::GetKeyRotationStatus(GetKeyRotationStatusRequest {
        key_id: k1.clone(),
    }))
    .unwrap();
    call(Request::RotateKeyOnDemand(RotateKeyOnDemandRequest {
        key_id: k1.clone(),
    }))
    .unwrap();
    call(Request::ListKeyRotations(ListKeyRotationsRequest {
        key_id: k1.clone(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::DisableKeyRotation(DisableKeyRotationRequest {
        key_id: k1.clone(),
    }))
    .unwrap();

    let grantee = "arn:aws:iam::111122223333:role/worker".to_string();
    let Response::CreateGrant(CreateGrantResponse {
        grant_id: g1,
        grant_token: t1,
    }) = call(Request::CreateGrant(CreateGrantRequest {
        key_id: arn1.clone(),
        grantee_principal: grantee.clone(),
        retiring_principal: Some(grantee.clone()),
        operations: vec!["Decrypt".into(), "GenerateDataKey".into()],
        constraints: Some(GrantConstraints {
            encryption_context_equals: None,
            encryption_context_subset: Some(ctx.clone()),
        }),
        name: Some("g-one".into()),
        grant_tokens: vec![],
    }))
    .unwrap()
    else {
        panic!()
    };
    let Response::CreateGrant(CreateGrantResponse {
        grant_id: g2,
        grant_token: t2,
    }) = call(Request::CreateGrant(CreateGrantRequest {
        key_id: k1.clone(),
        grantee_principal: grantee.clone(),
        operations: vec!["Encrypt".into()],
        constraints: Some(GrantConstraints {
            encryption_context_equals: Some(ctx.clone()),
            encryption_context_subset: None,
        }),
        ..Default::default()
    }))
    .unwrap()
    else {
        panic!()
    };
    let Response::CreateGrant(CreateGrantResponse {
        grant_id: g3,
        grant_token: t3,
    }) = call(Request::CreateGrant(CreateGrantRequest {
        key_id: k1.clone(),
        grantee_principal: grantee.clone(),
        operations: vec!["Decrypt".into()],
        ..Default::default()
    }))
    .unwrap()
    else {
        panic!()
    };
    call(Request::ListGrants(ListGrantsRequest {
        key_id: k1.clone(),
        grant_id: Some(g1.clone()),
        grantee_principal: Some(grantee.clone()),
        limit: Some(3),
        marker: None,
    }))
    .unwrap();
    call(Request::ListGrants(ListGrantsRequest {
        key_id: k1.clone(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::ListRetirableGrants(ListRetirableGrantsRequest {
        retiring_principal: grantee.clone(),
        limit: Some(7),
        marker: None,
    }))
    .unwrap();
    call(Request::ListRetirableGrants(ListRetirableGrantsRequest {
        retiring_principal: grantee.clone(),
        ..Default::default()
    }))
    .unwrap();
    call(Request::RetireGrant(RetireGrantRequest {
        grant_token: Some(t1.clone()),
        key_id: None,
        grant_id: None,
    }))
    .unwrap();
    call(Request::RetireGrant(RetireGrantRequest {
        grant_token: None,
        key_id: Some(k1.clone()),
        grant_id: Some(g2.clone()),
    }))
    .unwrap();
    call(Request::RevokeGrant(RevokeGrantRequest {
        key_id: k1.clone(),
        grant_id: g3.clone(),
    }))
    .unwrap();

    call(Request::GetKeyPolicy(GetKeyPolicyRequest {
        key_id: k1.clone(),
        policy_name: None,
    }))
    .unwrap();
    call(Request::GetKeyPolicy(GetKeyPolicyRequest {
        key_id: k1.clone(),
        policy_name: Some("default".into()),
    }))
    .unwrap();
    call(Request::PutKeyPolicy(PutKeyPolicyRequest {
        key_id: k1.clone(),
        policy_name: None,
        policy: policy.clone(),
        bypass_policy_lockout_safety_check: false,
    }))
    .unwrap();
    call(Request::PutKeyPolicy(PutKeyPolicyRequest {
        key_id: k1.clone(),
        policy_name: Some("default".into()),
        policy: policy.clone(),
        bypass_policy_lockout_safety_check: true,
    }))
    .unwrap();
    call(Request::ListKeyPolicies(ListKeyPoliciesRequest {
        key_id: k1.clone(),
        ..Default::default()
    }))
    .unwrap();

    call(Request::TagResource(TagResourceRequest {
        key_id: k1.clone(),
        tags: vec![
            Tag {
                tag_key: "env".into(),
                tag_value: "prod".into(),
            },
            Tag {
                tag_key: "team".into(),
                tag_value: "kms".into(),
            },
        ],
    }))
    .unwrap();
    call(Request::TagResource(TagResourceRequest {
        key_id: k1.clone(),
        tags: vec![Tag {
            tag_key: "aws:reserved".into(),
            tag_value: "x".into(),
        }],
    }))
    .unwrap_err();
    call(Request::UntagResource(UntagResourceRequest {
        key_id: k1.clone(),
        tag_keys: vec!["team".into(), "absent".into()],
    }))
    .unwrap();
    call(Request::ScheduleKeyDeletion(ScheduleKeyDeletionRequest {
        key_id: k2.clone(),
        pending_window_in_days: Some(7),
    }))
    .unwrap();
    call(Request::CancelKeyDeletion(CancelKeyDeletionRequest {
        key_id: k2.clone(),
    }))
    .unwrap();
    call(Request::ScheduleKeyDeletion(ScheduleKeyDeletionRequest {
        key_id: k2.clone(),
        pending_window_in_days: None,
    }))
    .unwrap();
    call(Request::AdvanceClock(AdvanceClockRequest { seconds: 60 })).unwrap();
    call(Request::LookupEvents(LookupEventsRequest {
        lookup_attributes: vec![LookupAttribute {
            attribute_key: "EventName".into(),
            attribute_value: "Decrypt".into(),
        }],
        start_time: Some(Timestamp::from_secs(1_700_000_000)),
        end_time: Some(Timestamp::from_secs(1_800_000_000)),
        max_results: Some(5),
        next_token: Some("tok".into()),
    }))
    .unwrap_err();
    call(Request::LookupEvents(LookupEventsRequest::default())).unwrap_err();
    call(Request::GetCallerIdentity(GetCallerIdentityRequest {})).unwrap();
    call(Request::ReloadConfig(ReloadConfigRequest {})).unwrap_err();
    call(Request::RecordEvent(RecordEventRequest {
        event_source: "ec2.amazonaws.com".into(),
        event_name: "StartInstances".into(),
        ..Default::default()
    }))
    .unwrap_err();

    let subst: Vec<(String, String)> = vec![
        (arn1, "<arn1>".into()),
        (arn2, "<arn2>".into()),
        (k1, "<key1>".into()),
        (k2, "<key2>".into()),
        (t1, "<token1>".into()),
        (t2, "<token2>".into()),
        (t3, "<token3>".into()),
        (g1, "<grant1>".into()),
        (g2, "<grant2>".into()),
        (g3, "<grant3>".into()),
        (policy, "<policy>".into()),
    ];
    let events: Vec<Value> = f
        .sink
        .take()
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "eventSource": e.event_source,
                "eventName": e.event_name,
                "readOnly": e.read_only,
                "requestParameters": e.request_parameters,
                "responseElements": e.response_elements,
                "errorCode": e.error_code,
            });
            normalize(&mut v, &subst);
            v
        })
        .collect();
    let got = serde_json::to_string_pretty(&events).unwrap() + "\n";
    if std::env::var_os("KMSD_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).unwrap();
    assert_eq!(
        got, want,
        "trail parameters changed (KMSD_UPDATE_GOLDEN=1 rewrites)"
    );
}
