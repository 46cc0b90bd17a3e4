#!/usr/bin/env bash
# How fleet mode records the ends of a session that are not an update. A
# device that declines because it runs the image already is up to date, and
# no failure of the rollout. A device whose flash fails (its ERROR) is
# failed in the registry, with its words, but that is not a failure of the
# image: the rollout does not count it towards a halt, and the image is
# offered to that device again at its next check-in. A report of a result
# this server does not know (a newer device's) is acknowledged and logged,
# not refused as a database error at every check-in.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
[ -x "${HOSTILE:-}" ] || fail "HOSTILE must name tcpota-hostile (tests/reliability/reliability.cmake)"
DECLINER=hostile-0 # tcpota-hostile names its peers in the order of its kinds
ERRING=hostile-1

# failed_in_rollout: the failures rollout 1 counts (its one wave).
failed_in_rollout() {
  "$TCPOTA" rollout show --json 1 | jq_py 'j["waves"][0]["failed"]'
}

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"

"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --decliner 1 --erring 1 --hold 10 \
  > "$WORK/hostile.out" 2> "$WORK/hostile.log" || fail "the server did not close both peers: $(cat "$WORK/hostile.out")"
wait_line "$WORK/server.log" "\\[$ERRING .*device error: .*flash write failed"
for _ in $(seq 40); do # the store commits its batch within a fraction of a second
  [ "$(device_state $DECLINER)" = up-to-date ] && [ "$(device_state $ERRING)" = failed ] && break
  sleep 0.05
done
[ "$(device_state $DECLINER)" = up-to-date ] ||
  fail "$DECLINER declined as running the image already, and is $(device_state $DECLINER)"
[ "$(device_state $ERRING)" = failed ] || fail "$ERRING sent an ERROR and is $(device_state $ERRING)"
"$TCPOTA" device show --json $ERRING | jq_py 'j["reason"]' | grep -q "flash write failed" ||
  fail "$ERRING's reason does not carry its words: $("$TCPOTA" device show --json $ERRING)"
[ "$(failed_in_rollout)" = 0 ] || fail "rollout 1 counts $(failed_in_rollout) failed, expected none"
ok "declined as running it: up to date; a device's ERROR: failed, not the rollout's failure"

"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --decliner 1 --erring 1 --hold 10 \
  > "$WORK/hostile.out" 2> "$WORK/hostile.log" || fail "second round: $(cat "$WORK/hostile.out")"
n=$(grep -c "\\[$ERRING [^]]*\\] decision: offer 2.0.0" "$WORK/server.log" || true)
[ "$n" = 2 ] || fail "$ERRING was offered the image $n times in two check-ins: $(grep "$ERRING" "$WORK/server.log")"
[ "$(failed_in_rollout)" = 0 ] || fail "after the second round rollout 1 counts $(failed_in_rollout) failed"
ok "a device's ERROR does not hold the image back from it"

# A HELLO whose REPORT carries result 4 (unknown here), twice: each is
# answered with WELCOME (0x02) and an OFFER (0x03), not an ERROR (0x0a).
python3 - "$SERVER_PORT" "$E2E" > "$WORK/report.out" 2>&1 <<'PY' || fail "a report of an unknown result: $(cat "$WORK/report.out")"
import socket, sys
sys.path.insert(0, sys.argv[2])
import frames as F
hello = F.hello(b"rep-dev", report=(bytes(32), 4), max_payload=4096)
for i in range(2):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
        s.sendall(hello)
        r = F.Reader(s)
        types = [r.next()[0]]
        if types[0] == F.WELCOME:
            types.append(r.next()[0])
        print("check-in", i, "frames", types)
        if types != [F.WELCOME, F.OFFER]:
            sys.exit(f"check-in {i}: frames {types}, expected WELCOME (2) then OFFER (3)")
PY
grep -q "\[rep-dev [^]]*\] report: image 0000000000000000...: unknown result 4, not recorded (this server knows 1 confirmed, 2 rolled back, 3 boot failed); acknowledged" "$WORK/server.log" ||
  fail "no log line for the unknown result: $(grep rep-dev "$WORK/server.log")"
! grep -q "\[rep-dev .*store error" "$WORK/server.log" || fail "an unknown result was a store error: $(grep rep-dev "$WORK/server.log")"
ok "a report of a result this server does not know: acknowledged and logged, the device offered its update"
stop_fleet
