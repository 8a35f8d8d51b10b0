"""What an attacker with a copy of the service's files does with a list of learner ids.

Every candidate secret found in the copy is tried as an HMAC-SHA256 key over every learner id;
a hit is a candidate that reproduces a stored value (a contributor tag, or any 64-hex-digit
string in the copy). Candidates are the 32-byte windows of the files that hold rows, and every
64-hex-digit string of any file (a key written as text, or bytea in a dump).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from numpy.lib.stride_tricks import sliding_window_view

from aggregate.buckets import key_name
from aggregate.jobs import run_release_cycle
from aggregate.tables import PendingClip
from tests.ingest.uploads import Mint, Upload
from tests.keys import keys_for

KEY_BYTES = 32
HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")
PAGE = 8192
# A random 32-byte key has ~30 distinct byte values (fewer than 22 with probability < 1e-5);
# text, numbers and padding have far fewer, so low-variety windows are not keys.
MIN_DISTINCT_BYTES = 22
_CHUNK = 1 << 20


def hmac_hex(key: bytes, learner_id: str) -> str:
    return hmac.new(key, learner_id.encode(), hashlib.sha256).hexdigest()


def hex_strings(data: bytes) -> set[str]:
    return {m.group().decode().lower() for m in HEX_KEY.finditer(data)}


def hex_keys(data: bytes) -> Iterator[bytes]:
    for match in HEX_KEY.finditer(data):
        yield bytes.fromhex(match.group().decode())


def every_window(data: bytes) -> Iterator[bytes]:
    for offset in range(0, max(len(data) - KEY_BYTES + 1, 0)):
        yield data[offset : offset + KEY_BYTES]


def random_looking_windows(data: bytes, *, before: bytes = b"") -> Iterator[bytes]:
    """The 32-byte windows of ``data`` varied enough to be a random key.

    For files of many megabytes (a PostgreSQL data directory, its WAL), where trying every
    window would take hours. Zero pages are skipped, and so are pages equal to the same page
    of ``before`` (the file as it was before the service ran: what it did not write).
    """
    array = np.frombuffer(data, dtype=np.uint8)
    pages = -(-len(array) // PAGE)
    padded = np.zeros(pages * PAGE, dtype=np.uint8)
    padded[: len(array)] = array
    nonzero: np.ndarray = np.any(padded.reshape(pages, PAGE), axis=1)
    if before:
        old = np.zeros(pages * PAGE, dtype=np.uint8)
        kept = min(len(before), len(old))
        old[:kept] = np.frombuffer(before, dtype=np.uint8)[:kept]
        nonzero &= (padded != old).reshape(pages, PAGE).any(axis=1)
    page = 0
    while page < pages:
        if not nonzero[page]:
            page += 1
            continue
        end = page
        while end < pages and nonzero[end]:
            end += 1
        # The run's bytes plus the next page's first bytes, for windows across its end.
        segment = padded[page * PAGE : min(end * PAGE + KEY_BYTES - 1, len(padded))]
        for start in range(0, max(len(segment) - KEY_BYTES + 1, 0), _CHUNK):
            chunk = segment[start : start + _CHUNK + KEY_BYTES - 1]
            if len(chunk) < KEY_BYTES:
                break
            windows = sliding_window_view(chunk, KEY_BYTES)
            ordered = np.sort(windows, axis=1)
            distinct = 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)
            for index in np.flatnonzero(distinct >= MIN_DISTINCT_BYTES):
                yield chunk[index : index + KEY_BYTES].tobytes()
        page = end


def linked_learners(
    candidates: Iterable[bytes], targets: set[str], learners: list[str]
) -> list[str]:
    """The learners some candidate key links to a target value."""
    found: set[str] = set()
    seen: set[bytes] = set()
    for key in candidates:
        if key in seen:
            continue
        seen.add(key)
        for learner in learners:
            if hmac_hex(key, learner) in targets:
                found.add(learner)
    return sorted(found)


# --- the scenario both forensic tests run ---------------------------------------------------

RELEASED = "digit-3"
PENDING = "digit-5"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
LEARNERS = [f"learner-{n:03d}" for n in range(7)]


@dataclass(frozen=True)
class Scenario:
    pending_side: set[str]  # every pending id, object key and tag before the release
    manifest: dict[str, Any]


def upload_release_and_withdraw(
    app: FastAPI, client: TestClient, upload: Upload, mint: Mint, fsdd_dir: Path
) -> Scenario:
    """Seven learners upload to one exercise (the last withdraws), four of them to a second;
    the first exercise is released (six contributors), the second stays pending below k."""
    wavs = sorted(fsdd_dir.glob("*.wav"))
    for index, learner in enumerate(LEARNERS):
        token = mint(learner)
        for exercise in (RELEASED, PENDING) if index < 4 else (RELEASED,):
            digit = exercise.removeprefix("digit-")
            wav = _long_take(wavs, digit=digit, speaker=SPEAKERS[index % 6], skip=index // 6)
            response = upload(token, wav.read_bytes(), {"exercise_id": exercise})
            assert response.status_code == 201, response.text
        if index == 6:
            withdrawn = client.post(
                "/v1/consent/withdrawals", headers={"Authorization": f"Bearer {token}"}
            )
            assert withdrawn.json() == {"withdrawn": 1}

    database = app.state.database
    with database.session() as session:
        before = session.execute(
            sa.select(PendingClip.id, PendingClip.object_key, PendingClip.contributor_tag)
        ).all()
    pending_side = {value for row in before for value in row}
    pending_side |= {Path(row.object_key).stem for row in before}

    report = run_release_cycle(
        database=database,
        store=app.state.store,
        keys=keys_for(database),
        policy=app.state.policy,
        interval_s=1,
    )
    assert [r.exercise_id for r in report.released] == [RELEASED]
    assert report.released[0].contributor_count == 6
    (manifest_key,) = [k for k in app.state.store.list("releases/") if k.endswith("manifest.json")]
    return Scenario(pending_side, json.loads(app.state.store.get(manifest_key)))


def open_bucket_key(app: FastAPI) -> bytes:
    """The pending bucket's real key, from the key store (memory, never the copy)."""
    database = app.state.database
    with database.session() as session:
        (bucket_id,) = session.execute(
            sa.text("SELECT id FROM buckets WHERE state = 'open'")
        ).scalars()
    key = keys_for(database).get(key_name(bucket_id))
    assert key is not None
    return key


def assert_release_unlinked(scenario: Scenario) -> None:
    """Released names and order come from a fresh random source, not from pending rows."""
    manifest = scenario.manifest
    released_ids = {clip["clip_id"] for clip in manifest["clips"]}
    assert len(released_ids) == 6
    assert not released_ids & scenario.pending_side
    assert not {manifest["release_id"]} & scenario.pending_side


def _long_take(wavs: list[Path], *, digit: str, speaker: str, skip: int) -> Path:
    """A take of ``digit`` by ``speaker`` long enough for the policy (≥ 0.4 s)."""
    takes = [
        w
        for w in wavs
        if w.name.startswith(f"{digit}_{speaker}_") and sf.info(str(w)).duration >= 0.4
    ]
    return takes[skip]
