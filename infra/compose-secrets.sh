#!/usr/bin/env bash
# Write the secrets infra/compose.yaml mounts, once per deployment (existing files are kept):
#   infra/.env                      POSTGRES_PASSWORD and REDIS_PASSWORD (compose reads them
#                                   for interpolation)
#   infra/secrets/consent-public.pem   the account service's Ed25519 public key
#                                   (a fresh development pair is made when none is there;
#                                   replace it with the real account service's public key)
#   infra/secrets/aws-credentials   the S3 key the API uses (boto3 shared credentials file)
#   infra/secrets/s3-config.json    the same key as a SeaweedFS identity
# Environment: CHORUS_SECRETS_DIR (default infra/secrets), CHORUS_ENV_FILE (default infra/.env).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secrets_dir="${CHORUS_SECRETS_DIR:-$here/secrets}"
env_file="${CHORUS_ENV_FILE:-$here/.env}"

mkdir -p "$secrets_dir"
# The folder is private; the files inside are bind-mounted into containers running as other
# users, so they stay readable to those users.
chmod 700 "$secrets_dir"

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

if [[ ! -f "$env_file" ]] || ! grep -q '^POSTGRES_PASSWORD=' "$env_file"; then
  (umask 077 && echo "POSTGRES_PASSWORD=$(random_hex 24)" >>"$env_file")
fi
if ! grep -q '^REDIS_PASSWORD=' "$env_file"; then
  (umask 077 && echo "REDIS_PASSWORD=$(random_hex 24)" >>"$env_file")
fi

if [[ ! -f "$secrets_dir/consent-public.pem" ]]; then
  # Development pair only: tokens minted with consent-private.pem are accepted by this stack.
  (umask 077 && openssl genpkey -algorithm ed25519 -out "$secrets_dir/consent-private.pem")
  openssl pkey -in "$secrets_dir/consent-private.pem" -pubout -out "$secrets_dir/consent-public.pem"
  chmod 644 "$secrets_dir/consent-public.pem"
fi

if [[ ! -f "$secrets_dir/aws-credentials" || ! -f "$secrets_dir/s3-config.json" ]]; then
  access_key="$(random_hex 10)"
  secret_key="$(random_hex 20)"
  cat >"$secrets_dir/aws-credentials" <<INI
[default]
aws_access_key_id = $access_key
aws_secret_access_key = $secret_key
INI
  cat >"$secrets_dir/s3-config.json" <<JSON
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
  chmod 644 "$secrets_dir/aws-credentials" "$secrets_dir/s3-config.json"
fi

echo "compose secrets are in $secrets_dir and $env_file"
