"""The driver of scripts/soak.sh (issue 18): N client threads against one running atrest
HOME, one daemon killed with SIGKILL every KILL_EVERY seconds and brought back by
`atrest up`, then every acknowledged write checked.

Usage: soak.py CONFIG.json   (written by scripts/soak.sh; see its header)

Clients (threads, each with its own boto3 client and keep-alive connection):
  - KMS through the endpoint: Encrypt, Decrypt of an earlier own ciphertext (checked
    against its plaintext), GenerateDataKey, and now and then CreateKey;
  - S3 through the endpoint: PUT of a fresh key (never an overwrite, so an acknowledged PUT
    has exactly one right answer), GET of an earlier own object (checked), DELETE of one
    (checked by a GET first, kept if that GET could not be made);
  - volume I/O on the attached volume's file in the FUSE mount (direct I/O): each client
    owns a region of 4 KiB blocks, pwrite + fdatasync of a block whose content names
    (client, block, sequence), pread of an earlier block (checked).
A write is acknowledged when its call returned success (PUT 200, fdatasync 0, CreateKey
answer). A write whose call failed may or may not have happened: for a block, both the
old and the new content are then accepted; an S3 key or a KMS key from a failed call is
not checked.

Prints (stdout) requests served per kind, errors by kind, what the killer did, RSS and
open descriptors of each daemon over time, and the check of every acknowledged write
after the run; exits 1 if an acknowledged write was lost or a read came back wrong.
"""

import collections
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

BLOCK = 4096
# Weight of CreateKey among the KMS calls (Encrypt 40, Decrypt 40, GenerateDataKey 19):
# SOAK_CREATE_KEYS=0 keeps the key count fixed, to tell per-request growth from per-key state.
CREATE_KEY_WEIGHT = int(os.environ.get("SOAK_CREATE_KEYS", "1"))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.Counter()
        self.errors = collections.Counter()
        self.first_error = {}
        self.wrong = []  # (what, detail): reads that came back wrong during the run

    def served(self, op):
        with self.lock:
            self.ok[op] += 1

    def error(self, op, e):
        kind = error_kind(e)
        with self.lock:
            self.errors[(op, kind)] += 1
            self.first_error.setdefault((op, kind), str(e)[:160])

    def wrong_read(self, what, detail):
        with self.lock:
            self.wrong.append((what, detail))


def error_kind(e):
    if isinstance(e, botocore.exceptions.ClientError):
        return e.response.get("Error", {}).get("Code", "ClientError")
    if isinstance(e, OSError) and e.errno:
        import errno

        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def aws_client(cfg, service):
    return boto3.client(
        service,
        endpoint_url=cfg["endpoint"],
        region_name=cfg["region"],
        aws_access_key_id=cfg["access_key_id"],
        aws_secret_access_key=cfg["secret_access_key"],
        # Fail fast and say so: a kill must show up as errors, not as retries hiding it.
        config=botocore.config.Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=1,
        ),
    )


# ---- clients ---------------------------------------------------------------------------


def kms_client(n, cfg, stats, stop, acked):
    kms = aws_client(cfg, "kms")
    rnd = random.Random(n)
    mine = []  # (ciphertext, plaintext), newest last, at most 64
    keys = []
    i = 0
    while not stop.is_set():
        i += 1
        op = rnd.choices(["Encrypt", "Decrypt", "GenerateDataKey", "CreateKey"], [40, 40, 19, CREATE_KEY_WEIGHT])[0]
        if op == "Decrypt" and not mine:
            op = "Encrypt"
        try:
            if op == "Encrypt":
                pt = f"soak client {n} message {i}".encode() + os.urandom(rnd.randrange(0, 256))
                ct = kms.encrypt(KeyId=cfg["key_id"], Plaintext=pt, EncryptionContext={"soak": str(n)})[
                    "CiphertextBlob"
                ]
                mine.append((ct, pt))
                del mine[:-64]
            elif op == "Decrypt":
                ct, pt = rnd.choice(mine)
                got = kms.decrypt(CiphertextBlob=ct, EncryptionContext={"soak": str(n)})["Plaintext"]
                if got != pt:
                    stats.wrong_read("kms-decrypt", f"client {n}: plaintext differs")
            elif op == "GenerateDataKey":
                r = kms.generate_data_key(KeyId=cfg["key_id"], KeySpec="AES_256")
                if len(r["Plaintext"]) != 32:
                    stats.wrong_read("kms-datakey", f"client {n}: {len(r['Plaintext'])} bytes")
            else:
                k = kms.create_key(Description=f"soak client {n} key {i}")["KeyMetadata"]["KeyId"]
                keys.append(k)
            stats.served("kms." + op)
        except Exception as e:  # noqa: BLE001 (counted by kind, never hidden)
            stats.error("kms." + op, e)
            stop.wait(0.05)
    acked["kms_keys"].extend(keys)
    acked["kms_ciphertexts"].extend((n, ct, pt) for ct, pt in mine)


def s3_client(n, cfg, stats, stop, acked):
    s3 = aws_client(cfg, "s3")
    rnd = random.Random(1000 + n)
    live = collections.OrderedDict()  # key -> sha256 of an acknowledged PUT
    unsure = set()  # keys whose PUT or DELETE failed: either state is right
    deleted = []
    i = 0
    bucket = cfg["bucket"]

    def check(key, body):
        if hashlib.sha256(body).hexdigest() != live[key]:
            stats.wrong_read("s3-get", f"{key}: content differs from the acknowledged PUT")

    while not stop.is_set():
        i += 1
        if not live:
            op = "PutObject"
        elif len(live) > 200:
            op = "DeleteObject"
        else:
            op = rnd.choices(["PutObject", "GetObject", "DeleteObject"], [45, 35, 20])[0]
        try:
            if op == "PutObject":
                key = f"c{n}/o{i}"
                size = rnd.choice([0, 1, 100, 4096, 65536, rnd.randrange(1, 1 << 20)])
                body = os.urandom(size)
                try:
                    s3.put_object(Bucket=bucket, Key=key, Body=body)
                except Exception:
                    unsure.add(key)
                    raise
                live[key] = hashlib.sha256(body).hexdigest()
            elif op == "GetObject":
                key = rnd.choice(list(live))
                check(key, s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            else:
                # Read it back before letting it go: every acknowledged PUT is checked once.
                key = next(iter(live))
                check(key, s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                try:
                    s3.delete_object(Bucket=bucket, Key=key)
                except Exception:
                    unsure.add(key)
                    live.pop(key)
                    raise
                live.pop(key)
                deleted.append(key)
            stats.served("s3." + op)
        except s3.exceptions.NoSuchKey as e:
            stats.error("s3." + op, e)
            stats.wrong_read("s3-get", f"{key}: NoSuchKey for an acknowledged PUT")
            live.pop(key, None)
        except Exception as e:  # noqa: BLE001
            stats.error("s3." + op, e)
            stop.wait(0.05)
    acked["s3_live"].extend(live.items())
    acked["s3_deleted"].extend(k for k in deleted if k not in unsure)


def block_bytes(c, b, seq):
    if seq == 0:
        return bytes(BLOCK)
    return hashlib.sha256(f"{c}:{b}:{seq}".encode()).digest() * (BLOCK // 32)


def close_quietly(fd):
    # A descriptor on a FUSE mount whose server died fails its close (ENOTCONN): it is
    # closed all the same.
    try:
        os.close(fd)
    except OSError:
        pass


def volume_client(n, cfg, stats, stop, acked):
    rnd = random.Random(2000 + n)
    blocks = cfg["volume_blocks_per_client"]
    base = n * blocks * BLOCK
    ok_seqs = {}  # block -> set of sequences any of which is right (0: never written)
    seq = 0
    fd = None
    while not stop.is_set():
        if fd is None:
            try:
                fd = os.open(cfg["volume_path"], os.O_RDWR)
            except OSError as e:
                stats.error("volume.open", e)
                stop.wait(0.2)
                continue
        b = rnd.randrange(blocks)
        written = [k for k in ok_seqs]
        op = "read" if written and rnd.random() < 0.35 else "write"
        if op == "read":
            b = rnd.choice(written)
        try:
            if op == "write":
                seq += 1
                before = ok_seqs.get(b, {0})
                # Until fdatasync returns, the block may hold the old or the new content.
                ok_seqs[b] = before | {seq}
                os.pwrite(fd, block_bytes(n, b, seq), base + b * BLOCK)
                os.fdatasync(fd)
                ok_seqs[b] = {seq}
            else:
                got = os.pread(fd, BLOCK, base + b * BLOCK)
                if not any(got == block_bytes(n, b, s) for s in ok_seqs[b]):
                    stats.wrong_read("volume-read", f"client {n} block {b}: not a written content")
            stats.served("volume." + op)
        except OSError as e:
            stats.error("volume." + op, e)
            close_quietly(fd)
            fd = None
            stop.wait(0.2)
    if fd is not None:
        close_quietly(fd)
    acked["volume"].extend((n, b, s) for b, s in ok_seqs.items())


# ---- daemons ---------------------------------------------------------------------------

DAEMONS = [("kmsd", "kmsd.pid"), ("volume service", "mount.pid"), ("endpoint", "s3.pid")]


def daemon_pid(cfg, pidfile):
    try:
        with open(os.path.join(cfg["home"], "run", pidfile)) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def proc_sample(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (OSError, StopIteration):
        return None


def atrest_up(cfg):
    t0 = time.monotonic()
    r = subprocess.run(
        [cfg["atrest"], "--home", cfg["home"], "up"], capture_output=True, text=True, timeout=120
    )
    last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] if r.returncode else []
    return r.returncode, time.monotonic() - t0, last


def killer(cfg, stats, stop, log):
    every = cfg["kill_every"]
    k = 0
    while not stop.wait(every):
        name, pidfile = DAEMONS[k % len(DAEMONS)]
        k += 1
        pid = daemon_pid(cfg, pidfile)
        t = time.monotonic() - cfg["t0"]
        if pid is None:
            log.append(f"{t:6.0f}s  {name}: no live pid to kill (counted as an error)")
            stats.error("killer", RuntimeError(f"{name} not running before its kill"))
        else:
            os.kill(pid, 9)
        line = f"{t:6.0f}s  kill -9 {name} pid {pid}"
        # `atrest up` must bring it back at once; a failure is counted and retried.
        for attempt in range(10):
            rc, took, last = atrest_up(cfg)
            line += f"; atrest up exit {rc} in {took:.1f}s"
            if rc == 0:
                break
            stats.error("killer", RuntimeError(f"atrest up exit {rc}: {' '.join(last)}"))
            line += f" ({' '.join(last)[:200]})"
            stop.wait(1)
        log.append(f"{line}; now pid {daemon_pid(cfg, pidfile)}")


def sampler(cfg, stop, samples):
    while True:
        t = time.monotonic() - cfg["t0"]
        row = [t]
        for _, pidfile in DAEMONS:
            pid = daemon_pid(cfg, pidfile)
            s = proc_sample(pid) if pid else None
            row.append((pid, s[0], s[1]) if s else (pid, None, None))
        samples.append(row)
        if stop.wait(cfg["sample_every"]):
            return


# ---- the check after the run -----------------------------------------------------------


def check_after(cfg, acked):
    """Every acknowledged write, read back with fresh clients; returns (checked, lost)."""
    report = []
    lost_total = 0
    kms = aws_client(cfg, "kms")
    s3 = aws_client(cfg, "s3")

    def retrying(f):
        # The daemons were just restarted by `atrest up`: a transport error is retried, a
        # service answer is not.
        for attempt in range(5):
            try:
                return f()
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
                if attempt == 4:
                    raise
                time.sleep(1)

    lost = 0
    for key, sha in acked["s3_live"]:
        try:
            body = retrying(lambda: s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read())
            if hashlib.sha256(body).hexdigest() != sha:
                lost += 1
                report.append(f"  LOST s3 {key}: content differs")
        except Exception as e:  # noqa: BLE001
            lost += 1
            report.append(f"  LOST s3 {key}: {error_kind(e)}")
    back = 0
    for key in acked["s3_deleted"]:
        try:
            retrying(lambda: s3.head_object(Bucket=cfg["bucket"], Key=key))
            back += 1
            report.append(f"  BACK s3 {key}: deleted (acknowledged) but still there")
        except botocore.exceptions.ClientError:
            pass
    report.insert(0, f"S3 objects (acknowledged PUT, not deleted): {len(acked['s3_live'])} checked, {lost} lost")
    report.insert(1, f"S3 objects (acknowledged DELETE): {len(acked['s3_deleted'])} checked, {back} came back")
    lost_total += lost + back

    lost = 0
    for n, ct, pt in acked["kms_ciphertexts"]:
        try:
            got = retrying(lambda: kms.decrypt(CiphertextBlob=ct, EncryptionContext={"soak": str(n)})["Plaintext"])
            if got != pt:
                lost += 1
        except Exception as e:  # noqa: BLE001
            lost += 1
            report.append(f"  LOST ciphertext of client {n}: {error_kind(e)}")
    report.append(f"KMS ciphertexts (acknowledged Encrypt): {len(acked['kms_ciphertexts'])} checked, {lost} do not decrypt")
    lost_total += lost
    lost = 0
    for k in acked["kms_keys"]:
        try:
            state = retrying(lambda: kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"])
            if state != "Enabled":
                lost += 1
                report.append(f"  LOST key {k}: {state}")
        except Exception as e:  # noqa: BLE001
            lost += 1
            report.append(f"  LOST key {k}: {error_kind(e)}")
    report.append(f"KMS keys (acknowledged CreateKey): {len(acked['kms_keys'])} checked, {lost} missing")
    lost_total += lost

    lost = 0
    blocks = cfg["volume_blocks_per_client"]
    fd = None
    for attempt in range(20):
        try:
            fd = os.open(cfg["volume_path"], os.O_RDONLY)
            break
        except OSError:
            time.sleep(0.5)
    if fd is None:
        report.append(f"volume blocks: cannot open {cfg['volume_path']}")
        lost_total += len(acked["volume"])
    else:
        for n, b, seqs in acked["volume"]:
            got = os.pread(fd, BLOCK, (n * blocks + b) * BLOCK)
            if not any(got == block_bytes(n, b, s) for s in seqs):
                lost += 1
                report.append(f"  LOST volume block {b} of client {n}")
        os.close(fd)
        report.append(f"volume blocks (acknowledged pwrite+fdatasync): {len(acked['volume'])} checked, {lost} lost")
        lost_total += lost
    return report, lost_total


def fmt_sample(cell):
    pid, rss, fds = cell
    if rss is None:
        return f"{'-':>7} {'-':>8} {'-':>4}"
    return f"{pid:>7} {rss / 1024:7.1f}M {fds:>4}"


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    cfg["t0"] = time.monotonic()
    stats = Stats()
    stop = threading.Event()
    acked = {"kms_keys": [], "kms_ciphertexts": [], "s3_live": [], "s3_deleted": [], "volume": []}
    kinds = cfg["mix"]  # e.g. {"kms": 32, "s3": 24, "volume": 8}
    threads = []
    n = 0
    for kind, count in kinds.items():
        f = {"kms": kms_client, "s3": s3_client, "volume": volume_client}[kind]
        for i in range(count):
            threads.append(threading.Thread(target=f, args=(i, cfg, stats, stop, acked), name=f"{kind}{i}"))
            n += 1
    samples, killlog = [], []
    side = [
        threading.Thread(target=sampler, args=(cfg, stop, samples)),
        threading.Thread(target=killer, args=(cfg, stats, stop, killlog)),
    ]
    for t in threads + side:
        t.start()
    print(f"soak: {n} clients ({', '.join(f'{c} {k}' for k, c in kinds.items())}) for {cfg['seconds']} s, "
          f"kill -9 of one daemon every {cfg['kill_every']} s", flush=True)
    try:
        deadline = cfg["t0"] + cfg["seconds"]
        while time.monotonic() < deadline:
            time.sleep(min(10, max(0, deadline - time.monotonic())))
            with stats.lock:
                served, errs = sum(stats.ok.values()), sum(stats.errors.values())
            print(f"  {time.monotonic() - cfg['t0']:5.0f}s  served {served}  errors {errs}", flush=True)
    finally:
        stop.set()
        for t in threads + side:
            t.join()
    elapsed = time.monotonic() - cfg["t0"]

    # Whatever the last kill left down comes back before the check.
    rc, took, last = atrest_up(cfg)
    print(f"\nafter the run: atrest up exit {rc} in {took:.1f}s {' '.join(last)}")

    print(f"\n== requests served in {elapsed:.0f} s: {sum(stats.ok.values())} "
          f"({sum(stats.ok.values()) / elapsed:.0f}/s)")
    for op, c in sorted(stats.ok.items()):
        print(f"  {op:28} {c:>9}")
    print(f"\n== errors by kind: {sum(stats.errors.values())}")
    for (op, kind), c in sorted(stats.errors.items()):
        print(f"  {op:28} {kind:28} {c:>7}   first: {stats.first_error[(op, kind)][:90]}")
    print("\n== kill -9 and restart")
    for line in killlog:
        print("  " + line)
    print("\n== RSS and open descriptors (pid, RSS, fds) over time")
    print(f"  {'t':>5}  " + "  ".join(f"{name:^22}" for name, _ in DAEMONS))
    for row in samples:
        print(f"  {row[0]:5.0f}  " + "  ".join(fmt_sample(c) for c in row[1:]))
    # Per daemon lifetime (one pid): first and last sample, so growth shows.
    print("\n  per daemon process (first -> last sample of the same pid):")
    for i, (name, _) in enumerate(DAEMONS):
        by_pid = collections.OrderedDict()
        for row in samples:
            pid, rss, fds = row[1 + i]
            if rss is not None:
                by_pid.setdefault(pid, []).append((row[0], rss, fds))
        for pid, xs in by_pid.items():
            (t0, r0, f0), (t1, r1, f1) = xs[0], xs[-1]
            print(f"  {name:15} pid {pid:>7}: {t0:5.0f}s..{t1:5.0f}s  RSS {r0 / 1024:.1f}M -> {r1 / 1024:.1f}M"
                  f" (max {max(x[1] for x in xs) / 1024:.1f}M)  fds {f0} -> {f1} (max {max(x[2] for x in xs)})")

    report, lost = check_after(cfg, acked)
    print("\n== acknowledged writes, read back after the run")
    for line in report:
        print("  " + line)
    print(f"\n== reads that came back wrong during the run: {len(stats.wrong)}")
    for what, detail in stats.wrong[:20]:
        print(f"  {what}: {detail}")
    print(f"\nacknowledged writes lost: {lost}")
    sys.exit(1 if lost or stats.wrong else 0)


if __name__ == "__main__":
    main()
