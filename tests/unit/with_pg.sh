#!/usr/bin/env bash
# with_pg.sh CMD...: runs CMD with a PostgreSQL cluster of its own, started in
# a scratch folder (scripts/pg_lib.sh) and stopped afterwards whatever CMD
# does; CMD finds it through TCPOTA_PG (a libpq connection string), and its
# server log in TCPOTA_PG_LOG.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/pg_lib.sh"

work=$(mktemp -d /tmp/tcpota-pg.XXXXXX)
cleanup() {
  local rc=$?
  pg_stop "$work" || true
  [ $rc -eq 0 ] || { echo "--- postgres.log ---" >&2; tail -20 "$work/postgres.log" >&2 || true; }
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
pg_start "$work"
TCPOTA_PG=$PG_CONNINFO TCPOTA_PG_LOG=$work/postgres.log "$@"
