"""nvs.py - a host device's NVS (ports/posix: nvs.bin, two sectors; the
newest valid one holds the table) read and rewritten as the posix port
does, for e2e tests that need a state no command makes.

  python3 nvs.py edit NVS_BIN [-KEY | KEY=HEX]...  drops KEY, or sets it to
      those bytes, writing the table into the other sector with the next
      sequence
  python3 nvs.py has NVS_BIN KEY                   exit 0 when KEY is there
"""
import struct
import sys
import zlib

MAGIC = 0x3153564E


def newest(data):
    """(sector index, sequence, table bytes) of the newest valid sector."""
    size = len(data) // 2
    best = None
    for s in range(2):
        sec = data[s * size:(s + 1) * size]
        magic, seq, used = struct.unpack_from("<III", sec)
        if magic != MAGIC or used > size - 16:
            continue
        if struct.unpack_from("<I", sec, 12 + used)[0] != zlib.crc32(bytes(sec[:12 + used])):
            continue
        if best is None or seq > best[1]:
            best = (s, seq, bytes(sec[12:12 + used]))
    return best


def entries(table):
    """(key, whole entry bytes) of each entry of a table."""
    at = 0
    while at < len(table):
        kl = table[at]
        key = table[at + 1:at + 1 + kl]
        vl = struct.unpack_from("<H", table, at + 1 + kl)[0]
        end = at + 1 + kl + 2 + vl
        yield key, table[at:end]
        at = end


def edit(path, args):
    data = bytearray(open(path, "rb").read())
    size = len(data) // 2
    s, seq, table = newest(data)
    drop = {a[1:].encode() for a in args if a.startswith("-")}
    put = {a.split("=", 1)[0].encode(): bytes.fromhex(a.split("=", 1)[1]) for a in args if "=" in a}
    out = b"".join(e for k, e in entries(table) if k not in drop and k not in put)
    for key, val in put.items():
        out += bytes([len(key)]) + key + struct.pack("<H", len(val)) + val
    rec = struct.pack("<III", MAGIC, seq + 1, len(out)) + out
    rec += struct.pack("<I", zlib.crc32(rec))
    t = 1 - s
    data[t * size:(t + 1) * size] = rec + b"\xff" * (size - len(rec))
    open(path, "wb").write(bytes(data))


def has(path, key):
    table = newest(open(path, "rb").read())[2]
    return any(k == key.encode() for k, _ in entries(table))


if __name__ == "__main__":
    if sys.argv[1] == "edit":
        edit(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "has":
        sys.exit(0 if has(sys.argv[2], sys.argv[3]) else 1)
    else:
        sys.exit(f"nvs.py: unknown command {sys.argv[1]!r}")
