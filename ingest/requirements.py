"""The public upload contract: what ``POST /v1/clips`` accepts, under the policy in force.

One source for ``GET /v1/clips/requirements`` (no key: an app reads it before it records),
for ``POST /v1/clips``'s OpenAPI description and for the README's table, so none of them can
drift from the checks ``ingest.audio``, ``ingest.containers`` and ``ingest.multipart`` make.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ingest.audio import MAX_CHANNELS
from ingest.consent import CONSENT_SCOPE
from ingest.models import AudioFormatRead, UploadRequirementsRead
from ingest.multipart import AUDIO_MEDIA_TYPES
from policies.policy import Policy

FORMATS = (
    AudioFormatRead(
        container="MP4 / M4A",
        codecs=["AAC", "Apple Lossless"],
        media_types=["audio/mp4", "audio/x-m4a", "video/mp4"],
        recorded_by="iOS AVAudioRecorder, Android MediaRecorder (MPEG_4), Safari MediaRecorder",
    ),
    AudioFormatRead(
        container="ADTS",
        codecs=["AAC"],
        media_types=["audio/aac"],
        recorded_by="Android MediaRecorder (AAC_ADTS)",
    ),
    AudioFormatRead(
        container="3GP / AMR",
        codecs=["AMR-NB", "AMR-WB", "AAC"],
        media_types=["audio/3gpp", "audio/amr", "audio/amr-wb", "video/3gpp"],
        recorded_by="Android MediaRecorder (THREE_GPP, AMR_NB, AMR_WB)",
    ),
    AudioFormatRead(
        container="WebM",
        codecs=["Opus", "Vorbis"],
        media_types=["audio/webm"],
        recorded_by="Chrome and Firefox MediaRecorder",
    ),
    AudioFormatRead(
        container="Ogg",
        codecs=["Opus", "Vorbis", "FLAC"],
        media_types=["audio/ogg", "application/ogg"],
        recorded_by="Android MediaRecorder (OGG), Firefox MediaRecorder",
    ),
    AudioFormatRead(
        container="CAF",
        codecs=["linear PCM", "AAC", "Apple Lossless"],
        media_types=["audio/x-caf"],
        recorded_by="iOS AVAudioRecorder",
    ),
    AudioFormatRead(
        container="WAV",
        codecs=["linear PCM (8–32 bit, float)"],
        media_types=["audio/wav", "audio/x-wav"],
        recorded_by="any",
    ),
    AudioFormatRead(
        container="FLAC", codecs=["FLAC"], media_types=["audio/flac"], recorded_by="any"
    ),
    AudioFormatRead(container="MP3", codecs=["MP3"], media_types=["audio/mpeg"], recorded_by="any"),
)


def upload_requirements(policy: Policy) -> UploadRequirementsRead:
    return UploadRequirementsRead(
        formats=list(FORMATS),
        accepted_media_types=list(AUDIO_MEDIA_TYPES),
        max_upload_bytes=policy.max_upload_bytes,
        min_duration_s=policy.min_duration_s,
        max_duration_s=policy.max_duration_s,
        min_sample_rate_hz=policy.min_sample_rate,
        max_sample_rate_hz=policy.max_sample_rate,
        max_channels=MAX_CHANNELS,
        min_speech_s=policy.min_speech_s,
        min_exercise_learners=policy.min_exercise_learners,
        consent_scope=CONSENT_SCOPE,
        consent_versions=list(policy.accepted_consent_versions),
        max_clips_per_contributor=policy.max_clips_per_contributor,
        stored_as=f"FLAC, 16-bit mono at {policy.output_sample_rate} Hz",
    )


def describe_upload(policy: Policy) -> str:
    """``POST /v1/clips``'s OpenAPI description: the contract in prose, with this policy's
    figures."""
    needs = upload_requirements(policy)
    formats = "\n".join(
        f"| {f.container} | {', '.join(f.codecs)} | {', '.join(f.media_types)} |"
        for f in needs.formats
    )
    versions = ", ".join(f"`{version}`" for version in needs.consent_versions)
    media_types = ", ".join(f"`{t}`" for t in needs.accepted_media_types if t != "audio/*")
    return f"""One multipart request per recording: a `metadata` part (JSON,
`{{"exercise_id": "…"}}`; any other field is dropped unread) and an `audio` part, with the
learner's consent token as `Authorization: Bearer …` (scope `{needs.consent_scope}`,
consent version one of {versions}). The same contract, as JSON, is at
`GET /v1/clips/requirements` (no key).

**Audio.** At most {needs.max_upload_bytes:,} bytes; {needs.min_duration_s}–{needs.max_duration_s} s
long; {needs.min_sample_rate_hz}–{needs.max_sample_rate_hz} Hz; 1–{needs.max_channels} channels
(mixed down to mono); at least {needs.min_speech_s} s of voice. Stored as {needs.stored_as},
nothing of the upload's own file kept.

| container | codecs | declare the audio part as |
|---|---|---|
{formats}

The audio part may be declared as any `audio/*` type, as one of {media_types}, or not at
all; anything else answers 415 `unsupported_audio`.

**Exercise.** Only exercises that at least {needs.min_exercise_learners:,} learners use are
collected (422 `exercise_not_eligible` otherwise); a learner adds at most
{needs.max_clips_per_contributor} clip(s) to an exercise's pending batch (409
`contribution_limit`).

**Retries.** Send a fresh `Idempotency-Key` with each recording and the same one on every retry
of it: a retry after a lost answer gets `201` again, and nothing is stored twice. A `503`
carries `Retry-After`."""


def document_upload_contract(app: FastAPI) -> None:
    """Fill ``POST /v1/clips``'s OpenAPI description from the app's policy in force."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        operation = document.get("paths", {}).get("/v1/clips", {}).get("post")
        if operation is not None:
            operation["description"] = describe_upload(app.state.policy)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
