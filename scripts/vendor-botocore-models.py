#!/usr/bin/env python3
"""Writes the trimmed botocore models the AWS endpoint's Query and EC2 Query codecs read
(src/endpoint/protocol/models/SERVICE.json), from the botocore pinned in the project venv:

    . scripts/lib/venv.sh && venv_install
    python3 scripts/vendor-botocore-models.py        # rewrites the three files

Kept per service: the metadata the codecs use (protocol, apiVersion, xmlNamespace,
signingName), and for each operation listed in OPERATIONS below its input and output
shape, the output's resultWrapper, and every shape those reach with what the wire format
depends on (member shapes, locationName, queryName, flattened, xmlNamespace, required,
list members, map keys and values, timestampFormat, enums), and the operation's error
shapes with their wire code and HTTP status. Documentation is dropped. The
botocore version is recorded in each file.

An operation atrest serves over the Query protocol is one more name in OPERATIONS (then
rerun this script): the codecs are driven by the model and need no code per operation.
"""
import gzip
import json
import os
import sys

# The operations atrest's endpoint serves, per service (EC2: every operation of
# src/ec2/api's table that EC2 has; src/endpoint/services/ec2.rs checks the two agree).
OPERATIONS = {
    "sts": ["GetCallerIdentity", "AssumeRole"],
    "iam": [
        "CreateUser", "GetUser", "ListUsers", "DeleteUser",
        "CreateGroup", "GetGroup", "ListGroups", "DeleteGroup",
        "AddUserToGroup", "RemoveUserFromGroup", "ListGroupsForUser",
        "CreateRole", "GetRole", "ListRoles", "DeleteRole", "UpdateAssumeRolePolicy",
        "PutUserPolicy", "GetUserPolicy", "DeleteUserPolicy", "ListUserPolicies",
        "PutGroupPolicy", "GetGroupPolicy", "DeleteGroupPolicy", "ListGroupPolicies",
        "PutRolePolicy", "GetRolePolicy", "DeleteRolePolicy", "ListRolePolicies",
        "CreatePolicy", "GetPolicy", "GetPolicyVersion", "ListPolicies", "DeletePolicy",
        "AttachUserPolicy", "DetachUserPolicy", "ListAttachedUserPolicies",
        "AttachGroupPolicy", "DetachGroupPolicy", "ListAttachedGroupPolicies",
        "AttachRolePolicy", "DetachRolePolicy", "ListAttachedRolePolicies",
        "CreateAccessKey", "ListAccessKeys", "DeleteAccessKey", "UpdateAccessKey",
    ],
    "ec2": [
        "CreateVolume", "DescribeVolumes", "DeleteVolume", "CreateTags", "DeleteTags",
        "CreateSnapshot", "DescribeSnapshots", "DeleteSnapshot", "CopySnapshot",
        "RunInstances", "DescribeInstances", "StartInstances", "StopInstances",
        "TerminateInstances", "AttachVolume", "DetachVolume", "GetConsoleOutput",
        "RegisterImage", "DescribeImages", "DeregisterImage", "ModifyImageAttribute",
        "DescribeImageAttribute", "ModifySnapshotAttribute", "DescribeSnapshotAttribute",
        "CopyImage",
    ],
}

SHAPE_KEYS = ("type", "required", "flattened", "timestampFormat", "enum", "locationName",
              "xmlNamespace", "min", "max")
MEMBER_KEYS = ("shape", "locationName", "queryName", "flattened", "xmlNamespace",
               "xmlAttribute", "timestampFormat")


def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    with gzip.open(path + ".gz") as f:
        return json.load(f)


def ref(r):
    return {k: r[k] for k in MEMBER_KEYS if k in r}


def trim(service, names, root, version):
    data = os.path.join(root, "data", service)
    (api_version,) = sorted(os.listdir(data))[-1:]
    model = load(os.path.join(data, api_version, "service-2.json"))
    shapes = model["shapes"]
    kept = {}

    def keep(name):
        if name in kept:
            return
        s = shapes[name]
        t = {k: s[k] for k in SHAPE_KEYS if k in s}
        kept[name] = t
        if s["type"] == "structure":
            t["members"] = {m: ref(v) for m, v in s["members"].items()}
            for v in s["members"].values():
                keep(v["shape"])
        elif s["type"] == "list":
            t["member"] = ref(s["member"])
            keep(s["member"]["shape"])
        elif s["type"] == "map":
            t["key"], t["value"] = ref(s["key"]), ref(s["value"])
            keep(s["key"]["shape"])
            keep(s["value"]["shape"])

    ops = {}
    for name in names:
        op = model["operations"][name]
        entry = {}
        if "input" in op:
            entry["input"] = op["input"]["shape"]
            keep(op["input"]["shape"])
        errors = []
        for e in op.get("errors", []):
            err = e["shape"]
            errors.append(err)
            if err not in kept:
                kept[err] = {"type": "structure", "error": shapes[err].get("error", {})}
        if errors:
            entry["errors"] = errors
        if "output" in op:
            entry["output"] = op["output"]["shape"]
            if "resultWrapper" in op["output"]:
                entry["resultWrapper"] = op["output"]["resultWrapper"]
            keep(op["output"]["shape"])
        ops[name] = entry
    meta = model["metadata"]
    return {
        "botocore": version,
        "source": f"botocore/data/{service}/{api_version}/service-2.json, trimmed by scripts/vendor-botocore-models.py",
        "metadata": {k: meta[k] for k in ("apiVersion", "protocol", "xmlNamespace", "signingName",
                                           "serviceId", "endpointPrefix") if k in meta},
        "operations": ops,
        "shapes": dict(sorted(kept.items())),
    }


def main():
    import botocore  # the venv's pinned botocore (scripts/requirements.txt)

    root = os.path.dirname(botocore.__file__)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "endpoint",
                           "protocol", "models")
    for service, names in OPERATIONS.items():
        model = trim(service, names, root, botocore.__version__)
        path = os.path.join(out_dir, f"{service}.json")
        with open(path, "w") as f:
            json.dump(model, f, indent=1)
            f.write("\n")
        print(f"{path}: {len(names)} operations, {len(model['shapes'])} shapes "
              f"(botocore {botocore.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
