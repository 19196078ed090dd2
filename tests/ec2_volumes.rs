//! Volumes and tags end to end: the built CLI, a real kmsd, the registry on disk.
//! These run without the volume service daemon (the CLI answers in-process under the
//! registry lock), which is also what makes concurrent CLI calls a real test.

mod ec2_support;

use std::collections::BTreeMap;

use atrest::volume::VolumeImage;
use ec2_support::Lab;
use serde_json::Value;

#[test]
fn create_describe_tag_delete_unencrypted() {
    let lab = Lab::start();
    let v = lab.ec2(&[
        "create-volume",
        "--size",
        "2",
        "--availability-zone",
        "us-east-1a",
        "--tag-specifications",
        "ResourceType=volume,Tags=[{Key=Name,Value=Data disk},{Key=env,Value=lab}]",
    ]);
    assert_eq!(v["State"], "creating");
    assert_eq!(v["Size"], 2);
    assert_eq!(v["Encrypted"], false);
    assert!(v.get("KmsKeyId").is_none());
    let id = v["VolumeId"].as_str().unwrap().to_string();
    assert!(id.starts_with("vol-") && id.len() == 21, "{id}");
    lab.ec2(&["wait", "volume-available", "--volume-ids", &id]);
    let d = lab.volume(&id);
    assert_eq!(d["State"], "available");
    assert_eq!(d["AvailabilityZone"], "us-east-1a");
    assert_eq!(d["Attachments"], Value::Array(vec![]));
    let img = VolumeImage::read_header(&lab.image_path(&id)).unwrap();
    assert_eq!(img.volume_id(), id);
    assert_eq!(img.size_bytes(), 2 << 30);
    assert!(!img.cipher().is_encrypted());

    // Filters: tag, wildcard, status; JSON form too.
    let f = lab.ec2(&[
        "describe-volumes",
        "--filters",
        "Name=tag:Name,Values=Data*",
    ]);
    assert_eq!(f["Volumes"].as_array().unwrap().len(), 1);
    let f = lab.ec2(&[
        "describe-volumes",
        "--filters",
        r#"[{"Name":"tag:env","Values":["prod"]}]"#,
    ]);
    assert_eq!(f["Volumes"].as_array().unwrap().len(), 0);
    let f = lab.ec2(&[
        "describe-volumes",
        "--filters",
        "Name=status,Values=available",
        "Name=encrypted,Values=false",
    ]);
    assert_eq!(f["Volumes"].as_array().unwrap().len(), 1);
    lab.ec2_fails(
        "InvalidParameterValue",
        &["describe-volumes", "--filters", "Name=bogus,Values=x"],
    );

    // create-tags replaces a value; delete-tags with a non-matching value keeps it.
    lab.ec2(&[
        "create-tags",
        "--resources",
        &id,
        "--tags",
        "Key=Name,Value=Renamed",
        "Key=team,Value=x",
    ]);
    lab.ec2(&[
        "delete-tags",
        "--resources",
        &id,
        "--tags",
        "Key=team,Value=other",
    ]);
    let tags: BTreeMap<String, String> = lab.volume(&id)["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["Key"].as_str().unwrap().into(),
                t["Value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(tags.get("Name").map(String::as_str), Some("Renamed"));
    assert_eq!(tags.get("team").map(String::as_str), Some("x"));
    lab.ec2(&["delete-tags", "--resources", &id, "--tags", "Key=team"]);
    assert_eq!(lab.volume(&id)["Tags"].as_array().unwrap().len(), 2);
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "create-tags",
            "--resources",
            &id,
            "--tags",
            "Key=aws:x,Value=y",
        ],
    );

    lab.ec2(&["delete-volume", "--volume-id", &id]);
    assert!(!lab.image_path(&id).exists());
    lab.ec2_fails(
        "InvalidVolume.NotFound",
        &["describe-volumes", "--volume-ids", &id],
    );
    lab.ec2_fails(
        "InvalidVolume.NotFound",
        &["delete-volume", "--volume-id", &id],
    );
}

#[test]
fn create_volume_rules() {
    let lab = Lab::start();
    lab.ec2_fails(
        "InvalidZone.NotFound",
        &[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "us-east-1z",
        ],
    );
    lab.ec2_fails(
        "InvalidZone.NotFound",
        &[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "eu-west-1a",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "create-volume",
            "--size",
            "0",
            "--availability-zone",
            "us-east-1a",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "create-volume",
            "--size",
            "16385",
            "--availability-zone",
            "us-east-1a",
        ],
    );
    lab.ec2_fails(
        "MissingParameter",
        &["create-volume", "--availability-zone", "us-east-1a"],
    );
    lab.ec2_fails(
        "InvalidParameterDependency",
        &[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "us-east-1a",
            "--kms-key-id",
            "alias/x",
        ],
    );
    lab.ec2_fails(
        "InvalidSnapshot.NotFound",
        &[
            "create-volume",
            "--availability-zone",
            "us-east-1a",
            "--snapshot-id",
            "snap-0123456789abcdef0",
        ],
    );
    lab.ec2_fails(
        "InvalidSnapshotID.Malformed",
        &[
            "create-volume",
            "--availability-zone",
            "us-east-1a",
            "--snapshot-id",
            "snap-nope",
        ],
    );
    lab.ec2_fails(
        "InvalidVolumeID.Malformed",
        &["delete-volume", "--volume-id", "vol-../../etc"],
    );
    // Nothing was created by any of that.
    let all = lab.ec2(&["describe-volumes"]);
    assert_eq!(all["Volumes"].as_array().unwrap().len(), 0);
    assert_eq!(
        std::fs::read_dir(lab.path().join("volumes"))
            .unwrap()
            .count(),
        0
    );
    // A bad shorthand argument is a usage error naming the problem.
    let out = lab.run(&[
        "ec2",
        "create-volume",
        "--size",
        "1",
        "--availability-zone",
        "us-east-1a",
        "--tag-specifications",
        "ResourceType=volume,Tags=[{Key=a",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error parsing parameter"));
}

#[test]
fn encrypted_volume_has_a_wrapped_64_byte_key_bound_to_its_id() {
    let lab = Lab::start();
    let arn = lab.key("alias/MyKMSKey");
    let id = lab.new_volume(&[
        "--size",
        "1",
        "--encrypted",
        "--kms-key-id",
        "alias/MyKMSKey",
    ]);
    let v = lab.volume(&id);
    assert_eq!(v["Encrypted"], true);
    assert_eq!(
        v["KmsKeyId"],
        arn.as_str(),
        "the alias is resolved to the key ARN"
    );
    let h = VolumeImage::read_header(&lab.image_path(&id)).unwrap();
    assert!(h.cipher().is_encrypted());
    assert_eq!(h.params.key_arn, arn);
    assert_eq!(h.params.encryption_context.get("aws:ebs:id"), Some(&id));
    // The wrapped key is a real kmsd ciphertext of 64 bytes under that context, and
    // only under that context.
    let c = kmsd::client::KmsClient::connect(lab.path().join("kmsd.sock")).unwrap();
    let plain = c
        .decrypt(&h.params.wrapped_key, &h.params.encryption_context, None)
        .unwrap();
    assert_eq!(plain.plaintext.len(), 64);
    let mut other = h.params.encryption_context.clone();
    other.insert("aws:ebs:id".into(), "vol-0000000000000000f".into());
    assert!(c.decrypt(&h.params.wrapped_key, &other, None).is_err());
    // The registry file holds no key material at all.
    let reg = std::fs::read_to_string(lab.path().join("ec2/registry.json")).unwrap();
    use base64::Engine;
    assert!(!reg.contains(&base64::engine::general_purpose::STANDARD.encode(&h.params.wrapped_key)));
}

/// `--encrypted` without a key uses the AWS managed key `alias/aws/ebs`, which kmsd
/// creates on that first use; an instance on such a volume starts, because the managed
/// key's policy lets EC2 create the instance's grant.
#[test]
fn encrypted_without_a_key_uses_the_aws_managed_ebs_key() {
    let mut lab = Lab::start();
    let id = lab.new_volume(&["--size", "1", "--encrypted"]);
    let managed = lab.ok(&["kms", "describe-key", "--key-id", "alias/aws/ebs"]);
    assert_eq!(managed["KeyMetadata"]["KeyManager"], "AWS");
    let v = lab.volume(&id);
    assert_eq!(v["Encrypted"], true);
    assert_eq!(v["KmsKeyId"], managed["KeyMetadata"]["Arn"]);
    // The managed key is the account's, not the caller's to manage.
    let out = lab.run(&[
        "kms",
        "disable-key",
        "--key-id",
        managed["KeyMetadata"]["Arn"].as_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDeniedException"));

    lab.start_daemon();
    let instance = lab.run_on_root(&id, None);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &instance]);
    let served = lab.served_path(&instance, "xvda");
    let mut first = vec![0u8; 4096];
    std::io::Read::read_exact(&mut std::fs::File::open(&served).unwrap(), &mut first).unwrap();
    assert!(first.iter().all(|&b| b == 0), "a new volume reads as zeros");
}

#[test]
fn a_refused_data_key_creates_nothing() {
    let lab = Lab::start();
    let arn = lab.key("alias/MyKMSKey");
    lab.disable_key(&arn);
    let err = lab.ec2_fails(
        "DisabledException",
        &[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "us-east-1a",
            "--encrypted",
            "--kms-key-id",
            "alias/MyKMSKey",
        ],
    );
    assert!(err.contains("CreateVolume"), "{err}");
    lab.ec2_fails(
        "NotFoundException",
        &[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "us-east-1a",
            "--encrypted",
            "--kms-key-id",
            "alias/nope",
        ],
    );
    assert_eq!(
        lab.ec2(&["describe-volumes"])["Volumes"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        std::fs::read_dir(lab.path().join("volumes"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn concurrent_cli_calls_lose_nothing() {
    let lab = Lab::start();
    let target = lab.new_volume(&["--size", "1"]);
    const N: usize = 12;
    let mut children = Vec::new();
    for i in 0..N {
        children.push(
            lab.cmd()
                .args([
                    "ec2",
                    "create-volume",
                    "--size",
                    "1",
                    "--availability-zone",
                    "us-east-1b",
                ])
                .args([
                    "--tag-specifications",
                    &format!("ResourceType=volume,Tags=[{{Key=Name,Value=par-{i}}}]"),
                ])
                .output(),
        );
    }
    // Those ran one after another; now truly in parallel: spawn all, then wait.
    let spawned: Vec<_> = (0..N)
        .map(|i| {
            let mut c = lab.cmd();
            if i % 2 == 0 {
                c.args([
                    "ec2",
                    "create-volume",
                    "--size",
                    "1",
                    "--availability-zone",
                    "us-east-1c",
                ]);
                c.args([
                    "--tag-specifications",
                    &format!("ResourceType=volume,Tags=[{{Key=Name,Value=conc-{i}}}]"),
                ]);
            } else {
                c.args([
                    "ec2",
                    "create-tags",
                    "--resources",
                    &target,
                    "--tags",
                    &format!("Key=k{i},Value=v{i}"),
                ]);
            }
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert!(c.unwrap().status.success());
    }
    for c in spawned {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = lab.ec2(&[
        "describe-volumes",
        "--filters",
        "Name=availability-zone,Values=us-east-1b",
    ]);
    assert_eq!(b["Volumes"].as_array().unwrap().len(), N);
    let c = lab.ec2(&[
        "describe-volumes",
        "--filters",
        "Name=tag:Name,Values=conc-*",
    ]);
    assert_eq!(c["Volumes"].as_array().unwrap().len(), N / 2);
    let tags = lab.volume(&target)["Tags"].as_array().unwrap().len();
    assert_eq!(tags, N / 2, "every create-tags landed");
    // Every volume in the registry has its image, and no image is unaccounted for.
    let all = lab.ec2(&["describe-volumes"]);
    let ids: Vec<&str> = all["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VolumeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1 + N + N / 2);
    for id in &ids {
        assert!(lab.image_path(id).exists(), "{id}");
    }
    assert_eq!(
        std::fs::read_dir(lab.path().join("volumes"))
            .unwrap()
            .count(),
        ids.len()
    );
}

#[test]
fn interrupted_creation_becomes_error_not_available() {
    // A volume record left `creating` by a worker that died (simulated by a record
    // whose worker pid no longer exists) is marked `error` by the next call.
    let lab = Lab::start();
    let id = lab.new_volume(&["--size", "1"]);
    let reg_path = lab.path().join("ec2/registry.json");
    let mut reg: Value =
        serde_json::from_str(&std::fs::read_to_string(&reg_path).unwrap()).unwrap();
    let v = &mut reg["volumes"][&id];
    v["state"] = "Creating".into();
    v["worker"] = serde_json::json!({"pid": 999_999_999u32});
    std::fs::write(&reg_path, serde_json::to_vec(&reg).unwrap()).unwrap();
    let d = lab.volume(&id);
    assert_eq!(d["State"], "error");
    assert!(
        !lab.image_path(&id).exists(),
        "the half-made image is removed"
    );
    lab.ec2(&["delete-volume", "--volume-id", &id]);
}

/// The volume service acts on a caller's behalf only as a principal the config lets
/// that caller's uid act as: kmsd trusts the service to speak for anyone, so the
/// service must check `--as` itself (directly on ec2.sock and in-process alike).
#[test]
fn acting_as_is_checked_by_the_volume_service() {
    let mut lab = Lab::start();
    for daemon in [false, true] {
        if daemon {
            lab.start_daemon();
        }
        for claim in [
            "arn:aws:iam::999999999999:user/Mallory",
            "ec2.amazonaws.com",
            "111122223333:aws:ec2-infrastructure:i-0123456789abcdef0",
        ] {
            let out = lab.run(&["--as", claim, "ec2", "describe-volumes"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "--as {claim} was accepted");
            assert!(
                err.contains("(UnauthorizedOperation)") && err.contains(claim),
                "--as {claim}: {err}"
            );
        }
        // A principal the default config allows.
        lab.run_ok(&[
            "--as",
            "arn:aws:iam::444455556666:user/UserA",
            "ec2",
            "describe-volumes",
        ]);
    }
    lab.stop_daemon();
}

/// DescribeVolumes pages as EC2 does (MaxResults, NextToken), and a negative size is
/// EC2's InvalidParameterValue, not a parse error.
#[test]
fn describe_pages_and_negative_sizes_are_refused() {
    let lab = Lab::start();
    let mut ids: Vec<String> = (0..7).map(|_| lab.new_volume(&["--size", "1"])).collect();
    ids.sort();
    let p1 = lab.ec2(&["describe-volumes", "--max-results", "5"]);
    let got: Vec<&str> = p1["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VolumeId"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..5].iter().map(String::as_str).collect::<Vec<_>>());
    let token = p1["NextToken"].as_str().expect("a NextToken").to_string();
    let p2 = lab.ec2(&[
        "describe-volumes",
        "--max-results",
        "5",
        "--next-token",
        &token,
    ]);
    let rest: Vec<&str> = p2["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VolumeId"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest,
        ids[5..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(p2.get("NextToken").is_none(), "{p2}");
    lab.ec2_fails(
        "InvalidParameterValue",
        &["describe-volumes", "--max-results", "4"],
    );
    lab.ec2_fails(
        "InvalidParameterCombination",
        &[
            "describe-volumes",
            "--volume-ids",
            &ids[0],
            "--max-results",
            "5",
        ],
    );
    let err = lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "create-volume",
            "--size",
            "-1",
            "--availability-zone",
            "us-east-1a",
        ],
    );
    assert!(err.contains("-1GiB"), "{err}");
    assert_eq!(
        lab.ec2(&["describe-volumes"])["Volumes"]
            .as_array()
            .unwrap()
            .len(),
        7,
        "the refused create made nothing"
    );
}
