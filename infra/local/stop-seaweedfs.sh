#!/usr/bin/env bash
# Stop the SeaweedFS started by start-seaweedfs.sh (same CHORUS_SEAWEED_DIR); data is kept.
#   CHORUS_SEAWEED_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 20;
#                                weed's graceful shutdown takes ~15 s, and an acknowledged
#                                object is already in the volume files, so SIGKILL loses nothing)
set -euo pipefail

data_dir="${CHORUS_SEAWEED_DIR:-./var/seaweedfs}"
timeout_s="${CHORUS_SEAWEED_STOP_TIMEOUT:-20}"
pid_file="$data_dir/weed.pid"
if [[ ! -f "$pid_file" ]]; then
  echo "stop-seaweedfs: not running (no $pid_file)"
  exit 0
fi
pid="$(cat "$pid_file")"
# Only signal the pid if it is still our weed (pids are reused).
if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "weed server"; then
  kill -TERM "$pid"
  for _ in $(seq 1 $((timeout_s * 5))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
fi
rm -f "$pid_file"
echo "stop-seaweedfs: stopped (pid $pid)"
