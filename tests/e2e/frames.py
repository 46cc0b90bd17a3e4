"""frames.py - the device protocol's frames by hand, for e2e tests that send
what tcpota device would not (docs/protocol.md, sections 1 and 2): a frame is
type u8, flags u8, payload length u16 LE, payload, CRC32C (LE) of all before.
Import with sys.path.insert(0, <tests/e2e>)."""
import struct

HELLO, WELCOME, OFFER, NO_UPDATE, ERROR = 0x01, 0x02, 0x03, 0x04, 0x0A
TAG_DEVICE_ID, TAG_MODEL, TAG_VERSION, TAG_MAX_PAYLOAD, TAG_REPORT, TAG_WHY = 1, 2, 3, 6, 7, 0x0D


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def tlv(tag, value):
    return struct.pack("<BH", tag, len(value)) + value


def frame(kind, payload):
    head = struct.pack("<BBH", kind, 0, len(payload)) + payload
    return head + struct.pack("<I", crc32c(head))


def hello(device_id, model=b"esp32", version=b"1.0.0", report=None, max_payload=None):
    """A HELLO for protocol 1; report: (image id of 32 bytes, result u16)."""
    p = b"\x01\x01\x00\x00" + tlv(TAG_DEVICE_ID, device_id) + tlv(TAG_MODEL, model) + \
        tlv(TAG_VERSION, version)
    if report is not None:
        p += tlv(TAG_REPORT, report[0] + struct.pack("<H", report[1]))
    if max_payload is not None:
        p += tlv(TAG_MAX_PAYLOAD, struct.pack("<H", max_payload))
    return frame(HELLO, p)


class Reader:
    """Whole frames from a socket: next() gives (type, payload)."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def next(self):
        while len(self.buf) < 4 or len(self.buf) < 8 + struct.unpack("<H", self.buf[2:4])[0]:
            more = self.sock.recv(65536)
            if not more:
                raise SystemExit("closed before a whole frame")
            self.buf += more
        n = struct.unpack("<H", self.buf[2:4])[0]
        kind, payload, self.buf = self.buf[0], self.buf[4:4 + n], self.buf[8 + n:]
        return kind, payload


def serve_devices(port_file, connections, answer, timeout=20):
    """A fake server on 127.0.0.1: writes its port to port_file, then for
    each of up to `connections` connections reads the device's HELLO and
    calls answer(sock, n) (n from 0), and closes it. Ends after `timeout`
    seconds without a connection."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    open(port_file, "w").write(str(ls.getsockname()[1]))
    ls.settimeout(timeout)
    for n in range(connections):
        try:
            c, _ = ls.accept()
        except socket.timeout:
            break
        Reader(c).next()  # HELLO
        answer(c, n)
        c.close()
    ls.close()
