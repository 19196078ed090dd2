//! The lab's Tasks 6 and 7 with a real machine behind them: an instance booting a real
//! guest from an unencrypted root; stop, snapshot, encrypted copy with alias/MyKMSKey,
//! tag, swap the root at /dev/xvda; the guest boots from the encrypted root and prints
//! the marker it read from it. Disable the key: start fails (pending -> stopped,
//! Client.InternalError), nothing on disk changes, and the trail shows DisableKey,
//! StartInstances, then a refused CreateGrant for the instance. Re-enable: it boots
//! again, and every instance grant is retired once it stops.

mod ec2_support;

use ec2_support::{guest_dir, root_image, sha256_file, Lab};

const MARKER: &str = "task 6 marker: data on the root volume";

fn console(lab: &Lab, id: &str) -> String {
    lab.ec2(&["get-console-output", "--instance-id", id])["Output"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn lab_tasks_6_and_7() {
    let guest = guest_dir();
    let mut lab = Lab::start();
    lab.start_daemon();
    let key = lab.key("alias/MyKMSKey");
    let tmp = tempfile::tempdir().unwrap();
    let image = root_image(tmp.path(), MARKER);

    // The starting architecture: LabInstance on an unencrypted root.
    let r = lab.ec2(&[
        "run-instances",
        "--image-id",
        image.to_str().unwrap(),
        "--boot-image",
        guest.to_str().unwrap(),
        "--placement",
        "AvailabilityZone=us-east-1a",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=LabInstance}]",
    ]);
    let id = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let old_root = r["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert!(console(&lab, &id).contains(&format!("booted from volume {old_root} marker={MARKER}")));
    assert_eq!(lab.volume(&old_root)["Encrypted"], false);

    // Task 6: stop, snapshot the root, encrypted volume from it in the same zone.
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    let s = lab.ec2(&[
        "create-snapshot",
        "--volume-id",
        &old_root,
        "--description",
        "Unencrypted root",
    ]);
    let snap = s["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &snap]);
    let v = lab.ec2(&[
        "create-volume",
        "--snapshot-id",
        &snap,
        "--availability-zone",
        "us-east-1a",
        "--encrypted",
        "--kms-key-id",
        "alias/MyKMSKey",
    ]);
    let new_root = v["VolumeId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "volume-available", "--volume-ids", &new_root]);
    lab.ec2(&[
        "create-tags",
        "--resources",
        &old_root,
        "--tags",
        "Key=Name,Value=Unencrypted Root",
    ]);
    lab.ec2(&[
        "create-tags",
        "--resources",
        &new_root,
        "--tags",
        "Key=Name,Value=Encrypted Root",
    ]);

    // Swap the root at /dev/xvda.
    lab.ec2(&[
        "detach-volume",
        "--volume-id",
        &old_root,
        "--instance-id",
        &id,
    ]);
    assert_eq!(lab.volume(&old_root)["State"], "available");
    lab.ec2(&[
        "attach-volume",
        "--volume-id",
        &new_root,
        "--instance-id",
        &id,
        "--device",
        "/dev/xvda",
    ]);
    let d = lab.ec2(&[
        "describe-volumes",
        "--filters",
        "Name=tag:Name,Values=Encrypted Root",
    ]);
    let nv = &d["Volumes"][0];
    assert_eq!(nv["VolumeId"], new_root.as_str());
    assert_eq!(nv["Encrypted"], true);
    assert_eq!(nv["KmsKeyId"], key.as_str());
    assert_eq!(nv["Attachments"][0]["Device"], "/dev/xvda");
    assert_eq!(nv["Attachments"][0]["InstanceId"], id.as_str());
    let i = lab.instance(&id);
    assert_eq!(
        i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"],
        new_root.as_str()
    );

    // Start: the guest boots from the encrypted root and prints the marker it read there.
    lab.ec2(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert!(
        console(&lab, &id).contains(&format!("booted from volume {new_root} marker={MARKER}")),
        "{}",
        console(&lab, &id)
    );

    // Task 7: disable the key, stop, start: pending -> stopped, Client.InternalError.
    lab.disable_key(&key);
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    let before = sha256_file(&lab.image_path(&new_root));
    let start = lab.ec2(&["start-instances", "--instance-ids", &id]);
    assert_eq!(
        start["StartingInstances"][0]["CurrentState"]["Name"],
        "pending"
    );
    assert_eq!(start["StartingInstances"][0]["CurrentState"]["Code"], 0);
    lab.wait_state(&id, "stopped", 60);
    let i = lab.instance(&id);
    assert_eq!(i["State"]["Code"], 80);
    assert_eq!(i["StateReason"]["Code"], "Client.InternalError");
    assert_eq!(
        i["StateReason"]["Message"],
        "Client.InternalError: Client error on launch"
    );
    assert_eq!(
        sha256_file(&lab.image_path(&new_root)),
        before,
        "nothing on disk changed"
    );
    assert!(!lab.served_path(&id, "xvda").exists());
    check_task7_trail(&lab, &id, &key);

    // Re-enable: it boots again.
    lab.enable_key(&key);
    lab.ec2(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    assert!(console(&lab, &id).contains(&format!("booted from volume {new_root} marker={MARKER}")));
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    // A stopped instance holds no grant: each launch's grant was retired.
    let grants = lab.ok(&["kms", "list-grants", "--key-id", &key]);
    assert_eq!(grants["Grants"], serde_json::json!([]), "{grants}");
    lab.stop_daemon();
}

/// The trail, oldest first, has DisableKey on the key, then StartInstances of the
/// instance, then a CreateGrant refused with DisabledException, made by EC2 on the
/// caller's behalf for the instance's infrastructure principal.
fn check_task7_trail(lab: &Lab, instance: &str, key: &str) {
    let out = lab.ok(&["cloudtrail", "lookup-events", "--max-results", "50"]);
    let mut events: Vec<serde_json::Value> = out["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap())
        .collect();
    events.reverse();
    let names: Vec<String> = events
        .iter()
        .map(|e| format!("{}:{}", e["eventName"], e["errorCode"]))
        .collect();
    let at = |from: usize, f: &dyn Fn(&serde_json::Value) -> bool| {
        events[from..]
            .iter()
            .position(f)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("trail order wrong: {names:?}"))
    };
    let disable = at(0, &|e| {
        e["eventName"] == "DisableKey" && e["errorCode"].is_null() && e.to_string().contains(key)
    });
    let start = at(disable, &|e| {
        e["eventName"] == "StartInstances" && e.to_string().contains(instance)
    });
    let grant = at(start, &|e| e["eventName"] == "CreateGrant");
    let g = &events[grant];
    assert_eq!(g["errorCode"], "DisabledException", "{g}");
    assert_eq!(g["eventSource"], "kms.amazonaws.com", "{g}");
    assert_eq!(g["userIdentity"]["invokedBy"], "ec2.amazonaws.com", "{g}");
    let grantee = g["requestParameters"]["granteePrincipal"]
        .as_str()
        .unwrap_or("");
    assert!(
        grantee.ends_with(&format!(":aws:ec2-infrastructure:{instance}")),
        "{g}"
    );
}
