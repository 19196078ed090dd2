//! IAM and STS against a real kmsd through its socket: users, groups, roles, inline
//! policies, what they let a principal do on its next request (and after a restart),
//! config-declared identities, AWS's errors, and the trail.
//!
//! The test kmsd runs as the test's own uid, which the embedded config makes the lab
//! account's administrator, allowed to act as any user or role of the two lab
//! accounts: a user made with `CreateUser` is then called as with `acting_as`.

mod common;

use common::Daemon;
use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::*;
use serde_json::Value;

const LAB: &str = "111122223333";
const OTHER: &str = "444455556666";

fn err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> KmsError {
    match r {
        Err(ClientError::Kms(e)) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn user_arn(name: &str) -> String {
    format!("arn:aws:iam::{LAB}:user/{name}")
}

fn allow(actions: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":"*"}}]}}"#
    )
}

fn create_user(c: &KmsClient, name: &str) -> User {
    c.send(CreateUserRequest {
        path: None,
        user_name: name.into(),
    })
    .unwrap()
    .user
}

/// A symmetric key of the lab account with the default key policy (the account's
/// IAM policies decide who may use it).
fn lab_key(c: &KmsClient) -> String {
    c.create_key(CreateKeyRequest::default()).unwrap().key_id
}

fn encrypts(c: &KmsClient, key: &str) -> Result<(), KmsError> {
    match c.encrypt(key, b"hello", &Default::default()) {
        Ok(_) => Ok(()),
        Err(ClientError::Kms(e)) => Err(e),
        Err(other) => panic!("{other}"),
    }
}

/// Every trail record of `source`, oldest first.
fn records(c: &KmsClient, source: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .send(LookupEventsRequest {
                lookup_attributes: vec![LookupAttribute::new("EventSource", source)],
                next_token: token,
                ..Default::default()
            })
            .unwrap();
        for e in &page.events {
            out.push(serde_json::from_str(&e.cloud_trail_event).unwrap());
        }
        token = page.next_token;
        if token.is_none() {
            out.reverse();
            return out;
        }
    }
}

#[test]
fn users_are_made_read_listed_paged_and_deleted_with_aws_errors() {
    let d = Daemon::start();
    let c = d.client();
    let bob = create_user(&c, "bob");
    assert_eq!(bob.arn, user_arn("bob"));
    assert!(bob.user_id.starts_with("AIDA") && bob.user_id.len() == 21);
    assert_eq!(bob.path, "/");
    let ops = c
        .send(CreateUserRequest {
            path: Some("/ops/".into()),
            user_name: "carol".into(),
        })
        .unwrap()
        .user;
    assert_eq!(ops.arn, format!("arn:aws:iam::{LAB}:user/ops/carol"));
    let got = c
        .send(GetUserRequest {
            user_name: Some("bob".into()),
        })
        .unwrap()
        .user;
    assert_eq!(got, bob);

    // Names are unique whatever their case; AWS's words.
    let e = err(c.send(CreateUserRequest {
        path: None,
        user_name: "BOB".into(),
    }));
    assert_eq!(e.code, ErrorCode::EntityAlreadyExists);
    assert_eq!(e.message, "User with name BOB already exists.");
    let e = err(c.send(GetUserRequest {
        user_name: Some("nobody".into()),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    assert_eq!(e.message, "The user with name nobody cannot be found.");
    let e = err(c.send(CreateUserRequest {
        path: None,
        user_name: "has space".into(),
    }));
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert!(e.message.contains("'userName'"), "{}", e.message);
    let e = err(c.send(CreateUserRequest {
        path: Some("ops".into()),
        user_name: "dave".into(),
    }));
    assert_eq!(e.code, ErrorCode::ValidationError);

    // The config's users are there too (KeyAdminOnly, Ec2Operator), in name order,
    // one page at a time.
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = c
            .send(ListUsersRequest {
                path_prefix: None,
                marker,
                max_items: Some(1),
            })
            .unwrap();
        assert_eq!(page.users.len(), 1);
        names.push(page.users[0].user_name.clone());
        assert_eq!(page.is_truncated, page.marker.is_some());
        marker = page.marker;
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(names, ["Ec2Operator", "KeyAdminOnly", "bob", "carol"]);
    let only_ops = c
        .send(ListUsersRequest {
            path_prefix: Some("/ops/".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(only_ops.users, vec![ops]);
    let e = err(c.send(ListUsersRequest {
        max_items: Some(0),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::ValidationError);

    c.send(DeleteUserRequest {
        user_name: "bob".into(),
    })
    .unwrap();
    let e = err(c.send(DeleteUserRequest {
        user_name: "bob".into(),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    // The config declares KeyAdminOnly: IAM does not delete it.
    let e = err(c.send(DeleteUserRequest {
        user_name: "KeyAdminOnly".into(),
    }));
    assert_eq!(e.code, ErrorCode::DeleteConflict);
    assert!(e.message.contains("configuration"), "{}", e.message);
}

#[test]
fn an_inline_user_policy_takes_effect_on_the_next_request_and_survives_a_restart() {
    let mut d = Daemon::start();
    let c = d.client();
    let key = lab_key(&c);
    create_user(&c, "dev");
    let dev = d.client().acting_as(user_arn("dev"));
    let e = encrypts(&dev, &key).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDeniedException);

    let doc = allow(r#"["kms:Encrypt","kms:Decrypt"]"#);
    c.send(PutUserPolicyRequest {
        user_name: "dev".into(),
        policy_name: "use-keys".into(),
        policy_document: doc.clone(),
    })
    .unwrap();
    encrypts(&dev, &key).unwrap();
    let got = c
        .send(GetUserPolicyRequest {
            user_name: "dev".into(),
            policy_name: "use-keys".into(),
        })
        .unwrap();
    assert_eq!(got.policy_document, doc);
    let listed = c
        .send(ListUserPoliciesRequest {
            user_name: "dev".into(),
            marker: None,
            max_items: None,
        })
        .unwrap();
    assert_eq!(listed.policy_names, ["use-keys"]);
    assert!(!listed.is_truncated);

    d.restart();
    let c = d.client();
    let dev = d.client().acting_as(user_arn("dev"));
    encrypts(&dev, &key).unwrap();

    // A user with policies is not deleted.
    let e = err(c.send(DeleteUserRequest {
        user_name: "dev".into(),
    }));
    assert_eq!(e.code, ErrorCode::DeleteConflict);
    assert_eq!(
        e.message,
        "Cannot delete entity, must delete policies first."
    );
    c.send(DeleteUserPolicyRequest(GetUserPolicyRequest {
        user_name: "dev".into(),
        policy_name: "use-keys".into(),
    }))
    .unwrap();
    assert_eq!(
        encrypts(&dev, &key).unwrap_err().code,
        ErrorCode::AccessDeniedException
    );
    let e = err(c.send(GetUserPolicyRequest {
        user_name: "dev".into(),
        policy_name: "use-keys".into(),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    assert_eq!(
        e.message,
        "The user policy with name use-keys cannot be found."
    );

    // Malformed documents are refused, and nothing is stored.
    for bad in [
        "{",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
    ] {
        let e = err(c.send(PutUserPolicyRequest {
            user_name: "dev".into(),
            policy_name: "bad".into(),
            policy_document: bad.into(),
        }));
        assert_eq!(e.code, ErrorCode::MalformedPolicyDocument, "{bad}");
    }
    // Past the user's 2048-character quota.
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
        (0..200)
            .map(|i| format!("\"kms:Action{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let e = err(c.send(PutUserPolicyRequest {
        user_name: "dev".into(),
        policy_name: "big".into(),
        policy_document: big,
    }));
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(c
        .send(ListUserPoliciesRequest {
            user_name: "dev".into(),
            marker: None,
            max_items: None,
        })
        .unwrap()
        .policy_names
        .is_empty());
}

#[test]
fn group_membership_gives_the_groups_policies() {
    let d = Daemon::start();
    let c = d.client();
    let key = lab_key(&c);
    create_user(&c, "dev");
    let dev = d.client().acting_as(user_arn("dev"));
    let g = c
        .send(CreateGroupRequest {
            path: None,
            group_name: "developers".into(),
        })
        .unwrap()
        .group;
    assert_eq!(g.arn, format!("arn:aws:iam::{LAB}:group/developers"));
    assert!(g.group_id.starts_with("AGPA"));
    c.send(PutGroupPolicyRequest {
        group_name: "developers".into(),
        policy_name: "encrypt".into(),
        policy_document: allow(r#""kms:Encrypt""#),
    })
    .unwrap();
    assert!(encrypts(&dev, &key).is_err());
    let membership = GroupMembershipRequest {
        group_name: "developers".into(),
        user_name: "dev".into(),
    };
    c.send(AddUserToGroupRequest(membership.clone())).unwrap();
    encrypts(&dev, &key).unwrap();
    let got = c
        .send(GetGroupRequest {
            group_name: "developers".into(),
            marker: None,
            max_items: None,
        })
        .unwrap();
    assert_eq!(got.group, g);
    assert_eq!(got.users.len(), 1);
    assert_eq!(got.users[0].user_name, "dev");
    let for_user = c
        .send(ListGroupsForUserRequest {
            user_name: "dev".into(),
            marker: None,
            max_items: None,
        })
        .unwrap();
    assert_eq!(for_user.groups, vec![g.clone()]);

    // Neither the group nor the user goes while they are linked.
    let e = err(c.send(DeleteGroupRequest {
        group_name: "developers".into(),
    }));
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::DeleteConflict,
            "Cannot delete entity, must remove users from group first."
        )
    );
    let e = err(c.send(DeleteUserRequest {
        user_name: "dev".into(),
    }));
    assert_eq!(e.code, ErrorCode::DeleteConflict);

    c.send(RemoveUserFromGroupRequest(membership)).unwrap();
    assert_eq!(
        encrypts(&dev, &key).unwrap_err().code,
        ErrorCode::AccessDeniedException
    );
    let e = err(c.send(AddUserToGroupRequest(GroupMembershipRequest {
        group_name: "nope".into(),
        user_name: "dev".into(),
    })));
    assert_eq!(e.message, "The group with name nope cannot be found.");
    c.send(DeleteGroupPolicyRequest(GetGroupPolicyRequest {
        group_name: "developers".into(),
        policy_name: "encrypt".into(),
    }))
    .unwrap();
    c.send(DeleteGroupRequest {
        group_name: "developers".into(),
    })
    .unwrap();
    c.send(DeleteUserRequest {
        user_name: "dev".into(),
    })
    .unwrap();
    assert!(c
        .send(ListGroupsRequest::default())
        .unwrap()
        .groups
        .is_empty());
}

#[test]
fn roles_and_their_policies_apply_to_their_sessions() {
    let d = Daemon::start();
    let c = d.client();
    let key = lab_key(&c);
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{LAB}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    let role = c
        .send(CreateRoleRequest {
            path: None,
            role_name: "builder".into(),
            assume_role_policy_document: trust.clone(),
            description: Some("CI builds".into()),
            max_session_duration: Some(7200),
        })
        .unwrap()
        .role;
    assert_eq!(role.arn, format!("arn:aws:iam::{LAB}:role/builder"));
    assert_eq!(role.assume_role_policy_document.as_deref(), Some(&*trust));
    assert_eq!(role.max_session_duration, Some(7200));
    let session = d
        .client()
        .acting_as(format!("arn:aws:iam::{LAB}:role/builder"));
    assert!(encrypts(&session, &key).is_err());
    c.send(PutRolePolicyRequest {
        role_name: "builder".into(),
        policy_name: "encrypt".into(),
        policy_document: allow(r#""kms:Encrypt""#),
    })
    .unwrap();
    encrypts(&session, &key).unwrap();
    // The session's unique id is the role's id and the session name.
    let me = session.get_caller_identity().unwrap();
    assert!(
        me.user_id.starts_with(&format!("{}:", role.role_id)),
        "{}",
        me.user_id
    );
    assert!(me
        .arn
        .starts_with(&format!("arn:aws:sts::{LAB}:assumed-role/builder/")));

    for (doc, code) in [
        ("{", ErrorCode::MalformedPolicyDocument),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#,
            ErrorCode::MalformedPolicyDocument,
        ),
    ] {
        let e = err(c.send(CreateRoleRequest {
            role_name: "bad".into(),
            assume_role_policy_document: doc.into(),
            ..Default::default()
        }));
        assert_eq!(e.code, code, "{doc}: {}", e.message);
    }
    let e = err(c.send(CreateRoleRequest {
        role_name: "short".into(),
        assume_role_policy_document: trust.clone(),
        max_session_duration: Some(60),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::ValidationError);
    let e = err(c.send(DeleteRoleRequest {
        role_name: "builder".into(),
    }));
    assert_eq!(e.code, ErrorCode::DeleteConflict);
    // A role the config declares is there, with a trust policy naming its account.
    let voclabs = c
        .send(GetRoleRequest {
            role_name: "voclabs".into(),
        })
        .unwrap()
        .role;
    assert!(voclabs
        .assume_role_policy_document
        .unwrap()
        .contains(&format!("arn:aws:iam::{LAB}:root")));
    let e = err(c.send(DeleteRoleRequest {
        role_name: "voclabs".into(),
    }));
    assert_eq!(e.code, ErrorCode::DeleteConflict);
    let names: Vec<String> = c
        .send(ListRolesRequest::default())
        .unwrap()
        .roles
        .into_iter()
        .map(|r| r.role_name)
        .collect();
    assert_eq!(names, ["builder", "voclabs"]);
}

#[test]
fn a_config_users_policy_is_added_through_iam_and_caller_identity_is_aws_shaped() {
    let d = Daemon::start();
    let c = d.client();
    // UserA of the other account (the cross-account drill's) has EC2 rights only.
    let admin_other = d
        .client()
        .acting_as(format!("arn:aws:iam::{OTHER}:role/Admin"));
    let user_a = d
        .client()
        .acting_as(format!("arn:aws:iam::{OTHER}:user/UserA"));
    let e = err(user_a.send(CreateUserRequest {
        path: None,
        user_name: "x".into(),
    }));
    assert_eq!(e.code, ErrorCode::AccessDenied);
    assert_eq!(
        e.message,
        format!("User: arn:aws:iam::{OTHER}:user/UserA is not authorized to perform: iam:CreateUser on resource: arn:aws:iam::{OTHER}:user/x because no identity-based policy allows the iam:CreateUser action")
    );
    admin_other
        .send(PutUserPolicyRequest {
            user_name: "UserA".into(),
            policy_name: "iam-read".into(),
            policy_document: allow(r#""iam:Get*""#),
        })
        .unwrap();
    // On its next request UserA may read IAM (its own account's), not write it.
    let me = user_a
        .send(GetUserRequest { user_name: None })
        .unwrap()
        .user;
    assert_eq!(me.arn, format!("arn:aws:iam::{OTHER}:user/UserA"));
    let e = err(user_a.send(DeleteUserPolicyRequest(GetUserPolicyRequest {
        user_name: "UserA".into(),
        policy_name: "iam-read".into(),
    })));
    assert_eq!(e.code, ErrorCode::AccessDenied);
    // The lab admin's IAM calls are in its own account: no UserA there.
    let e = err(c.send(GetUserRequest {
        user_name: Some("UserA".into()),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);

    let who = user_a.get_caller_identity().unwrap();
    assert_eq!(
        (who.account.as_str(), who.arn.as_str(), who.user_id.as_str()),
        (OTHER, me.arn.as_str(), me.user_id.as_str())
    );
    // The caller's own principal, not made by IAM, still has a stable id.
    let me = c.get_caller_identity().unwrap();
    assert!(me.user_id.starts_with("AIDA"));
    assert_eq!(me.user_id, c.get_caller_identity().unwrap().user_id);
    assert_eq!(
        c.send(GetUserRequest { user_name: None })
            .unwrap()
            .user
            .user_id,
        me.user_id
    );

    // Every IAM call is in the trail, refused ones with their error.
    let iam = records(&c, "iam.amazonaws.com");
    let names: Vec<&str> = iam
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CreateUser",
            "PutUserPolicy",
            "GetUser",
            "DeleteUserPolicy",
            "GetUser",
            "GetUser"
        ]
    );
    assert_eq!(iam[0]["errorCode"], "AccessDenied");
    assert_eq!(iam[1]["requestParameters"]["userName"], "UserA");
    assert_eq!(iam[1]["requestParameters"]["policyName"], "iam-read");
    assert_eq!(iam[1]["readOnly"], false);
    assert_eq!(iam[2]["readOnly"], true);
    let sts = records(&c, "sts.amazonaws.com");
    assert_eq!(sts.len(), 3);
    assert!(sts.iter().all(|r| r["eventName"] == "GetCallerIdentity"));
}

fn trust_of(principal: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"}}]}}"#
    )
}

fn assume(
    c: &KmsClient,
    role: &str,
    duration: Option<i32>,
) -> Result<AssumeRoleResponse, KmsError> {
    match c.send(AssumeRoleRequest {
        role_arn: role.into(),
        role_session_name: "ci-run".into(),
        duration_seconds: duration,
        external_id: None,
    }) {
        Ok(r) => Ok(r),
        Err(ClientError::Kms(e)) => Err(e),
        Err(other) => panic!("{other}"),
    }
}

/// What the AWS endpoint does with a request signed with `creds`: resolve the key
/// (and token), then speak for the signer.
fn signer(c: &KmsClient, creds: &Credentials) -> Result<Signer, KmsError> {
    match c.resolve_access_key(&creds.access_key_id, Some(&creds.session_token)) {
        Ok(r) => {
            assert_eq!(
                r.secret_access_key.0.as_slice(),
                creds.secret_access_key.as_bytes()
            );
            assert_eq!(r.expiration, Some(creds.expiration));
            Ok(Signer {
                access_key_id: creds.access_key_id.clone(),
                session_token: Some(creds.session_token.to_string()),
                principal_arn: r.principal_arn,
                source_ip: "127.0.0.1".into(),
                user_agent: Some("test".into()),
            })
        }
        Err(ClientError::Kms(e)) => Err(e),
        Err(other) => panic!("{other}"),
    }
}

fn signed<R: Variant>(c: &KmsClient, req: R, s: &Signer) -> Result<R::Response, KmsError> {
    match c.call_signed(req.into_request(), s.clone()) {
        Ok(r) => Ok(R::from_response(r).unwrap()),
        Err(ClientError::Kms(e)) => Err(e),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn assume_role_issues_sealed_session_credentials_that_act_as_the_session() {
    let mut d = Daemon::start();
    let c = d.client();
    let key = lab_key(&c);
    let role = c
        .send(CreateRoleRequest {
            role_name: "deployer".into(),
            assume_role_policy_document: trust_of(&format!("arn:aws:iam::{LAB}:root")),
            ..Default::default()
        })
        .unwrap()
        .role;
    c.send(PutRolePolicyRequest {
        role_name: "deployer".into(),
        policy_name: "encrypt".into(),
        policy_document: allow(r#"["kms:Encrypt","sts:AssumeRole"]"#),
    })
    .unwrap();
    let r = assume(&c, &role.arn, Some(900)).unwrap();
    let creds = r.credentials.clone();
    assert!(creds.access_key_id.starts_with("ASIA") && creds.access_key_id.len() == 20);
    assert_eq!(creds.secret_access_key.len(), 40);
    let session_arn = format!("arn:aws:sts::{LAB}:assumed-role/deployer/ci-run");
    assert_eq!(r.assumed_role_user.arn, session_arn);
    assert_eq!(
        r.assumed_role_user.assumed_role_id,
        format!("{}:ci-run", role.role_id)
    );
    assert!(!format!("{r:?}").contains(creds.secret_access_key.as_str()));

    // Requests signed with them act as the session, with the role's policies.
    let s = signer(&c, &creds).unwrap();
    assert_eq!(s.principal_arn, session_arn);
    let who = signed(&c, GetCallerIdentityRequest {}, &s).unwrap();
    assert_eq!(who.arn, session_arn);
    assert_eq!(who.user_id, r.assumed_role_user.assumed_role_id);
    signed(
        &c,
        EncryptRequest {
            key_id: key.clone(),
            plaintext: SecretBlob::new(b"hi".to_vec()),
            encryption_context: Default::default(),
            grant_tokens: vec![],
            encryption_algorithm: None,
        },
        &s,
    )
    .unwrap();
    let e = signed(&c, CreateKeyRequest::default(), &s).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDeniedException);

    // The token is all there is: it survives a restart, and an altered one is refused.
    d.restart();
    let c = d.client();
    let s = signer(&c, &creds).unwrap();
    signed(&c, GetCallerIdentityRequest {}, &s).unwrap();
    let mut forged = creds.clone();
    let mut t = forged.session_token.to_string().into_bytes();
    t[30] = if t[30] == b'A' { b'B' } else { b'A' };
    forged.session_token = zeroize::Zeroizing::new(String::from_utf8(t).unwrap());
    assert_eq!(
        signer(&c, &forged).unwrap_err().code,
        ErrorCode::UnrecognizedClientException
    );
    let mut other_id = creds.clone();
    other_id.access_key_id = "ASIAAAAAAAAAAAAAAAAA".into();
    assert_eq!(
        signer(&c, &other_id).unwrap_err().code,
        ErrorCode::UnrecognizedClientException
    );
    // After 900 s the session is over.
    c.advance_clock(901).unwrap();
    let e = signed(&c, GetCallerIdentityRequest {}, &s).unwrap_err();
    assert_eq!(e.code, ErrorCode::ExpiredTokenException);

    // AWS's limits on the duration.
    for (d, says) in [
        (899, "greater than or equal to 900"),
        (7200, "MaxSessionDuration"),
    ] {
        let e = assume(&c, &role.arn, Some(d)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert!(e.message.contains(says), "{}", e.message);
    }
    let before = c.advance_clock(0).unwrap();
    let default = assume(&c, &role.arn, None).unwrap();
    let after = c.advance_clock(0).unwrap();
    let exp = default.credentials.expiration.as_millis();
    assert!(exp >= before + 3_600_000 && exp <= after + 3_600_000);
    // Role chaining: a session assuming a role gets at most an hour.
    let s = signer(&c, &default.credentials).unwrap();
    let e = signed(
        &c,
        AssumeRoleRequest {
            role_arn: role.arn.clone(),
            role_session_name: "chained".into(),
            duration_seconds: Some(7200),
            external_id: None,
        },
        &s,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);

    // In the trail as STS calls, the secret and the token never.
    let sts = records(&c, "sts.amazonaws.com");
    let assumed: Vec<&Value> = sts
        .iter()
        .filter(|r| r["eventName"] == "AssumeRole" && r["errorCode"].is_null())
        .collect();
    assert_eq!(assumed.len(), 2);
    assert_eq!(
        assumed[0]["responseElements"]["credentials"]["accessKeyId"],
        creds.access_key_id.as_str()
    );
    assert_eq!(assumed[0]["requestParameters"]["roleSessionName"], "ci-run");
    let all = serde_json::to_string(&sts).unwrap();
    assert!(!all.contains(creds.secret_access_key.as_str()));
    assert!(!all.contains(creds.session_token.as_str()));
}

#[test]
fn assume_role_is_refused_unless_the_trust_policy_and_across_accounts_the_caller_allow_it() {
    let d = Daemon::start();
    let c = d.client();
    let user_a = d
        .client()
        .acting_as(format!("arn:aws:iam::{OTHER}:user/UserA"));
    let lab_only = c
        .send(CreateRoleRequest {
            role_name: "lab-only".into(),
            assume_role_policy_document: trust_of(&format!("arn:aws:iam::{LAB}:root")),
            ..Default::default()
        })
        .unwrap()
        .role;
    let e = assume(&user_a, &lab_only.arn, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied);
    assert!(
        e.message.starts_with(&format!(
            "User: arn:aws:iam::{OTHER}:user/UserA is not authorized to perform: sts:AssumeRole on resource: {}",
            lab_only.arn
        )),
        "{}",
        e.message
    );
    // A role that does not exist gets the same answer.
    let e = assume(&user_a, &format!("arn:aws:iam::{LAB}:role/nope"), None).unwrap_err();
    assert_eq!(e.code, ErrorCode::AccessDenied);

    // Trusting the other account is not enough: UserA's own policies must allow it.
    let shared = c
        .send(CreateRoleRequest {
            role_name: "shared".into(),
            assume_role_policy_document: trust_of(&format!("arn:aws:iam::{OTHER}:root")),
            ..Default::default()
        })
        .unwrap()
        .role;
    assert_eq!(
        assume(&user_a, &shared.arn, None).unwrap_err().code,
        ErrorCode::AccessDenied
    );
    d.client()
        .acting_as(format!("arn:aws:iam::{OTHER}:role/Admin"))
        .send(PutUserPolicyRequest {
            user_name: "UserA".into(),
            policy_name: "assume-shared".into(),
            policy_document: format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"{}"}}]}}"#,
                shared.arn
            ),
        })
        .unwrap();
    let r = assume(&user_a, &shared.arn, None).unwrap();
    assert_eq!(
        r.assumed_role_user.arn,
        format!("arn:aws:sts::{LAB}:assumed-role/shared/ci-run")
    );
    // Bad input is a ValidationError.
    for (arn, session) in [
        ("not-an-arn", "ok-name"),
        (&*shared.arn, "x"),
        (&*shared.arn, "a b"),
    ] {
        let e = err(user_a.send(AssumeRoleRequest {
            role_arn: arn.into(),
            role_session_name: session.into(),
            ..Default::default()
        }));
        assert_eq!(e.code, ErrorCode::ValidationError, "{arn} {session}");
    }
}

/// The troubleshooting article's fix: a customer managed policy `KmsKeyUsagePolicy`
/// attached to the user's group (or the user) lets it use the key on its next request.
#[test]
fn a_customer_managed_policy_attached_to_a_group_or_user_takes_effect() {
    let d = Daemon::start();
    let c = d.client();
    let key = lab_key(&c);
    create_user(&c, "dev");
    let dev = d.client().acting_as(user_arn("dev"));
    c.send(CreateGroupRequest {
        path: None,
        group_name: "developers".into(),
    })
    .unwrap();
    c.send(AddUserToGroupRequest(GroupMembershipRequest {
        group_name: "developers".into(),
        user_name: "dev".into(),
    }))
    .unwrap();
    let doc = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"AllowUseOfKey","Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"arn:aws:kms:us-east-1:{LAB}:key/{key}"}}]}}"#
    );
    let p = c
        .send(CreatePolicyRequest {
            policy_name: "KmsKeyUsagePolicy".into(),
            path: None,
            policy_document: doc.clone(),
            description: None,
        })
        .unwrap()
        .policy;
    assert_eq!(
        p.arn,
        format!("arn:aws:iam::{LAB}:policy/KmsKeyUsagePolicy")
    );
    assert!(p.policy_id.starts_with("ANPA"));
    assert_eq!(
        (p.default_version_id.as_str(), p.attachment_count),
        ("v1", 0)
    );
    let e = err(c.send(CreatePolicyRequest {
        policy_name: "kmskeyusagepolicy".into(),
        policy_document: doc.clone(),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::EntityAlreadyExists);

    assert!(encrypts(&dev, &key).is_err());
    let attach = GroupPolicyArn {
        group_name: "developers".into(),
        policy_arn: p.arn.clone(),
    };
    c.send(AttachGroupPolicyRequest(attach.clone())).unwrap();
    encrypts(&dev, &key).unwrap();
    let got = c
        .send(GetPolicyRequest {
            policy_arn: p.arn.clone(),
        })
        .unwrap()
        .policy;
    assert_eq!(got.attachment_count, 1);
    let v = c
        .send(GetPolicyVersionRequest {
            policy_arn: p.arn.clone(),
            version_id: "v1".into(),
        })
        .unwrap()
        .policy_version;
    assert_eq!(
        (v.document.as_str(), v.is_default_version),
        (doc.as_str(), true)
    );
    let e = err(c.send(GetPolicyVersionRequest {
        policy_arn: p.arn.clone(),
        version_id: "v2".into(),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    let listed = c
        .send(ListAttachedGroupPoliciesRequest {
            group_name: "developers".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.attached_policies.len(), 1);
    assert_eq!(listed.attached_policies[0].policy_name, "KmsKeyUsagePolicy");
    let e = err(c.send(DeletePolicyRequest {
        policy_arn: p.arn.clone(),
    }));
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::DeleteConflict,
            "Cannot delete a policy attached to entities."
        )
    );
    c.send(DetachGroupPolicyRequest(attach.clone())).unwrap();
    assert!(encrypts(&dev, &key).is_err());
    let e = err(c.send(DetachGroupPolicyRequest(attach)));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);

    // Attached to the user itself, and an AWS managed policy beside it.
    let to_user = |arn: &str| UserPolicyArn {
        user_name: "dev".into(),
        policy_arn: arn.into(),
    };
    c.send(AttachUserPolicyRequest(to_user(&p.arn))).unwrap();
    encrypts(&dev, &key).unwrap();
    c.send(AttachUserPolicyRequest(to_user(
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
    )))
    .unwrap();
    dev.send(ListKeysRequest::default()).unwrap();
    let e = err(c.send(AttachUserPolicyRequest(to_user(
        "arn:aws:iam::aws:policy/NoSuchPolicy",
    ))));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
    let e = err(c.send(AttachUserPolicyRequest(to_user("not-an-arn"))));
    assert_eq!(e.code, ErrorCode::InvalidInput);
    let names: Vec<String> = c
        .send(ListAttachedUserPoliciesRequest {
            user_name: "dev".into(),
            ..Default::default()
        })
        .unwrap()
        .attached_policies
        .into_iter()
        .map(|a| a.policy_name)
        .collect();
    assert_eq!(names, ["KmsKeyUsagePolicy", "ReadOnlyAccess"]);

    // Listing: the account's own, AWS's, only the attached ones.
    let local = c
        .send(ListPoliciesRequest {
            scope: Some("Local".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(local.policies.len(), 1);
    let aws = c
        .send(ListPoliciesRequest {
            scope: Some("AWS".into()),
            only_attached: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(aws.policies.len(), 1);
    assert_eq!(aws.policies[0].policy_name, "ReadOnlyAccess");
    let admin = c
        .send(GetPolicyRequest {
            policy_arn: "arn:aws:iam::aws:policy/AdministratorAccess".into(),
        })
        .unwrap()
        .policy;
    assert_eq!(admin.attachment_count, 0);
    let e = err(c.send(DeletePolicyRequest {
        policy_arn: "arn:aws:iam::aws:policy/AdministratorAccess".into(),
    }));
    assert_eq!(e.code, ErrorCode::InvalidInput);

    // A user with attached policies is not deleted; once detached, the policy goes.
    let e = err(c.send(DeleteUserRequest {
        user_name: "dev".into(),
    }));
    assert_eq!(
        e.message,
        "Cannot delete entity, must detach all policies first."
    );
    c.send(DetachUserPolicyRequest(to_user(&p.arn))).unwrap();
    c.send(DeletePolicyRequest {
        policy_arn: p.arn.clone(),
    })
    .unwrap();
    let e = err(c.send(GetPolicyRequest { policy_arn: p.arn }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);
}

#[test]
fn a_users_access_keys_authenticate_as_the_user_until_deleted() {
    let d = Daemon::start();
    let c = d.client();
    let dev = create_user(&c, "dev");
    let k = c
        .send(CreateAccessKeyRequest {
            user_name: Some("dev".into()),
        })
        .unwrap()
        .access_key;
    assert!(k.access_key_id.starts_with("AKIA"));
    assert_eq!((k.user_name.as_str(), k.status.as_str()), ("dev", "Active"));
    assert!(!format!("{k:?}").contains(k.secret_access_key.as_str()));
    // The AWS endpoint resolves it to the user and its secret.
    let r = c.resolve_access_key(&k.access_key_id, None).unwrap();
    assert_eq!(r.principal_arn, dev.arn);
    assert_eq!(
        r.secret_access_key.0.as_slice(),
        k.secret_access_key.as_bytes()
    );
    let s = Signer {
        access_key_id: k.access_key_id.clone(),
        session_token: None,
        principal_arn: dev.arn.clone(),
        source_ip: "127.0.0.1".into(),
        user_agent: None,
    };
    assert_eq!(
        signed(&c, GetCallerIdentityRequest {}, &s).unwrap().arn,
        dev.arn
    );

    c.send(CreateAccessKeyRequest {
        user_name: Some("dev".into()),
    })
    .unwrap();
    let e = err(c.send(CreateAccessKeyRequest {
        user_name: Some("dev".into()),
    }));
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::LimitExceeded,
            "Cannot exceed quota for AccessKeysPerUser: 2"
        )
    );
    let listed = c
        .send(ListAccessKeysRequest {
            user_name: Some("dev".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.access_key_metadata.len(), 2);
    assert!(listed
        .access_key_metadata
        .iter()
        .all(|m| m.user_name == "dev" && m.status == "Active"));
    let e = err(c.send(DeleteUserRequest {
        user_name: "dev".into(),
    }));
    assert_eq!(
        e.message,
        "Cannot delete entity, must delete access keys first."
    );
    let e = err(c.send(CreateAccessKeyRequest {
        user_name: Some("nobody".into()),
    }));
    assert_eq!(e.code, ErrorCode::NoSuchEntity);

    for m in &listed.access_key_metadata {
        c.send(DeleteAccessKeyRequest {
            user_name: Some("dev".into()),
            access_key_id: m.access_key_id.clone(),
        })
        .unwrap();
    }
    let e = err(c.send(DeleteAccessKeyRequest {
        user_name: Some("dev".into()),
        access_key_id: k.access_key_id.clone(),
    }));
    assert_eq!(
        e.message,
        format!(
            "The Access Key with id {} cannot be found.",
            k.access_key_id
        )
    );
    // Deleted: the next signed request is refused.
    let e = signed(&c, GetCallerIdentityRequest {}, &s).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnrecognizedClientException);
    c.send(DeleteUserRequest {
        user_name: "dev".into(),
    })
    .unwrap();
    // The trail has the key id, never the secret.
    let iam = serde_json::to_string(&records(&c, "iam.amazonaws.com")).unwrap();
    assert!(iam.contains(&k.access_key_id));
    assert!(!iam.contains(k.secret_access_key.as_str()));
}
