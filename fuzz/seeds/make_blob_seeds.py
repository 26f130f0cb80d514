#!/usr/bin/env python3
"""Writes fuzz/corpus/{kms_blob,sealed_blob} seeds. Both targets take an
edit program (mode byte even) applied to a blob the target makes with its
own keys, or a raw blob (mode byte odd); see the targets' docs."""
import os
import struct
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus"


def save(kind, name, data):
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    with open(os.path.join(root, kind, name), "wb") as f:
        f.write(data)


# kms_blob: edits are (u16 position, xor mask); a lone tail byte truncates
# (even) or extends (odd); two tail bytes truncate to a u16 length.
arn = b"arn:aws:kms:us-east-1:111122223333:key/0b3c4f7e-2a1d-4e5f-9a8b-7c6d5e4f3a2b"
hdr = b"FKMS\x01" + struct.pack(">H", len(arn)) + arn + struct.pack(">I", 1)
blob = hdr + bytes(range(12)) + bytes(range(16)) + b"ciphertext-of-a-data-key"
save("kms_blob", "unchanged", b"\x00")
save("kms_blob", "flip-magic", b"\x00" + struct.pack(">HB", 0, 1))
save("kms_blob", "flip-version", b"\x00" + struct.pack(">HB", 4, 0x02))
save("kms_blob", "flip-arn-len", b"\x00" + struct.pack(">HB", 6, 0x01))
save("kms_blob", "flip-key-id", b"\x00" + struct.pack(">HB", 60, 0x01))
save("kms_blob", "flip-material-version", b"\x00" + struct.pack(">HB", 85, 0x01))
save("kms_blob", "flip-iv", b"\x00" + struct.pack(">HB", 90, 0x80))
save("kms_blob", "flip-tag", b"\x00" + struct.pack(">HB", 105, 0x80))
save("kms_blob", "flip-ct", b"\x00" + struct.pack(">HB", 130, 0x01))
save("kms_blob", "truncate", b"\x00" + struct.pack(">H", 100))
save("kms_blob", "extend", b"\x00\x07")
save("kms_blob", "double-flip", b"\x00" + struct.pack(">HBHB", 130, 1, 130, 1))
save("kms_blob", "raw", b"\x01" + blob)
save("kms_blob", "raw-other-account", b"\x01" + blob.replace(b"111122223333", b"999999999999"))

# sealed_blob: a u24 seek offset, then edits (u24 position, xor mask); a
# tail of 1 byte truncates that many bytes from the end, 2 bytes append
# (count, byte), 3 bytes truncate to a u24 length.
def u24(n):
    return struct.pack(">I", n)[1:]

save("sealed_blob", "unchanged", b"\x00" + u24(0))
save("sealed_blob", "seek-mid", b"\x00" + u24(65536 + 7))
save("sealed_blob", "flip-magic", b"\x00" + u24(0) + u24(0) + b"\x01")
save("sealed_blob", "flip-chunk-size", b"\x00" + u24(0) + u24(6) + b"\x01")
save("sealed_blob", "flip-wrapped-key", b"\x00" + u24(0) + u24(20) + b"\x01")
save("sealed_blob", "flip-first-chunk", b"\x00" + u24(0) + u24(200) + b"\x01")
save("sealed_blob", "drop-last-byte", b"\x00" + u24(0) + b"\x01")
save("sealed_blob", "append", b"\x00" + u24(0) + b"\x10\x00")
save("sealed_blob", "cut-at-chunk", b"\x00" + u24(0) + u24(70 + 65536 + 16))
save("sealed_blob", "raw", b"\x01FSB1\x00\x01\x00\x00\x00\x3c" + bytes(60) + bytes(16))
