#!/usr/bin/env bash
# Renames the template: every spelling of "pgbridge" becomes one of NEWNAME's, in one step on a
# clean git tree, so `git diff` shows exactly what changed:
#
#   scripts/rename.sh my_service && cargo test
#
#   pgbridge       -> my_service   crate, binary, imports, metric prefix (my_service_http_…), the
#                                  role (my_service_rls), settings (my_service.account_id),
#                                  cookies (my_service_session), compose database, docs
#   PGBRIDGE       -> MY_SERVICE   environment variables (MY_SERVICE_TOKEN, …)
#   Pgbridge-X-Y   -> My-Service-X-Y and pgbridge-x-y -> my-service-x-y: the HTTP headers and
#                                  the cookie of the same name (My-Service-Commit-Lsn,
#                                  My-Service-Min-Lsn, My-Service-Served-By); "_" becomes "-"
#                                  there because proxies drop header names with "_" (nginx's
#                                  default), and nginx's $http_my_service_min_lsn still names them
#   Pgbridge       -> My_service   anywhere else it is capitalised
#
# NEWNAME must be a lower-case Rust identifier (letters, digits, underscores; it is used as
# the crate name, `use NEWNAME::…`, a Postgres role and a Prometheus metric prefix).
# CI runs this on a scratch copy (.ci/rename_check.sh), then builds and tests the copy.
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
capital="$(printf '%s' "${new:0:1}" | tr '[:lower:]' '[:upper:]')${new:1}"
kebab=${new//_/-}
# my_service -> My-Service: each "_"-separated word capitalised, joined by "-".
title=$(printf '%s' "$new" | awk -F_ '{ for (i = 1; i <= NF; i++) $i = toupper(substr($i, 1, 1)) substr($i, 2); print }' OFS=-)

# The header (and cookie) names: every "Pgbridge-Word-Word" spelled in the tree, renamed in
# that form and in its lower-case form.
sed_args=()
while IFS= read -r header; do
  [ -n "$header" ] || continue
  rest=${header#Pgbridge}
  lower_rest=$(printf '%s' "$rest" | tr '[:upper:]' '[:lower:]')
  sed_args+=(-e "s/Pgbridge$rest/$title$rest/g" -e "s/pgbridge$lower_rest/$kebab$lower_rest/g")
done < <(git grep -ohE 'Pgbridge(-[A-Z][a-z]*)+' -- . ':!scripts/rename.sh' | sort -u -r)
sed_args+=(-e "s/pgbridge/$new/g" -e "s/PGBRIDGE/$upper/g" -e "s/Pgbridge/$capital/g")

files=$(git grep -Il -i -e pgbridge -- . ':!scripts/rename.sh' || true)
count=0
for file in $files; do
  sed -i "${sed_args[@]}" "$file"
  count=$((count + 1))
done
echo "renamed pgbridge -> $new (headers ${title}-…, environment ${upper}_…) in $count files"
echo "next: cargo build (updates Cargo.lock's package name), cargo test, git diff, git commit"
