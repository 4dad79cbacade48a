#!/usr/bin/env bash
# Heap allocations per request through the service's whole stack (`pgbridge::router`), for
# routes that touch no database: `examples/stack_allocations.rs` counts them with a counting
# global allocator. Counts, not times: exact on any machine, whatever else it runs. The dev
# profile is used (what is allocated does not depend on the optimisation level; the build is
# minutes shorter). Raw output: bench/results/<time>-stack_allocations.txt.
#
#   bash bench/stack_allocations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
. bench/lib.sh
cargo build -q --example stack_allocations
raw_results stack_allocations
{
  echo "== INFO logging (the binary's default)"
  "${CARGO_TARGET_DIR:-target}"/debug/examples/stack_allocations
  echo "== logging off (STACK_LOG=off)"
  STACK_LOG=off "${CARGO_TARGET_DIR:-target}"/debug/examples/stack_allocations
} | tee -a "$RAW"
raw_end
