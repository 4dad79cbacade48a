#!/bin/bash
# A hot standby of the compose primary: clone it once with pg_basebackup -R (which writes
# standby.signal and primary_conninfo), then run postgres, streaming from it.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_basebackup -h postgres -p 5432 -U pgbridge -D "$PGDATA" -R -X stream -c fast; do
    echo "waiting for the primary to accept a base backup" >&2
    rm -rf "${PGDATA:?}"/*
    sleep 2
  done
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
