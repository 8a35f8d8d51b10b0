"""A release killed at any point is finished by the next run: every clip in exactly one place."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa

from aggregate.buckets import key_name
from aggregate.release import STEPS, release_ready_buckets
from aggregate.tables import Bucket, Release
from core.db import Database
from core.errors import BlobNotFound, StorageUnavailable
from core.storage import BlobStore, open_store
from policies.policy import Policy
from tests.aggregate.census import assert_each_released_once, take_census
from tests.aggregate.clips import Seed
from tests.aggregate.releases import release_audit_entries
from tests.keys import keys_for
from tests.stores import DelegatingStore

REPO_ROOT = Path(__file__).resolve().parents[2]


class Crash(Exception):
    """Stands in for the process dying at a step."""


def _releases(database: Database) -> list[Release]:
    with database.session() as session:
        return list(session.execute(sa.select(Release)).scalars())


def _checkpoints_of_a_clean_run(tmp_path: Path, seed: Seed, policy: Policy) -> list[str]:
    database = Database(f"sqlite:///{tmp_path / 'probe.db'}")
    database.upgrade()
    store = open_store(f"file://{tmp_path / 'probe-blobs'}")
    seed(database, store, digit=8)
    steps: list[str] = []
    release_ready_buckets(
        database, store, policy, keys=keys_for(database), batch_size=2, checkpoint=steps.append
    )
    database.dispose()
    return steps


def test_a_clean_run_passes_every_step(tmp_path: Path, seed: Seed, policy: Policy) -> None:
    steps = _checkpoints_of_a_clean_run(tmp_path, seed, policy)
    assert set(steps) == set(STEPS)
    # 5 clips in batches of 2: three plan rounds, three shards, then manifest, finalize,
    # three cleanups.
    assert steps == [
        "claimed",
        "planned",
        "planned",
        "planned",
        "copied",
        "copied",
        "copied",
        "manifest",
        "finalized",
        "cleaned",
        "cleaned",
        "cleaned",
    ]


@pytest.mark.parametrize("crash_at", range(12))
def test_killed_at_any_step_the_next_run_finishes(
    crash_at: int, database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    clips = seed(database, store, digit=8)
    calls = 0

    def crash(step: str) -> None:
        nonlocal calls
        calls += 1
        if calls - 1 == crash_at:
            raise Crash(step)

    with pytest.raises(Crash):
        release_ready_buckets(
            database, store, policy, keys=keys_for(database), batch_size=2, checkpoint=crash
        )

    # Meanwhile nothing is half-visible: a release exists for readers only once finalized.
    census = take_census(database, store)
    for clip in clips:
        assert census.places(clip) >= 1, "a clip was lost"

    outcomes = release_ready_buckets(database, store, policy, keys=keys_for(database), batch_size=2)
    assert_each_released_once(take_census(database, store), clips)
    releases = _releases(database)
    assert len(releases) == 1
    assert releases[0].clip_count == 5
    assert releases[0].contributor_count == 5
    assert len(release_audit_entries(database)) == 1
    assert len(outcomes) == (1 if crash_at < 8 else 0)  # finalized before the crash: cleanup only
    with database.session() as session:
        (bucket,) = session.execute(sa.select(Bucket)).scalars()
        assert bucket.state == "released"
        assert keys_for(database).get(key_name(bucket.id)) is None
    manifest = json.loads(store.get(releases[0].manifest_key))
    assert len(manifest["clips"]) == 5


class FailingStore(DelegatingStore):
    """The file store, with writes (stored files, copies) that start failing after
    ``writes_ok`` successes."""

    def __init__(self, inner: BlobStore, writes_ok: int) -> None:
        super().__init__(inner)
        self.writes_left = writes_ok
        self._lock = threading.Lock()

    def _spend(self) -> None:
        with self._lock:
            if self.writes_left <= 0:
                raise StorageUnavailable("storage went away")
            self.writes_left -= 1

    def copy(self, src: str, dst: str) -> None:
        self._spend()
        self._inner.copy(src, dst)

    def put_file(self, key: str, source: BinaryIO) -> None:
        self._spend()
        self._inner.put_file(key, source)


@pytest.mark.parametrize("bucket_workers", [1, 2])
def test_storage_unavailable_mid_release_is_finished_by_the_next_run(
    database: Database, store: BlobStore, seed: Seed, policy: Policy, bucket_workers: int
) -> None:
    clips = seed(database, store, digit=6) + seed(database, store, digit=9)
    # One at a time: the first bucket's 2 shards, 6 dataset files and manifest, then 1 shard
    # of the second. Two at once: the buckets' writes interleave, so either may be cut short.
    flaky = FailingStore(store, writes_ok=10)
    with pytest.raises(StorageUnavailable):
        release_ready_buckets(
            database,
            flaky,
            policy,
            keys=keys_for(database),
            batch_size=3,
            bucket_workers=bucket_workers,
        )
    census = take_census(database, store)
    if bucket_workers == 1:
        assert census.releasing_buckets == 1
        assert sum(census.released.values()) == 5 + 3
    else:
        assert census.releasing_buckets >= 1
    outcomes = release_ready_buckets(database, store, policy, keys=keys_for(database), batch_size=3)
    assert len(outcomes) == census.releasing_buckets
    assert len(_releases(database)) == 2
    assert_each_released_once(take_census(database, store), clips)
    assert len(release_audit_entries(database)) == 2


def test_a_lost_pending_original_of_an_uncopied_clip_stops_the_release(
    database: Database, store: BlobStore, seed: Seed, policy: Policy
) -> None:
    seed(database, store, digit=1)
    store.delete(next(iter(store.list("pending/"))))
    with pytest.raises(BlobNotFound):
        release_ready_buckets(database, store, policy, keys=keys_for(database))
    assert _releases(database)[0].clip_count == 0
    assert release_audit_entries(database) == []


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from aggregate.release import release_ready_buckets
    from core.db import Database
    from core.storage import open_store
    from policies.policy import load_policy
    from tests.keys import keys_for

    db_url, store_url, step, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    seen = 0

    def checkpoint(name):
        global seen
        if name == step:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    release_ready_buckets(
        Database(db_url), open_store(store_url), load_policy("demo"), keys=keys_for(db_url),
        batch_size=2, checkpoint=checkpoint,
    )
    """
)


@pytest.mark.parametrize(("step", "nth"), [("copied", 2), ("finalized", 1)])
def test_kill_9_mid_release_then_rerun(
    step: str,
    nth: int,
    tmp_path: Path,
    database: Database,
    store: BlobStore,
    seed: Seed,
    policy: Policy,
) -> None:
    clips = seed(database, store, digit=4)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLER,
            database.url,
            f"file://{tmp_path / 'blobs'}",
            step,
            str(nth),
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    census = take_census(database, store)
    assert census.pending_rows == 5  # the kill left work behind
    release_ready_buckets(database, store, policy, keys=keys_for(database))
    assert_each_released_once(take_census(database, store), clips)
    assert len(_releases(database)) == 1
    assert len(release_audit_entries(database)) == 1


_KILLED_WHILE_WRITING = textwrap.dedent(
    """
    import os, signal, sys
    import aggregate.dataset
    from aggregate.release import release_ready_buckets
    from core.db import Database
    from core.storage import open_store
    from policies.policy import load_policy
    from tests.keys import keys_for

    db_url, store_url, writer = sys.argv[1], sys.argv[2], sys.argv[3]
    # The kill lands once the second clip of a shard, or the second row of the tables, went
    # into its temporary file.
    patched = getattr(aggregate.dataset, writer)
    original_add = patched.add
    added = 0

    def add(self, *args):
        global added
        result = original_add(self, *args)
        added += 1
        if added == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    patched.add = add
    release_ready_buckets(
        Database(db_url), open_store(store_url), load_policy("demo"), keys=keys_for(db_url),
        batch_size=3,
    )
    """
)


def _files_below(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if not path.is_dir()]


@pytest.mark.parametrize("writer", ["TarWriter", "TableWriters"])
def test_a_release_killed_while_writing_leaves_no_temporary_file(
    writer: str, tmp_path: Path, database: Database, store: BlobStore, seed: Seed
) -> None:
    """The shard being written holds clips of a bucket not yet released; the tables hold its
    clip ids and checksums. A kill must leave neither, wherever temporary files go."""
    seed(database, store, digit=4)
    temp = tmp_path / "temp"
    temp.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_WHILE_WRITING,
            database.url,
            f"file://{tmp_path / 'blobs'}",
            writer,
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "TMPDIR": str(temp),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert _files_below(temp) == []
