# Shared by the benchmark scripts: a private PostgreSQL on loopback, and machine facts.
# Source it; call start_postgres; it sets PG_BIN, WORK, PG_PORT, PG_URL and cleans up on exit.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# need COMMAND PACKAGE...: COMMAND on the PATH (or at its path), else Debian's PACKAGEs installed
# when running as root, as CI does; otherwise the script stops and says what to install.
need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing $* (for $cmd)"
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null
    command -v "$cmd" >/dev/null && return
  fi
  echo "$cmd is needed: apt-get install $*" >&2
  exit 1
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

# start_pgbouncer [POOL_SIZE] [MAX_CLIENTS]: a private PgBouncer in transaction mode in front of
# start_postgres's server, on a free loopback port; waits until it accepts, stops with the
# rest. Sets BOUNCER_PORT and POOLER_URL (postgres://postgres@127.0.0.1:PORT, no database).
# PgBouncer reaches Postgres over its Unix socket, as a PgBouncer running beside Postgres
# does (POOLER_HOP=socket, the default), or over loopback TCP (POOLER_HOP=tcp, as one in
# its own container would); clients always reach PgBouncer over TCP.
start_pgbouncer() {
  BOUNCER_PORT=$(free_port)
  local pooler_hop
  case ${POOLER_HOP:-socket} in
    socket) pooler_hop=$WORK ;;
    tcp) pooler_hop=127.0.0.1 ;;
    *) echo "POOLER_HOP must be socket or tcp, not '$POOLER_HOP'" >&2; exit 1 ;;
  esac
  echo "== PgBouncer $(/usr/sbin/pgbouncer --version | awk 'NR==1 {print $NF}'), transaction mode, to Postgres over ${POOLER_HOP:-socket}"
  mkdir -p "$WORK/pgbouncer"
  cat > "$WORK/pgbouncer/pgbouncer.ini" <<INI
[databases]
* = host=$pooler_hop port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = ${1:-16}
max_client_conn = ${2:-500}
logfile = $WORK/pgbouncer/pgbouncer.log
INI
  echo '"postgres" ""' > "$WORK/pgbouncer/userlist.txt"
  local as_user=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$WORK/pgbouncer"; as_user=(-u postgres); fi
  /usr/sbin/pgbouncer "${as_user[@]}" "$WORK/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 &
  BENCH_PIDS+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BOUNCER_PORT") 2>/dev/null && break; sleep 0.1; done
  POOLER_URL="postgres://postgres@127.0.0.1:$BOUNCER_PORT"
}

# start_example LABEL BINARY ENV... : starts ./target/release/examples/BINARY on a free loopback
# port with DATABASE_URL=$PG_URL in plain text (ENV may override it), waits for /plaintext;
# sets URL_OF[LABEL] and PID_OF[LABEL] (the caller declares both: declare -A URL_OF PID_OF).
# Plain text unless ENV says otherwise, as the reference programs (NoTls): libpq's default
# sslmode=prefer would take TLS from a cluster that offers it.
start_example() {
  local label=$1 binary=$2 port; shift 2
  port=$(free_port)
  env DATABASE_URL="$PG_URL?sslmode=disable" BIND_ADDR="127.0.0.1:$port" "$@" "./target/release/examples/$binary" > "$WORK/$label.log" 2>&1 &
  BENCH_PIDS+=("$!")
  PID_OF[$label]=$!
  URL_OF[$label]="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "${URL_OF[$label]}/plaintext" >/dev/null && break; sleep 0.1; done
}

machine() {
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(rustc --version), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
}

# raw_results NAME: starts bench/results/<UTC time>-NAME.txt, the run's raw output, with what
# its figures depend on (command, commit, cores, load average); sets RAW. raw_end closes it.
raw_results() {
  mkdir -p bench/results
  RAW=bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$1.txt
  {
    echo "# raw output of bench/$1.sh"
    echo "command: ${RAW_COMMAND:-bash bench/$1.sh}"
    echo "started: $(date -u +%FT%TZ)"
    echo "commit: $(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)"
    echo "cores: $(nproc)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "machine: $(machine)"
  } > "$RAW"
  echo "== raw output: $RAW"
}
raw_end() {
  {
    echo "finished: $(date -u +%FT%TZ)"
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >> "$RAW"
}
# What a generated section says about the run it comes from: read, never written by hand.
run_facts() {
  echo "raw output \`$RAW\` (commit $(awk '/^commit: / { print $2 }' "$RAW"), $(nproc) cores, load average $(awk -F': ' '/^load average at start: / { print $2 }' "$RAW") at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
}

# write_section NAME CONTENT [FILE]: replaces <!-- NAME:begin -->…<!-- NAME:end --> in FILE
# (default bench/RESULTS.md).
write_section() {
  local file=${3:-bench/RESULTS.md}
  touch "$file"
  python3 - "$1" "$2" "$file" <<'PY'
import re, sys
name, section, path = sys.argv[1], sys.argv[2], sys.argv[3]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{section.strip()}\n{end}"
text = open(path).read()
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
open(path, "w").write(text)
PY
}

# to_ms VALUE-WITH-UNIT: one of wrk's latencies (850.00us, 4.33ms, 1.20s) in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

# median: the median of the numbers on standard input, one a line ("n/a" if there are none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratio A B: A / B to two decimals ("n/a" when B is not above 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

# cpu_ticks PID...: the processes' utime+stime (/proc/PID/stat), summed, in clock ticks; a
# process that is gone counts 0.
cpu_ticks() {
  local total=0 pid t
  for pid in "$@"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# rotate N WORD...: the words starting from the (N mod count)-th (0-based) and wrapping round: an
# interleaved benchmark rotates its variants' order each round, so that none always runs first
# (the first run after another route's measures, or after a round's end, ran slower in bench/run.sh).
rotate() {
  local n=$1; shift
  local words=("$@") count=$#
  [ "$count" -gt 0 ] || return 0
  local i
  for ((i = 0; i < count; i++)); do echo "${words[$(((n + i) % count))]}"; done
}

# thread_times PID: "tid name ran_ns waited_ns" for each of the process's threads but its main
# one, from /proc/PID/task/TID/schedstat: the time the thread ran on a CPU and the time it
# waited, runnable, for one. A name's spaces become underscores; a thread that ends while it
# is read is left out.
thread_times() {
  local task name ran waited
  for task in /proc/"$1"/task/*; do
    [ "${task##*/}" = "$1" ] && continue
    name=$(tr ' ' '_' < "$task/comm" 2>/dev/null) || continue
    read -r ran waited _ < "$task/schedstat" 2>/dev/null || continue
    echo "${task##*/} $name $ran $waited"
  done
  true
}
