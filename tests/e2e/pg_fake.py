"""pg_fake.py MODE: a stand-in for a PostgreSQL server on 127.0.0.1, its
port printed first. MODE password: answers each startup (after refusing
SSL or GSS encryption) with AuthenticationCleartextPassword, a database
that wants a password; refuse: the same, then refuses the password it
gets (password authentication failed); mute: accepts and never answers (a start that waits
for its database); full: refuses the startup as a server at its connection limit. For tests of what tcpota serve --db says and survives."""
import socket
import struct
import sys
import time

mode = sys.argv[1]
lis = socket.socket()
lis.bind(("127.0.0.1", 0))
lis.listen(4)
print(lis.getsockname()[1], flush=True)
held = []
while True:
    c, _ = lis.accept()
    if mode == "mute":
        held.append(c)
        continue
    while True:
        n = struct.unpack(">I", c.recv(4))[0]
        body = c.recv(n - 4)
        if struct.unpack(">I", body[:4])[0] in (80877103, 80877104):  # SSL or GSS encryption
            c.sendall(b"N")
            continue
        if mode == "full":  # at max_connections, as PostgreSQL says it
            fields = b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0"
            c.sendall(b"E" + struct.pack(">I", 4 + len(fields)) + fields)
            break
        c.sendall(b"R" + struct.pack(">II", 8, 3))  # a password, please
        if mode == "refuse":  # read it, and refuse it as PostgreSQL does
            c.recv(4096)
            fields = (b"SFATAL\0VFATAL\0C28P01\0"
                      b"Mpassword authentication failed for user \"tcpota\"\0\0")
            c.sendall(b"E" + struct.pack(">I", 4 + len(fields)) + fields)
        break
    c.close()
