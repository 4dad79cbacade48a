#!/usr/bin/env bash
# scripts/rename.sh on a scratch copy: rename the template to `my_service`, check that every
# target of the workspace builds, and run the tests that see the renamed spellings (headers and
# cookie through a standby read, metric names, the role and its settings, session cookie, the
# sessions trigger's NOTIFY channel).
# The copy shares this checkout's target directory, so only the two workspace crates build again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$(mktemp -d /tmp/rename-check.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# A copy of HEAD (uncommitted changes are not in it), as a repository of its own: rename.sh
# wants a clean git tree, and this works whatever CI's checkout is (shallow, detached).
mkdir "$scratch/my_service"
git archive HEAD | tar -x -C "$scratch/my_service"
cd "$scratch/my_service"
git init -q
git add -A
git -c user.name=ci -c user.email=ci@localhost commit -qm "copy of $(git -C "$root" rev-parse --short HEAD)"
bash scripts/rename.sh my_service

if left=$(git grep -n -i pgbridge -- . ':!scripts/rename.sh'); then
  echo "scripts/rename.sh left these spellings:" >&2
  echo "$left" >&2
  exit 1
fi
export CARGO_TARGET_DIR="$root/target"
cargo check --workspace --all-targets
cargo test --test api -- auth:: ownership:: seed_apps:: scale::reads_from_a_standby_see_your_writes \
  sessions_cache::a_logout_on_one_service_stops_the_token_on_the_other_within_a_second
