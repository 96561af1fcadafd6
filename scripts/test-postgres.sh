#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for the tests, from the system packages, in a
# temporary folder, as an unprivileged user, listening on 127.0.0.1 only.
# Usage: scripts/test-postgres.sh start|stop [PORT]   (default port 55432)
# On start it prints the URL to export as ZMOT_TEST_DATABASE_URL.
set -euo pipefail
cmd=${1:-start}
port=${2:-55432}
dir=${ZMOT_PG_DIR:-/tmp/zmot-pg-$port}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL server binaries not found; install them with: apt-get install -y postgresql" >&2
  exit 1
fi
run_as=()
if [ "$(id -u)" = 0 ]; then
  # The server refuses to run as root.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi
case "$cmd" in
  start)
    if [ -f "$dir/data/postmaster.pid" ] && "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      echo "postgres://postgres@127.0.0.1:$port/postgres"
      exit 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c max_connections=300" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop [PORT]" >&2
    exit 2
    ;;
esac
