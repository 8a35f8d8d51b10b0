"""A release under a policy with voice anonymization holds only transformed voices (P7 kept)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from aggregate.models import ManifestRead
from aggregate.release import manifest_key, release_ready_buckets
from aggregate.tables import Release
from core.db import Database
from core.storage import BlobStore
from policies import flac
from policies.context import AuditContext, shard_members
from policies.policy import Policy
from policies.voice import decode_mono
from tests.aggregate.clips import SPEAKERS, FlacClip, seed_clip
from tests.keys import keys_for

RATE = 16000
HAS_PYWORLD = importlib.util.find_spec("pyworld") is not None
HAS_ENCODER = importlib.util.find_spec("resemblyzer") is not None
METHODS = [
    "mcadams",
    pytest.param(
        "world",
        marks=pytest.mark.skipif(not HAS_PYWORLD, reason="pyworld comes with the voice extra"),
    ),
]


def _sanitized(path: Path) -> FlacClip:
    """An FSDD recording as the sanitizer stores it: 16 kHz canonical FLAC."""
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


def _release(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path, digit: int = 4
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
    manifest = json.loads(store.get(manifest_key(release_id)))
    return originals, released, manifest


def _with_voice(policy: Policy, method: str) -> Policy:
    return Policy.model_validate({**policy.model_dump(), "voice_anonymization": method})


@pytest.mark.parametrize("method", METHODS)
def test_released_voices_are_transformed_canonical_flac(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path, method: str
) -> None:
    voiced = _with_voice(policy, method)
    originals, released, manifest = _release(database, store, voiced, fsdd_dir)
    assert len(released) == len(originals)
    assert not {clip.data for clip in originals} & set(released)
    # Same durations (sample counts) and rate as the uploads; only the voices changed.
    assert sorted(len(decode_mono(data)[0]) for data in released) == sorted(
        len(decode_mono(clip.data)[0]) for clip in originals
    )
    described = ManifestRead.model_validate(manifest).voice_anonymization
    assert described is not None
    assert described.method == method
    if method == "mcadams":
        assert described.alpha_range == [0.7, 0.9]
    else:
        assert (described.pitch_octaves_range, described.formant_octaves_range) == (
            [0.4, 0.8],
            [0.1, 0.2],
        )
    assert manifest["policy_hash"] == voiced.content_hash
    # The auditor's P7 check: every released clip is the encoder's bytes of its own samples.
    from aggregate.release_checks import check_released_media

    findings = list(
        check_released_media(AuditContext(database=database, store=store, policy=voiced))
    )
    assert findings == []
    with database.session() as session:
        assert session.query(Release).one().clip_count == len(originals)


def test_without_anonymization_the_release_copies_the_pending_bytes(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path
) -> None:
    originals, released, manifest = _release(database, store, policy, fsdd_dir)
    assert sorted(released) == sorted(clip.data for clip in originals)
    assert manifest["voice_anonymization"] == {"method": "none"}


@pytest.mark.skipif(not HAS_ENCODER, reason="the speaker encoder comes with the voice extra")
@pytest.mark.parametrize("method", METHODS)
def test_a_speaker_encoder_finds_no_uploaded_voice_in_the_release(
    database: Database, store: BlobStore, policy: Policy, fsdd_dir: Path, method: str
) -> None:
    from benchmarks.voice_privacy import SpeakerEncoder

    narrow = Policy.model_validate(
        {
            **_with_voice(policy, method).model_dump(),
            "voice_mcadams_alpha_min": 0.7,
            "voice_mcadams_alpha_max": 0.8,
        }
    )
    originals, released, _ = _release(database, store, narrow, fsdd_dir)
    encoder = SpeakerEncoder()
    uploaded = encoder.embed([decode_mono(clip.data)[0] for clip in originals])
    out = encoder.embed([decode_mono(data)[0] for data in released])
    # An untransformed copy of an upload scores 1.0 against it; every released clip stays well
    # below that against every upload.
    assert np.max(out @ uploaded.T) < 0.97
    copies = encoder.embed([decode_mono(clip.data)[0] for clip in originals])
    assert np.min(np.sum(copies * uploaded, axis=1)) > 0.999
