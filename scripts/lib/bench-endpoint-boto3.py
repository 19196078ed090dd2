"""boto3's half of scripts/bench-endpoint.sh: KMS Decrypt/s and latency percentiles with
N client processes (each its own boto3 client and keep-alive connection) against one
HTTP endpoint (atrest's or moto's: the same code for both).

Usage: bench-endpoint-boto3.py URL ACCESS_KEY_ID SECRET PROCESSES SECONDS
Makes its own key and ciphertext first, warms every process with one Decrypt, starts them
together, and prints one JSON line like benches/endpoint.rs:
{"ops_per_s", "p50_ms", "p99_ms", "ops", "errors", "first_error"}.
"""

import json
import multiprocessing as mp
import sys
import time

import boto3


def client(url, key_id, secret):
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def worker(url, key_id, secret, blob, seconds, ready, go, out):
    kms = client(url, key_id, secret)
    lat, errors, first = [], 0, None
    try:
        kms.decrypt(CiphertextBlob=blob)
    except Exception as e:  # noqa: BLE001 (reported, not hidden)
        errors, first = 1, repr(e)
    ready.release()
    go.wait()
    end = time.monotonic() + seconds
    while True:
        t0 = time.monotonic()
        if t0 >= end:
            break
        try:
            kms.decrypt(CiphertextBlob=blob)
            lat.append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            errors += 1
            first = first or repr(e)
    out.put((lat, errors, first))


def main():
    url, key_id, secret, procs, seconds = sys.argv[1:6]
    procs, seconds = int(procs), float(seconds)
    setup = client(url, key_id, secret)
    key = setup.create_key(Description="bench-endpoint boto3")["KeyMetadata"]["KeyId"]
    blob = setup.encrypt(KeyId=key, Plaintext=b"\x07" * 32)["CiphertextBlob"]
    ctx = mp.get_context("fork")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    ps = [
        ctx.Process(target=worker, args=(url, key_id, secret, blob, seconds, ready, go, out))
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    t0 = time.monotonic()
    go.set()
    lat, errors, first = [], 0, None
    for _ in ps:
        l, e, f = out.get()
        lat.extend(l)
        errors += e
        first = first or f
    elapsed = time.monotonic() - t0
    for p in ps:
        p.join()
    lat.sort()

    def pct(p):
        return lat[round((len(lat) - 1) * p)] * 1000 if lat else float("nan")

    print(json.dumps({
        "ops": len(lat),
        "ops_per_s": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
        "first_error": first,
    }))


if __name__ == "__main__":
    main()
