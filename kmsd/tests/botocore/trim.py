#!/usr/bin/env python3
"""Writes SERVICE-VERSION.json (kms-2014-11-01.json, iam-2010-05-08.json,
sts-2011-06-15.json), the part of botocore's model of a service kmsd/tests/api_model.rs
checks atrest's operation types against.

    python3 -m pip download --no-deps botocore==VERSION -d /tmp/bc
    cd /tmp/bc && unzip -q botocore-*.whl 'botocore/data/*'
    for s in kms iam sts; do
      python3 kmsd/tests/botocore/trim.py /tmp/bc/botocore VERSION $s > kmsd/tests/botocore/$s-*.json
    done

Kept: every operation's name (so the test knows which names AWS has), the input and
output shapes of the operations listed in OPERATIONS with every shape they reach
(structure members, required members, list and map element shapes, string enums),
and those operations' paginators. Documentation strings are dropped.
"""
import gzip
import json
import os
import sys

# The KMS operations atrest implements (the `api` table's KMS entries), and the
# tag operations AWS has beside ListResourceTags.
KMS = [
    "CreateKey", "DescribeKey", "ListKeys", "EnableKey", "DisableKey",
    "ScheduleKeyDeletion", "CancelKeyDeletion", "CreateAlias", "UpdateAlias",
    "DeleteAlias", "ListAliases", "Encrypt", "Decrypt", "ReEncrypt",
    "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "EnableKeyRotation",
    "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand",
    "ListKeyRotations", "UpdateKeyDescription", "ListResourceTags", "TagResource",
    "UntagResource", "CreateGrant", "ListGrants", "ListRetirableGrants", "RetireGrant",
    "RevokeGrant", "GetKeyPolicy", "PutKeyPolicy", "ListKeyPolicies",
]

# The IAM and STS operations atrest implements (the `api` table's entries).
IAM = [
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
]
STS = ["GetCallerIdentity", "AssumeRole"]

SERVICES = {
    "kms": ("2014-11-01", KMS),
    "iam": ("2010-05-08", IAM),
    "sts": ("2011-06-15", STS),
}


def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    with gzip.open(path + ".gz") as f:
        return json.load(f)


def main():
    root, version = sys.argv[1], sys.argv[2]
    service = sys.argv[3] if len(sys.argv) > 3 else "kms"
    api_version, OPERATIONS = SERVICES[service]
    data = os.path.join(root, "data", service, api_version)
    model = load(os.path.join(data, "service-2.json"))
    pages = load(os.path.join(data, "paginators-1.json"))["pagination"]
    shapes = model["shapes"]
    kept = {}

    def keep(name):
        if name in kept:
            return
        s = shapes[name]
        t = {"type": s["type"]}
        kept[name] = t
        if s["type"] == "structure":
            t["required"] = s.get("required", [])
            t["members"] = {m: v["shape"] for m, v in s["members"].items()}
            for v in s["members"].values():
                keep(v["shape"])
        elif s["type"] == "list":
            t["member"] = s["member"]["shape"]
            keep(s["member"]["shape"])
        elif s["type"] == "map":
            t["key"], t["value"] = s["key"]["shape"], s["value"]["shape"]
            keep(s["key"]["shape"])
            keep(s["value"]["shape"])
        elif "enum" in s:
            t["enum"] = s["enum"]

    ops = {}
    for name in OPERATIONS:
        op = model["operations"][name]
        ops[name] = {k: op[k]["shape"] for k in ("input", "output") if k in op}
        for shape in ops[name].values():
            keep(shape)
    out = {
        "botocore": version,
        "source": f"botocore/data/{service}/{api_version}/service-2.json and paginators-1.json, trimmed by trim.py",
        "metadata": {k: model["metadata"][k] for k in ("apiVersion", "protocol", "jsonVersion", "targetPrefix") if k in model["metadata"]},
        "all_operations": sorted(model["operations"]),
        "operations": ops,
        "paginators": {k: v for k, v in pages.items() if k in OPERATIONS},
        "shapes": dict(sorted(kept.items())),
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
