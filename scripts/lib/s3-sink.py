"""A do-nothing S3 endpoint for scripts/bench-s3.sh: the floor boto3 itself sets on this box.

    python s3-sink.py ADDR_FILE OBJECT_SIZE

Listens on 127.0.0.1 (a free port, written to ADDR_FILE as host:port) and answers just what
boto3's upload_file and download_file send, doing no work a real store does: no signature or
checksum check, no encryption, no disk. A request body is read and dropped; a GET (whole or
ranged) is answered with zero bytes of an object of OBJECT_SIZE bytes. A boto3 transfer timed
against it measures the client's own cost (SigV4 payload hashing, checksums, reading the
file, its threads) plus the socket copies, which the endpoint's figure cannot go below.
One thread per connection; keep-alive, as boto3's connection pool expects.
"""

import os
import re
import socket
import sys
import threading

BUF = 1 << 20
ZEROS = memoryview(bytes(BUF))


def read_head(conn, pending):
    """Reads up to the blank line; returns (head bytes, bytes read past it) or None at EOF."""
    while b"\r\n\r\n" not in pending:
        more = conn.recv(65536)
        if not more:
            return None
        pending += more
    head, _, rest = pending.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def drain(conn, rest, length):
    """Reads and drops the body's `length` bytes; returns what was read past them."""
    if len(rest) >= length:
        return rest[length:]
    left = length - len(rest)
    buf = bytearray(BUF)
    while left:
        n = conn.recv_into(buf, min(left, BUF))
        if not n:
            raise ConnectionError("body ended early")
        left -= n
    return b""


def reply(conn, status, headers, body=b""):
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def serve(conn, size):
    pending = b""
    etag = '"0123456789abcdef0123456789abcdef"'
    while True:
        got = read_head(conn, pending)
        if got is None:
            return
        head, rest = got
        request, *fields = head.split("\r\n")
        method, target, _ = request.split(" ", 2)
        headers = {}
        for f in fields:
            k, _, v = f.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        pending = drain(conn, rest, length)
        path, _, query = target.partition("?")
        key = path.rsplit("/", 1)[-1]
        if method == "POST" and "uploads" in query.split("&"):
            body = (
                "<InitiateMultipartUploadResult><Bucket>bench</Bucket>"
                f"<Key>{key}</Key><UploadId>sink</UploadId></InitiateMultipartUploadResult>"
            ).encode()
            reply(conn, "200 OK", [("Content-Type", "application/xml")], body)
        elif method == "POST":
            body = (
                "<CompleteMultipartUploadResult><Bucket>bench</Bucket>"
                f"<Key>{key}</Key><ETag>{etag}</ETag></CompleteMultipartUploadResult>"
            ).encode()
            reply(conn, "200 OK", [("Content-Type", "application/xml")], body)
        elif method == "PUT":
            reply(conn, "200 OK", [("ETag", etag)])
        elif method in ("GET", "HEAD"):
            first, last = 0, size - 1
            status = "200 OK"
            extra = []
            m = re.match(r"bytes=(\d+)-(\d*)", headers.get("range", ""))
            if m:
                first = int(m.group(1))
                last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                status = "206 Partial Content"
                extra = [("Content-Range", f"bytes {first}-{last}/{size}")]
            n = last - first + 1
            hdr = [f"HTTP/1.1 {status}", f"Content-Length: {n}", f"ETag: {etag}",
                   "Accept-Ranges: bytes", "Last-Modified: Thu, 01 Jan 2026 00:00:00 GMT"]
            hdr += [f"{k}: {v}" for k, v in extra]
            conn.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode())
            if method == "GET":
                while n:
                    k = min(n, BUF)
                    conn.sendall(ZEROS[:k])
                    n -= k
        else:
            reply(conn, "405 Method Not Allowed", [])


def main():
    addr_file, size = sys.argv[1], int(sys.argv[2])
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    host, port = lsock.getsockname()
    with open(addr_file + ".tmp", "w") as f:
        f.write(f"{host}:{port}\n")
    os.rename(addr_file + ".tmp", addr_file)

    def run(conn):
        with conn:
            try:
                serve(conn, size)
            except (ConnectionError, OSError, ValueError):
                pass

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=run, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
