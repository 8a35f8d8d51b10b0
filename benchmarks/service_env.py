"""The embedded-default service the ingest benchmark and the soak both start."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

EXERCISES = [f"digit-{d}" for d in range(10)]


def fsdd_recordings() -> Path:
    """The FSDD recordings ``core.sample_data`` finds: ``CHORUS_DATA_DIR``, then
    ``../shared/data``, then the twelve in ``tests/data``."""
    from core.sample_data import find_sample_data

    found = find_sample_data()
    if found is None:
        raise SystemExit("no FSDD recordings: set CHORUS_DATA_DIR (README: Test data)")
    return found.fsdd


def embedded_service(
    workdir: Path, *, exercises: Sequence[str] = EXERCISES, **settings: str
) -> tuple[dict[str, str], str]:
    """``CHORUS_*`` environment on SQLite + file store under ``workdir``, with a usage catalog
    admitting every exercise in ``exercises``; returns (env, consent private key PEM).

    ``settings`` add or override variables, e.g. ``CHORUS_SCHEDULER_ENABLED="false"``.
    """
    from core.db import Database
    from exercises.catalog import replace_usage
    from exercises.models import ExerciseUsageCreate
    from ingest.consent import generate_keypair

    private_pem, public_pem = generate_keypair()
    (workdir / "consent-public.pem").write_text(public_pem)
    env = {
        "CHORUS_DATABASE_URL": f"sqlite:///{workdir / 'chorus.db'}",
        "CHORUS_STORAGE_URL": f"file://{workdir / 'blobs'}",
        "CHORUS_POLICY": "demo",
        "CHORUS_CONSENT_PUBLIC_KEY": str(workdir / "consent-public.pem"),
        **settings,
    }
    database = Database(env["CHORUS_DATABASE_URL"])
    try:
        database.upgrade()
        with database.session() as session:
            replace_usage(
                session, [ExerciseUsageCreate(exercise_id=e, learners=10_000) for e in exercises]
            )
    finally:
        database.dispose()
    return env, private_pem
