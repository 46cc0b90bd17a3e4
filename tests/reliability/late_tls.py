"""late_tls.py PORT PID CA.pem device|https E2E_DIR: a TLS client that
connects to a server (PID) on 127.0.0.1:PORT, lets it accept, stops it
(SIGSTOP) and sends its ClientHello while it is stopped; the server runs
again 4 s later (meant for --idle-timeout 3: the answer then has 1.7 s). Then, inside TLS, a device's HELLO (device) or an HTTP
download request (https), and its answer must come: WELCOME, or an HTTP
status line. Exits non-zero saying what came instead."""
import os
import signal
import socket
import ssl
import sys
import threading
import time

port, pid, ca, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, sys.argv[5])
import frames as F  # noqa: E402

ctx = ssl.create_default_context(cafile=ca)
s = socket.create_connection(("127.0.0.1", port), 10)
time.sleep(0.3)  # accepted: its deadline runs from here
os.kill(pid, signal.SIGSTOP)
cont = threading.Timer(4, os.kill, (pid, signal.SIGCONT))
cont.start()
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")  # the ClientHello waits out the stop
    if mode == "device":
        t.sendall(F.hello(b"late-tls"))
        kind, _ = F.Reader(t).next()
        if kind != F.WELCOME:
            sys.exit("no WELCOME first: type %d" % kind)
        print("welcomed")
    else:
        t.sendall(b"GET /ota/esp32?device=late-https HTTP/1.1\r\nHost: x\r\n"
                  b"X-Tcpota-Version: 1.0.0\r\n\r\n")
        head = t.recv(100)
        if not head.startswith(b"HTTP/1.1 "):
            sys.exit("no HTTP answer: %r" % head)
        print("answered", head.split(b"\r\n")[0].decode())
finally:
    cont.join()
    os.kill(pid, signal.SIGCONT)
