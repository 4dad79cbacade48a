#!/usr/bin/env bash
# Renames the template: every "pgbridge" (crate, binary, imports, metric prefix, compose
# database and role, default DATABASE_URL, docs) becomes NEWNAME, and "PGBRIDGE" becomes its
# upper case. One step, on a clean git tree, so `git diff` shows exactly what changed:
#
#   scripts/rename.sh my_service && cargo test
#
# NEWNAME must be a lower-case Rust identifier (letters, digits, underscores; it is used as
# the crate name, `use NEWNAME::…`, a Postgres role and a Prometheus metric prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

new=${1:-}
if ! [[ $new =~ ^[a-z][a-z0-9_]*$ ]]; then
  echo "usage: scripts/rename.sh NEWNAME   (lower-case letters, digits, underscores; e.g. my_service)" >&2
  exit 2
fi
if [ "$new" = pgbridge ]; then echo "already named pgbridge" >&2; exit 2; fi
if [ -n "$(git status --porcelain)" ]; then
  echo "commit or stash your changes first, so the rename is one reviewable diff" >&2
  exit 1
fi
upper=$(printf '%s' "$new" | tr '[:lower:]' '[:upper:]')

files=$(git grep -Il -e pgbridge -e PGBRIDGE -- . ':!scripts/rename.sh' || true)
count=0
for file in $files; do
  sed -i -e "s/pgbridge/$new/g" -e "s/PGBRIDGE/$upper/g" "$file"
  count=$((count + 1))
done
echo "renamed pgbridge -> $new in $count files"
echo "next: cargo build (updates Cargo.lock's package name), cargo test, git diff, git commit"
