#!/usr/bin/env python3
"""Independent decryptor for a ferry volume's LUKS2 data segment.

Uses the `cryptography` package's AES-XTS (OpenSSL underneath, but none of
ferry's code). Reads the 512-bit volume key as hex on stdin, decrypts
IMAGE[OFFSET:] in 4096-byte sectors with tweak = sector number (little-endian,
counted from the data segment start, as cryptsetup's aes-xts-plain64 with
4096-byte sectors), and writes the plaintext to OUT. All-zero ciphertext
sectors (holes in the sparse file) are plaintext zeros, per docs/volume-format.md.

usage: xts_decrypt.py IMAGE OFFSET OUT < keyhex
"""
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SECTOR = 4096
CHUNK = 256 * SECTOR


def main() -> int:
    image, offset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    key = bytes.fromhex(sys.stdin.read().strip())
    if len(key) != 64:
        print(f"key must be 64 bytes, got {len(key)}", file=sys.stderr)
        return 2
    zero = bytes(SECTOR)
    with open(image, "rb") as src, open(out, "wb") as dst:
        size = os.fstat(src.fileno()).st_size - offset
        dst.truncate(size)
        pos = offset
        # Visit only the allocated extents; holes stay holes (= zeros) in OUT.
        while pos < offset + size:
            try:
                start = os.lseek(src.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            start -= (start - offset) % SECTOR
            src.seek(start)
            dst.seek(start - offset)
            remaining = end - start
            while remaining > 0:
                buf = src.read(min(CHUNK, remaining))
                if not buf:
                    break
                plain = bytearray()
                first = (src.tell() - len(buf) - offset) // SECTOR
                for i in range(0, len(buf), SECTOR):
                    ct = buf[i:i + SECTOR]
                    if ct == zero:
                        plain += zero
                        continue
                    tweak = (first + i // SECTOR).to_bytes(16, "little")
                    d = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
                    plain += d.update(ct) + d.finalize()
                dst.write(plain)
                remaining -= len(buf)
            pos = end
    return 0


if __name__ == "__main__":
    sys.exit(main())
