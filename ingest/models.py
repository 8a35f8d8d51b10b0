"""Schemas of the ingest routes, named by direction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidMetadata
from exercises.models import ExerciseId


class ClipMetadataCreate(BaseModel):
    """The only metadata fields the pipeline reads (P3, P4): everything else is dropped unread."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    exercise_id: ExerciseId


@dataclass(frozen=True)
class ParsedMetadata:
    metadata: ClipMetadataCreate
    dropped_fields: int


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct: with two ``exercise_id``s, which one the
    pipeline reads would depend on the parser."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey
    return document


def parse_clip_metadata(raw: bytes) -> ParsedMetadata:
    """Parse the ``metadata`` part; errors name the field, never a value."""
    try:
        document = json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey:
        raise InvalidMetadata("the metadata part names a field twice") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack, which 16 KiB allows.
        raise InvalidMetadata("the metadata part is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidMetadata("the metadata part must be a JSON object")
    kept = {name: document[name] for name in ClipMetadataCreate.model_fields if name in document}
    try:
        metadata = ClipMetadataCreate.model_validate(kept)
    except ValidationError as exc:
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        raise InvalidMetadata(
            f"metadata field(s) missing or malformed: {', '.join(fields) or 'exercise_id'}"
        ) from None
    return ParsedMetadata(metadata=metadata, dropped_fields=len(document) - len(kept))


class ClipAcceptedRead(BaseModel):
    status: str = "accepted"


class WithdrawalRead(BaseModel):
    withdrawn: int = Field(description="pending clips removed")


class AudioFormatRead(BaseModel):
    container: str
    codecs: list[str]
    media_types: list[str] = Field(description="what to declare the audio part as")
    recorded_by: str = Field(description="the recorders that make it by default")


class UploadRequirementsRead(BaseModel):
    """What ``POST /v1/clips`` accepts under the policy in force."""

    formats: list[AudioFormatRead]
    accepted_media_types: list[str] = Field(
        description="declared types of the audio part besides any audio/* (none is fine too)"
    )
    max_upload_bytes: int
    min_duration_s: float
    max_duration_s: float
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    max_channels: int = Field(description="mixed down to mono")
    min_speech_s: float = Field(description="seconds of voice a clip must hold")
    min_exercise_learners: int = Field(
        description="learners an exercise needs in the usage catalog before it is collected"
    )
    consent_scope: str
    consent_versions: list[str] = Field(description="consent versions the policy accepts")
    max_clips_per_contributor: int = Field(description="per exercise, per pending batch")
    stored_as: str
