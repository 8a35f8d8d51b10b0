"""Audit checks of releases (P6, P7, P8), read from the store and the rows, not from summaries.

Each release's objects are counted under its prefix and compared with its manifest and its row;
every released clip is decoded, re-encoded the service's way and compared byte for byte; every
finished release must appear in the audit log with the same counts, under a policy the log
recorded; no pending clip may be readable under a release prefix, and everything pending must
be sealed (P4); no recording is released twice (an upload stored twice would be).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from aggregate.buckets import PENDING_PREFIX
from aggregate.tables import Bucket, PendingClip, Release, ReleasedClip
from core import sealing
from core.errors import BlobNotFound
from policies import flac
from policies.context import RELEASES_PREFIX, AuditContext, release_id_of, shard_members
from policies.findings import Finding
from policies.policy import Policy
from policies.service import POLICY_LOADED
from policies.tables import AuditEntry

# --- P6: releases ----------------------------------------------------------------------------


def check_releases(ctx: AuditContext) -> Iterable[Finding]:
    """≥ k distinct contributors per release; objects under each release match its manifest."""
    clip_keys: dict[str, list[str]] = {}
    for key in ctx.released_clip_keys():
        clip_keys.setdefault(release_id_of(key), []).append(key)
    shard_keys: dict[str, list[str]] = {}
    for key in ctx.released_shard_keys():
        shard_keys.setdefault(release_id_of(key), []).append(key)
    prefixes = {release_id_of(key) for key in ctx.keys(RELEASES_PREFIX) if key.count("/") >= 2}
    with ctx.database.session() as session:
        in_progress = set(
            session.execute(sa.select(Bucket.release_id).where(Bucket.state == "releasing"))
            .scalars()
            .all()
        )
        releases = session.execute(sa.select(Release).order_by(Release.id)).scalars().all()
        row_counts: dict[str, int] = {
            str(release_id): int(count)
            for release_id, count in session.execute(
                sa.select(ReleasedClip.release_id, sa.func.count()).group_by(
                    ReleasedClip.release_id
                )
            ).all()
        }
    known = set(in_progress)
    for release in releases:
        if release.id in in_progress:
            continue  # a release job is still copying: its counts are written when it finishes
        known.add(release.id)
        yield from _release_thresholds(release, ctx.policy)
        yield from _release_objects(
            ctx,
            release,
            clip_keys.get(release.id, []),
            shard_keys.get(release.id, []),
            int(row_counts.get(release.id, 0)),
        )
    for release_id in sorted(prefixes - known):
        yield Finding(
            "release_unrecorded",
            "P6",
            f"objects under releases/{release_id}/ belong to no recorded release",
            release_id,
        )


def check_recordings_released_once(ctx: AuditContext) -> Iterable[Finding]:
    """No recording, by the SHA-256 of its released bytes, is in two releases or twice in one:
    each counts once toward k (P6), and an upload stored twice would show up here."""
    with ctx.database.session() as session:
        repeated = session.execute(
            sa.select(
                ReleasedClip.sha256,
                sa.func.count(),
                sa.func.count(sa.distinct(ReleasedClip.release_id)),
            )
            .where(ReleasedClip.sha256.is_not(None))
            .group_by(ReleasedClip.sha256)
            .having(sa.func.count() > 1)
            .order_by(ReleasedClip.sha256)
        ).all()
        for sha256, copies, releases in repeated:
            where = (
                session.execute(
                    sa.select(ReleasedClip.release_id)
                    .where(ReleasedClip.sha256 == sha256)
                    .distinct()
                    .order_by(ReleasedClip.release_id)
                )
                .scalars()
                .all()
            )
            yield Finding(
                "recording_released_twice",
                "P6",
                f"the recording with SHA-256 {sha256} is released {copies} times, in "
                f"{releases} release(s): {', '.join(where)}",
                sha256,
            )


def _release_thresholds(release: Release, policy: Policy) -> Iterable[Finding]:
    """One finding per release short of the k in force then or of the current policy's k."""
    short = []
    if release.contributor_count < release.k_in_force:
        short.append(f"the k of {release.k_in_force} in force when it was released")
    if release.contributor_count < policy.k:
        short.append(f"the current policy's k of {policy.k}")
    if short:
        yield Finding(
            "release_below_k",
            "P6",
            f"release {release.id} has {release.contributor_count} distinct contributors, "
            f"below {' and '.join(short)}",
            release.id,
        )


def _release_objects(
    ctx: AuditContext,
    release: Release,
    clip_keys: list[str],
    shard_keys: list[str],
    clip_rows: int,
) -> Iterable[Finding]:
    manifest_key = f"{RELEASES_PREFIX}{release.id}/manifest.json"
    try:
        manifest = json.loads(ctx.store.get(manifest_key))
    except BlobNotFound:
        yield Finding(
            "release_manifest_missing", "P6", f"release {release.id} has no manifest", release.id
        )
        return
    except (ValueError, UnicodeDecodeError):
        yield Finding(
            "release_manifest_missing",
            "P6",
            f"the manifest of release {release.id} is not valid JSON",
            release.id,
        )
        return
    if not isinstance(manifest, dict):
        manifest = {}
    listed = _manifest_clip_ids(manifest)
    problems = []
    if manifest.get("release_id") != release.id:
        problems.append("its release_id differs")
    for name in ("clip_count", "contributor_count", "k"):
        recorded = release.k_in_force if name == "k" else getattr(release, name)
        if manifest.get(name) != recorded:
            problems.append(f"{name} {manifest.get(name)!r} vs recorded {recorded}")
    if len(listed) != release.clip_count:
        problems.append(f"it lists {len(listed)} clips, the release records {release.clip_count}")
    if clip_rows != release.clip_count:
        problems.append(f"{clip_rows} released clip rows, the release records {release.clip_count}")
    if problems:
        yield Finding(
            "release_manifest_mismatch",
            "P6",
            f"the manifest of release {release.id} does not match: {'; '.join(problems)}",
            release.id,
        )
    if "shards" in manifest or shard_keys:
        yield from _shard_members(ctx, release, manifest, clip_keys, shard_keys)
        return
    stored = {key.rsplit("/", 1)[1].removesuffix(".flac") for key in clip_keys}
    if len(clip_keys) != len(listed) or stored != set(listed):
        yield _count_mismatch(release, len(clip_keys), listed, stored, "clip objects")


def _count_mismatch(
    release: Release, found: int, listed: list[str], stored: set[str], what: str
) -> Finding:
    missing = len(set(listed) - stored)
    extra = len(stored - set(listed))
    return Finding(
        "release_object_count_mismatch",
        "P6",
        f"release {release.id} has {found} {what}, its manifest lists "
        f"{len(listed)} ({missing} listed but absent, {extra} present but unlisted)",
        release.id,
    )


def _shard_members(
    ctx: AuditContext,
    release: Release,
    manifest: dict[str, Any],
    clip_keys: list[str],
    shard_keys: list[str],
) -> Iterable[Finding]:
    """Every member of every shard is a clip the manifest lists, in the shard it names, with
    the SHA-256 it records; no member, shard or loose clip object is left unlisted."""
    clips = _list_of(manifest, "clips")
    expected: dict[str, tuple[Any, Any]] = {}
    for clip in clips:
        if isinstance(clip, dict):
            expected[f"clips/{clip.get('clip_id')}.flac"] = (clip.get("shard"), clip.get("sha256"))
    shards = _list_of(manifest, "shards")
    listed_shards = {
        f"{RELEASES_PREFIX}{release.id}/{shard.get('name')}"
        for shard in shards
        if isinstance(shard, dict)
    }
    problems: list[str] = []
    if set(shard_keys) != listed_shards:
        problems.append(
            f"{len(shard_keys)} shard object(s) stored, {len(listed_shards)} listed, "
            f"{len(set(shard_keys) ^ listed_shards)} differing"
        )
    seen: set[str] = set()
    members = 0
    for key in shard_keys:
        shard = key.removeprefix(f"{RELEASES_PREFIX}{release.id}/")
        for name, data in shard_members(ctx.store.stream(key)):
            members += 1
            entry = expected.get(name)
            if entry is None or name in seen:
                problems.append(f"{shard} holds {name}, which the manifest does not list there")
            elif entry[0] != shard:
                problems.append(f"{name} is in {shard}, the manifest says {entry[0]}")
            elif entry[1] != hashlib.sha256(data).hexdigest():
                problems.append(f"{name} in {shard} differs from its SHA-256 in the manifest")
            seen.add(name)
    if clip_keys:
        problems.append(f"{len(clip_keys)} loose clip object(s) beside the shards")
    absent = set(expected) - seen
    if absent:
        problems.append(f"{len(absent)} listed clip(s) in no shard")
    if problems:
        yield Finding(
            "release_object_count_mismatch",
            "P6",
            f"the shards of release {release.id} ({members} member(s)) do not match its "
            f"manifest: {'; '.join(problems[:5])}",
            release.id,
        )


def _list_of(manifest: dict[str, Any], name: str) -> list[Any]:
    value = manifest.get(name)
    return value if isinstance(value, list) else []


def _manifest_clip_ids(manifest: dict[str, Any]) -> list[str]:
    clips = manifest.get("clips")
    if not isinstance(clips, list):
        return []
    return [str(clip.get("clip_id")) for clip in clips if isinstance(clip, dict)]


# --- P7: released media ----------------------------------------------------------------------


def check_released_media(ctx: AuditContext) -> Iterable[Finding]:
    """Every released clip is byte for byte the service's encoding of its own samples."""
    rate = ctx.policy.output_sample_rate
    for key, data in ctx.released_clips():
        try:
            metadata_problems = flac.metadata_problems(flac.read_metadata(data))
        except flac.FlacFormatError as exc:
            yield Finding("released_clip_not_clean_flac", "P7", f"{key}: {exc}", key)
            continue
        decoded = flac.decode(data, sample_rate=rate)
        if decoded.problems:
            yield Finding(
                "released_clip_not_clean_flac", "P7", f"{key}: {', '.join(decoded.problems)}", key
            )
        if metadata_problems:
            yield Finding(
                "released_clip_metadata",
                "P7",
                f"{key} carries metadata beyond the encoder's: {', '.join(metadata_problems)}",
                key,
            )
        if decoded.problems or metadata_problems:
            continue
        canonical = flac.encode_canonical(decoded.pcm, decoded.sample_rate)
        differences = flac.canonical_differences(data, canonical)
        if differences:
            yield Finding(
                "released_clip_not_canonical",
                "P7",
                f"{key} is not the service's encoding of its own samples: {', '.join(differences)}",
                key,
            )


def check_release_entries(ctx: AuditContext) -> Iterable[Finding]:
    """Every finished release has a ``release`` entry that agrees with its counts and k."""
    with ctx.database.session() as session:
        releases = (
            session.execute(
                sa.select(Release)
                .join(Bucket, Bucket.release_id == Release.id)
                .where(Bucket.state == "released")
                .order_by(Release.id)
            )
            .scalars()
            .all()
        )
        bodies = (
            session.execute(sa.select(AuditEntry.body).where(AuditEntry.kind == "release"))
            .scalars()
            .all()
        )
    recorded: dict[str, dict[str, Any]] = {}
    for text in bodies:
        try:
            body = json.loads(text)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("release_id"), str):
            recorded[body["release_id"]] = body
    for release in releases:
        body = recorded.get(release.id)
        if body is None:
            yield Finding(
                "release_not_audited",
                "P8",
                f"release {release.id} has no release entry in the audit log",
                release.id,
            )
            continue
        expected = {
            "contributor_count": release.contributor_count,
            "clip_count": release.clip_count,
            "k": release.k_in_force,
        }
        differing = [
            f"{name} {body.get(name)!r} logged, {value} recorded"
            for name, value in expected.items()
            if body.get(name) != value
        ]
        if differing:
            yield Finding(
                "release_audit_mismatch",
                "P8",
                f"the audit entry of release {release.id} disagrees: {'; '.join(differing)}",
                release.id,
            )


def check_release_policies(ctx: AuditContext) -> Iterable[Finding]:
    """Every release's policy hash is the content hash of a ``policy_loaded`` audit entry."""
    with ctx.database.session() as session:
        releases = session.execute(
            sa.select(Release.id, Release.policy_hash).order_by(Release.id)
        ).all()
        bodies = (
            session.execute(sa.select(AuditEntry.body).where(AuditEntry.kind == POLICY_LOADED))
            .scalars()
            .all()
        )
    recorded = set()
    for text in bodies:
        try:
            body = json.loads(text)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("content_hash"), str):
            recorded.add(body["content_hash"])
    for release_id, policy_hash in releases:
        if policy_hash not in recorded:
            yield Finding(
                "release_policy_unrecorded",
                "P8",
                f"release {release_id} was made under a policy (content hash {policy_hash}) "
                "that the audit log never recorded as loaded",
                release_id,
            )


def check_release_exercises(ctx: AuditContext) -> Iterable[Finding]:
    """P5 at release time: every release's audit entry shows its exercise had at least the
    ``min_exercise_learners`` of the policy it was made under."""
    with ctx.database.session() as session:
        entries = session.execute(
            sa.select(AuditEntry.kind, AuditEntry.body)
            .where(AuditEntry.kind.in_(("release", POLICY_LOADED)))
            .order_by(AuditEntry.seq)
        ).all()
    minimum_by_policy: dict[str, int] = {}
    releases: list[dict[str, Any]] = []
    for kind, text in entries:
        try:
            body = json.loads(text)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        if kind == POLICY_LOADED:
            policy = body.get("policy")
            if isinstance(body.get("content_hash"), str) and isinstance(policy, dict):
                minimum = policy.get("min_exercise_learners")
                if isinstance(minimum, int):
                    minimum_by_policy[body["content_hash"]] = minimum
        elif isinstance(body.get("release_id"), str):
            releases.append(body)
    for body in releases:
        release_id = body["release_id"]
        minimum = minimum_by_policy.get(str(body.get("policy_hash")))
        learners = body.get("exercise_learners")
        if minimum is None:
            continue  # release_policy_unrecorded reports it
        if not isinstance(learners, int) or learners < minimum:
            yield Finding(
                "release_exercise_rare",
                "P5",
                f"release {release_id} of exercise {body.get('exercise_id')!r} was made with "
                f"{learners!r} learners on record; its policy requires {minimum}",
                release_id,
            )


# --- P6: pending clips stay pending ----------------------------------------------------------


def check_pending_isolation(ctx: AuditContext) -> Iterable[Finding]:
    """No clip of a pending bucket is stored, or copied, under a release prefix."""
    with ctx.database.session() as session:
        pending = (
            session.execute(sa.select(PendingClip.object_key).order_by(PendingClip.object_key))
            .scalars()
            .all()
        )
    released = {digest: key for key, digest in ctx.released_digests().items()}
    for object_key in pending:
        if object_key.startswith(RELEASES_PREFIX):
            yield Finding(
                "pending_object_released",
                "P6",
                f"a pending clip is stored under the release prefix: {object_key}",
                object_key,
            )
            continue
        try:
            digest = hashlib.sha256(ctx.store.get(object_key)).hexdigest()
        except BlobNotFound:
            continue
        if digest in released:
            yield Finding(
                "pending_object_released",
                "P6",
                f"pending object {object_key} was copied as released object {released[digest]}. "
                "Likely cause: a tool or operator copied the pending prefix; remedy: delete the "
                "copy and audit who can write under releases/",
                object_key,
            )


# --- P4: everything pending is sealed -----------------------------------------------------------


def check_pending_sealed(ctx: AuditContext) -> Iterable[Finding]:
    """Every pending object, and every sealed value of every pending row, has the form of
    AEAD ciphertext padded to a size class (``core.sealing``): nothing pending can be joined
    to a released clip once its bucket's key is gone. The auditor holds no key; the form is
    what can be checked, and a plain FLAC, a plain number or a size off the classes is not it.
    """
    for object_key in ctx.keys(PENDING_PREFIX):
        try:
            data = ctx.store.get(object_key)
        except BlobNotFound:
            continue  # deleted while the audit ran
        if not sealing.is_sealed(data) or sealing.size_class(len(data)) != len(data):
            yield Finding(
                "pending_unsealed",
                "P4",
                f"pending object {object_key} is not sealed under its bucket's key: its bytes "
                "could be joined to a released clip. Likely cause: a writer that bypassed "
                "aggregate.pending; remedy: purge the bucket and find the writer",
                object_key,
            )
    with ctx.database.session() as session:
        rows = session.execute(sa.select(PendingClip.id, PendingClip.sealed_facts)).all()
    for row in rows:
        if not sealing.is_sealed(bytes(row.sealed_facts)):
            yield Finding(
                "pending_unsealed",
                "P4",
                f"pending row {row.id} holds a value in the clear. Likely cause: a writer that "
                "bypassed aggregate.pending; remedy: purge the bucket and find the writer",
                row.id,
            )
