#!/bin/bash
# Run by the postgres image once, when the data volume is first initialised (files in
# /docker-entrypoint-initdb.d). Later password changes in the environment do NOT reach existing roles:
# change them with ALTER ROLE, or recreate the volume (`docker compose down -v` deletes all data).
#
# - role `accounts` owns the app database `accounts` (migrations run as this role);
# - role `temporal` may create databases: temporal-admin-tools creates `temporal` and
#   `temporal_visibility` itself with temporal-sql-tool, so it owns them.
set -euo pipefail

: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD must be set}"

# Passwords travel as psql variables (:'name' quotes them), never spliced into the SQL text.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    -v app_password="$APP_DB_PASSWORD" -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE accounts LOGIN PASSWORD :'app_password';
CREATE DATABASE accounts OWNER accounts;
REVOKE ALL ON DATABASE accounts FROM PUBLIC;

CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
SQL
