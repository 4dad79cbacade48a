#!/usr/bin/env bash
# The API document, from the live service, validated and used: a private PostgreSQL on
# loopback (bench/lib.sh), the binary on a free port, then
#   1. openapi-spec-validator on the /openapi.json it serves;
#   2. openapi-python-client generates a Python client from that document;
#   3. .ci/client_session.py runs a session through the client (sign up, log in, create,
#      list, conditional edit).
#
#   bash .ci/client_session.sh            # builds the debug binary if needed
#
# Needs: openapi-spec-validator, openapi-python-client (pip; .ci/run installs them),
# PostgreSQL server binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BIN=${PGBRIDGE_BIN:-target/debug/pgbridge}
if [ -z "${PGBRIDGE_BIN:-}" ]; then cargo build --quiet --bin pgbridge; fi

start_postgres
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" >"$WORK/service.log" 2>&1 &
BENCH_PIDS+=("$!")
for _ in $(seq 1 100); do
  curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$URL/readyz" >/dev/null || { cat "$WORK/service.log" >&2; exit 1; }

curl -fsS "$URL/openapi.json" >"$WORK/openapi.json"
echo "== openapi-spec-validator"
openapi-spec-validator "$WORK/openapi.json"

echo "== openapi-python-client generate"
# openapi-python-client 0.29 writes code that does not import (NameError: Unset) for a request
# body offered in two media types (PATCH /notes/{id}: merge-patch+json and json), so the
# client is generated from the document with each request body's first media type only.
python3 - "$WORK/openapi.json" >"$WORK/openapi-client.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for item in doc["paths"].values():
    for operation in item.values():
        body = operation.get("requestBody") if isinstance(operation, dict) else None
        if body and len(body["content"]) > 1:
            first = next(iter(body["content"]))
            body["content"] = {first: body["content"][first]}
json.dump(doc, sys.stdout)
PY
openapi-python-client generate --path "$WORK/openapi-client.json" --meta none \
  --output-path "$WORK/api_client" --overwrite

echo "== a session through the generated client"
status=0
PYTHONPATH="$WORK" python3 .ci/client_session.py "$URL" || status=$?
if [ "$status" != 0 ]; then
  echo "== service log (last 50 lines)"
  tail -50 "$WORK/service.log"
fi
exit "$status"
