#!/usr/bin/env bash
# What a fresh `cargo test` build costs with the dev profile's debug info as committed
# (line tables only) and with full debug info (Cargo's default, `CARGO_PROFILE_DEV_DEBUG=true`),
# each from an empty target directory: wall time and the CPU time (user + sys) of the whole
# build. CPU time moves little with other load on the machine; wall time does. Raw output:
# bench/results/build-cpu-<UTC time>.txt (commit, cores and load average included).
#
#   bash bench/build_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mkdir -p bench/results
out=bench/results/build-cpu-$(date -u +%Y%m%dT%H%M%SZ).txt
work=$(mktemp -d /tmp/pgbridge-build-cpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
{
  echo "command: bash bench/build_cpu.sh"
  echo "commit: $(git rev-parse --short HEAD)"
  echo "cores: $(nproc)"
  echo "load before: $(cat /proc/loadavg)"
  for variant in committed full-debug; do
    rm -rf "$work/clone/target"
    if [ "$variant" = full-debug ]; then
      export CARGO_PROFILE_DEV_DEBUG=true
    else
      unset CARGO_PROFILE_DEV_DEBUG
    fi
    ( cd "$work/clone" && /usr/bin/time -f "$variant: wall=%es user=%Us sys=%Ss" \
        cargo test --no-run -q 2>&1 | tail -1 )
    echo "$variant: target size $(du -sh "$work/clone/target" | cut -f1)"
  done
  echo "load after: $(cat /proc/loadavg)"
} 2>&1 | tee "$out"
