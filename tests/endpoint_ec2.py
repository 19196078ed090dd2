"""boto3 against atrest's EC2 over the AWS endpoint (driven by tests/endpoint_ec2.rs).

    python endpoint_ec2.py CASE [ARGS...]

Reads the endpoint and credentials from the environment `atrest env` prints, runs the
case with boto3's `ec2` client at its default settings (waiters included) and prints one
JSON object the Rust test asserts on.
"""

import json
import os
import sys
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


CASES = {"raw": case_raw, "lifecycle": case_lifecycle, "running_fails": case_running_fails}

if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]](*sys.argv[2:])))
