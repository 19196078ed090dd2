#!/usr/bin/env python3
"""Writes a small real PNG (a clock face) to the path given: the lab's clock.png."""
import math
import struct
import sys
import zlib


def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def clock(size: int = 128) -> bytes:
    c = size / 2
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            r = math.hypot(x - c, y - c)
            angle = math.atan2(y - c, x - c)
            face = r < c - 4
            rim = c - 8 < r < c - 4
            hand = (abs(angle + math.pi / 2) < 0.05 and r < c * 0.7) or (abs(angle) < 0.06 and r < c * 0.5)
            if rim or (face and hand):
                row += bytes((20, 20, 40))
            elif face:
                row += bytes((250, 245, 230))
            else:
                row += bytes((255, 255, 255))
        rows.append(bytes(row))
    raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(clock())
