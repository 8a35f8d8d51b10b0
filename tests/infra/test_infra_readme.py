"""``infra/README.md`` describes what the files deploy: every compose service and every
Kubernetes object the kustomization applies is named there."""

from __future__ import annotations

from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
README = (INFRA / "README.md").read_text(encoding="utf-8")


def test_every_compose_service_is_described() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
    missing = [name for name in compose["services"] if f"`{name}`" not in README]
    assert missing == []


def test_every_kubernetes_service_is_described() -> None:
    kustomization = yaml.safe_load((INFRA / "k8s" / "kustomization.yaml").read_text())
    names = [
        document["metadata"]["name"]
        for resource in kustomization["resources"]
        for document in yaml.safe_load_all((INFRA / "k8s" / resource).read_text())
        if document and document["kind"] == "Service"
    ]
    assert {"chorus-s3-master", "chorus-redis"} <= set(names)
    missing = [name for name in names if f"`{name}`" not in README]
    assert missing == []
