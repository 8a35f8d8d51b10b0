"""Released names and order say nothing about the order in which clips arrived (P4)."""

from __future__ import annotations

import hashlib
import json
import re

from scipy.stats import kendalltau

from aggregate.release import release_ready_buckets
from core.db import Database
from core.storage import BlobStore
from policies.context import shard_members
from policies.policy import load_policy
from tests.aggregate.clips import SPEAKERS, ClipSource, seed_clip
from tests.keys import keys_for

TAKES = 10


def test_release_order_and_names_are_independent_of_arrival(
    database: Database, store: BlobStore, fsdd_flac: ClipSource
) -> None:
    policy = load_policy("demo").model_copy(update={"max_clips_per_contributor": TAKES})
    arrival: dict[int, list[str]] = {}
    pending_names: set[str] = set()
    for digit in range(4):
        # Interleave speakers the way uploads arrive: take by take.
        for take in range(TAKES):
            for speaker in SPEAKERS:
                clip = fsdd_flac(digit, speaker, take)
                key = seed_clip(
                    database,
                    store,
                    exercise_id=f"digit-{digit}",
                    learner_id=speaker,
                    clip=clip,
                    max_clips_per_contributor=TAKES,
                )
                pending_names.add(key.removeprefix("pending/").removesuffix(".flac"))
                arrival.setdefault(digit, []).append(clip.digest)

    outcomes = release_ready_buckets(
        database, store, policy, keys=keys_for(database), batch_size=16
    )
    assert len(outcomes) == 4
    for outcome in outcomes:
        digit = int(outcome.exercise_id.removeprefix("digit-"))
        manifest = json.loads(store.get(f"releases/{outcome.release_id}/manifest.json"))
        ids = [entry["clip_id"] for entry in manifest["clips"]]
        assert len(ids) == len(SPEAKERS) * TAKES
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        assert not set(ids) & pending_names  # fresh names, not the pending ones
        members = {
            name: data
            for shard in manifest["shards"]
            for name, data in shard_members(
                store.get(f"releases/{outcome.release_id}/{shard['name']}")
            )
        }
        assert list(members) == [f"clips/{i}.flac" for i in ids]  # shards keep that order
        digests = [hashlib.sha256(members[f"clips/{i}.flac"]).hexdigest() for i in ids]
        arrival_rank = [arrival[digit].index(d) for d in digests]
        # Neither the released order nor the sorted names follow arrival: with 60 clips a
        # Kendall tau beyond 0.35 (about four standard deviations) would be a leak.
        tau_order = kendalltau(range(len(ids)), arrival_rank).statistic
        by_name = [rank for _name, rank in sorted(zip(ids, arrival_rank, strict=True))]
        tau_names = kendalltau(range(len(ids)), by_name).statistic
        assert abs(tau_order) < 0.35, tau_order
        assert abs(tau_names) < 0.35, tau_names
