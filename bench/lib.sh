# Shared by the benchmark scripts: a private PostgreSQL on loopback, and machine facts.
# Source it; call start_postgres; it sets PG_BIN, WORK, PG_PORT, PG_URL and cleans up on exit.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

BENCH_PIDS=()
bench_cleanup() {
  local status=$?   # the script's own result, kept whatever the clean-up returns
  for pid in "${BENCH_PIDS[@]}"; do
    { kill "$pid"; wait "$pid"; } 2>/dev/null || true
  done
  if [ -n "${WORK:-}" ]; then
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  exit "$status"
}

# start_postgres [extra postgres -c settings...]
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
  WORK=$(mktemp -d /tmp/pgbridge-bench.XXXXXX)
  RUN_AS=()
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$WORK"; RUN_AS=(runuser -u postgres --); fi
  trap bench_cleanup EXIT
  PG_PORT=$(free_port)
  local opts="-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200"
  for setting in "$@"; do opts="$opts -c $setting"; done
  "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w -o "$opts" start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

machine() {
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(rustc --version), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
}

# write_section NAME CONTENT: replaces <!-- NAME:begin -->…<!-- NAME:end --> in bench/RESULTS.md.
write_section() {
  touch bench/RESULTS.md
  python3 - "$1" "$2" <<'PY'
import re, sys
name, section = sys.argv[1], sys.argv[2]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{section.strip()}\n{end}"
path = "bench/RESULTS.md"
text = open(path).read()
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
open(path, "w").write(text)
PY
}
