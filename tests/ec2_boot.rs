//! Instances that boot a real guest under qemu from a volume served by the FUSE mount
//! through a loop device: run-instances from a local image, running when the guest's
//! line appears, console output, stop (qemu exits), start again, terminate.

mod ec2_support;

use ec2_support::{guest_dir, root_image, Lab};

#[test]
fn run_boot_stop_start_terminate_from_a_local_image() {
    let guest = guest_dir();
    let mut lab = Lab::start();
    lab.start_daemon();
    let tmp = tempfile::tempdir().unwrap();
    let root = root_image(tmp.path(), "lab marker 42");
    let r = lab.ec2(&[
        "run-instances",
        "--image-id",
        root.to_str().unwrap(),
        "--boot-image",
        guest.to_str().unwrap(),
        "--placement",
        "AvailabilityZone=us-east-1a",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=LabInstance}]",
        "ResourceType=volume,Tags=[{Key=Name,Value=LabRoot}]",
    ]);
    let inst = &r["Instances"][0];
    assert_eq!(inst["State"]["Name"], "pending");
    assert!(inst["ImageId"].as_str().unwrap().starts_with("ami-"));
    let id = inst["InstanceId"].as_str().unwrap().to_string();
    let root_vol = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(inst["BlockDeviceMappings"][0]["DeviceName"], "/dev/xvda");
    assert_eq!(
        inst["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"],
        true
    );
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    let console = lab.ec2(&["get-console-output", "--instance-id", &id]);
    let out = console["Output"].as_str().unwrap();
    assert!(
        out.contains(&format!(
            "atrest-guest: booted from volume {root_vol} marker=lab marker 42"
        )),
        "console: {out}"
    );
    let v = lab.volume(&root_vol);
    assert_eq!(v["Tags"][0]["Value"], "LabRoot");
    assert_eq!(v["Attachments"][0]["InstanceId"], id.as_str());
    let f = lab.ec2(&[
        "describe-instances",
        "--filters",
        "Name=tag:Name,Values=LabInstance",
    ]);
    assert_eq!(
        f["Reservations"][0]["Instances"][0]["State"]["Name"],
        "running"
    );

    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    let needle = format!("atrest.volume={root_vol}");
    let running_qemu = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains(&needle));
    assert!(!running_qemu, "qemu is gone after stop");
    assert!(!lab.served_path(&id, "xvda").exists());

    lab.ec2(&["start-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    let out = lab.ec2(&["get-console-output", "--instance-id", &id]);
    assert!(out["Output"]
        .as_str()
        .unwrap()
        .contains("marker=lab marker 42"));

    lab.ec2(&["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 60);
    lab.ec2_fails(
        "InvalidVolume.NotFound",
        &["describe-volumes", "--volume-ids", &root_vol],
    );
    assert!(
        !lab.image_path(&root_vol).exists(),
        "delete-on-termination root is gone"
    );
    lab.stop_daemon();
}

#[test]
fn a_garbage_root_ends_stopped_with_a_reason() {
    let guest = guest_dir();
    let mut lab = Lab::start();
    lab.start_daemon();
    // An empty (all-zero) volume as root: the initramfs cannot mount it.
    let vol = lab.new_volume(&["--size", "1"]);
    let r = lab.ec2(&[
        "run-instances",
        "--root-volume-id",
        &vol,
        "--boot-image",
        guest.to_str().unwrap(),
    ]);
    let id = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.wait_state(&id, "stopped", 120);
    let i = lab.instance(&id);
    assert_eq!(i["StateReason"]["Code"], "Server.InternalError");
    assert!(
        i["StateReason"]["Message"]
            .as_str()
            .unwrap()
            .contains("boot"),
        "{i}"
    );
    assert!(!lab.served_path(&id, "xvda").exists());
    assert_eq!(lab.volume(&vol)["Attachments"][0]["State"], "attached");
    lab.stop_daemon();
}
