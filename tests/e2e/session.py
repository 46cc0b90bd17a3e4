"""session.py - a device session driven by hand, for tests of the server's rules.
usage: session.py PORT ID [complete STATUS | accept-past | ack-past | hello-only]
Prints one word per event the server sent, then what happened."""
import os, socket, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frames import *

ACCEPT, DATA, ACK, COMPLETE = 0x05, 0x07, 0x08, 0x09
port, dev, mode = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
arg = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4].lstrip("-").isdigit() else 0
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(hello(dev, version=b"1.0.0"))
r = Reader(s)
k, p = r.next()
assert k == WELCOME, k
k, p = r.next()
if k == NO_UPDATE:
    print("NO_UPDATE")
    sys.exit(0)
if k != OFFER:
    print("OTHER %d" % k)
    sys.exit(0)
image_id, size = p[:32], struct.unpack("<I", p[32:36])[0]
print("OFFER %d" % size)
if mode == "hello-only":
    sys.exit(0)
if mode == "pings":
    PING, PONG = 0x0B, 0x0C
    s.sendall(b"".join(frame(PING, struct.pack("<I", i)) for i in range(arg)))
    pongs = 0
    try:
        while pongs < arg:
            k, p = r.next()
            if k == PONG:
                pongs += 1
            elif k == ERROR:
                print("ERROR after %d PONGs: %r" % (pongs, p[2:]))
                sys.exit(0)
    except SystemExit as e:
        if e.code not in (None, 0):
            print("CLOSED after %d PONGs" % pongs)
        raise
    print("PONGS %d" % pongs)
    sys.exit(0)
if mode == "accept-past":
    s.sendall(frame(ACCEPT, image_id + struct.pack("<I", size + 4096)))
else:
    s.sendall(frame(ACCEPT, image_id + struct.pack("<I", 0)))
got = 0
try:
    while got < size:
        k, p = r.next()
        if k == DATA:
            got += len(p) - 4
        elif k == ERROR:
            print("ERROR %d" % struct.unpack("<H", p[:2])[0])
            sys.exit(0)
except SystemExit:
    raise
except Exception as e:
    print("EXC %r" % e)
    sys.exit(0)
print("DATA %d" % got)
if mode == "complete":
    s.sendall(frame(ACK, struct.pack("<I", size)))
    s.sendall(frame(COMPLETE, image_id + struct.pack("<H", arg & 0xffff)))
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except Exception:
        pass
    print("CLOSED")
