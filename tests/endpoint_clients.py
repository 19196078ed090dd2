"""boto3 against atrest's AWS endpoint (driven by tests/endpoint_clients.rs).

Reads the endpoint and credentials from the environment `atrest env` prints, runs every
case and prints one JSON object: {case: result}. The Rust test asserts on it, so a case
that raises is reported, not hidden.
"""

import datetime
import json
import os
import sys
import http.client
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError

URL = os.environ["AWS_ENDPOINT_URL"]
REGION = os.environ["AWS_DEFAULT_REGION"]
KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
out = {}


def code_of(fn):
    try:
        fn()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"] + ": " + e.response["Error"].get("Message", "")


def raw(target, body, headers=None, sign=True, key_id=KEY_ID, secret=SECRET, when=None, headers_only=False):
    """A KMS JSON 1.1 request signed by botocore's own SigV4 signer, sent as is."""
    h = {
        "X-Amz-Target": target,
        "Content-Type": "application/x-amz-json-1.1",
    }
    h.update(headers or {})
    req = botocore.awsrequest.AWSRequest(method="POST", url=URL + "/", data=body, headers=h)
    if sign:
        creds = botocore.credentials.Credentials(key_id, secret)
        signer = botocore.auth.SigV4Auth(creds, "kms", REGION)
        if when is not None:
            real = botocore.auth.get_current_datetime
            botocore.auth.get_current_datetime = lambda: when
            try:
                signer.add_auth(req)
            finally:
                botocore.auth.get_current_datetime = real
        else:
            signer.add_auth(req)
    prepared = req.prepare()
    if headers_only:
        # Headers alone, Content-Length announcing the body: the endpoint must refuse from
        # the headers. (Sending the body too races the server's close against our write:
        # BrokenPipe or a reset that discards the 413 already sent.)
        u = urllib.parse.urlsplit(prepared.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest("POST", u.path or "/", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", u.netloc)
        for k, v in prepared.headers.items():
            if k.lower() not in ("host", "content-length"):
                conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(prepared.body)))
        conn.endheaders()
        resp = conn.getresponse()
        try:
            return [resp.status, json.loads(resp.read() or b"{}")]
        finally:
            conn.close()
    r = urllib.request.Request(prepared.url, data=prepared.body, method="POST")
    for k, v in prepared.headers.items():
        r.add_header(k, v)
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return [resp.status, json.loads(resp.read() or b"{}")]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read() or b"{}")]


kms = boto3.client("kms")

# Keys, data keys, a ciphertext back and forth.
key = kms.create_key(Description="boto3")["KeyMetadata"]
out["key_arn"] = key["Arn"]
dk = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
back = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])
out["data_key_roundtrip"] = back["Plaintext"] == dk["Plaintext"] and len(dk["Plaintext"]) == 32
kms.create_alias(AliasName="alias/boto3", TargetKeyId=key["KeyId"])
enc = kms.encrypt(KeyId="alias/boto3", Plaintext=b"from boto3", EncryptionContext={"app": "t"})
with open(os.environ["CIPHERTEXT_OUT"], "wb") as f:
    f.write(enc["CiphertextBlob"])
out["aliases"] = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]

# Pending deletion: refused with KMSInvalidStateException.
doomed = kms.create_key()["KeyMetadata"]["KeyId"]
kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
out["pending_deletion_encrypt"] = code_of(lambda: kms.encrypt(KeyId=doomed, Plaintext=b"x"))
pages = list(kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}))
out["list_keys_pages"] = len(pages)

# Authentication errors, each in AWS JSON's shape.
bad_secret = boto3.client("kms", aws_secret_access_key="x" * 40, aws_access_key_id=KEY_ID)
out["wrong_secret"] = code_of(lambda: bad_secret.list_keys())
unknown = boto3.client("kms", aws_access_key_id="AKIAAAAAAAAAAAAAAAAA", aws_secret_access_key="x" * 40)
out["unknown_key"] = code_of(lambda: unknown.list_keys())
out["unsigned"] = raw("TrentService.ListKeys", b"{}", sign=False)
out["incomplete"] = raw(
    "TrentService.ListKeys",
    b"{}",
    sign=False,
    headers={"Authorization": "AWS4-HMAC-SHA256 Credential=" + KEY_ID + "/20260101/us-east-1/kms/aws4_request"},
)
old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
out["replayed"] = raw("TrentService.ListKeys", b"{}", when=old)

# Bad input, signed: the endpoint answers and keeps serving.
out["malformed_json"] = raw("TrentService.ListKeys", b"{not json")
out["unknown_target"] = raw("TrentService.MakeCoffee", b"{}")
out["too_large"] = raw("TrentService.Encrypt", b"{" + b" " * (2 << 20) + b"}", headers_only=True)
out["still_serving"] = len(kms.list_keys()["Keys"]) >= 2

# CloudTrail LookupEvents, paged.
ct = boto3.client("cloudtrail")
ids = []
npages = 0
for page in ct.get_paginator("lookup_events").paginate(
    LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "kms.amazonaws.com"}],
    PaginationConfig={"PageSize": 2},
):
    npages += 1
    ids.extend(e["EventId"] for e in page["Events"])
out["lookup_pages"] = npages
out["lookup_unique"] = len(ids) == len(set(ids)) and len(ids) > 0
ev = ct.lookup_events(
    LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GenerateDataKey"}], MaxResults=1
)["Events"]
out["trail_event"] = json.loads(ev[0]["CloudTrailEvent"]) if ev else None

json.dump(out, sys.stdout)
