"""The deployment files under infra/ keep their promises.

Kubernetes manifests are validated offline against the Kubernetes JSON schemas shipped with
kubernetes-validate (strict: unknown fields are errors). The compose file, nginx config and
Dockerfile are checked structurally, and every CHORUS_* variable they set must be a field of
core.settings.Settings, so a renamed setting cannot silently stop reaching production.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.errors import ConfigurationError
from core.settings import Settings
from core.storage_s3 import S3BlobStore
from ingest.consent import load_public_key
from policies.policy import load_policy

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
K8S = INFRA / "k8s"
# Oldest Kubernetes release the manifests must also validate against, besides the newest.
OLDEST_KUBERNETES = "1.29"
API_LABELS = {"app.kubernetes.io/name": "chorus", "app.kubernetes.io/component": "api"}


def _load_all(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document is not None]


def _yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"})


def _kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in _load_all(path):
            if not document["apiVersion"].startswith("kustomize.config.k8s.io/"):
                documents.append(
                    (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
                )
    return documents


def _find(kind: str, name: str) -> dict[str, Any]:
    for _, document in _kubernetes_documents():
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise AssertionError(f"no {kind} named {name} under infra/k8s")


def _api_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _find("Deployment", "chorus-api")["spec"]["template"][
        "spec"
    ]["containers"]
    (container,) = [c for c in containers if c["name"] == "api"]
    return container


def _compose() -> dict[str, Any]:
    (compose,) = _load_all(INFRA / "compose.yaml")
    return compose


def _settings_variable(name: str) -> bool:
    """Whether ``name`` is read by Settings (prefix CHORUS_ + a field name)."""
    return name.startswith("CHORUS_") and name[len("CHORUS_") :].lower() in Settings.model_fields


def _settings_from(variables: dict[str, str]) -> Settings:
    values = {name[len("CHORUS_") :].lower(): value for name, value in variables.items()}
    return Settings.model_validate(values)


# --- every file parses ---------------------------------------------------------------------


def test_every_yaml_file_under_infra_parses() -> None:
    files = _yaml_files()
    assert len(files) >= 9
    for path in files:
        documents = _load_all(path)
        assert documents, f"{path} holds no YAML document"
        assert all(isinstance(d, dict) for d in documents), path


@pytest.mark.parametrize(
    ("name", "document"), _kubernetes_documents(), ids=[n for n, _ in _kubernetes_documents()]
)
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_kubernetes_manifest_matches_the_schema(
    name: str, document: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{name} is invalid for Kubernetes {version} at {path}: {exc.message}")


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    deployment = _find("Deployment", "chorus-api")
    container = dict(_api_container())
    container["readinesProbe"] = container.pop("readinessProbe")
    broken = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                **deployment["spec"]["template"],
                "spec": {**deployment["spec"]["template"]["spec"], "containers": [container]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_exactly_the_manifests() -> None:
    (kustomization,) = _load_all(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert "namespace" not in kustomization
    for _, document in _kubernetes_documents():
        assert "namespace" not in document["metadata"]


# --- Kubernetes: structural promises -------------------------------------------------------


def test_api_deployment_runs_replicas_with_probes_on_the_operational_routes() -> None:
    deployment = _find("Deployment", "chorus-api")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    assert API_LABELS.items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"] == API_LABELS
    container = _api_container()
    assert container["command"][:2] == ["chorus", "serve"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert http_get["port"] in port_names
    assert port_names["http"] == int(_find("ConfigMap", "chorus-settings")["data"]["CHORUS_PORT"])
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()


def test_api_pods_run_unprivileged_on_a_read_only_root() -> None:
    pod_spec = _find("Deployment", "chorus-api")["spec"]["template"]["spec"]
    container = _api_container()
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod_spec["automountServiceAccountToken"] is False
    # Service links would inject CHORUS_*-prefixed variables into the settings' namespace.
    assert pod_spec["enableServiceLinks"] is False
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The model registry is shared (database + blob store): no per-pod model folder.
    assert "CHORUS_MODEL_DIR" not in _find("ConfigMap", "chorus-settings")["data"]
    assert not any("models" in path for path in mounts)


def test_pdb_service_and_autoscaler_target_the_api_pods() -> None:
    pod_labels = _find("Deployment", "chorus-api")["spec"]["template"]["metadata"]["labels"]
    pdb = _find("PodDisruptionBudget", "chorus-api")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = _find("Service", "chorus-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    hpa = _find("HorizontalPodAutoscaler", "chorus-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "chorus-api",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_database_and_store_are_external_services_the_urls_point_at() -> None:
    postgres = _find("Service", "chorus-postgres")
    s3 = _find("Service", "chorus-s3")
    assert postgres["spec"]["type"] == "ExternalName"
    assert s3["spec"]["type"] == "ExternalName"
    storage_url = _find("ConfigMap", "chorus-settings")["data"]["CHORUS_STORAGE_URL"]
    assert storage_url.startswith("s3://")
    store = S3BlobStore.from_url(storage_url)
    assert store.endpoint_url == f"http://chorus-s3:{s3['spec']['ports'][0]['port']}"
    database_url = _find("Secret", "chorus-secrets")["stringData"]["database-url"]
    assert database_url.startswith("postgresql+psycopg://")
    assert f"@chorus-postgres:{postgres['spec']['ports'][0]['port']}/" in database_url


def test_every_secret_value_is_a_marked_placeholder() -> None:
    secret = _find("Secret", "chorus-secrets")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, f"secret {key} holds a value that is not a placeholder"


def test_the_placeholder_consent_key_refuses_to_start(tmp_path: Path) -> None:
    placeholder = _find("Secret", "chorus-secrets")["stringData"]["consent-public.pem"]
    (tmp_path / "consent-public.pem").write_text(placeholder, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a valid PEM public key"):
        load_public_key(str(tmp_path / "consent-public.pem"))


def test_kubernetes_settings_are_settings_fields_with_valid_values() -> None:
    settings_map = _find("ConfigMap", "chorus-settings")["data"]
    container = _api_container()
    env_names = [e["name"] for e in container["env"]] + list(settings_map)
    chorus_names = [n for n in env_names if n.startswith("CHORUS_")]
    assert {
        "CHORUS_DATABASE_URL",
        "CHORUS_STORAGE_URL",
        "CHORUS_POLICY",
        "CHORUS_CONSENT_PUBLIC_KEY",
    } <= set(chorus_names)
    for name in chorus_names:
        assert _settings_variable(name), f"{name} is not a field of core.settings.Settings"
    assert set(env_names) - set(chorus_names) <= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    settings = _settings_from(settings_map)
    assert settings.scheduler_enabled is True
    assert settings.host == "0.0.0.0"  # noqa: S104 - containers listen on every interface


def test_policy_and_consent_key_paths_match_their_mounts() -> None:
    settings_map = _find("ConfigMap", "chorus-settings")["data"]
    pod_spec = _find("Deployment", "chorus-api")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in _api_container()["volumeMounts"]}

    policy_path = Path(settings_map["CHORUS_POLICY"])
    policy_volume = volumes[next(n for n, p in mounts.items() if p == str(policy_path.parent))]
    policy_map = _find("ConfigMap", policy_volume["configMap"]["name"])
    assert policy_path.name in policy_map["data"]

    key_path = Path(settings_map["CHORUS_CONSENT_PUBLIC_KEY"])
    key_volume = volumes[next(n for n, p in mounts.items() if p == str(key_path.parent))]
    secret = _find("Secret", key_volume["secret"]["secretName"])
    (item,) = key_volume["secret"]["items"]
    assert item["path"] == key_path.name
    assert item["key"] in secret["stringData"]


def test_shipped_policies_load_and_agree(tmp_path: Path) -> None:
    compose_policy = load_policy(str(INFRA / "config" / "policy.toml"))
    k8s_text = _find("ConfigMap", "chorus-policy")["data"]["policy.toml"]
    (tmp_path / "policy.toml").write_text(k8s_text, encoding="utf-8")
    k8s_policy = load_policy(str(tmp_path / "policy.toml"))
    assert tomllib.loads(k8s_text) == tomllib.loads(
        (INFRA / "config" / "policy.toml").read_text(encoding="utf-8")
    )
    assert compose_policy.k == k8s_policy.k == load_policy("default").k
    assert compose_policy.min_contributor_age >= 16


# --- compose, nginx, Dockerfile ------------------------------------------------------------


def test_compose_runs_two_api_replicas_behind_a_balancer_with_readiness_checks() -> None:
    services = _compose()["services"]
    api = services["api"]
    assert api["deploy"]["replicas"] == 2
    assert api["command"][:2] == ["chorus", "serve"]
    assert any("/readyz" in part for part in api["healthcheck"]["test"])
    assert api["read_only"] is True
    assert "/tmp" in api["tmpfs"]
    assert "ports" not in api, "replicas are reached through the balancer only"
    assert services["lb"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["chorus", "db", "upgrade"]
    assert services["migrate"]["image"] == api["image"]
    assert services["migrate"]["environment"] == api["environment"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["lb"]["ports"]
    assert services["postgres"]["image"].startswith("postgres:")
    weed = services["seaweedfs"]["command"]
    assert weed[0] == "server"
    assert "-s3" in weed


def test_replicas_share_bucket_keys_through_a_redis_that_saves_nothing() -> None:
    """P3: replicas tag one bucket with one key, and the key never reaches a disk."""
    services = _compose()["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert "volumes" not in redis
    api_key_store = services["api"]["environment"]["CHORUS_KEY_STORE_URL"].replace(
        "${REDIS_PASSWORD:?run infra/compose-secrets.sh first}", "pw"
    )
    assert urlsplit(api_key_store).hostname == "redis"
    assert urlsplit(api_key_store).password == "pw"
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    # In Kubernetes the URL carries the password, so it comes from the Secret, not the ConfigMap.
    assert "CHORUS_KEY_STORE_URL" not in _find("ConfigMap", "chorus-settings")["data"]
    k8s_key_store = _find("Secret", "chorus-secrets")["stringData"]["key-store-url"]
    assert urlsplit(k8s_key_store).hostname == "chorus-redis"
    assert urlsplit(k8s_key_store).password
    _find("Service", "chorus-redis")


def test_seaweedfs_urls_name_the_master_that_compacts_deleted_objects() -> None:
    compose_url = _compose()["services"]["api"]["environment"]["CHORUS_STORAGE_URL"]
    k8s_url = _find("ConfigMap", "chorus-settings")["data"]["CHORUS_STORAGE_URL"]
    for url in (compose_url, k8s_url):
        master = parse_qs(urlsplit(url).query)["seaweedfs_master"][0]
        assert urlsplit(master).port == 9333
    _find("Service", "chorus-s3-master")


def test_compose_settings_are_settings_fields_and_match_the_mounts() -> None:
    compose = _compose()
    services = compose["services"]
    environment: dict[str, str] = services["api"]["environment"]
    for name in environment:
        assert name.startswith("AWS_") or _settings_variable(name), name
    policy_target = next(c["target"] for c in services["api"]["configs"] if c["source"] == "policy")
    assert environment["CHORUS_POLICY"] == policy_target
    assert environment["CHORUS_CONSENT_PUBLIC_KEY"] == "/run/secrets/consent_public_key"
    assert "consent_public_key" in services["api"]["secrets"]
    assert environment["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/aws_credentials"
    assert "aws_credentials" in services["api"]["secrets"]
    # The compose-interpolated password aside, the values are valid settings.
    resolved = {
        k: v.replace("${POSTGRES_PASSWORD:?run infra/compose-secrets.sh first}", "pw").replace(
            "${REDIS_PASSWORD:?run infra/compose-secrets.sh first}", "redis-pw"
        )
        for k, v in environment.items()
        if k.startswith("CHORUS_")
    }
    settings = _settings_from(resolved)
    assert settings.database_url.startswith("postgresql+psycopg://chorus:pw@postgres:5432/")
    # The key store needs the password the redis service requires (P3: no open key store).
    assert settings.key_store_url == "redis://:redis-pw@redis:6379/0"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1] == (
        "${REDIS_PASSWORD:?run infra/compose-secrets.sh first}"
    )
    store = S3BlobStore.from_url(settings.storage_url)
    assert (store.bucket, store.endpoint_url) == ("chorus", "http://seaweedfs:8333")


def test_the_documented_aws_storage_url_means_aws_s3() -> None:
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    url = re.search(r"CHORUS_STORAGE_URL='(s3://[^']+)'", readme)
    assert url is not None
    store = S3BlobStore.from_url(url.group(1))
    assert store.endpoint_url is None
    assert store.region == "eu-west-1"


def test_compose_references_files_that_exist() -> None:
    compose = _compose()
    build = compose["services"]["api"]["build"]
    context = (INFRA / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build["dockerfile"]).is_file()
    for config in compose["configs"].values():
        assert (INFRA / config["file"]).is_file(), config["file"]
    for name, service in compose["services"].items():
        for reference in service.get("configs", []):
            assert reference["source"] in compose["configs"], name
        for reference in service.get("secrets", []):
            assert reference in compose["secrets"], name
    for secret in compose["secrets"].values():
        # Secrets are written per deployment by compose-secrets.sh (see the test below).
        assert secret["file"].startswith("./secrets/")


def test_compose_secrets_script_writes_every_mounted_secret(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    env_file = tmp_path / ".env"
    environment = {
        "CHORUS_SECRETS_DIR": str(secrets_dir),
        "CHORUS_ENV_FILE": str(env_file),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [str(INFRA / "compose-secrets.sh")],
        env=environment,
        check=True,
        capture_output=True,
        timeout=30,
    )
    for secret in _compose()["secrets"].values():
        assert (secrets_dir / Path(secret["file"]).name).is_file(), secret["file"]
    key = load_public_key(str(secrets_dir / "consent-public.pem"))
    assert isinstance(key, Ed25519PublicKey)
    credentials = (secrets_dir / "aws-credentials").read_text(encoding="utf-8")
    s3_config = (secrets_dir / "s3-config.json").read_text(encoding="utf-8")
    access_key = re.search(r"aws_access_key_id = (\w+)", credentials)
    assert access_key is not None
    assert f'"accessKey": "{access_key.group(1)}"' in s3_config
    password_line = env_file.read_text(encoding="utf-8").strip()
    assert re.fullmatch(
        r"POSTGRES_PASSWORD=[0-9a-f]{48}\nREDIS_PASSWORD=[0-9a-f]{48}", password_line
    )
    assert secrets_dir.stat().st_mode & 0o077 == 0
    # A second run keeps what a running deployment already uses.
    subprocess.run(
        [str(INFRA / "compose-secrets.sh")],
        env=environment,
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert env_file.read_text(encoding="utf-8").strip() == password_line
    assert (secrets_dir / "aws-credentials").read_text(encoding="utf-8") == credentials


def test_balancer_forwards_to_the_api_service_and_logs_no_clients() -> None:
    nginx = (INFRA / "config" / "nginx.conf").read_text(encoding="utf-8")
    api_port = _compose()["services"]["api"]["environment"]["CHORUS_PORT"]
    assert re.search(rf"server api:{api_port}\b", nginx)
    assert "access_log off;" in nginx
    assert "$remote_addr" not in nginx
    assert "X-Forwarded-For" not in nginx
    body_limit = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert body_limit is not None
    max_upload = load_policy(str(INFRA / "config" / "policy.toml")).max_upload_bytes
    assert max_upload < int(body_limit.group(1)) * 1024 * 1024 <= 2 * max_upload
    lb_port = _compose()["services"]["lb"]["ports"][0].rsplit(":", 1)[1]
    assert f"listen {lb_port};" in nginx


def test_dockerfile_installs_the_project_and_runs_unprivileged() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    user = re.search(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user is not None
    assert user.group(1).split(":")[0] not in {"0", "root"}
    assert re.search(r'^CMD \["chorus", "serve"\]$', dockerfile, re.MULTILINE)
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (REPO_ROOT / source).exists(), source
    pod_spec = _find("Deployment", "chorus-api")["spec"]["template"]["spec"]
    assert str(pod_spec["securityContext"]["runAsUser"]) == user.group(1).split(":")[0]


# --- shell scripts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", sorted(INFRA.rglob("*.sh")), ids=lambda p: str(p.relative_to(INFRA))
)
def test_shell_script_parses_and_is_executable(script: Path) -> None:
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text(encoding="utf-8")


def test_printed_exports_are_settings_fields() -> None:
    for script in INFRA.rglob("*.sh"):
        for name in re.findall(
            r"^export (CHORUS_\w+)=", script.read_text(encoding="utf-8"), re.MULTILINE
        ):
            assert _settings_variable(name), f"{script.name} exports unknown setting {name}"
