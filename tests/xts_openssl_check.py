#!/usr/bin/env python3
"""Independent cross-check of atrest's volume payload with OpenSSL's AES-XTS.

Usage: xts_openssl_check.py IMAGE KEY_HEX PAYLOAD_OFFSET SECTOR_SIZE EXPECTED_PLAINTEXT

Decrypts every sector of the payload with OpenSSL (through the `cryptography` package,
Debian's python3-cryptography), using dm-crypt aes-xts-plain64 tweaks: the sector at
payload byte offset o has tweak o/512 as a 64-bit little-endian number padded to 16 bytes.
Exits 0 and prints OK only if the result equals EXPECTED_PLAINTEXT byte for byte.
"""
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def main() -> int:
    image, key_hex, payload_offset, sector_size, expected_path = sys.argv[1:6]
    key = bytes.fromhex(key_hex)
    payload_offset, sector_size = int(payload_offset), int(sector_size)
    expected = open(expected_path, "rb").read()
    with open(image, "rb") as f:
        f.seek(payload_offset)
        payload = f.read(len(expected))
    if len(payload) != len(expected):
        print(f"payload is {len(payload)} bytes, expected {len(expected)}")
        return 1
    out = bytearray()
    for off in range(0, len(payload), sector_size):
        tweak = (off // 512).to_bytes(8, "little") + bytes(8)
        dec = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
        out += dec.update(payload[off:off + sector_size]) + dec.finalize()
    if bytes(out) != expected:
        bad = next(i for i in range(len(out)) if out[i] != expected[i])
        print(f"MISMATCH at payload byte {bad} (sector {bad // sector_size})")
        return 1
    print(f"OK {len(payload) // sector_size} sectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
