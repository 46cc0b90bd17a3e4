#!/usr/bin/env python3
"""The control API's answers to bad requests (docs/api.md), over real HTTP:
401 without or with a wrong token, 400 naming the field for each malformed
request, 404 for unknown ids, 405, 409. Usage: fleet_api_check.py URL TOKEN
IMAGE_ID. Exits 1 on the first answer that is not what the contract says."""
import json
import sys
import urllib.error
import urllib.request

URL, TOKEN, IMAGE = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, body=None, token=TOKEN, raw=None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            print(f"{method} {path}: {e.code} with a body that is not JSON: {text[:200]!r}")
            sys.exit(1)


CHECKS = [0]


def expect(what, got, status, field=None):
    CHECKS[0] += 1
    code, j = got
    if code != status:
        print(f"{what}: expected {status}, got {code} {j}")
        sys.exit(1)
    if status >= 400 and not j.get("error"):
        print(f"{what}: {status} without an error message: {j}")
        sys.exit(1)
    if field is not None and j.get("field") != field:
        print(f"{what}: expected field {field!r}, got {j}")
        sys.exit(1)
    print(f"ok: {what}: {status}" + (f" field {field}" if field else ""))


expect("no token", call("GET", "/v1/images", token=None), 401)
expect("wrong token", call("GET", "/v1/images", token="0" * 64), 401)
expect("wrong token, same length prefix", call("GET", "/v1/rollouts", token=TOKEN[:-1] + "x"), 401)

good = {"image": IMAGE, "model": "esp32"}
bad = [
    ("invalid JSON", None, b"{not json", None),
    # Valid JSON that jansson cannot hold: the member is named, not "not valid JSON".
    ("min_finished over 2^64", None, b'{"image": "' + IMAGE.encode() + b'", "model": "esp32", "min_finished" : 18446744073709551615}', "min_finished"),
    ("a wave of 1e999", None, b'{"image": "' + IMAGE.encode() + b'", "model": "esp32", "waves": [1e999]}', "body"),
    ("a key with an escaped quote", None, b'{"image": "' + IMAGE.encode() + b'", "a\\"b": 1e999}', "body"),
    ("missing image", {"model": "esp32"}, None, "image"),
    ("missing model", {"image": IMAGE}, None, "model"),
    ("image not a string", dict(good, image=5), None, "image"),
    ("waves decreasing", dict(good, waves=[50, 10]), None, "waves"),
    ("waves zero", dict(good, waves=[0, 100]), None, "waves"),
    ("waves over 100", dict(good, waves=[101]), None, "waves"),
    ("waves not a list", dict(good, waves="5,25"), None, "waves"),
    ("halt_at negative", dict(good, halt_at=-1), None, "halt_at"),
    ("halt_at a string", dict(good, halt_at="x"), None, "halt_at"),
    ("halt_at over 100", dict(good, halt_at=101), None, "halt_at"),
    ("success_pct over 100", dict(good, success_pct=150), None, "success_pct"),
    ("soak_s negative", dict(good, soak_s=-5), None, "soak_s"),
    ("allow_downgrade not a bool", dict(good, allow_downgrade="yes"), None, "allow_downgrade"),
    ("group too long", dict(good, group="g" * 40), None, "group"),
    ("image of another model", dict(good, model="esp32s3"), None, "model"),
]
for what, body, raw, field in bad:
    expect("rollout create, " + what, call("POST", "/v1/rollouts", body=body, raw=raw), 400, field)
expect("rollout create, unknown image", call("POST", "/v1/rollouts", body=dict(good, image="deadbeefdeadbeef")), 404, "image")

expect("device list, unknown state", call("GET", "/v1/devices?state=sleeping"), 400, "state")
expect("device list, limit 0", call("GET", "/v1/devices?limit=0"), 400, "limit")
expect("device list, limit huge", call("GET", "/v1/devices?limit=99999999999"), 400, "limit")
expect("device list, limit not a number", call("GET", "/v1/devices?limit=ten"), 400, "limit")
expect("device set group, not a string", call("PATCH", "/v1/devices/k-1", body={"group": 7}), 400, "group")
expect("device set group, too long", call("PATCH", "/v1/devices/k-1", body={"group": "x" * 33}), 400, "group")
expect("image add, empty body", call("POST", "/v1/images", raw=b""), 400, "body")
# It says this server's limit (--max-image), not the format's 4 GiB.
MAX = call("GET", "/v1/images")[1]["max_image"]
LIM = f"{MAX // 2**20} MiB" if MAX % 2**20 == 0 else f"{MAX} bytes"
_, j = call("POST", "/v1/images?version=1.0.0&model=esp32", raw=b"")
if f"1 byte to {LIM} (this server's --max-image)" not in j["error"] or "empty" not in j["error"]:
    print(f"image add, empty body: the error does not say the body is empty and the limit {LIM}: {j}")
    sys.exit(1)
expect("image add, unsigned to a server with keys", call("POST", "/v1/images?version=1.0.0&model=esp32", raw=b"abc"), 400, "manifest")
expect("image add, manifest not base64", call("POST", "/v1/images", raw=b"abc", headers={"Tcpota-Manifest": "@@@"}), 400, "manifest")
expect("image add, bad manifest", call("POST", "/v1/images", raw=b"abc", headers={"Tcpota-Manifest": "AAAA"}), 400, "manifest")

# Endpoints that take no body refuse one before they act: rollout 1 stays
# active (its devices update meanwhile), body-check gets no secret.
expect("rollout pause with a body", call("POST", "/v1/rollouts/1/pause", raw=b"garbage not json"), 400, "body")
expect("rollout resume with a field", call("POST", "/v1/rollouts/1/resume", body={"halt_pct": 1}), 400, "body")
expect("rollout cancel with a body", call("POST", "/v1/rollouts/1/cancel", body={}), 400, "body")
expect("device secret with a body", call("POST", "/v1/devices/body-check/secret", body={"secret": "0000"}), 400, "body")
expect("unknown rollout", call("GET", "/v1/rollouts/999"), 404)
expect("unknown rollout pause", call("POST", "/v1/rollouts/999/pause"), 404)
expect("unknown device", call("GET", "/v1/devices/nobody"), 404)
expect("unknown device group", call("PATCH", "/v1/devices/nobody", body={"group": "g"}), 404)
expect("unknown image", call("GET", "/v1/images/0123456789abcdef"), 404)
expect("unknown image rm", call("DELETE", "/v1/images/0123456789abcdef"), 404)
expect("unknown path", call("GET", "/v1/nothing"), 404)
expect("wrong method", call("DELETE", "/v1/rollouts"), 405)
print(f"all {CHECKS[0]} checks passed")
