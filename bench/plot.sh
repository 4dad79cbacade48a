#!/usr/bin/env bash
# Draws req/s and p99 per route and variant, one panel per wrk thread count, from the raw
# output of bench/run.sh (medians over its rounds, the 64-client runs), as an SVG.
#
#   bash bench/plot.sh bench/results/<time>-run.txt bench/techempower.svg
set -euo pipefail
RAW=${1:?usage: bench/plot.sh RAW-RESULTS [OUT.svg]}
OUT=${2:-${RAW%.txt}.svg}
source "$(dirname "$0")/lib.sh"
need gnuplot gnuplot-nox
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
# One table per wrk -t and measure: a row per route, a column per variant, medians; "-" missing.
python3 - "$RAW" "$DATA" <<'PY'
import re, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
runs, current = {}, None
head = re.compile(r"^=== wrk route=(\S+) variant=(\S+) threads=(\d+) connections=(\d+) round=(\d+)")
def ms(v):
    n = float(re.match(r"[\d.]+", v).group())
    return n / 1000 if v.endswith("us") else n if v.endswith("ms") else n * 1000
for line in open(raw):
    m = head.match(line)
    if m:
        current = runs.setdefault(m.groups()[:4], {"rps": [], "p99": []})
        continue
    if current is None:
        continue
    f = line.split()
    if line.startswith("Requests/sec:"):
        current["rps"].append(float(f[1]))
    elif len(f) == 2 and f[0] == "99%":
        current["p99"].append(ms(f[1]))
order_r = ["/plaintext", "/json", "/db", "/queries?queries=20", "/fortunes", "/updates?queries=20"]
order_v = ["layer", "native", "layer-multi", "percore", "deadpool", "shared", "pooled", "layer-tls", "sequential"]
conns = sorted({k[3] for k in runs}, key=int)[0]
threads = sorted({k[2] for k in runs}, key=int)
routes = [r for r in order_r if any(k[0] == r for k in runs)]
variants = [v for v in order_v if any(k[1] == v for k in runs)]
for t in threads:
    for measure in ("rps", "p99"):
        with open(f"{out}/{measure}-{t}.dat", "w") as f:
            f.write("route " + " ".join(variants) + "\n")
            for r in routes:
                cells = []
                for v in variants:
                    vals = runs.get((r, v, t, conns), {}).get(measure, [])
                    cells.append(f"{statistics.median(vals):.2f}" if vals else "-")
                f.write(r.replace("?queries=", "?q=") + " " + " ".join(cells) + "\n")
open(f"{out}/meta", "w").write(f"{' '.join(threads)}\n{len(variants)}\n{conns}\n")
PY
mapfile -t META < "$DATA/meta"
read -ra TS <<< "${META[0]}"
NV=${META[1]}
CONNS=${META[2]}
ROWS=${#TS[@]}
{
  echo "set terminal svg size 1200,$((ROWS * 380 + 60)) dynamic font 'sans,11' background '#ffffff'"
  echo "set output '$OUT'"
  echo "set datafile missing '-'"
  echo "set style data histograms; set style histogram clustered gap 1; set style fill solid 0.85 border -1"
  echo "set boxwidth 0.9; set grid ytics; set logscale y; set key outside bottom center horizontal font ',9'"
  echo "colors = '#7b3294 #1b9e77 #56b4e9 #e69f00 #f0e442 #0072b2 #d55e00 #333333 #cc79a7'"
  echo "set xtics font ',9' nomirror; set ytics nomirror"
  echo "set multiplot layout $ROWS,2 title '$(basename "$RAW"): medians, wrk -c$CONNS'"
  for t in "${TS[@]}"; do
    for m in rps p99; do
      label=$([ "$m" = rps ] && echo "req/s (log scale)" || echo "p99 latency, ms (log scale)")
      echo "set title 'wrk -t$t: $label'"
      echo "plot for [i=2:$((NV + 1))] '$DATA/$m-$t.dat' using i:xtic(1) title columnheader(i) lc rgb word(colors, i - 1)"
    done
  done
  echo "unset multiplot"
} > "$DATA/plot.gp"
gnuplot "$DATA/plot.gp"
echo "wrote $OUT"
