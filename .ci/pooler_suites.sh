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
BOUNCER_PORT=$(free_port)
mkdir -p "$WORK/pgbouncer"
cat > "$WORK/pgbouncer/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = $WORK/pgbouncer/pgbouncer.log
INI
echo '"postgres" ""' > "$WORK/pgbouncer/userlist.txt"
BOUNCER_USER=()
if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$WORK/pgbouncer"; BOUNCER_USER=(-u postgres); fi
/usr/sbin/pgbouncer "${BOUNCER_USER[@]}" "$WORK/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 &
BENCH_PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BOUNCER_PORT") 2>/dev/null && break; sleep 0.1; done
echo "== PgBouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}') (transaction mode) on 127.0.0.1:$BOUNCER_PORT"
DATABASE_URL=$PG_URL PGBRIDGE_TEST_POOLER_URL="postgres://postgres@127.0.0.1:$BOUNCER_PORT" \
  cargo test --test api -- notes:: events:: ownership:: "$@"
