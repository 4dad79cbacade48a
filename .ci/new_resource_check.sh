#!/usr/bin/env bash
# scripts/new-resource on a scratch copy: generate the resource `widgets`, check that its
# module is at most 250 lines and that the generated code is formatted, build, run its
# generated tests (CRUD, conditional edit, idempotency, owner isolation, live feed, field
# rules) and the API document's checks with it in the table (every route documented, every
# reference resolving, every documented operation served), and throw the copy away. The copy shares this checkout's target directory, so only
# the two workspace crates build again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$(mktemp -d /tmp/new-resource-check.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# A copy of HEAD (uncommitted changes are not in it).
git archive HEAD | tar -x -C "$scratch"
cd "$scratch"
bash scripts/new-resource widgets

lines=$(wc -l <src/apps/widgets.rs)
if [ "$lines" -gt 250 ]; then
  echo "src/apps/widgets.rs has $lines lines; a resource's module must be at most 250" >&2
  exit 1
fi
echo "src/apps/widgets.rs: $lines lines"
cargo fmt --all -- --check
export CARGO_TARGET_DIR="$root/target"
cargo build
cargo test --lib -- api_doc::
cargo test --test api -- widgets:: openapi::
