"""tlsbio.py - a TLS client over memory BIOs for the e2e tests, which then
decide when its records leave and what they carry (test_tls_writes.sh,
test_tls_ends.sh)."""
import ssl
import sys


def handshake(raw, inc, out, obj, then=b""):
    """Runs the handshake of obj (ctx.wrap_bio(inc, out, ...)) over the
    socket raw; the client's last flight leaves in one send together with
    the records of `then`."""
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            d = raw.recv(65536)
            if not d:
                sys.exit("the server closed during the handshake")
            inc.write(d)
    if then:
        obj.write(then)
    raw.sendall(out.read())
