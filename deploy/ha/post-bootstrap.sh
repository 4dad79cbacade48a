#!/bin/sh
# Patroni's post_bootstrap (deploy/ha/patroni.yml): runs once, on the node that initialised
# the cluster, with a superuser connection URL as $1. Creates the service's role and
# database; pgbridge applies its migrations itself at start-up.
set -eu
psql "$1" -v ON_ERROR_STOP=1 <<'SQL'
-- CREATEROLE: the migrations create the row-level-security role pgbridge_rls.
CREATE ROLE pgbridge LOGIN CREATEROLE PASSWORD 'pgbridge';
CREATE DATABASE pgbridge OWNER pgbridge;
SQL
