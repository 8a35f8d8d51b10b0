"""Upload load for the end-to-end tests, and where its clips end up.

``UploadLoad`` drives uploads of real FSDD recordings from threads against one or more servers
and keeps every answer; ``take_census`` then tells, per acknowledged (201) upload, where its
clip is: a pending row with its object, or (counted only) a released batch.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import soundfile as sf
import sqlalchemy as sa

from aggregate.buckets import contributor_tag, key_name
from aggregate.tables import Bucket, PendingClip, Release, ReleasedClip
from chorus.synthetic_voice import voiced_samples
from core.db import Database
from core.storage import BlobStore
from ingest.consent import mint_token
from ingest.fingerprint import (
    SAME_RECORDING_SCORE,
    FloatArray,
    recording_print,
    similarity_scores,
)
from policies.context import shard_members
from tests.consent import ConsentKeys
from tests.e2e.deployment import EXERCISES
from tests.keys import keys_for

# --- load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One upload's outcome: HTTP status (0 for a transport error) and problem code; when it
    was sent and answered (``time.monotonic()``)."""

    server: int
    learner_id: str
    exercise_id: str
    status: int
    code: str
    sent: float
    at: float


def _one_of_a_kind(wav: bytes, rng: random.Random) -> tuple[bytes, FloatArray]:
    """A recording of its own for each upload, with its print: a bucket takes a recording once
    (P6), and the same file with a few samples changed is the same recording to it. A fault
    test needs clips, not words: half of the uploads are a synthesized voice of their own, the
    other half the real recording followed by one (so the clip's print is the voice's)."""
    voice = voiced_samples(
        seed=rng.randrange(1 << 30),
        seconds=0.8,
        sample_rate=8000,
        pitch_hz=rng.uniform(90.0, 220.0),
    )
    if rng.random() < 0.5:
        samples = voice
    else:
        real, _rate = sf.read(io.BytesIO(wav), dtype="float32")
        samples = np.concatenate([real * 0.3, voice])
    out = io.BytesIO()
    sf.write(out, samples, 8000, format="WAV", subtype="PCM_16")
    return out.getvalue(), recording_print(samples, 8000)


# Synthesized voices have few degrees of freedom: about one pair in 36,000 prints as the same
# recording (a real take by another speaker does not). The load keeps every clip it sends to an
# exercise this far below the service's threshold from the ones it sent there before, so that a
# 409 ``duplicate_recording`` in a fault test can only be the service's own doing.
DISTINCT_MARGIN = 0.1


@dataclass
class UploadLoad:
    """Threads uploading real clips round-robin to ``urls`` until stopped."""

    urls: Sequence[str]
    wavs: Sequence[bytes]
    consent_keys: ConsentKeys
    threads: int = 4
    learners: int | None = None  # a pool to draw from; None: a fresh learner per upload
    seed: int = 0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _prints: dict[str, list[FloatArray]] = field(default_factory=dict)

    def start(self) -> UploadLoad:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)
            assert not worker.is_alive(), "an upload thread hung"
        return self.answers

    def _next_learner(self, rng: random.Random) -> str:
        with self._lock:
            self._serial += 1
            serial = self._serial
        if self.learners is None:
            return f"e2e-learner-{self.seed}-{serial}"
        return f"e2e-learner-{self.seed}-{rng.randrange(self.learners)}"

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        with httpx.Client(timeout=30) as client:
            turn = index
            while not self._stop.is_set():
                server = turn % len(self.urls)
                turn += 1
                learner = self._next_learner(rng)
                exercise = rng.choice(EXERCISES)
                sent = time.monotonic()
                status, code = self._upload(client, self.urls[server], learner, exercise, rng)
                with self._lock:
                    self.answers.append(
                        Answer(server, learner, exercise, status, code, sent, time.monotonic())
                    )
                if status == 0:
                    time.sleep(0.05)  # a dead server: do not spin

    def _distinct_clip(self, exercise: str, rng: random.Random) -> bytes:
        """A clip no earlier upload to ``exercise`` could be taken for (see DISTINCT_MARGIN)."""
        limit = SAME_RECORDING_SCORE - DISTINCT_MARGIN
        while True:
            clip, fingerprint = _one_of_a_kind(rng.choice(self.wavs), rng)
            with self._lock:
                sent = self._prints.setdefault(exercise, [])
                if not sent or float(similarity_scores(fingerprint, np.stack(sent)).max()) < limit:
                    sent.append(fingerprint)
                    return clip

    def _upload(
        self, client: httpx.Client, url: str, learner: str, exercise: str, rng: random.Random
    ) -> tuple[int, str]:
        token = mint_token(self.consent_keys.private_key, learner_id=learner)
        try:
            response = client.post(
                f"{url}/v1/clips",
                files=[
                    (
                        "metadata",
                        (None, json.dumps({"exercise_id": exercise}).encode(), "application/json"),
                    ),
                    (
                        "audio",
                        ("clip.wav", self._distinct_clip(exercise, rng), "audio/wav"),
                    ),
                ],
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TransportError as exc:
            return 0, type(exc).__name__
        code = ""
        if response.status_code != 201:
            try:
                code = str(response.json().get("code", ""))
            except ValueError:
                code = response.text[:80]
        return response.status_code, code


def acknowledged(answers: Sequence[Answer]) -> list[Answer]:
    return [answer for answer in answers if answer.status == 201]


def outcomes(answers: Sequence[Answer]) -> Counter[tuple[int, str]]:
    return Counter((answer.status, answer.code) for answer in answers)


# --- where the clips are ---------------------------------------------------------------------


@dataclass(frozen=True)
class Census:
    pending_rows: int
    released_rows: int
    pending_objects: set[str]
    pending_row_keys: set[str]
    released_objects: int
    releases: int
    release_bucket_ids: list[str]
    unmatched: list[Answer]  # acknowledged uploads with no pending row of their own

    @property
    def rows(self) -> int:
        return self.pending_rows + self.released_rows


def take_census(database: Database, store: BlobStore, acks: Sequence[Answer]) -> Census:
    """Rows and objects, and which acknowledged uploads have their own pending row.

    A pending row is found by its contributor tag, HMAC(bucket key, learner id), in a bucket of
    the upload's exercise that still holds its key; a released bucket has lost its key, so its
    clips can only be counted.
    """
    with database.session() as session:
        buckets = session.execute(sa.select(Bucket.id, Bucket.exercise_id)).all()
        keys = keys_for(database)
        keyed = [
            (bucket_id, exercise_id, key)
            for bucket_id, exercise_id in buckets
            if (key := keys.get(key_name(bucket_id))) is not None
        ]
        pending = session.execute(
            sa.select(PendingClip.bucket_id, PendingClip.contributor_tag, PendingClip.object_key)
        ).all()
        released_rows = session.execute(
            sa.select(sa.func.count()).select_from(ReleasedClip)
        ).scalar_one()
        release_bucket_ids = list(session.execute(sa.select(Release.bucket_id)).scalars())
    by_slot = {(bucket_id, tag): key for bucket_id, tag, key in pending}
    unmatched: list[Answer] = []
    for ack in acks:
        for bucket_id, exercise_id, bucket_key in keyed:
            slot = (bucket_id, contributor_tag(bucket_key, ack.learner_id))
            if exercise_id == ack.exercise_id and by_slot.pop(slot, None) is not None:
                break
        else:
            unmatched.append(ack)
    # Released clips are members of the releases' tar shards (plus any loose FLAC object).
    released_objects = sum(
        sum(1 for _member in shard_members(store.get(key))) if key.endswith(".tar") else 1
        for key in store.list("releases/")
        if key.endswith((".tar", ".flac"))
    )
    return Census(
        pending_rows=len(pending),
        released_rows=released_rows,
        pending_objects=set(store.list("pending/")),
        pending_row_keys={key for _b, _t, key in pending},
        released_objects=released_objects,
        releases=len(release_bucket_ids),
        release_bucket_ids=release_bucket_ids,
        unmatched=unmatched,
    )


def assert_every_ack_pending_and_stored(
    census: Census, acks: Sequence[Answer], *, unacknowledged_attempts: int = 0
) -> None:
    """No release ran: each 201 has its own pending row, and every row its object.

    ``unacknowledged_attempts`` uploads ended without an answer (a killed server): each of
    those may or may not have been stored.
    """
    assert not census.unmatched, f"{len(census.unmatched)} acknowledged clips are missing"
    assert census.releases == 0
    assert len(acks) <= census.pending_rows <= len(acks) + unacknowledged_attempts
    missing_objects = census.pending_row_keys - census.pending_objects
    assert not missing_objects, f"{len(missing_objects)} pending rows have no object"
