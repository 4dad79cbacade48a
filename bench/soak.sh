#!/usr/bin/env bash
# A soak run of the service binary (tests/api/soak.rs): for SOAK_SECS it cycles through
#   - load: 2 writers retrying each write with the same Idempotency-Key until a 2xx, and 20 s
#     of 32 clients reading (every read must answer 200);
#   - Postgres restarted under the writers, a fast shutdown and a crash (immediate) in turn:
#     seconds until /readyz answers 200, and until writes are acknowledged again;
#   - SOAK_IDLE_SECS of idleness while Postgres cuts the service's idle connections
#     (idle_session_timeout = 20s on its database), then a read, a write and /readyz that
#     must each answer 2xx the first time;
# with one /notes/events stream open throughout (reopened with Last-Event-ID when the server
# ends it). It fails on an acknowledged write lost or applied twice, an event not delivered or
# delivered twice, a 500, a failed read outside a restart, an ERROR or a panic in the log, more
# than 30 WARN lines per restart (the kinds are printed), or
# RSS (+16 MB), descriptors (+8) or threads (+4) growing from the second cycle to the last.
#
#   bash bench/soak.sh                               # 10 minutes, 75 s idle phases
#   SOAK_SECS=120 SOAK_IDLE_SECS=30 bash bench/soak.sh
#   SOAK_VIA=pgbouncer bash bench/soak.sh            # the pool and shared connections through
#                                                    # PgBouncer (transaction mode), LISTEN direct
#   SOAK_RUNTIME=percore bash bench/soak.sh          # the service with one runtime per core
#
# Raw output (one line per cycle, then the totals): bench/results/soak-<time>.txt. In the totals,
# "writes unavailable" is the longest gap between two acknowledged writes over the whole run, so
# it spans an idle phase (no writer runs then); each restart's own figure is its cycle line's.
# The service is the debug build `cargo test` makes.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECS=${SOAK_SECS:-600}
SOAK_IDLE_SECS=${SOAK_IDLE_SECS:-75}
SOAK_VIA=${SOAK_VIA:-direct}
SOAK_RUNTIME=${SOAK_RUNTIME:-multi}
export SOAK_SECS SOAK_IDLE_SECS SOAK_VIA SOAK_RUNTIME
if [ "$SOAK_VIA" = pgbouncer ] && ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "SOAK_VIA=pgbouncer needs pgbouncer: apt-get install pgbouncer" >&2; exit 1
fi

mkdir -p bench/results
out="bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# raw output of bench/soak.sh"
  echo "command: SOAK_SECS=$SOAK_SECS SOAK_IDLE_SECS=$SOAK_IDLE_SECS SOAK_VIA=$SOAK_VIA SOAK_RUNTIME=$SOAK_RUNTIME bash bench/soak.sh"
  echo "started: $(date -u +%FT%TZ)"
  echo "commit: $(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)"
  echo "cores: $(nproc)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

cargo test --test api --no-run -q 2>/dev/null || cargo test --test api --no-run
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test -q --test api -- soak:: --ignored --nocapture --test-threads=1 >"$log" 2>&1 || status=$?
# The figures: a line per cycle, the event and write totals, the log's summary.
grep -E '^(cycle [0-9]+ at|soak: )' "$log" | tee -a "$out" || true
if [ "$status" != 0 ]; then
  echo "== the soak run failed; its output:" | tee -a "$out"
  tee -a "$out" < "$log" >&2
fi
{
  echo "finished: $(date -u +%FT%TZ)"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out"
echo "raw output: $out"
exit "$status"
