"""A full or failing store during a release cycle holds back only the bucket it hit: the other
buckets are released and retention still purges; nothing is half-stored, and the next cycle
finishes the held bucket."""

from __future__ import annotations

import datetime as dt
import errno
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregate.jobs import run_release_cycle
from aggregate.tables import Bucket
from core.db import Database
from core.errors import StorageFull, StorageUnavailable
from core.storage import TEMP_PREFIX, BlobStore
from policies.policy import Policy
from tests.aggregate.census import assert_each_released_once, take_census
from tests.aggregate.clips import Seed
from tests.keys import keys_for

HOUR = 3600.0
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _states(database: Database) -> dict[str, str]:
    with database.session() as session:
        return dict(session.execute(sa.select(Bucket.exercise_id, Bucket.state)).all())


@pytest.mark.parametrize(
    ("code", "error"), [(errno.ENOSPC, StorageFull), (errno.EROFS, StorageUnavailable)]
)
def test_a_storage_fault_holds_back_only_its_bucket(
    database: Database,
    store: BlobStore,
    seed: Seed,
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
) -> None:
    policy = policy.model_copy(update={"retention_cycles": 1})
    seed(database, store, digit=2, speakers=3)  # below k: purged once retention has passed
    run_release_cycle(
        database=database,
        keys=keys_for(database),
        store=store,
        policy=policy,
        interval_s=HOUR,
        now=T0,
    )
    clips = seed(database, store, digit=6) + seed(database, store, digit=9)
    real_fsync = os.fsync
    faults: list[str] = []

    def fsync(fd: int) -> None:
        # Every released copy of the first bucket's release fails as the medium would.
        path = os.readlink(f"/proc/self/fd/{fd}")
        if TEMP_PREFIX in path and "/releases/" in path:
            release = path.split("/releases/")[1].split("/")[0]
            if not faults or faults[0] == release:
                faults.append(release)
                raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(error):
        run_release_cycle(
            database=database,
            keys=keys_for(database),
            store=store,
            policy=policy,
            interval_s=HOUR,
            now=T0 + dt.timedelta(hours=1),
        )
    monkeypatch.undo()
    states = _states(database)
    assert states["digit-2"] == "purged"  # retention went on (P10)
    assert sorted(states.values()) == ["purged", "released", "releasing"]
    # The held bucket is the one whose writes failed; its unreleased clips are all pending.
    with database.session() as session:
        held = session.execute(
            sa.select(Bucket.release_id).where(Bucket.state == "releasing")
        ).scalar_one()
    assert faults
    assert held == faults[0]
    assert list((tmp_path / "blobs").rglob(f"{TEMP_PREFIX}*")) == []
    census = take_census(database, store)
    assert all(census.pending[c.digest] == 1 for c in clips if census.released[c.digest] == 0)

    report = run_release_cycle(
        database=database,
        keys=keys_for(database),
        store=store,
        policy=policy,
        interval_s=HOUR,
        now=T0 + dt.timedelta(hours=1, minutes=1),
    )
    assert len(report.released) == 1
    assert sorted(_states(database).values()) == ["purged", "released", "released"]
    assert_each_released_once(take_census(database, store), clips)
