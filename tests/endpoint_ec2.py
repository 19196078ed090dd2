"""boto3 against atrest's EC2 over the AWS endpoint (driven by tests/endpoint_ec2.rs).

    python endpoint_ec2.py CASE [ARGS...]

Reads the endpoint and credentials from the environment `atrest env` prints, runs the
case with boto3's `ec2` client at its default settings (waiters included) and prints one
JSON object the Rust test asserts on.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError, WaiterError

URL = os.environ["AWS_ENDPOINT_URL"]
REGION = os.environ["AWS_DEFAULT_REGION"]
KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]


def code_of(fn):
    try:
        fn()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]


def raw(body, sign=True, secret=SECRET):
    """An EC2 Query request signed by botocore's own SigV4 signer, sent as is; the
    error as the wire has it."""
    if sign:
        req = botocore.awsrequest.AWSRequest(
            method="POST",
            url=URL + "/",
            data=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    else:
        # Unsigned, the Action in the query string: the endpoint routes it without
        # reading a body.
        req = botocore.awsrequest.AWSRequest(method="GET", url=URL + "/?" + body)
    if sign:
        creds = botocore.credentials.Credentials(KEY_ID, secret)
        botocore.auth.SigV4Auth(creds, "ec2", REGION).add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=prepared.body, method=prepared.method)
    for k, v in prepared.headers.items():
        r.add_header(k, v)
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    root = ET.fromstring(text)
    err = root.find("Errors/Error")
    return {
        "status": status,
        "shape": "Response/Errors/Error" if root.tag == "Response" and err is not None else root.tag,
        "code": err.findtext("Code") if err is not None else None,
        "message": err.findtext("Message") if err is not None else None,
        "request_id": root.findtext("RequestID") or "",
    }


def case_raw():
    v = "&Version=2016-11-15"
    return {
        "unknown_action": raw("Action=DescribeNothing" + v),
        "missing_parameter": raw("Action=DeleteVolume" + v),
        "bad_boolean": raw("Action=DescribeVolumes&DryRun=maybe" + v),
        "filter_without_name": raw("Action=DescribeVolumes&Filter.1.Value.1=x" + v),
        "unsigned": raw("Action=DescribeVolumes" + v, sign=False),
        "wrong_secret": raw("Action=DescribeVolumes" + v, secret="x" * 40),
    }


def state(ec2, instance_id):
    r = ec2.describe_instances(InstanceIds=[instance_id])
    return r["Reservations"][0]["Instances"][0]["State"]["Name"]


def case_lifecycle(instance_id, root):
    ec2 = boto3.client("ec2")
    out = {}
    started = ec2.start_instances(InstanceIds=[instance_id])
    out["started"] = started["StartingInstances"][0]["CurrentState"]["Name"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id])
    out["running"] = state(ec2, instance_id)
    # The console (base64 on the wire, decoded by botocore) shows the second boot.
    out["console"] = False
    import time

    deadline = time.time() + 180
    while time.time() < deadline:
        text = ec2.get_console_output(InstanceId=instance_id).get("Output", "")
        if ("atrest-guest: booted from volume " + root) in text:
            out["console"] = True
            break
        time.sleep(1)
    ec2.stop_instances(InstanceIds=[instance_id])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance_id])
    out["stopped"] = state(ec2, instance_id)
    ec2.terminate_instances(InstanceIds=[instance_id])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance_id])
    out["terminated"] = state(ec2, instance_id)
    out["start_terminated"] = code_of(lambda: ec2.start_instances(InstanceIds=[instance_id]))
    # The root volume goes with the instance (DeleteOnTermination), or is left available.
    try:
        v = ec2.describe_volumes(VolumeIds=[root])["Volumes"]
        out["volume_available_or_gone"] = v[0]["State"] in ("available", "deleting", "deleted")
    except ClientError as e:
        out["volume_available_or_gone"] = e.response["Error"]["Code"] == "InvalidVolume.NotFound"
    return out


def case_running_fails(instance_id):
    ec2 = boto3.client("ec2")
    try:
        ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id])
        return {"waiter_error": None}
    except WaiterError as e:
        return {"waiter_error": str(e)}


def case_paging(key_arn, boot_dir):
    """More volumes, snapshots, images and instances than a page (boto3 making them),
    then every describe through boto3's paginator at 5 a page: the same items, in the
    same order, as one unpaged call, over at least two pages, none over 5."""
    ec2 = boto3.client("ec2")
    quick = {"Delay": 1, "MaxAttempts": 120}
    n = 6
    vols = [
        ec2.create_volume(Size=1, AvailabilityZone="us-east-1a", Encrypted=True, KmsKeyId=key_arn)[
            "VolumeId"
        ]
        for _ in range(n)
    ]
    ec2.get_waiter("volume_available").wait(VolumeIds=vols, WaiterConfig=quick)
    snaps = [ec2.create_snapshot(VolumeId=vols[0])["SnapshotId"] for _ in range(n)]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=snaps, WaiterConfig=quick)
    amis = [
        ec2.register_image(
            Name="page-%d" % i,
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": s}}],
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "atrest:boot-image", "Value": boot_dir}]}
            ],
        )["ImageId"]
        for i, s in enumerate(snaps)
    ]
    # Launches that end at once: the key is disabled (no guest boots).
    boto3.client("kms").disable_key(KeyId=key_arn)
    # One instance a call (atrest launches one per RunInstances).
    ids = [
        ec2.run_instances(
            ImageId=amis[0],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            Placement={"AvailabilityZone": "us-east-1a"},
        )["Instances"][0]["InstanceId"]
        for _ in range(n)
    ]
    # (The instance_terminated waiter fails on `pending`, so poll the states.)
    for _ in range(120):
        states = [
            i["State"]["Name"]
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
        ]
        if states == ["terminated"] * n:
            break
        time.sleep(1)

    def instances(page):
        return [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]

    out = {"made": {"volumes": vols, "snapshots": snaps, "images": amis, "instances": ids}}
    for op, kwargs, items in [
        ("describe_volumes", {}, lambda p: [v["VolumeId"] for v in p["Volumes"]]),
        ("describe_snapshots", {"OwnerIds": ["self"]}, lambda p: [s["SnapshotId"] for s in p["Snapshots"]]),
        ("describe_images", {"Owners": ["self"]}, lambda p: [i["ImageId"] for i in p["Images"]]),
        ("describe_instances", {}, instances),
    ]:
        whole = items(getattr(ec2, op)(**kwargs))
        pages = [
            items(p)
            for p in ec2.get_paginator(op).paginate(PaginationConfig={"PageSize": 5}, **kwargs)
        ]
        out[op] = {
            "whole": whole,
            "paged": [x for p in pages for x in p],
            "page_sizes": [len(p) for p in pages],
        }
    return out


def case_repeat(count):
    """COUNT DescribeVolumes in a row from one client (the endpoint's service time per
    request, without a CLI's start-up between requests)."""
    ec2 = boto3.client("ec2")
    t = time.monotonic()
    for _ in range(int(count)):
        ec2.describe_volumes()
    return {"calls": int(count), "seconds": time.monotonic() - t}


CASES = {
    "raw": case_raw,
    "repeat": case_repeat,
    "lifecycle": case_lifecycle,
    "running_fails": case_running_fails,
    "paging": case_paging,
}

if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]](*sys.argv[2:])))
