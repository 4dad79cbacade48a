#!/bin/bash
# docker-entrypoint-initdb.d script for the primary (docker-compose.scale.yml): allow
# streaming replication for the pgbridge role (a superuser in compose) from the network.
set -euo pipefail
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
