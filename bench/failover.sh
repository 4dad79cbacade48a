#!/usr/bin/env bash
# Failover, measured with the real programs on loopback (README "High availability"): runs
# tests/api/failover/patroni.rs — etcd, two Patroni nodes (deploy/ha/patroni.yml), HAProxy
# (deploy/ha/haproxy.cfg), the pgbridge binary and 4 writers retrying each write with the
# same Idempotency-Key until a 2xx — and prints, per case and route:
#   acknowledged writes, lost, duplicated, seconds writes were unavailable (the longest gap
#   between two acknowledgements), write and read responses by status, and the events:
#   written for the phase's notes (and of those, for notes acknowledged after the failover
#   began), delivered to a live /notes/events stream opened before the load (reopened with
#   Last-Event-ID whenever the server ends it), delivered twice, times it was reopened.
# The test fails (and so this script) on a lost or duplicated write, a 500, an event not
# delivered or delivered twice, or a failed read during the switchover.
# Cases: kill (kill -9 of the primary's Patroni and postmaster) and switchover (patronictl)
# through HAProxy; multihost-kill through a multi-host DATABASE_URL with
# target_session_attrs=read-write and no proxy.
#
#   bash bench/failover.sh             # one round (~2 minutes)
#   ROUNDS=3 bash bench/failover.sh
#
# Raw output goes to bench/results/failover-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1}

for tool in /usr/bin/etcd /usr/bin/patroni /usr/bin/patronictl /usr/sbin/haproxy; do
  [ -x "$tool" ] || { echo "missing $tool; install with: apt-get install patroni etcd-server haproxy" >&2; exit 1; }
done

mkdir -p bench/results
out="bench/results/failover-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# bench/failover.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# cores $(nproc)"
  echo "# load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# patroni $(patroni --version 2>&1 | awk '{print $2}'), $(etcd --version 2>&1 | head -1), $(haproxy -v 2>&1 | head -1 | awk '{print $1, $3}')"
  echo "# settings: ttl 10 s, loop_wait 2 s, retry_timeout 4 s, synchronous_mode on; HAProxy inter 1s fall 3"
} | tee "$out"

cargo test --test api --no-run -q 2>/dev/null || cargo test --test api --no-run
for round in $(seq "$ROUNDS"); do
  echo "## round $round" | tee -a "$out"
  # Figures lines only; the whole run's output is kept below them.
  log=$(mktemp)
  if ! cargo test -q --test api -- failover::patroni --nocapture --test-threads=1 >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "the failover run failed" >&2
    exit 1
  fi
  grep -oE '(kill|switchover|multihost-kill): .*' "$log" | tee -a "$out"
  rm -f "$log"
done
echo "# load average at end $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "raw output: $out"
