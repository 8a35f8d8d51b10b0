"""Model versions in the database and the blob store, and the model that serves requests.

Every replica sees one registry: a ``model_versions`` row per version (how it was trained and
evaluated) with its files in the blob store (the file store on the embedded default, S3 when
scaled out), and one ``model_registry`` row naming the promoted version and the labels the last
training saw. A restart loses nothing, and a promotion on one replica reaches them all.

Blob layout::

    models/<random id>/model.joblib   the model (a pickle: only this service writes here)
    models/<random id>/model.json     its model card

Every version is kept, so an operator can roll back with ``chorus reports models promote``.
``ServingModel`` reads the promoted version at most every ``poll_s`` seconds and swaps the loaded
model in memory when it changes, so a request never waits on a half-loaded model (it keeps the
previous one until the new one is loaded; a version that fails to load is logged and skipped).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel

from core.db import Database
from core.errors import Conflict, NotFound
from core.ids import new_id
from core.storage import BlobStore
from reports_ml.scoring import HEURISTIC, ModelScorer, ReportScorer, Scorer
from reports_ml.tables import ModelRegistryState, ModelVersion

__all__ = ["MODELS_PREFIX", "ModelRegistry", "ServingModel", "VersionInfo"]

_logger = logging.getLogger("chorus.reports.registry")
MODELS_PREFIX = "models/"
_MODEL_FILE = "model.joblib"
_STATE_ROW = 1
_CLAIM_ATTEMPTS = 20
# How long a replica serves the version it last read before it asks the database again.
DEFAULT_POLL_S = 2.0


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


def load_model(path: Path) -> ReportScorer:
    from reports_ml.model import ReportModel

    model: ReportScorer = ReportModel.load(path)
    return model


def _info(row: ModelVersion) -> VersionInfo:
    return VersionInfo.model_validate(row, from_attributes=True)


class ModelRegistry:
    def __init__(self, database: Database, store: BlobStore) -> None:
        self.database = database
        self.store = store

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first."""
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(ModelVersion).order_by(
                    sa.func.length(ModelVersion.version), ModelVersion.version
                )
            )
            return [_info(row) for row in rows]

    def promoted_version(self) -> str | None:
        with self.database.session() as session:
            return session.scalar(
                sa.select(ModelRegistryState.promoted).where(ModelRegistryState.id == _STATE_ROW)
            )

    def _row(self, version: str) -> ModelVersion:
        with self.database.session() as session:
            row = session.get(ModelVersion, version) if version.isdigit() else None
        if row is None:
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFound(f"no model version {version!r} (known: {known})")
        return row

    def add(self, model: SavableModel, info: dict[str, Any]) -> VersionInfo:
        """Store ``model``'s files, then its row under the next free version number."""
        prefix = f"{MODELS_PREFIX}{new_id()}/"
        with tempfile.TemporaryDirectory(prefix="chorus-model-") as folder:
            model.save(Path(folder) / _MODEL_FILE)
            # The model and its card (whatever else the saver writes beside it).
            for written in sorted(Path(folder).iterdir()):
                with written.open("rb") as source:
                    self.store.put_file(f"{prefix}{written.name}", source)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                with self.database.session(write=True) as session:
                    last = session.scalar(
                        sa.select(sa.func.max(sa.cast(ModelVersion.version, sa.Integer)))
                    )
                    number = int(last or 0) + 1
                    row = ModelVersion(
                        **VersionInfo.model_validate(
                            {**info, "version": f"{number:04d}"}
                        ).model_dump(),
                        object_prefix=prefix,
                    )
                    session.add(row)
                return _info(row)
            except Conflict:  # another replica took the number first
                continue
        raise RuntimeError("could not claim a model version number")

    def promote(self, version: str) -> None:
        """Point every replica at ``version`` (one row, changed in one transaction)."""
        self._row(version)
        self._update_state(promoted=version)

    def load(self, version: str) -> ReportScorer:
        prefix = self._row(version).object_prefix
        with tempfile.TemporaryDirectory(prefix="chorus-model-") as folder:
            for key in self.store.list(prefix):
                (Path(folder) / key.removeprefix(prefix)).write_bytes(self.store.get(key))
            return load_model(Path(folder) / _MODEL_FILE)

    def labels_at_last_training(self) -> int:
        with self.database.session() as session:
            labels = session.scalar(
                sa.select(ModelRegistryState.labels_at_last_training).where(
                    ModelRegistryState.id == _STATE_ROW
                )
            )
        return int(labels or 0)

    def record_training(self, labels: int) -> None:
        self._update_state(labels_at_last_training=labels)

    def _update_state(self, **values: Any) -> None:
        # The row is made by the migration; replicas only ever update it.
        with self.database.session(write=True) as session:
            session.execute(
                sa.update(ModelRegistryState)
                .where(ModelRegistryState.id == _STATE_ROW)
                .values(**values)
            )


class ServingModel:
    """Thread-safe holder of the promoted model; reloads when the promoted version changes."""

    def __init__(self, registry: ModelRegistry, *, poll_s: float = DEFAULT_POLL_S) -> None:
        self.registry = registry
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._loaded: ModelScorer | None = None
        self._failed: str | None = None
        self._promoted: str | None = None
        self._read_at = -float("inf")

    def _promoted_version(self) -> str | None:
        """The promoted version, read from the database at most every ``poll_s`` seconds."""
        now = time.monotonic()
        if now - self._read_at >= self.poll_s:
            self._promoted = self.registry.promoted_version()
            self._read_at = now
        return self._promoted

    def refresh(self) -> None:
        """Read the promoted version on the next use (after a promotion in this process)."""
        self._read_at = -float("inf")

    def current(self) -> Scorer:
        version = self._promoted_version()
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
