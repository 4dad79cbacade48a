#!/usr/bin/env bash
# The notes, events and ownership suites again, with the service's pool going through a real
# PgBouncer in transaction mode (DB_POOL_MODE=transaction, unnamed statements), as issue 19
# requires: a private PostgreSQL and a private PgBouncer on loopback ports, the suites pointed
# at them with DATABASE_URL (the server) and PGBRIDGE_TEST_POOLER_URL (the pooler; see
# tests/api/common/service.rs). Needs /usr/sbin/pgbouncer (apt-get install pgbouncer).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/pgbouncer ]; then
  echo "SKIPPED: the suites through PgBouncer need it: apt-get install pgbouncer" >&2
  [ -n "${CI:-}" ] && exit 1
  exit 0
fi
source bench/lib.sh
start_postgres fsync=off max_connections=300
start_pgbouncer 20 1000
echo "== PgBouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}') (transaction mode) on 127.0.0.1:$BOUNCER_PORT"
DATABASE_URL=$PG_URL PGBRIDGE_TEST_POOLER_URL="$POOLER_URL" \
  cargo test --test api -- notes:: events:: ownership:: "$@"
