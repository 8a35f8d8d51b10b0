"""A release under ``pseudo_voice``: all its clips in one voice drawn for it, P7 kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from aggregate.release import manifest_key, release_ready_buckets
from core.db import Database
from core.storage import BlobStore
from policies import flac
from policies.context import AuditContext, shard_members
from policies.policy import Policy
from policies.voice import decode_mono
from policies.voice_analysis import Grid, analyse
from tests.aggregate.clips import SPEAKERS, FlacClip, seed_clip
from tests.keys import keys_for

RATE = 16000


def _sanitized(path: Path) -> FlacClip:
    samples, rate = sf.read(path, dtype="float64")
    mono = soxr.resample(samples, rate, RATE, quality="HQ")
    level = float(np.sqrt(np.mean(mono**2)))
    return FlacClip(
        path.name,
        flac.encode_samples(mono, RATE),
        len(mono) / RATE,
        RATE,
        20 * float(np.log10(level)),
    )


def _median_f0(data: bytes) -> float:
    samples, rate = decode_mono(data)
    analysis = analyse(samples, Grid.for_rate(rate), high_hz=3500.0)
    return float(np.median(analysis.f0_hz[analysis.voiced]))


def _release(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path, digit: int
) -> tuple[list[FlacClip], list[bytes], dict[str, object]]:
    originals = [_sanitized(fsdd_dir / f"{digit}_{speaker}_0.wav") for speaker in SPEAKERS[:5]]
    for speaker, clip in zip(SPEAKERS, originals, strict=False):
        seed_clip(
            database,
            store,
            exercise_id=f"digit-{digit}",
            learner_id=f"learner-{speaker}",
            clip=clip,
        )
    outcomes = release_ready_buckets(database, store, policy, keys=keys_for(database))
    assert len(outcomes) == 1
    release_id = outcomes[0].release_id
    released = [
        data
        for key in store.list(f"releases/{release_id}/shards/")
        for _name, data in shard_members(store.get(key))
    ]
    return originals, released, json.loads(store.get(manifest_key(release_id)))


@pytest.mark.parametrize("digit", [0, 4])
def test_a_release_speaks_in_one_drawn_voice(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path, digit: int
) -> None:
    voiced = Policy.model_validate({**policy.model_dump(), "voice_anonymization": "pseudo_voice"})
    originals, released, manifest = _release(database, store, voiced, fsdd_dir, digit)
    assert len(released) == len(originals)
    assert not {clip.data for clip in originals} & set(released)
    assert sorted(len(decode_mono(data)[0]) for data in released) == sorted(
        len(decode_mono(clip.data)[0]) for clip in originals
    )
    _assert_one_voice(originals, released)
    # Nothing about the drawn voice reaches the manifest.
    assert manifest["voice_anonymization"] == {"method": "pseudo_voice"}
    _assert_p7(database, store, voiced)


def _assert_one_voice(originals: list[FlacClip], released: list[bytes]) -> None:
    """The five speakers' pitches spread widely before; the release's clips share one."""
    before = np.log2([_median_f0(clip.data) for clip in originals])
    after = np.log2([_median_f0(data) for data in released])
    assert np.ptp(after) < 0.15
    assert np.ptp(after) < np.ptp(before) / 2


def _assert_p7(database: Database, store: BlobStore, policy: Policy) -> None:
    from aggregate.release_checks import check_released_media

    findings = list(
        check_released_media(AuditContext(database=database, store=store, policy=policy))
    )
    assert findings == []


def test_a_retimed_averaged_release_publishes_the_released_durations(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path
) -> None:
    voiced = Policy.model_validate(
        {
            **policy.model_dump(),
            "voice_anonymization": "pseudo_voice",
            "voice_pseudo_timing": "anchored",
            "voice_pseudo_averaging": 0.9,
        }
    )
    originals, released, manifest = _release(database, store, voiced, fsdd_dir, 6)
    assert len(released) == len(originals)
    assert not {clip.data for clip in originals} & set(released)
    # Every clip is retimed to one duration, within the uploads' range, and the manifest
    # and its statistics describe the released audio, not the uploads.
    lengths = {len(decode_mono(data)[0]) for data in released}
    assert len(lengths) == 1
    duration = lengths.pop() / RATE
    uploads = [clip.duration_s for clip in originals]
    assert min(uploads) <= duration <= max(uploads)
    assert len(set(uploads)) > 1
    entries, statistics = manifest["clips"], manifest["statistics"]
    assert isinstance(entries, list)
    assert isinstance(statistics, dict)
    assert [entry["duration_s"] for entry in entries] == [duration] * len(originals)
    released_durations = statistics["duration_s"]
    assert released_durations["min"] == released_durations["max"] == pytest.approx(duration)
    _assert_one_voice(originals, released)
    assert manifest["voice_anonymization"] == {
        "method": "pseudo_voice",
        "timing": "anchored",
        "averaging_share": 0.9,
    }
    _assert_p7(database, store, voiced)
