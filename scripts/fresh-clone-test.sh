#!/usr/bin/env bash
# The README's test command on a fresh clone, on this machine made to look like one with only
# Rust and PostgreSQL's server binaries: every optional program the tests may use
# (tests/api/common/programs.rs) is hidden — bind-mounted over by /dev/null, the Playwright
# package by an empty folder — inside a private mount namespace, so nothing outside it changes.
# Needs root (unshare -m). Writes the raw output to bench/results/fresh-clone-<time>.txt.
#
#   bash scripts/fresh-clone-test.sh            # clones HEAD of this checkout
#   SEED_TARGET=target bash scripts/fresh-clone-test.sh   # reuse built dependencies (faster; not a build-time figure)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
commit=$(git rev-parse --short HEAD)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$repo/bench/results/fresh-clone-$stamp.txt"
work=$(mktemp -d /tmp/pgbridge-fresh.XXXXXX)
git clone -q "$repo" "$work/clone"
if [ -n "${SEED_TARGET:-}" ] && [ -d "$SEED_TARGET" ]; then
  cp -a "$SEED_TARGET" "$work/clone/target"
fi
hide=()
for name in nginx pgbouncer chromium chromium-browser sqlx schemathesis patroni patronictl etcd haproxy prometheus promtool; do
  for dir in $(echo "$PATH" | tr ':' ' ') /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin "$HOME/.cargo/bin" "$HOME/.local/bin"; do
    [ -e "$dir/$name" ] && hide+=("$dir/$name")
  done
done
# One entry per file (PATH and the fixed places overlap).
mapfile -t hide < <(printf '%s\n' "${hide[@]}" | sort -u)
playwright=$(python3 -c 'import playwright, os; print(os.path.dirname(playwright.__file__))' 2>/dev/null || true)
cat > "$work/run.sh" <<INNER
#!/usr/bin/env bash
set -u
mkdir -p "$work/empty"
for f in ${hide[*]}; do mount --bind /dev/null "\$f" 2>/dev/null || true; done
if [ -n "$playwright" ]; then mount --bind "$work/empty" "$playwright"; fi
unset CI
cd "$work/clone"
start=\$(date +%s)
cargo test > "$work/test.log" 2>&1
rc=\$?
end=\$(date +%s)
echo "exit=\$rc wall=\$((end-start))s cores=\$(nproc) load=\$(cat /proc/loadavg)" >> "$work/test.log"
exit \$rc
INNER
chmod +x "$work/run.sh"
set +e
unshare -m --propagation private "$work/run.sh"
rc=$?
set -e
{
  echo "command: bash scripts/fresh-clone-test.sh${SEED_TARGET:+ (SEED_TARGET=$SEED_TARGET: dependencies reused, so the wall time is not a build time)}"
  echo "commit: $commit"
  echo "cores: $(nproc)"
  echo "hidden: ${hide[*]} ${playwright:+$playwright (empty)}"
  echo "summary: $(tail -1 "$work/test.log")"
  echo "ignored with SKIPPED reasons: $(grep -c 'ignored, SKIPPED' "$work/test.log" || true)"
  echo "---- raw output ----"
  cat "$work/test.log"
} > "$out"
grep 'ignored, SKIPPED\|^test result' "$work/test.log" || true
echo "exit=$rc; raw output in $out"
rm -rf "$work"
exit $rc
