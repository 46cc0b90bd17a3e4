#!/usr/bin/env python3
"""A device that downloads its update the way ESP-IDF's esp_https_ota does
with ota_resumption (IDF 5.5+), for tests/e2e/test_http_ota.sh.

esp_https_ota with ota_resumption keeps the number of image bytes written
to flash (the application saves esp_https_ota_get_image_len_read() in NVS)
and, after a cut or a reboot, asks again with `Range: bytes=<written>-`,
writing on from there. This client does the same with a file as the OTA
slot and a JSON file as NVS: every attempt opens a new connection, sends
X-Tcpota-Version (the version it runs) and the Range of what is missing,
writes what arrives, saves the count, and tries again after a cut. When
the slot holds the whole image and its SHA-256 is the ETag's, it "reboots"
into the new version (the ETag is tcpota's image id) and asks once more,
which tells the server it runs the new version.

Prints one line per request: `request <n> range=<start or -> status=<code>
got=<bytes>`, and `done version=<v>` at the end. Exit 0 when updated (or,
with --reject, rolled back) and the request after the reboot is answered
204, 1 on failure (that request answered otherwise too), 2 when the server
had nothing (204 at the first request).
"""
import argparse
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse

READ_SIZE = 1024  # esp_https_ota's default buffer: one esp_ota_write per read
REBOOT_S = 0.5    # esp_restart() and the boot of the new image take about this long


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def request(url, version, start):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    headers = {"X-Tcpota-Version": version}
    if start:
        headers["Range"] = "bytes=%d-" % start
    conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers=headers)
    return conn, conn.getresponse()


def attempt(args, state, n):
    """One connection. Returns "done", "cut" or "none"."""
    written = state.get("written", 0)
    conn, resp = request(args.url, state["version"], written)
    got = 0
    try:
        if resp.status == 204:
            print("request %d range=%s status=204 reason=%s" %
                  (n, written or "-", resp.getheader("X-Tcpota-Reason")), flush=True)
            return "none"
        if resp.status == 416 and written:
            # The range cannot be served (the server's image is not the one
            # these bytes are of): start over from byte 0, as esp_https_ota
            # does (IDF 5.5 and 6.0) on a 416 to a resumption.
            print("request %d range=%s status=416: starting over" % (n, written), flush=True)
            state["written"] = 0
            save(args.state, state)
            return "cut"
        if resp.status == 200 and written:
            written = 0  # the server ignored the range: start over, as IDF 6.0 does (5.5 appends it)
        elif resp.status == 206:
            first = int(resp.getheader("Content-Range").split()[1].split("-")[0])
            if first != written:
                raise SystemExit("server answered from byte %d, asked %d" % (first, written))
        elif resp.status != 200:
            raise SystemExit("server answered %d: %s" % (resp.status, resp.read()[:200]))
        total = int(resp.getheader("Content-Length")) + written
        state["etag"] = resp.getheader("ETag").strip('"')
        state["new_version"] = resp.getheader("X-Tcpota-Version")
        with open(args.slot, "r+b" if os.path.exists(args.slot) else "wb") as slot:
            slot.truncate(written)
            slot.seek(written)
            try:
                while written < total:
                    chunk = resp.read1(READ_SIZE) if hasattr(resp, "read1") else resp.read(READ_SIZE)
                    if not chunk:
                        break
                    slot.write(chunk)
                    written += len(chunk)
                    got += len(chunk)
                    state["written"] = written
                    save(args.state, state)
            except (OSError, http.client.HTTPException):
                pass
        print("request %d range=%s status=%d got=%d" %
              (n, (written - got) or "-", resp.status, got), flush=True)
        return "done" if written == total else "cut"
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--slot", required=True, help="the OTA partition (a file)")
    p.add_argument("--state", required=True, help="the NVS (a JSON file)")
    p.add_argument("--version", required=True, help="the version running at the first start")
    p.add_argument("--attempts", type=int, default=10)
    p.add_argument("--reject", action="store_true",
                   help="after a whole download, roll back (keep running the old version)")
    args = p.parse_args()
    state = load(args.state)
    state.setdefault("version", args.version)
    for n in range(1, args.attempts + 1):
        try:
            r = attempt(args, state, n)
        except (OSError, http.client.HTTPException) as e:
            print("request %d failed: %s" % (n, e), flush=True)
            r = "cut"
        if r == "none":
            return 2 if n == 1 else 1
        if r == "done":
            break
        time.sleep(0.05)
    else:
        print("gave up after %d attempts" % args.attempts)
        return 1
    with open(args.slot, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != state["etag"]:
        print("image SHA-256 %s is not the ETag %s" % (digest, state["etag"]))
        return 1
    state["written"] = 0  # esp_https_ota_finish: the resume point is cleared
    if not args.reject:
        state["version"] = state["new_version"]
    save(args.state, state)
    time.sleep(REBOOT_S)
    conn, resp = request(args.url, state["version"], 0)
    print("request %d range=- status=%d reason=%s" %
          (n + 1, resp.status, resp.getheader("X-Tcpota-Reason")), flush=True)
    conn.close()
    print("done version=%s" % state["version"], flush=True)
    # Updated, the server has nothing more; rolled back, it holds the image
    # back: 204 either way, anything else is the server's fault.
    return 0 if resp.status == 204 else 1


if __name__ == "__main__":
    sys.exit(main())
