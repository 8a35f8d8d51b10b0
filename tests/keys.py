"""The bucket-key store tests share with the service they start, and the catalog entry a
directly seeded exercise needs.

Every test run keeps its keys in one tmpfs folder of its own (``TEST_KEY_STORE_URL``, set for the
whole session by ``tests/conftest.py`` and inherited by every server a test starts), namespaced
by database like the service's, so a direct call in a test and a running service agree on a
bucket's key, and nothing is left in ``/dev/shm`` after the run.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import Database
from core.keystore import KeyStore, open_key_store
from exercises.tables import ExerciseUsage

TEST_KEY_STORE_FOLDER = f"/dev/shm/chorus-test-keys-{os.getpid()}"
TEST_KEY_STORE_URL = f"tmpfs://{TEST_KEY_STORE_FOLDER}"


def keys_for(where: Database | Session | sa.Connection | str) -> KeyStore:
    """The key store of the database behind ``where`` (a Database, session, connection or URL)."""
    if isinstance(where, str):
        url = where
    elif isinstance(where, Database):
        url = where.url
    else:
        bind = where.get_bind() if isinstance(where, Session) else where
        url = bind.engine.url.render_as_string(hide_password=False)
    return open_key_store(
        os.environ.get("CHORUS_KEY_STORE_URL", TEST_KEY_STORE_URL), database_url=url
    )


def catalog_exercise(session: Session, exercise_id: str, *, learners: int = 100_000) -> None:
    """List an exercise in the usage catalog (P5) unless it is there already, as an operator's
    import would before the app uploads; tests that seed pending clips directly need it for
    the release's P5 re-check."""
    if session.get(ExerciseUsage, exercise_id) is None:
        session.add(ExerciseUsage(exercise_id=exercise_id, learners=learners))
        session.flush()
