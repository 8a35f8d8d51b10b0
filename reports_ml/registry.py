"""Model versions on disk and the model that serves requests.

Layout under ``settings.model_dir``::

    versions/0001/model.joblib (+ the model card the model writes beside it)
    versions/0001/version.json   how the version was trained and evaluated
    PROMOTED                     the serving version's name (replaced atomically)
    training.json                how many labels the last training run saw

Every version is kept, so an operator can roll back with ``chorus reports models promote``.
``ServingModel`` reads the pointer on each use and swaps the loaded model in memory when it
changes: a promotion by the retraining job or the CLI reaches a running server without a restart,
and a request never waits on a half-loaded model (it keeps the previous one until the new one is
loaded; a version that fails to load is logged and skipped).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from core.errors import InvalidInput, NotFound
from core.files import DIR_MODE, FILE_MODE, make_private_dir, restrict
from reports_ml.scoring import HEURISTIC, ModelScorer, ReportScorer, Scorer

__all__ = ["ModelRegistry", "ServingModel", "VersionInfo"]

_logger = logging.getLogger("chorus.reports.registry")
_POINTER = "PROMOTED"
_MODEL_FILE = "model.joblib"
_INFO_FILE = "version.json"


class SavableModel(ReportScorer, Protocol):
    def save(self, path: Path) -> Any: ...


class VersionInfo(BaseModel):
    """What ``chorus reports models list`` shows about a version."""

    version: str
    created: str
    trained_on: int
    held_back: int
    auc: float | None = None
    compared_with: str | None = None
    compared_auc: float | None = None
    promoted_on_training: bool = False


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_model(path: Path) -> ReportScorer:
    from reports_ml.model import ReportModel

    model: ReportScorer = ReportModel.load(path)
    return model


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        infos = []
        for folder in sorted(self.versions_dir.iterdir()):
            info_file = folder / _INFO_FILE
            if info_file.is_file():
                infos.append(VersionInfo.model_validate_json(info_file.read_text("utf-8")))
        return infos

    def promoted_version(self) -> str | None:
        try:
            return (self.root / _POINTER).read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None

    def model_path(self, version: str) -> Path:
        path = self.versions_dir / version / _MODEL_FILE
        if not version.isdigit() or not (self.versions_dir / version / _INFO_FILE).is_file():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFound(f"no model version {version!r} (known: {known})")
        return path

    def add(self, model: SavableModel, info: dict[str, Any]) -> VersionInfo:
        """Store ``model`` as the next version (claimed with mkdir, so two writers never clash)."""
        make_private_dir(self.versions_dir)
        taken = [int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit()]
        number = max(taken, default=0)
        while True:
            number += 1
            folder = self.versions_dir / f"{number:04d}"
            try:
                folder.mkdir(mode=DIR_MODE)
                break
            except FileExistsError:
                continue
        model.save(folder / _MODEL_FILE)
        for written in folder.iterdir():  # the model and its card, whatever the saver's mode
            restrict(written, FILE_MODE)
        version = VersionInfo.model_validate({**info, "version": folder.name})
        # version.json last: a folder without it is an unfinished write and is not listed.
        _write_atomically(folder / _INFO_FILE, version.model_dump_json(indent=2))
        return version

    def promote(self, version: str) -> None:
        """Point serving at ``version``; readers see the old or the new name, never a mix."""
        self.model_path(version)
        _write_atomically(self.root / _POINTER, version + "\n")

    def load(self, version: str) -> ReportScorer:
        return load_model(self.model_path(version))

    def labels_at_last_training(self) -> int:
        try:
            state = json.loads((self.root / "training.json").read_text("utf-8"))
        except FileNotFoundError:
            return 0
        except ValueError:
            raise InvalidInput(f"{self.root / 'training.json'} is not valid JSON") from None
        return int(state.get("labels", 0))

    def record_training(self, labels: int) -> None:
        make_private_dir(self.root)
        _write_atomically(self.root / "training.json", json.dumps({"labels": labels}))


class ServingModel:
    """Thread-safe holder of the promoted model; reloads when the pointer changes."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._loaded: ModelScorer | None = None
        self._failed: str | None = None

    def current(self) -> Scorer:
        version = self.registry.promoted_version()
        loaded = self._loaded
        if version is None:
            return HEURISTIC
        if loaded is not None and loaded.version == version:
            return loaded
        with self._lock:
            loaded = self._loaded
            if (loaded is not None and loaded.version == version) or self._failed == version:
                return loaded or HEURISTIC
            try:
                model = self.registry.load(version)
            except Exception as exc:  # a broken version must not fail requests
                _logger.error(
                    "model version could not be loaded",
                    extra={"version": version, "error": type(exc).__name__},
                )
                self._failed = version
                return loaded or HEURISTIC
            self._loaded = ModelScorer(version=version, model=model)
            self._failed = None
            _logger.info("serving model version", extra={"version": version})
            return self._loaded
