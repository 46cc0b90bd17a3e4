#!/usr/bin/env python3
"""Peers for test_proxy.sh's reset check, on loopback only.

upstream PORTFILE OUTFILE: listen on 127.0.0.1:0, write the port to PORTFILE; for each
  connection, send without end (like a server streaming an image) and record every byte the
  client's side sent, one line per connection in OUTFILE, once that side has ended.
client PORT N: N times, connect to PORT, read a little, let the proxy's writes pile up, send
  "BYE" and reset the connection (close with bytes unread, SO_LINGER 0): what a device does when
  it finds a corrupt frame and sends its ERROR.
"""
import os
import socket
import struct
import sys
import threading
import time

CHUNK = b"x" * 65536
WORD = b"BYE"


def upstream(portfile, outfile):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    lock = threading.Lock()

    def serve(conn):
        stop = threading.Event()

        def pour():
            try:
                while not stop.is_set():
                    conn.sendall(CHUNK)
            except OSError:
                pass

        t = threading.Thread(target=pour, daemon=True)
        t.start()
        got = b""
        end = "eof"
        try:
            while True:
                b = conn.recv(4096)
                if not b:
                    break
                got += b
        except OSError as e:
            end = "reset" if isinstance(e, ConnectionResetError) else str(e)
        stop.set()
        with lock, open(outfile, "a") as f:
            f.write("%s %s\n" % (got.decode("ascii", "replace") or "-", end))
        conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def client(port, n):
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.recv(100)
        time.sleep(0.05)  # the proxy's writes toward us now wait for room
        s.sendall(WORD)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        time.sleep(0.02)


if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        upstream(sys.argv[2], sys.argv[3])
    else:
        client(int(sys.argv[2]), int(sys.argv[3]))
