"""Break each invariant on purpose; ``chorus audit`` and ``/v1/audit/verify`` name exactly that.

The state comes from the real pipeline (sanitized FSDD clips, the release job), then one thing
is tampered with per test, the way an operator mistake or an intruder would.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import sqlalchemy as sa
from mutagen.flac import FLAC, Picture

from core.ids import new_id
from tests.policies.audited import AuditedState, RunAudit

VerifyApi = Callable[[], Any]


def assert_exactly(
    expected: set[str], run_audit_cli: RunAudit, verify_api: VerifyApi, *args: str
) -> list[dict[str, Any]]:
    """The CLI exits 1 and both the CLI and the API report exactly ``expected``."""
    result = run_audit_cli(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.finding_checks == expected, result.report["findings"]
    if not args:  # the API has no canary or log options
        body = verify_api()
        assert body["ok"] is False
        assert {finding["check"] for finding in body["findings"]} == expected
    findings: list[dict[str, Any]] = result.report["findings"]
    return findings


# A released clip changed in its shard no longer matches its SHA-256 in the manifest either.
TAMPERED = "release_object_count_mismatch"


def _only(check: str, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [finding for finding in findings if finding["check"] == check]


def test_clean_state_passes_everywhere(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    result = run_audit_cli()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.report["ok"] is True
    assert result.report["findings"] == []
    assert {check["name"] for check in result.report["checks"]} >= {
        "releases",
        "released_media",
        "retention",
        "timestamp_columns",
        "ids",
        "audit_chain",
        "bucket_keys",
        "pending_isolation",
        "release_policies",
    }
    body = verify_api()
    assert body["ok"] is True
    assert body["findings"] == []


def test_human_output_names_every_check(audited: AuditedState) -> None:
    from typer.testing import CliRunner

    from chorus.cli import app as chorus_app
    from core.settings import reset_settings_cache

    env = {
        "CHORUS_DATABASE_URL": audited.settings.database_url,
        "CHORUS_STORAGE_URL": audited.settings.storage_url,
        "CHORUS_POLICY": "demo",
    }
    reset_settings_cache()
    try:
        result = CliRunner().invoke(chorus_app, ["audit"], env=env)
    finally:
        reset_settings_cache()
    assert result.exit_code == 0, result.output
    assert "clean: " in result.stdout
    assert "audit_chain" in result.stdout


def test_release_recorded_below_k(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # A batch that went out with 3 contributors under k = 5, row and manifest agreeing.
    # Row, manifest and audit entry all agree, the chain rehashed by someone with database
    # access: only counting against k catches it.
    audited.sql("UPDATE releases SET contributor_count = 3 WHERE id = :id", id=audited.release_id)
    manifest = audited.manifest()
    manifest["contributor_count"] = 3
    audited.write_manifest(manifest)
    audited.sql(
        "UPDATE audit_entries SET body = REPLACE(body, :old, :new) WHERE kind = 'release'",
        old='"contributor_count":6',
        new='"contributor_count":3',
    )
    audited.rehash_chain()
    findings = assert_exactly({"release_below_k"}, run_audit_cli, verify_api)
    assert audited.release_id in findings[0]["message"]
    assert "3 distinct" in findings[0]["message"]


def test_edited_release_row_disagrees_with_its_manifest(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql("UPDATE releases SET contributor_count = 2 WHERE id = :id", id=audited.release_id)
    assert_exactly(
        {"release_below_k", "release_manifest_mismatch", "release_audit_mismatch"},
        run_audit_cli,
        verify_api,
    )


def test_dropped_released_object(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.put_clip(audited.released_clip_keys()[0], None)
    findings = assert_exactly({"release_object_count_mismatch"}, run_audit_cli, verify_api)
    assert "(5 member(s))" in findings[0]["message"]  # of 6
    assert "1 listed clip(s) in no shard" in findings[0]["message"]


def test_extra_or_altered_shard_member(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    first, second = audited.released_clip_keys()[:2]
    # A member swapped for another clip's bytes: every byte canonical, the checksum not.
    audited.put_clip(first, audited.get_clip(second))
    findings = assert_exactly({"release_object_count_mismatch"}, run_audit_cli, verify_api)
    assert "differs from its SHA-256 in the manifest" in findings[0]["message"]


def test_shard_member_with_a_counter_for_a_name(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    for subject in audited.released_clip_keys():
        audited.put_clip(subject, audited.get_clip(subject), rename=f"clips/{len(subject)}.flac")
    findings = run_audit_cli().report["findings"]
    assert "non_random_id" in {finding["check"] for finding in findings}


def test_member_the_manifest_does_not_list(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    subject = audited.released_clip_keys()[0]
    shard = subject.partition(":")[0]
    manifest = audited.manifest()
    manifest["clips"] = manifest["clips"][1:]
    audited.write_manifest(manifest)
    findings = run_audit_cli().report["findings"]
    mismatch = [f for f in findings if f["check"] == "release_object_count_mismatch"]
    assert len(mismatch) == 1
    assert f"{shard.rsplit('/', 2)[-2]}/{shard.rsplit('/', 1)[-1]} holds" in mismatch[0]["message"]


def test_unrecorded_objects_under_the_release_prefix(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    stray = audited.get_clip(audited.released_clip_keys()[0])
    audited.store.put(f"releases/{new_id()}/clips/{new_id()}.flac", stray)
    assert_exactly({"release_unrecorded"}, run_audit_cli, verify_api)


def test_pending_clip_copied_under_a_release_prefix(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    leaked = audited.store.get(audited.pending_keys[0])
    audited.store.put(f"releases/{new_id()}/clips/{new_id()}.flac", leaked)
    # The copy is sealed, so it is no clean FLAC either.
    findings = assert_exactly(
        {"release_unrecorded", "pending_object_released", "released_clip_not_clean_flac"},
        run_audit_cli,
        verify_api,
    )
    leak = next(f for f in findings if f["check"] == "pending_object_released")
    assert leak["subject"] == audited.pending_keys[0]


def _tagged(flac_bytes: bytes, tmp_path: Path) -> bytes:
    path = tmp_path / "tagged.flac"
    path.write_bytes(flac_bytes)
    tagged = FLAC(path)
    tagged["ARTIST"] = "Learner Name"
    tagged["DATE"] = "2026-11-21T09:14:03"
    picture = Picture()
    picture.type = 3
    picture.mime = "image/png"
    picture.data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    tagged.add_picture(picture)
    tagged.save()
    return path.read_bytes()


def test_tagged_flac_in_a_release(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi, tmp_path: Path
) -> None:
    key = audited.released_clip_keys()[0]
    audited.put_clip(key, _tagged(audited.get_clip(key), tmp_path))
    findings = _only(
        "released_clip_metadata",
        assert_exactly({"released_clip_metadata", TAMPERED}, run_audit_cli, verify_api),
    )
    assert findings[0]["subject"] == key
    assert "PICTURE" in findings[0]["message"]
    assert "Vorbis comment" in findings[0]["message"]


def test_released_object_in_another_format(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    key = audited.released_clip_keys()[0]
    samples, rate = sf.read(io.BytesIO(audited.get_clip(key)), dtype="int16")
    wav = io.BytesIO()
    sf.write(wav, samples, rate, format="WAV", subtype="PCM_16")
    audited.put_clip(key, wav.getvalue())
    assert_exactly({"released_clip_not_clean_flac", TAMPERED}, run_audit_cli, verify_api)


def _flac_blocks(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A FLAC stream's metadata blocks as (type, body), and the audio frames after them."""
    assert data[:4] == b"fLaC"
    blocks, offset = [], 4
    while True:
        header, length = data[offset], int.from_bytes(data[offset + 1 : offset + 4], "big")
        blocks.append((header & 0x7F, data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
        if header & 0x80:
            return blocks, data[offset:]


def _flac_join(blocks: list[tuple[int, bytes]], frames: bytes) -> bytes:
    out = b"fLaC"
    for n, (kind, body) in enumerate(blocks):
        last = 0x80 if n == len(blocks) - 1 else 0
        out += bytes([kind | last]) + len(body).to_bytes(3, "big") + body
    return out + frames


def _with_vendor(data: bytes, vendor: bytes) -> bytes:
    blocks, frames = _flac_blocks(data)
    comment = b"".join([len(vendor).to_bytes(4, "little"), vendor, (0).to_bytes(4, "little")])
    return _flac_join(
        [(4, comment) if kind == 4 else (kind, body) for kind, body in blocks], frames
    )


def _doctored(data: bytes, how: str) -> bytes:
    """A released clip hiding ``learner-000`` where the metadata check used to let it pass."""
    secret = b"learner-000 2026-11-21T09:14:03"
    blocks, frames = _flac_blocks(data)
    comment = next(body for kind, body in blocks if kind == 4)
    vendor = comment[4 : 4 + int.from_bytes(comment[:4], "little")]
    if how == "vendor_same_length":
        return _with_vendor(data, secret[: len(vendor)].ljust(len(vendor), b" "))
    if how == "vendor_longer":
        return _with_vendor(data, vendor + b" " + secret)
    if how == "padding":
        return _flac_join([*blocks, (1, secret + bytes(64))], frames)
    assert how == "appended"
    return data + secret


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("vendor_same_length", "vendor string"),
        ("vendor_longer", "vendor string"),
        ("padding", "PADDING block"),
        ("appended", "31 byte(s) after the last audio frame"),
    ],
)
def test_data_hidden_in_a_clip_that_still_decodes(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi, how: str, named: str
) -> None:
    key = audited.released_clip_keys()[0]
    clean = audited.get_clip(key)
    doctored = _doctored(clean, how)
    assert doctored != clean
    # Still the same audio, and nothing the metadata parser calls a tag.
    original, _ = sf.read(io.BytesIO(clean), dtype="int16")
    assert (sf.read(io.BytesIO(doctored), dtype="int16")[0] == original).all()
    audited.put_clip(key, doctored)
    findings = _only(
        "released_clip_not_canonical",
        assert_exactly({"released_clip_not_canonical", TAMPERED}, run_audit_cli, verify_api),
    )
    assert findings[0]["subject"] == key
    assert named in findings[0]["message"]
    assert "learner-000" not in findings[0]["message"]


def test_a_clip_reencoded_at_another_level(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # Same samples, same blocks, but not the service's encoder settings: the frames differ.
    key = audited.released_clip_keys()[0]
    samples, rate = sf.read(io.BytesIO(audited.get_clip(key)), dtype="int16")
    other = io.BytesIO()
    sf.write(other, samples, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)
    audited.put_clip(key, other.getvalue())
    findings = _only(
        "released_clip_not_canonical",
        assert_exactly({"released_clip_not_canonical", TAMPERED}, run_audit_cli, verify_api),
    )
    assert "audio frames differ" in findings[0]["message"]


def test_tampered_audit_entry(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # Pretend the service ran under a weaker policy: k 5 -> 2 in the recorded policy load.
    audited.sql(
        "UPDATE audit_entries SET body = REPLACE(body, :old, :new) WHERE kind = 'policy_loaded'",
        old='"k":5',
        new='"k":2',
    )
    findings = assert_exactly({"audit_chain_broken"}, run_audit_cli, verify_api)
    assert "entry 1" in findings[0]["message"]
    assert "does not match its hash" in findings[0]["message"]


def test_tampered_release_entry_also_disagrees_with_the_release(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql(
        "UPDATE audit_entries SET body = REPLACE(body, :old, :new) WHERE kind = 'release'",
        old='"contributor_count":6',
        new='"contributor_count":60',
    )
    assert_exactly({"audit_chain_broken", "release_audit_mismatch"}, run_audit_cli, verify_api)


def test_release_missing_from_the_log(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql("DELETE FROM audit_entries WHERE kind = 'release'")
    audited.rehash_chain()
    assert_exactly({"release_not_audited"}, run_audit_cli, verify_api)


def test_release_under_a_policy_never_recorded(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # The chain is intact; the release claims a policy whose load the log never saw.
    weaker = audited.policy.model_copy(update={"k": 2})
    assert weaker.content_hash != audited.policy.content_hash
    audited.sql(
        "UPDATE releases SET policy_hash = :hash WHERE id = :id",
        hash=weaker.content_hash,
        id=audited.release_id,
    )
    findings = assert_exactly({"release_policy_unrecorded"}, run_audit_cli, verify_api)
    assert findings[0]["subject"] == audited.release_id
    assert weaker.content_hash in findings[0]["message"]


def test_release_of_an_exercise_below_min_learners(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # The chain is intact; the release's entry shows its exercise was too rare (P5).
    minimum = audited.policy.min_exercise_learners
    audited.sql(
        "UPDATE audit_entries SET body = REPLACE(body, '\"exercise_learners\":', "
        "'\"exercise_learners\":-' ) WHERE kind = 'release'"
    )
    audited.rehash_chain()
    findings = assert_exactly({"release_exercise_rare"}, run_audit_cli, verify_api)
    assert findings[0]["subject"] == audited.release_id
    assert f"requires {minimum}" in findings[0]["message"]


def test_timestamp_column_added_to_pending_clips(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql("ALTER TABLE pending_clips ADD COLUMN received_at TIMESTAMP")
    findings = assert_exactly({"timestamp_column"}, run_audit_cli, verify_api)
    assert findings[0]["subject"] == "pending_clips.received_at"


def test_pending_bucket_past_retention(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql(
        "UPDATE release_cycles SET current = :c WHERE id = 1",
        c=audited.policy.retention_cycles + 5,
    )
    assert_exactly({"bucket_past_retention"}, run_audit_cli, verify_api)


def test_a_bucket_key_column_in_the_database_is_found(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql("ALTER TABLE buckets ADD COLUMN bucket_key BLOB")
    audited.sql("UPDATE buckets SET bucket_key = :key WHERE state = 'released'", key=b"\x01" * 32)
    assert_exactly({"bucket_key_kept"}, run_audit_cli, verify_api)


@pytest.mark.parametrize("make_id", [lambda: uuid.uuid1().hex], ids=["uuid1"])
def test_time_based_pending_ids(
    audited: AuditedState,
    run_audit_cli: RunAudit,
    verify_api: VerifyApi,
    make_id: Callable[[], str],
) -> None:
    audited.sql(
        "UPDATE pending_clips SET id = :new WHERE object_key = :key",
        new=make_id(),
        key=audited.pending_keys[0],
    )
    audited.sql(
        "UPDATE pending_clips SET id = :new WHERE object_key = :key",
        new=make_id(),
        key=audited.pending_keys[1],
    )
    findings = assert_exactly({"time_ordered_id"}, run_audit_cli, verify_api)
    assert findings[0]["subject"] == "pending_clips.id"


def test_counter_ids(audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi) -> None:
    audited.sql(
        "UPDATE pending_clips SET id = '1' WHERE object_key = :key", key=audited.pending_keys[0]
    )
    assert_exactly({"non_random_id"}, run_audit_cli, verify_api)


def test_pending_clip_readable_under_a_release_prefix(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql(
        "UPDATE pending_clips SET object_key = :released WHERE object_key = :key",
        released=audited.released_clip_keys()[0],
        key=audited.pending_keys[0],
    )
    assert_exactly({"pending_object_released"}, run_audit_cli, verify_api)


# --- canaries ------------------------------------------------------------------------------


def test_learner_ids_are_nowhere(audited: AuditedState, run_audit_cli: RunAudit) -> None:
    """The real learners of the fixture left no trace in objects or rows (P3)."""
    canaries = [arg for learner in audited.learner_ids for arg in ("--canary", learner)]
    result = run_audit_cli(*canaries)
    assert result.exit_code == 0, result.stdout
    assert "canaries" in {check["name"] for check in result.report["checks"]}


def test_canary_planted_in_a_row(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    audited.sql(
        "UPDATE releases SET statistics = :stats WHERE id = :id",
        stats='{"note": "learner-000 spoke"}',
        id=audited.release_id,
    )
    findings = assert_exactly(
        {"canary_found"}, run_audit_cli, verify_api, "--canary", "learner-000"
    )
    assert findings[0]["subject"] == "releases.statistics"
    assert "learner-000" not in findings[0]["message"]


def test_canary_planted_in_an_object(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    key = audited.pending_keys[1]
    audited.store.put(key, audited.store.get(key) + b"learner-101")
    # Appended bytes also leave the sealed object off its size class.
    findings = assert_exactly(
        {"canary_found", "pending_unsealed"}, run_audit_cli, verify_api, "--canary", "learner-101"
    )
    canary = next(f for f in findings if f["check"] == "canary_found")
    assert canary["subject"] == key


def test_canary_planted_in_a_log_file(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    (logs / "api").mkdir(parents=True)
    (logs / "api" / "chorus.log").write_text(
        '{"level": "INFO", "message": "request"}\n' * 50_000
        + '{"level": "INFO", "learner": "learner-102"}\n'
    )
    findings = assert_exactly(
        {"canary_found"},
        run_audit_cli,
        verify_api,
        "--canary",
        "learner-102",
        "--log-dir",
        str(logs),
    )
    assert findings[0]["subject"].endswith("chorus.log")


# --- could not run -------------------------------------------------------------------------


def test_unreachable_database_exits_2(audited: AuditedState, run_audit_cli: RunAudit) -> None:
    result = run_audit_cli(database_url="postgresql+psycopg://postgres@127.0.0.1:1/chorus")
    assert result.exit_code == 2
    assert "could not run" in result.stderr
    assert result.report["ok"] is False


def test_missing_sqlite_database_exits_2(run_audit_cli: RunAudit, tmp_path: Path) -> None:
    result = run_audit_cli(database_url=f"sqlite:///{tmp_path / 'nowhere' / 'chorus.db'}")
    assert result.exit_code == 2
    assert not (tmp_path / "nowhere" / "chorus.db").exists()


def test_the_installed_command_exits_with_the_documented_codes(audited: AuditedState) -> None:
    """The real ``chorus`` entry point, in its own process, with only CHORUS_* settings."""
    import os
    import subprocess
    import sys

    chorus = Path(sys.executable).with_name("chorus")
    env = {
        **os.environ,
        "CHORUS_DATABASE_URL": audited.settings.database_url,
        "CHORUS_STORAGE_URL": audited.settings.storage_url,
        "CHORUS_POLICY": "demo",
    }
    clean = subprocess.run(
        [chorus, "audit"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    audited.put_clip(audited.released_clip_keys()[0], None)
    broken = subprocess.run(
        [chorus, "audit"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert broken.returncode == 1
    assert "release_object_count_mismatch" in broken.stdout


def test_a_recording_released_twice_is_found(
    audited: AuditedState, run_audit_cli: RunAudit, verify_api: VerifyApi
) -> None:
    # An upload stored twice and released twice: two released clips with the same bytes.
    with audited.database.session() as session:
        first, second = session.execute(
            sa.text("SELECT sha256 FROM released_clips ORDER BY id LIMIT 2")
        ).scalars()
    audited.sql(
        "UPDATE released_clips SET sha256 = :first WHERE sha256 = :second",
        first=first,
        second=second,
    )
    result = run_audit_cli()
    assert result.exit_code == 1, result.stdout + result.stderr
    twice = _only("recording_released_twice", result.report["findings"])
    assert len(twice) == 1
    assert twice[0]["subject"] == first
    assert audited.release_id in twice[0]["message"]
