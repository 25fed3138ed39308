#!/bin/sh
# The entrypoint of replicheck-postgres:local (see build-images.sh): the part of the
# official postgres image's conventions a run relies on. POSTGRES_USER owns the cluster,
# POSTGRES_DB is created beside it, POSTGRES_HOST_AUTH_METHOD is how other hosts (the
# replicas' containers) sign in, and PGDATA is initialised on the first start only, so a
# container started again keeps its data.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
[ "${1:-}" = postgres ] && shift
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --username="$POSTGRES_USER" --auth=trust --encoding=UTF8 --locale=C -D "$PGDATA" >/dev/null
  echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # Single-user mode: no server listens before the real one does.
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
