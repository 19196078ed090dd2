//! AMIs (issue 14): RegisterImage from an EBS snapshot, DescribeImages, sharing with
//! ModifyImageAttribute / ModifySnapshotAttribute, CopyImage re-encrypting under
//! another key, DeregisterImage, EC2's errors (nothing changed by any of them), and
//! the copied-AMI case end to end: account 444455556666 launching 111122223333's shared
//! AMI whose snapshot is encrypted with 111122223333's key.

mod ec2_support;

use ec2_support::{guest_dir, Lab};
use serde_json::Value;

const LAB: &str = "111122223333";
const OTHER: &str = "444455556666";
const USER_A: &str = "arn:aws:iam::444455556666:user/UserA";

fn as_user_a(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["--as", USER_A, "ec2"];
    all.extend_from_slice(args);
    lab.ok(&all)
}

fn user_a_fails(lab: &Lab, code: &str, args: &[&str]) -> String {
    let mut all = vec!["--as", USER_A, "ec2"];
    all.extend_from_slice(args);
    let out = lab.run(&all);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{all:?} succeeded");
    assert!(
        err.contains(&format!("An error occurred ({code})")),
        "{all:?}: wanted {code}, got: {err}"
    );
    err
}

fn registry(lab: &Lab) -> Vec<u8> {
    std::fs::read(lab.path().join("ec2/registry.json")).unwrap()
}

/// A completed snapshot of a fresh 1 GiB volume (in-process: no daemon needed).
fn snapshot(lab: &Lab, extra: &[&str]) -> String {
    let vol = lab.new_volume(&[&["--size", "1"], extra].concat());
    let s = lab.ec2(&["create-snapshot", "--volume-id", &vol]);
    let id = s["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &id]);
    id
}

fn register(lab: &Lab, name: &str, snap: &str) -> String {
    let r = lab.ec2(&[
        "register-image",
        "--name",
        name,
        "--block-device-mappings",
        &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={snap}}}"),
        "--boot-image",
        guest_dir().to_str().unwrap(),
    ]);
    r["ImageId"].as_str().unwrap().to_string()
}

#[test]
fn register_describe_share_and_deregister() {
    let lab = Lab::start();
    let snap = snapshot(&lab, &[]);
    let before = registry(&lab);

    // Bad input: EC2's errors, and nothing written.
    lab.ec2_fails(
        "MissingParameter",
        &[
            "register-image",
            "--name",
            "",
            "--block-device-mappings",
            &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={snap}}}"),
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &["register-image", "--name", "no-root"],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "register-image",
            "--name",
            "wrong-root",
            "--root-device-name",
            "/dev/sdb",
            "--block-device-mappings",
            &format!("DeviceName=/dev/sdb,Ebs={{SnapshotId={snap}}}"),
        ],
    );
    lab.ec2_fails(
        "InvalidSnapshot.NotFound",
        &[
            "register-image",
            "--name",
            "gone",
            "--block-device-mappings",
            "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-0123456789abcdef0}",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "register-image",
            "--name",
            "too-small",
            "--block-device-mappings",
            &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={snap},VolumeSize=0}}"),
        ],
    );
    assert_eq!(registry(&lab), before, "refusals change nothing");

    let ami = register(&lab, "lab-guest", &snap);
    assert!(ami.starts_with("ami-") && ami.len() == 21, "{ami}");
    // The boot profile is the image's own copy.
    assert!(lab
        .path()
        .join(format!("ec2/images/{ami}/vmlinuz"))
        .is_file());
    lab.ec2_fails(
        "InvalidAMIName.Duplicate",
        &[
            "register-image",
            "--name",
            "lab-guest",
            "--block-device-mappings",
            &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={snap}}}"),
        ],
    );

    let d = lab.ec2(&["describe-images", "--owners", "self"]);
    let img = &d["Images"][0];
    assert_eq!(d["Images"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(img["ImageId"], ami.as_str());
    assert_eq!(img["OwnerId"], LAB);
    assert_eq!(img["State"], "available");
    assert_eq!(img["Name"], "lab-guest");
    assert_eq!(img["RootDeviceName"], "/dev/xvda");
    assert_eq!(img["RootDeviceType"], "ebs");
    assert_eq!(img["Public"], false);
    assert_eq!(
        img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"],
        snap.as_str()
    );
    assert_eq!(img["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"], 1);
    let by_owner = lab.ec2(&["describe-images", "--owners", LAB]);
    assert_eq!(by_owner["Images"][0]["ImageId"], ami.as_str());
    let none = lab.ec2(&["describe-images", "--owners", OTHER]);
    assert_eq!(none["Images"].as_array().unwrap().len(), 0);
    let f = lab.ec2(&["describe-images", "--filters", "Name=name,Values=lab-*"]);
    assert_eq!(f["Images"][0]["ImageId"], ami.as_str());
    let f = lab.ec2(&["describe-images", "--filters", "Name=state,Values=pending"]);
    assert_eq!(f["Images"].as_array().unwrap().len(), 0);
    let f = lab.ec2(&[
        "describe-images",
        "--filters",
        &format!("Name=block-device-mapping.snapshot-id,Values={snap}"),
    ]);
    assert_eq!(f["Images"][0]["ImageId"], ami.as_str());
    lab.ec2_fails(
        "InvalidParameterValue",
        &["describe-images", "--filters", "Name=bogus,Values=x"],
    );
    lab.ec2_fails(
        "InvalidAMIID.Malformed",
        &["describe-images", "--image-ids", "ami-xyz"],
    );
    lab.ec2_fails(
        "InvalidAMIID.NotFound",
        &["describe-images", "--image-ids", "ami-0123456789abcdef0"],
    );

    // Another account does not see it until it is shared.
    user_a_fails(
        &lab,
        "InvalidAMIID.NotFound",
        &["describe-images", "--image-ids", &ami],
    );
    let seen = as_user_a(&lab, &["describe-images"]);
    assert_eq!(seen["Images"].as_array().unwrap().len(), 0);
    user_a_fails(
        &lab,
        "InvalidAMIID.NotFound",
        &[
            "modify-image-attribute",
            "--image-id",
            &ami,
            "--launch-permission",
            &format!("Add=[{{UserId={OTHER}}}]"),
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "modify-image-attribute",
            "--image-id",
            &ami,
            "--launch-permission",
            "Add=[{UserId=12345}]",
        ],
    );
    lab.ec2(&[
        "modify-image-attribute",
        "--image-id",
        &ami,
        "--launch-permission",
        &format!("Add=[{{UserId={OTHER}}}]"),
    ]);
    let attr = lab.ec2(&[
        "describe-image-attribute",
        "--image-id",
        &ami,
        "--attribute",
        "launchPermission",
    ]);
    assert_eq!(attr["LaunchPermissions"][0]["UserId"], OTHER, "{attr}");
    let seen = as_user_a(&lab, &["describe-images", "--image-ids", &ami]);
    assert_eq!(seen["Images"][0]["OwnerId"], LAB);
    let exec = as_user_a(&lab, &["describe-images", "--executable-users", "self"]);
    assert_eq!(exec["Images"][0]["ImageId"], ami.as_str());
    // Only the owner changes or removes it.
    user_a_fails(
        &lab,
        "AuthFailure",
        &["deregister-image", "--image-id", &ami],
    );
    user_a_fails(
        &lab,
        "AuthFailure",
        &[
            "modify-snapshot-attribute",
            "--snapshot-id",
            &snap,
            "--create-volume-permission",
            &format!("Add=[{{UserId={OTHER}}}]"),
        ],
    );
    lab.ec2(&[
        "modify-snapshot-attribute",
        "--snapshot-id",
        &snap,
        "--attribute",
        "createVolumePermission",
        "--operation-type",
        "add",
        "--user-ids",
        OTHER,
    ]);
    let sa = lab.ec2(&[
        "describe-snapshot-attribute",
        "--snapshot-id",
        &snap,
        "--attribute",
        "createVolumePermission",
    ]);
    assert_eq!(sa["CreateVolumePermissions"][0]["UserId"], OTHER, "{sa}");

    // Its snapshot cannot go while the AMI is registered.
    lab.ec2_fails(
        "InvalidSnapshot.InUse",
        &["delete-snapshot", "--snapshot-id", &snap],
    );
    lab.ec2(&[
        "modify-image-attribute",
        "--image-id",
        &ami,
        "--launch-permission",
        &format!("Remove=[{{UserId={OTHER}}}]"),
    ]);
    user_a_fails(
        &lab,
        "InvalidAMIID.NotFound",
        &["describe-images", "--image-ids", &ami],
    );

    lab.ec2(&["deregister-image", "--image-id", &ami]);
    lab.ec2_fails(
        "InvalidAMIID.NotFound",
        &["deregister-image", "--image-id", &ami],
    );
    assert!(!lab.path().join(format!("ec2/images/{ami}")).exists());
    lab.ec2(&["delete-snapshot", "--snapshot-id", &snap]);
}

/// The trail's last event named `name`, as CloudTrail records it.
fn last_event(lab: &Lab, name: &str) -> Value {
    let trail = lab.ok(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        &format!("AttributeKey=EventName,AttributeValue={name}"),
        "--max-results",
        "1",
    ]);
    serde_json::from_str(trail["Events"][0]["CloudTrailEvent"].as_str().unwrap()).unwrap()
}

fn run_image(lab: &Lab, ami: &str) -> String {
    let r = as_user_a(
        lab,
        &[
            "run-instances",
            "--image-id",
            ami,
            "--placement",
            "AvailabilityZone=us-east-1a",
        ],
    );
    assert_eq!(r["Instances"][0]["State"]["Name"], "pending");
    assert_eq!(r["Instances"][0]["ImageId"], ami);
    r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn boots(lab: &Lab, id: &str) {
    lab.ec2(&["wait", "instance-running", "--instance-ids", id]);
    let root = lab.instance(id)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.until(120, "the guest's console line", || {
        let c = lab.ec2(&["get-console-output", "--instance-id", id]);
        c["Output"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("atrest-guest: booted from volume {root}"))
    });
}

#[test]
fn the_copied_ami_case_end_to_end() {
    let guest = guest_dir();
    let mut lab = Lab::start();
    lab.start_daemon();
    let key = lab.key("alias/MyKMSKey");

    // The lab's guest becomes an AMI on first use (its snapshot unencrypted).
    let r = lab.ec2(&[
        "run-instances",
        "--image-id",
        guest.to_str().unwrap(),
        "--placement",
        "AvailabilityZone=us-east-1a",
    ]);
    let first = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let base = r["Instances"][0]["ImageId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &first]);
    let mine = lab.ec2(&["describe-images", "--owners", "self"]);
    assert_eq!(mine["Images"][0]["ImageId"], base.as_str(), "{mine}");
    lab.ec2(&["wait", "image-available", "--image-ids", &base]);
    lab.ec2_fails(
        "InvalidAMIID.Unavailable",
        &["deregister-image", "--image-id", &base],
    );
    lab.ec2(&["terminate-instances", "--instance-ids", &first]);
    lab.wait_state(&first, "terminated", 60);

    // 111122223333 copies it encrypted under its customer managed key (EBS's way: a
    // data key made with GenerateDataKeyWithoutPlaintext, on the caller's behalf).
    let c = lab.ec2(&[
        "copy-image",
        "--name",
        "lab-encrypted",
        "--source-image-id",
        &base,
        "--source-region",
        "us-east-1",
        "--encrypted",
        "--kms-key-id",
        "alias/MyKMSKey",
    ]);
    let ami = c["ImageId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "image-available", "--image-ids", &ami]);
    let img = &lab.ec2(&["describe-images", "--image-ids", &ami])["Images"][0];
    let snap = img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(img["BlockDeviceMappings"][0]["Ebs"]["Encrypted"], true);
    assert_eq!(
        img["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"],
        key.as_str()
    );
    let gen = last_event(&lab, "GenerateDataKeyWithoutPlaintext");
    assert_eq!(
        gen["userIdentity"]["invokedBy"], "ec2.amazonaws.com",
        "{gen}"
    );
    assert_eq!(gen["requestParameters"]["keyId"], "alias/MyKMSKey", "{gen}");
    assert_eq!(
        gen["requestParameters"]["encryptionContext"]["aws:ebs:id"],
        snap.as_str()
    );

    // Shared with 444455556666: the AMI and its snapshot.
    lab.ec2(&[
        "modify-image-attribute",
        "--image-id",
        &ami,
        "--launch-permission",
        &format!("Add=[{{UserId={OTHER}}}]"),
    ]);
    lab.ec2(&[
        "modify-snapshot-attribute",
        "--snapshot-id",
        &snap,
        "--create-volume-permission",
        &format!("Add=[{{UserId={OTHER}}}]"),
    ]);
    // An AMI not shared with the caller does not exist for it.
    user_a_fails(
        &lab,
        "InvalidAMIID.NotFound",
        &["run-instances", "--image-id", &base],
    );

    // UserA launches it: the key policy does not name 444455556666. pending ->
    // terminated with Client.InternalError, the refused KMS call in the trail.
    let id = run_image(&lab, &ami);
    lab.wait_state(&id, "terminated", 60);
    let i = lab.instance(&id);
    assert_eq!(i["StateReason"]["Code"], "Client.InternalError", "{i}");
    assert_eq!(
        i["StateReason"]["Message"],
        "Client.InternalError: Client error on launch"
    );
    let e = last_event(&lab, "GenerateDataKeyWithoutPlaintext");
    assert_eq!(e["errorCode"], "AccessDeniedException", "{e}");
    assert_eq!(e["userIdentity"]["arn"], USER_A, "{e}");
    assert_eq!(e["userIdentity"]["invokedBy"], "ec2.amazonaws.com", "{e}");
    // Its root volume is gone with it.
    let vols = lab.ec2(&["describe-volumes"]);
    assert!(
        !vols.to_string().contains(&id),
        "no volume of the terminated instance remains: {vols}"
    );

    // The key policy names 444455556666 (use, and grants for AWS resources) ...
    lab.share_key_with_account(&key, "444455556666");
    // ... still refused: account 444455556666's IAM policy does not allow UserA.
    let id = run_image(&lab, &ami);
    lab.wait_state(&id, "terminated", 60);
    let e = last_event(&lab, "GenerateDataKeyWithoutPlaintext");
    assert_eq!(e["errorCode"], "AccessDeniedException", "{e}");
    assert!(
        e["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no identity-based policy allows"),
        "{e}"
    );

    // The IAM policy of 444455556666 allows the calls EC2 makes for UserA: it boots.
    let dir = lab.path().join("iam/444455556666/users/UserA");
    std::fs::create_dir_all(&dir).unwrap();
    let lab_key_policy = dir.join("UseSharedAmiKey.json");
    std::fs::write(
        &lab_key_policy,
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*",
                            "kms:GenerateDataKeyWithoutPlaintext"],
                 "Resource": key},
                {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": key,
                 "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    // UserA administers its own account's keys (and only those).
    std::fs::write(
        dir.join("OwnKeys.json"),
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:*:444455556666:key/*"},
            {"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*"}]}"#,
    )
    .unwrap();
    lab.ok(&["kms", "reload-config"]);
    let id = run_image(&lab, &ami);
    boots(&lab, &id);
    let root = lab.instance(&id)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    let v = lab.volume(&root);
    assert_eq!(v["Encrypted"], true);
    assert_eq!(v["KmsKeyId"], key.as_str());
    assert_eq!(v["SnapshotId"], snap.as_str());
    let g = last_event(&lab, "CreateGrant");
    assert_eq!(
        g["requestParameters"]["granteePrincipal"],
        format!("{OTHER}:aws:ec2-infrastructure:{id}")
    );
    as_user_a(&lab, &["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 60);

    // The article's fix: UserA copies the AMI into 444455556666 re-encrypted under its
    // own key; that copy launches with no permission on 111122223333's key at all.
    let k = lab.ok(&[
        "--as",
        USER_A,
        "kms",
        "create-key",
        "--description",
        "UserA's key",
    ]);
    let own = k["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    assert!(own.contains(":444455556666:key/"), "{own}");
    user_a_fails(
        &lab,
        "InvalidParameterDependency",
        &[
            "copy-image",
            "--name",
            "mine",
            "--source-image-id",
            &ami,
            "--source-region",
            "us-east-1",
            "--kms-key-id",
            &own,
        ],
    );
    let c = as_user_a(
        &lab,
        &[
            "copy-image",
            "--name",
            "mine",
            "--source-image-id",
            &ami,
            "--source-region",
            "us-east-1",
            "--encrypted",
            "--kms-key-id",
            &own,
        ],
    );
    let copy = c["ImageId"].as_str().unwrap().to_string();
    as_user_a(&lab, &["wait", "image-available", "--image-ids", &copy]);
    let img = &as_user_a(&lab, &["describe-images", "--owners", "self"])["Images"][0];
    assert_eq!(img["ImageId"], copy.as_str());
    assert_eq!(img["OwnerId"], OTHER);
    assert_eq!(
        img["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"],
        own.as_str()
    );
    let gen = last_event(&lab, "GenerateDataKeyWithoutPlaintext");
    assert_eq!(gen["userIdentity"]["arn"], USER_A, "{gen}");
    assert_eq!(gen["userIdentity"]["invokedBy"], "ec2.amazonaws.com");
    assert_eq!(gen["errorCode"], Value::Null, "{gen}");

    // Withdraw every permission 444455556666 had on 111122223333's key.
    std::fs::remove_file(&lab_key_policy).unwrap();
    lab.ok(&["kms", "reload-config"]);
    let id = run_image(&lab, &copy);
    boots(&lab, &id);
    let grant = last_event(&lab, "CreateGrant");
    assert_eq!(grant["requestParameters"]["keyId"], own.as_str(), "{grant}");
    assert_eq!(grant["errorCode"], Value::Null, "{grant}");
    // The shared AMI itself is refused again (no cross-account permission any more).
    let refused = run_image(&lab, &ami);
    lab.wait_state(&refused, "terminated", 60);
    // An AMI in use cannot be deregistered; nothing changes.
    let before = registry(&lab);
    user_a_fails(
        &lab,
        "InvalidAMIID.Unavailable",
        &["deregister-image", "--image-id", &copy],
    );
    assert_eq!(registry(&lab), before);
    as_user_a(&lab, &["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 60);
    as_user_a(&lab, &["deregister-image", "--image-id", &copy]);
    lab.stop_daemon();
}
