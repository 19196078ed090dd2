#!/usr/bin/env python3
"""Writes the trimmed copies of botocore's service models atrest keeps, from the botocore
pinned in the project venv (scripts/requirements.txt):

    . scripts/lib/venv.sh && venv_install
    python3 scripts/vendor-botocore-models.py        # rewrites all six files

Two sets, each from the same walk over the shapes an operation reaches:

- src/endpoint/protocol/models/SERVICE.json (sts, iam, ec2), what the AWS endpoint's Query
  and EC2 Query codecs read: the metadata they use (protocol, apiVersion, xmlNamespace,
  signingName), and for each operation in WIRE below its input and output shape, the
  output's resultWrapper, and every shape those reach with what the wire format depends on
  (member shapes, locationName, queryName, flattened, xmlNamespace, required, list members,
  map keys and values, timestampFormat, enums), and the operation's error shapes with
  their wire code and HTTP status. An operation atrest serves over the Query protocol is
  one more name in WIRE (then rerun this script): the codecs are driven by the model and
  need no code per operation.
- kmsd/tests/botocore/SERVICE-VERSION.json (kms, iam, sts), what kmsd/tests/api_model.rs
  checks atrest's operation types against: every operation's name (so the test knows which
  names AWS has), the input and output shapes of the operations in API below with every
  shape they reach (structure members, required members, list and map element shapes,
  string enums), and those operations' paginators.

Documentation is dropped; the botocore version is recorded in each file.
"""
import gzip
import json
import os
import sys

# The operations atrest's endpoint serves over Query / EC2 Query, per service (EC2: every
# operation of src/ec2/api's table that EC2 has; src/endpoint/services/ec2.rs checks the
# two agree).
WIRE = {
    "sts": ["GetCallerIdentity", "AssumeRole", "GetSessionToken"],
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

# The operations kmsd's `api` table implements, per service (KMS: with the tag operations
# AWS has beside ListResourceTags), for the api_model test.
API = {
    "kms": [
        "CreateKey", "DescribeKey", "ListKeys", "EnableKey", "DisableKey",
        "ScheduleKeyDeletion", "CancelKeyDeletion", "CreateAlias", "UpdateAlias",
        "DeleteAlias", "ListAliases", "Encrypt", "Decrypt", "ReEncrypt",
        "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "EnableKeyRotation",
        "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand",
        "ListKeyRotations", "UpdateKeyDescription", "ListResourceTags", "TagResource",
        "UntagResource", "CreateGrant", "ListGrants", "ListRetirableGrants", "RetireGrant",
        "RevokeGrant", "GetKeyPolicy", "PutKeyPolicy", "ListKeyPolicies",
    ],
    "iam": [
        "CreateUser", "GetUser", "ListUsers", "DeleteUser", "CreateGroup", "GetGroup",
        "ListGroups", "ListGroupsForUser", "AddUserToGroup", "RemoveUserFromGroup",
        "DeleteGroup", "CreateRole", "GetRole", "ListRoles", "DeleteRole", "PutUserPolicy",
        "GetUserPolicy", "DeleteUserPolicy", "ListUserPolicies", "PutGroupPolicy",
        "GetGroupPolicy", "DeleteGroupPolicy", "ListGroupPolicies", "PutRolePolicy",
        "GetRolePolicy", "DeleteRolePolicy", "ListRolePolicies", "CreatePolicy", "GetPolicy",
        "GetPolicyVersion", "ListPolicies", "DeletePolicy", "AttachUserPolicy",
        "DetachUserPolicy", "AttachGroupPolicy", "DetachGroupPolicy", "AttachRolePolicy",
        "DetachRolePolicy", "ListAttachedUserPolicies", "ListAttachedGroupPolicies",
        "ListAttachedRolePolicies", "CreateAccessKey", "ListAccessKeys", "DeleteAccessKey",
        "UpdateAccessKey",
    ],
    "sts": ["GetCallerIdentity", "AssumeRole", "GetSessionToken"],
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


def wire_shape(s):
    """A shape as the Query codecs need it: its wire keys, member refs with theirs."""
    t = {k: s[k] for k in SHAPE_KEYS if k in s}
    if s["type"] == "structure":
        t["members"] = {m: ref(v) for m, v in s["members"].items()}
    elif s["type"] == "list":
        t["member"] = ref(s["member"])
    elif s["type"] == "map":
        t["key"], t["value"] = ref(s["key"]), ref(s["value"])
    return t


def api_shape(s):
    """A shape as the api_model test needs it: type, members by shape name, enums."""
    t = {"type": s["type"]}
    if s["type"] == "structure":
        t["required"] = s.get("required", [])
        t["members"] = {m: v["shape"] for m, v in s["members"].items()}
    elif s["type"] == "list":
        t["member"] = s["member"]["shape"]
    elif s["type"] == "map":
        t["key"], t["value"] = s["key"]["shape"], s["value"]["shape"]
    elif "enum" in s:
        t["enum"] = s["enum"]
    return t


def reach(shapes, kept, name, shape_of):
    """Adds `name` and every shape it reaches to `kept`, each as `shape_of` trims it."""
    if name in kept:
        return
    s = shapes[name]
    kept[name] = shape_of(s)
    if s["type"] == "structure":
        for v in s["members"].values():
            reach(shapes, kept, v["shape"], shape_of)
    elif s["type"] == "list":
        reach(shapes, kept, s["member"]["shape"], shape_of)
    elif s["type"] == "map":
        reach(shapes, kept, s["key"]["shape"], shape_of)
        reach(shapes, kept, s["value"]["shape"], shape_of)


def model_of(root, service):
    data = os.path.join(root, "data", service)
    (api_version,) = sorted(os.listdir(data))[-1:]
    return api_version, os.path.join(data, api_version)


def trim_wire(service, names, root, version):
    api_version, data = model_of(root, service)
    model = load(os.path.join(data, "service-2.json"))
    shapes = model["shapes"]
    kept = {}
    ops = {}
    for name in names:
        op = model["operations"][name]
        entry = {}
        if "input" in op:
            entry["input"] = op["input"]["shape"]
            reach(shapes, kept, op["input"]["shape"], wire_shape)
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
            reach(shapes, kept, op["output"]["shape"], wire_shape)
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


def trim_api(service, names, root, version):
    api_version, data = model_of(root, service)
    model = load(os.path.join(data, "service-2.json"))
    pages = load(os.path.join(data, "paginators-1.json"))["pagination"]
    kept = {}
    ops = {}
    for name in names:
        op = model["operations"][name]
        ops[name] = {k: op[k]["shape"] for k in ("input", "output") if k in op}
        for shape in ops[name].values():
            reach(model["shapes"], kept, shape, api_shape)
    meta = model["metadata"]
    return api_version, {
        "botocore": version,
        "source": f"botocore/data/{service}/{api_version}/service-2.json and paginators-1.json, trimmed by scripts/vendor-botocore-models.py",
        "metadata": {k: meta[k] for k in ("apiVersion", "protocol", "jsonVersion", "targetPrefix") if k in meta},
        "all_operations": sorted(model["operations"]),
        "operations": ops,
        "paginators": {k: v for k, v in pages.items() if k in names},
        "shapes": dict(sorted(kept.items())),
    }


def write(path, model, what):
    with open(path, "w") as f:
        json.dump(model, f, indent=1)
        f.write("\n")
    print(f"{path}: {what}, {len(model['shapes'])} shapes (botocore {model['botocore']})",
          file=sys.stderr)


def main():
    import botocore  # the venv's pinned botocore (scripts/requirements.txt)

    root = os.path.dirname(botocore.__file__)
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    wire_dir = os.path.join(repo, "src", "endpoint", "protocol", "models")
    for service, names in WIRE.items():
        model = trim_wire(service, names, root, botocore.__version__)
        write(os.path.join(wire_dir, f"{service}.json"), model, f"{len(names)} operations")
    api_dir = os.path.join(repo, "kmsd", "tests", "botocore")
    for service, names in API.items():
        api_version, model = trim_api(service, names, root, botocore.__version__)
        write(os.path.join(api_dir, f"{service}-{api_version}.json"), model,
              f"{len(names)} of {len(model['all_operations'])} operations")


if __name__ == "__main__":
    main()
