//! Instances end to end: the volume service daemon (`atrest mount`, real FUSE), a real
//! kmsd, the built CLI. Encrypted volumes are decrypted only when their instance
//! starts; any refusal leaves the instance `stopped` with Client.InternalError and
//! nothing on disk changed.

mod ec2_support;

use std::io::{Read, Seek, SeekFrom, Write};

use ec2_support::{sha256_file, Lab};

fn write_pattern(path: &std::path::Path, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn read_back(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn encrypted_root_without_boot_profile_and_a_disabled_key() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let key = lab.key("alias/MyKMSKey");
    let vol = lab.new_volume(&[
        "--size",
        "1",
        "--encrypted",
        "--kms-key-id",
        "alias/MyKMSKey",
    ]);
    let r = lab.ec2(&[
        "run-instances",
        "--root-volume-id",
        &vol,
        "--placement",
        "AvailabilityZone=us-east-1a",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=NoBoot}]",
    ]);
    let i = &r["Instances"][0];
    assert_eq!(i["State"]["Name"], "pending");
    assert_eq!(i["State"]["Code"], 0);
    assert_eq!(i["RootDeviceName"], "/dev/xvda");
    assert_eq!(i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"], vol.as_str());
    let id = i["InstanceId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    let served = lab.served_path(&id, "xvda");
    let pattern: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    write_pattern(&served, 4096 * 3 + 100, &pattern);
    assert_eq!(read_back(&served, 4096 * 3 + 100, pattern.len()), pattern);
    // Only ciphertext in the image: the written range holds data, none of it the pattern.
    let payload = atrest::volume::VolumeImage::read_header(&lab.image_path(&vol))
        .unwrap()
        .payload_offset();
    let stored = read_back(
        &lab.image_path(&vol),
        payload + 4096 * 3,
        pattern.len() + 4096,
    );
    assert!(
        stored.iter().any(|b| *b != 0),
        "the write reached the image"
    );
    for at in [0usize, 4096, 300_000, (1 << 20) - 64] {
        let needle = &pattern[at..at + 64];
        assert!(
            !stored.windows(64).any(|w| w == needle),
            "plaintext at {at} reached the image"
        );
    }

    let stop = lab.ec2(&["stop-instances", "--instance-ids", &id]);
    assert_eq!(
        stop["StoppingInstances"][0]["PreviousState"]["Name"],
        "running"
    );
    assert_eq!(
        stop["StoppingInstances"][0]["CurrentState"]["Name"],
        "stopping"
    );
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    assert!(!served.exists(), "the file is gone when the instance stops");
    let d = lab.instance(&id);
    assert!(d["StateTransitionReason"]
        .as_str()
        .unwrap()
        .starts_with("User initiated ("));

    // Disabled key: pending -> stopped, Client.InternalError, nothing changed on disk.
    let before = sha256_file(&lab.image_path(&vol));
    lab.disable_key(&key);
    let start = lab.ec2(&["start-instances", "--instance-ids", &id]);
    assert_eq!(
        start["StartingInstances"][0]["CurrentState"]["Name"],
        "pending"
    );
    assert_eq!(
        start["StartingInstances"][0]["PreviousState"]["Name"],
        "stopped"
    );
    let out = lab.run(&["ec2", "wait", "instance-running", "--instance-ids", &id]);
    assert!(
        !out.status.success(),
        "the waiter must fail: the instance stops"
    );
    lab.wait_state(&id, "stopped", 30);
    let d = lab.instance(&id);
    assert_eq!(d["StateReason"]["Code"], "Client.InternalError");
    assert_eq!(
        d["StateReason"]["Message"],
        "Client.InternalError: Client error on launch"
    );
    assert!(!served.exists());
    assert_eq!(
        sha256_file(&lab.image_path(&vol)),
        before,
        "nothing on disk changed"
    );

    // Re-enabled: it starts, and the data is still there.
    lab.enable_key(&key);
    lab.ec2(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert_eq!(read_back(&served, 4096 * 3 + 100, pattern.len()), pattern);
    assert!(lab.instance(&id).get("StateReason").is_none());

    // Terminate: the root (an existing volume) is detached, not deleted.
    lab.ec2(&["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 60);
    assert_eq!(lab.volume(&vol)["State"], "available");
    lab.stop_daemon();
}

#[test]
fn instance_rules() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let root = lab.new_volume(&["--size", "1"]);
    let data = lab.new_volume(&["--size", "1"]);
    let other_zone = {
        let v = lab.ec2(&[
            "create-volume",
            "--size",
            "1",
            "--availability-zone",
            "us-east-1b",
        ]);
        v["VolumeId"].as_str().unwrap().to_string()
    };
    let r = lab.ec2(&["run-instances", "--root-volume-id", &root]);
    let id = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);

    lab.ec2_fails(
        "InvalidVolume.ZoneMismatch",
        &[
            "attach-volume",
            "--volume-id",
            &other_zone,
            "--instance-id",
            &id,
            "--device",
            "/dev/sdf",
        ],
    );
    lab.ec2_fails(
        "VolumeInUse",
        &[
            "attach-volume",
            "--volume-id",
            &root,
            "--instance-id",
            &id,
            "--device",
            "/dev/sdf",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "attach-volume",
            "--volume-id",
            &data,
            "--instance-id",
            &id,
            "--device",
            "/dev/xvda",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "attach-volume",
            "--volume-id",
            &data,
            "--instance-id",
            &id,
            "--device",
            "/dev/hdz",
        ],
    );
    lab.ec2_fails(
        "InvalidInstanceID.NotFound",
        &[
            "attach-volume",
            "--volume-id",
            &data,
            "--instance-id",
            "i-0123456789abcdef0",
            "--device",
            "/dev/sdf",
        ],
    );
    lab.ec2_fails("IncorrectState", &["detach-volume", "--volume-id", &root]);
    lab.ec2_fails("VolumeInUse", &["delete-volume", "--volume-id", &root]);
    lab.ec2_fails("IncorrectState", &["create-snapshot", "--volume-id", &root]);

    // Hot attach of a data volume to the running instance: it is served at once.
    let a = lab.ec2(&[
        "attach-volume",
        "--volume-id",
        &data,
        "--instance-id",
        &id,
        "--device",
        "/dev/sdf",
    ]);
    assert_eq!(a["State"], "attaching");
    assert!(lab.served_path(&id, "xvdf").exists());
    assert_eq!(lab.volume(&data)["Attachments"][0]["State"], "attached");
    let third = lab.new_volume(&["--size", "1"]);
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "attach-volume",
            "--volume-id",
            &third,
            "--instance-id",
            &id,
            "--device",
            "/dev/xvdf",
        ],
    );
    let d = lab.ec2(&["detach-volume", "--volume-id", &data]);
    assert_eq!(d["State"], "detaching");
    assert!(!lab.served_path(&id, "xvdf").exists());
    assert_eq!(lab.volume(&data)["State"], "available");

    // Starting a running instance changes nothing.
    let s = lab.ec2(&["start-instances", "--instance-ids", &id]);
    assert_eq!(s["StartingInstances"][0]["CurrentState"]["Name"], "running");

    // Stopped: the root may be detached; then start is refused.
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    lab.ec2(&["detach-volume", "--volume-id", &root, "--instance-id", &id]);
    let err = lab.ec2_fails(
        "InvalidParameterValue",
        &["start-instances", "--instance-ids", &id],
    );
    assert!(err.contains("/dev/xvda"), "{err}");
    assert_eq!(lab.state_of(&id), "stopped");
    lab.ec2_fails(
        "InvalidInstanceID.NotFound",
        &["start-instances", "--instance-ids", "i-0123456789abcdef0"],
    );
    lab.ec2_fails(
        "InvalidInstanceID.Malformed",
        &["stop-instances", "--instance-ids", "i-xyz"],
    );

    // Filters on describe-instances.
    let f = lab.ec2(&[
        "describe-instances",
        "--filters",
        "Name=instance-state-name,Values=stopped",
    ]);
    assert_eq!(f["Reservations"].as_array().unwrap().len(), 1);
    let f = lab.ec2(&[
        "describe-instances",
        "--filters",
        "Name=instance-state-name,Values=running",
    ]);
    assert_eq!(f["Reservations"].as_array().unwrap().len(), 0);
    lab.ec2(&["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 30);
    lab.ec2_fails(
        "IncorrectInstanceState",
        &["start-instances", "--instance-ids", &id],
    );
    lab.stop_daemon();
}

#[test]
fn local_attach_loop_detach_and_restart() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let key = lab.key("alias/dev");
    let vol = lab.new_volume(&["--size", "1", "--encrypted", "--kms-key-id", "alias/dev"]);
    let out = lab.run_ok(&["attach", &vol]);
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(path, lab.served_path("local", "xvdf"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 30);
    write_pattern(&path, 0, b"hello from the dev box");
    assert_eq!(lab.volume(&vol)["Attachments"][0]["InstanceId"], "local");
    lab.ec2_fails("VolumeInUse", &["delete-volume", "--volume-id", &vol]);

    // A daemon restart serves it again (a new Decrypt).
    lab.stop_daemon();
    assert!(!path.exists());
    lab.start_daemon();
    lab.until(10, "the local volume to be served again", || path.exists());
    assert_eq!(read_back(&path, 0, 22), b"hello from the dev box");

    lab.run_ok(&["detach", &vol]);
    assert!(!path.exists());

    // --loop binds a loop device; detach releases it.
    let out = lab.run_ok(&["attach", "--loop", &vol]);
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    let mut buf = [0u8; 22];
    std::fs::File::open(&dev)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    assert_eq!(&buf, b"hello from the dev box");
    lab.run_ok(&["detach", &vol]);
    let lo = std::process::Command::new("losetup")
        .args(["-j"])
        .arg(lab.served_path("local", "xvdf"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&lo.stdout).trim().is_empty(),
        "loop device released"
    );

    // A disabled key: attach refused with kmsd's error, no file appears.
    lab.disable_key(&key);
    let out = lab.run(&["attach", &vol]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(DisabledException)"));
    assert!(!lab.served_path("local", "xvdf").exists());
    assert_eq!(lab.volume(&vol)["State"], "available");
    // Enabled again: attach works (a new Decrypt), the data is intact.
    lab.enable_key(&key);
    let out = lab.run_ok(&["attach", &vol]);
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(read_back(&path, 0, 22), b"hello from the dev box");
    assert_eq!(lab.volume(&vol)["State"], "in-use");
    lab.run_ok(&["detach", &vol]);
    lab.stop_daemon();
}

#[test]
fn a_crashed_daemon_leaves_instances_stopped() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let (key, root) = lab.encrypted_volume("alias/CrashKey");
    let id = lab.run_on_root(&root, None);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    let grants = |lab: &Lab| lab.ok(&["kms", "list-grants", "--key-id", &key])["Grants"].clone();
    assert_eq!(grants(&lab).as_array().unwrap().len(), 1);
    lab.kill_daemon();
    // The FUSE mount of the dead daemon is stale; the new one recovers it, and retires
    // the grant the killed one could not.
    lab.start_daemon();
    // Served requests on ec2.sock start after the clean-up.
    lab.ec2(&["describe-instances"]);
    assert_eq!(grants(&lab), serde_json::json!([]), "{}", lab.daemon_log());
    assert_eq!(lab.state_of(&id), "stopped");
    assert_eq!(
        lab.instance(&id)["StateReason"]["Code"],
        "Server.InternalError"
    );
    lab.ec2(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    lab.stop_daemon();
}

/// The newest CreateGrant record in the trail.
fn last_create_grant(lab: &Lab) -> serde_json::Value {
    let trail = lab.ok(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=CreateGrant",
        "--max-results",
        "1",
    ]);
    serde_json::from_str(trail["Events"][0]["CloudTrailEvent"].as_str().unwrap()).unwrap()
}

/// Issue 3, scenario 2, through the volume service itself: a user with full EC2 rights
/// and no kms:CreateGrant starts an instance whose root is encrypted. EC2's CreateGrant
/// on its behalf is refused (AccessDeniedException, in the trail, invoked by EC2), the
/// instance goes pending -> stopped with Client.InternalError; an IAM policy allowing
/// kms:CreateGrant for AWS resources fixes it.
#[test]
fn a_user_without_kms_create_grant_cannot_start_an_encrypted_instance() {
    const OPERATOR: &str = "arn:aws:iam::111122223333:user/Ec2Operator";
    let mut lab = Lab::start();
    lab.start_daemon();
    let (key, vol) = lab.encrypted_volume("alias/MyKMSKey");
    let id = lab.run_on_root(&vol, None);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);

    let as_operator = |args: &[&str]| {
        let mut all = vec!["--as", OPERATOR, "ec2"];
        all.extend_from_slice(args);
        lab.ok(&all)
    };
    let start = as_operator(&["start-instances", "--instance-ids", &id]);
    assert_eq!(
        start["StartingInstances"][0]["CurrentState"]["Name"],
        "pending"
    );
    lab.wait_state(&id, "stopped", 60);
    let i = lab.instance(&id);
    assert_eq!(i["StateReason"]["Code"], "Client.InternalError", "{i}");

    // The trail: CreateGrant by Ec2Operator, invoked by EC2, for the instance, refused.
    let last = last_create_grant(&lab);
    assert_eq!(last["errorCode"], "AccessDeniedException", "{last}");
    assert_eq!(last["userIdentity"]["arn"], OPERATOR, "{last}");
    assert_eq!(last["userIdentity"]["invokedBy"], "ec2.amazonaws.com");
    assert_eq!(
        last["requestParameters"]["granteePrincipal"],
        format!("111122223333:aws:ec2-infrastructure:{id}")
    );
    let msg = last["errorMessage"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "User: {OPERATOR} is not authorized to perform: kms:CreateGrant on resource: {key}"
        )),
        "{msg}"
    );

    // The fix: kms:CreateGrant when kms:GrantIsForAWSResource is true.
    let dir = lab.path().join("iam/111122223333/users/Ec2Operator");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("AllowCreateGrantForAWSResources.json"),
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "kms:CreateGrant", "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}]}"#,
    )
    .unwrap();
    lab.ok(&["kms", "reload-config"]);
    as_operator(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert!(lab.served_path(&id, "xvda").exists());
    // The running instance holds one grant, for its infrastructure principal.
    let grants = lab.ok(&["kms", "list-grants", "--key-id", &key]);
    assert_eq!(grants["Grants"].as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(
        grants["Grants"][0]["GranteePrincipal"],
        format!("111122223333:aws:ec2-infrastructure:{id}")
    );
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    lab.stop_daemon();
}

/// Issue 3, scenario 3, through the volume service: an instance in account
/// 444455556666 started on a volume encrypted with a key of 111122223333. Refused until
/// the key policy names the other account (for use and for grants to AWS resources)
/// and that account's IAM policy lets UserA use the key; then the grant goes to the
/// other account's EC2 identity and the instance runs.
#[test]
fn an_instance_in_another_account_needs_both_key_policy_and_iam() {
    const USER_A: &str = "arn:aws:iam::444455556666:user/UserA";
    let mut lab = Lab::start();
    lab.start_daemon();
    let (key, vol) = lab.encrypted_volume("alias/MyKMSKey");
    let as_user_a = |args: &[&str]| {
        let mut all = vec!["--as", USER_A, "ec2"];
        all.extend_from_slice(args);
        lab.ok(&all)
    };
    let id = lab.run_on_root(&vol, Some(USER_A));
    let grantee = format!("444455556666:aws:ec2-infrastructure:{id}");
    let refused_with = |why: &str| {
        lab.wait_state(&id, "stopped", 60);
        let i = lab.instance(&id);
        assert_eq!(i["StateReason"]["Code"], "Client.InternalError", "{i}");
        let e = last_create_grant(&lab);
        assert_eq!(e["errorCode"], "AccessDeniedException", "{e}");
        assert_eq!(e["userIdentity"]["arn"], USER_A, "{e}");
        assert_eq!(e["requestParameters"]["granteePrincipal"], grantee.as_str());
        let msg = e["errorMessage"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!(
                "User: {USER_A} is not authorized to perform: kms:CreateGrant on resource: {key} because {why}"
            )),
            "{msg}"
        );
    };
    // The key policy does not name account 444455556666.
    refused_with("no resource-based policy allows the kms:CreateGrant action");

    // The key's administrator adds the other account, as the console's "Other AWS accounts".
    lab.share_key_with_account(&key, "444455556666");
    as_user_a(&["start-instances", "--instance-ids", &id]);
    // Now account 444455556666's own IAM policy is what is missing.
    refused_with("no identity-based policy allows the kms:CreateGrant action");

    let dir = lab.path().join("iam/444455556666/users/UserA");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("UseLabKey.json"),
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"],
                 "Resource": key},
                {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": key,
                 "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    lab.ok(&["kms", "reload-config"]);
    as_user_a(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert!(lab.served_path(&id, "xvda").exists());
    let grants = lab.ok(&["kms", "list-grants", "--key-id", &key]);
    assert_eq!(grants["Grants"][0]["GranteePrincipal"], grantee.as_str());
    as_user_a(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    lab.stop_daemon();
}

/// A detach that released the loop device but found the file still open fails; by the
/// time it is retried, `/dev/loopN` may belong to someone else, and the retry must leave
/// it alone. While the first detach waits for the file, the service still answers.
#[test]
fn a_retried_detach_never_releases_someone_elses_loop_device() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let vol = lab.new_volume(&["--size", "1"]);
    let out = lab.run_ok(&["attach", "--loop", &vol]);
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = lab.served_path("local", "xvdf");
    let held = std::fs::File::open(&path).unwrap();

    let detach = {
        let mut c = lab.cmd();
        c.args(["detach", &vol]);
        std::thread::spawn(move || c.output().unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let t0 = std::time::Instant::now();
    let mut client =
        atrest::ec2::client::Ec2Client::connect(&lab.path().join("ec2.sock"), None).unwrap();
    client.send(atrest::ec2::api::StatusRequest {}).unwrap();
    let waited = t0.elapsed();
    let out = detach.join().unwrap();
    assert!(
        waited < std::time::Duration::from_millis(1000),
        "status waited {waited:?} for a detach in progress"
    );
    assert!(!out.status.success(), "detach of an open file succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(VolumeInUse)"), "{err}");

    // Someone else takes the released device.
    let other = lab.path().join("other.img");
    std::fs::write(&other, vec![0u8; 1 << 20]).unwrap();
    let st = std::process::Command::new("losetup")
        .arg(&dev)
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success(), "losetup {dev} {}", other.display());
    let theirs = atrest::loopdev::LoopDevice::from_path(std::path::Path::new(&dev)).unwrap();
    drop(held);
    let out = lab.run(&["detach", &vol]);
    let still = theirs.backing_file();
    let _ = theirs.detach();
    assert!(
        out.status.success(),
        "retried detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        still.as_deref(),
        Some(other.as_path()),
        "the retried detach released {dev}, which was someone else's"
    );
    assert!(!path.exists());
    lab.stop_daemon();
}

/// A key disabled while its volume is attached: the volume keeps working (as in AWS)
/// and `atrest status` says so, per served volume; enabled again, the notice goes.
#[test]
fn atrest_status_says_when_an_attached_volumes_key_is_disabled() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let (key, vol) = lab.encrypted_volume("alias/status");
    lab.run_ok(&["attach", &vol]);
    let path = lab.served_path("local", "xvdf");
    // `atrest status` exits 3 here (no object endpoint): only its output matters.
    let served = |lab: &Lab| {
        let out = lab.run(&["status"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["VolumeService"]["Served"][0].clone(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (s, _) = served(&lab);
    assert_eq!(s["VolumeId"], vol.as_str());
    assert_eq!(s["KeyState"], "Enabled");
    assert!(s["Notice"].is_null(), "{s}");

    // At once: status reads the trail's new events before it answers.
    lab.disable_key(&key);
    let (s, stderr) = served(&lab);
    assert_eq!(s["KeyState"], "Disabled", "{s}");
    let notice = s["Notice"].as_str().unwrap_or_default();
    assert!(
        notice.contains("the KMS key is Disabled")
            && notice.contains("keeps working until it is detached"),
        "{s}"
    );
    assert!(
        stderr.contains(&format!("{vol}: the KMS key is Disabled")),
        "{stderr}"
    );
    write_pattern(&path, 8192, b"written while the key is disabled");
    assert_eq!(
        read_back(&path, 8192, 33),
        b"written while the key is disabled"
    );

    lab.enable_key(&key);
    let (s, _) = served(&lab);
    assert_eq!(s["KeyState"], "Enabled", "{s}");
    assert!(s["Notice"].is_null(), "{s}");
    lab.stop_daemon();
}

/// `atrest detach` of a volume whose loop device carries a mounted ext4 is refused (clear
/// error, non-zero exit, still attached and served); `--force` detaches it anyway, and the
/// loop device goes once the file system is unmounted.
#[test]
fn detach_of_a_mounted_loop_device_is_refused_until_forced() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let (_key, vol) = lab.encrypted_volume("alias/mounted");
    let out = lab.run_ok(&["attach", "--loop", &vol]);
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = lab.served_path("local", "xvdf");
    let sh = |cmd: &str, args: &[&str]| {
        let o = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh("mkfs.ext4", &["-q", "-E", "nodiscard", &dev]);
    let fs = lab.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    sh("mount", &[&dev, fs.to_str().unwrap()]);
    std::fs::write(fs.join("f"), b"data").unwrap();

    let out = lab.run(&["detach", &vol]);
    let err = String::from_utf8_lossy(&out.stderr);
    let refused = !out.status.success()
        && err.contains("(VolumeInUse)")
        && err.contains(&format!("{dev} is mounted or held"))
        && err.contains("--force");
    let still = path.exists() && lab.volume(&vol)["State"] == "in-use";
    if !refused || !still {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&fs)
            .status();
        panic!(
            "detach of a mounted loop device: exit {:?}, {err}; still served: {still}",
            out.status.code()
        );
    }

    let out = lab.run(&["detach", "--force", &vol]);
    let forced = out.status.success();
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&fs)
        .status();
    assert!(
        forced,
        "detach --force: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!path.exists());
    assert_eq!(lab.volume(&vol)["State"], "available");
    let lo = atrest::loopdev::LoopDevice::from_path(std::path::Path::new(&dev)).unwrap();
    lab.until(10, "the loop device to be released after umount", || {
        lo.backing_file().as_deref() != Some(path.as_path())
    });
    lab.stop_daemon();
}
