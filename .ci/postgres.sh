#!/usr/bin/env bash
# Install PostgreSQL from Debian's packages if missing, start a private cluster on
# 127.0.0.1 and create the test database. Idempotent: run it as often as you like.
# The last line printed is `export POLICYD_TEST_PG_DSN=...`, for `eval "$(bash .ci/postgres.sh)"`.
# Everything else goes to stderr.
set -euo pipefail

PGPORT="${POLICYD_PG_PORT:-55432}"
PGDATA="${POLICYD_PG_DATA:-/var/tmp/policyd-postgres}"
DB_NAME="${POLICYD_PG_DB:-policyd_test}"
DB_USER="${POLICYD_PG_USER:-policyd}"
DB_PASSWORD="${POLICYD_PG_PASSWORD:-policyd}"

log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

if [[ -z "$(pg_bindir)" ]]; then
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
fi
BIN="$(pg_bindir)"
[[ -n "$BIN" ]] || { log "no PostgreSQL binaries after install"; exit 1; }

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    log "creating cluster in $PGDATA"
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >&2
fi

if ! as_postgres "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PGPORT"
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PGDATA -c max_connections=200" >&2
fi

psql_admin() {
    as_postgres "$BIN/psql" -h "$PGDATA" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
}

for _ in $(seq 1 30); do
    psql_admin -c 'select 1' >/dev/null 2>&1 && break
    sleep 1
done

if [[ "$(psql_admin -c "select 1 from pg_roles where rolname = '$DB_USER'")" != 1 ]]; then
    log "creating role $DB_USER"
    psql_admin -c "create role $DB_USER login password '$DB_PASSWORD'" >&2
fi
if [[ "$(psql_admin -c "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]]; then
    log "creating database $DB_NAME"
    psql_admin -c "create database $DB_NAME owner $DB_USER template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'" >&2
fi

echo "export POLICYD_TEST_PG_DSN=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PGPORT/$DB_NAME"
