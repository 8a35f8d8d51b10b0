#!/usr/bin/env bash
# Run Chorus scaled out on one machine: two `chorus serve` processes on different ports, both
# on one PostgreSQL and one SeaweedFS, each with its own release scheduler (ARCHITECTURE §8).
# Stops both processes on Ctrl-C. Servers are started only when their URL is not exported yet:
#   CHORUS_DATABASE_URL  unset -> infra/local/start-postgres.sh
#   CHORUS_STORAGE_URL   unset -> infra/local/start-seaweedfs.sh
#   CHORUS_CONSENT_PUBLIC_KEY unset -> `chorus consent keygen`'s development pair in ./var/keys
#                        (`chorus consent mint` signs with its private half; never in production)
#   CHORUS_SCALED_PORTS  ports of the processes (default "8001 8002")
#   CHORUS_POLICY        policy (default demo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo_root/.venv/bin/python}"
chorus="${CHORUS_BIN:-$repo_root/.venv/bin/chorus}"
read -r -a ports <<<"${CHORUS_SCALED_PORTS:-8001 8002}"
run_dir="${CHORUS_SCALED_DIR:-./var/scaled}"
mkdir -p "$run_dir"

if [[ -z "${CHORUS_DATABASE_URL:-}" ]]; then
  eval "$("$here/start-postgres.sh")"
fi
if [[ -z "${CHORUS_STORAGE_URL:-}" ]]; then
  eval "$("$here/start-seaweedfs.sh")"
fi
if [[ -z "${CHORUS_CONSENT_PUBLIC_KEY:-}" ]]; then
  # The same development pair `make run` uses and `chorus consent mint` reads by default.
  if [[ ! -f ./var/keys/public.pem ]]; then
    "$chorus" consent keygen --out ./var/keys >&2
  fi
  CHORUS_CONSENT_PUBLIC_KEY="$(pwd)/var/keys/public.pem"
fi
export CHORUS_DATABASE_URL CHORUS_STORAGE_URL CHORUS_CONSENT_PUBLIC_KEY
export CHORUS_POLICY="${CHORUS_POLICY:-demo}"
export CHORUS_SCHEDULER_ENABLED=true

# Apply migrations once, before the replicas race for it.
"$chorus" db upgrade

pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for port in "${ports[@]}"; do
  "$chorus" serve --host 127.0.0.1 --port "$port" >"$run_dir/serve-$port.log" 2>&1 &
  pids+=($!)
  echo $! >"$run_dir/serve-$port.pid"
done

for port in "${ports[@]}"; do
  for _ in $(seq 1 120); do
    if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      echo "ready: http://127.0.0.1:$port (log $run_dir/serve-$port.log)"
      continue 2
    fi
    sleep 0.5
  done
  echo "run-scaled: the process on port $port did not become ready; see $run_dir/serve-$port.log" >&2
  exit 1
done

echo "Chorus runs on ports ${ports[*]}; Ctrl-C stops both (PostgreSQL and SeaweedFS keep running)."
wait
