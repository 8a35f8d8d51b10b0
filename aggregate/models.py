"""Schemas of the researcher API: released batches and their statistics, never pending data."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class HistogramRead(BaseModel):
    edges: list[float]
    counts: list[int]


class DistributionRead(BaseModel):
    count: int
    mean: float | None
    min: float | None
    max: float | None
    quantiles: dict[str, float | None] = Field(description="p05, p25, p50, p75, p95")
    histogram: HistogramRead


class StatisticsRead(BaseModel):
    clip_count: int
    contributor_count: int
    duration_s: DistributionRead
    loudness_dbfs: DistributionRead
    sample_rates: dict[str, int]


class ReleaseSummaryRead(BaseModel):
    release_id: str
    exercise_id: str
    language: str | None
    release_day: dt.date
    clip_count: int
    contributor_count: int
    k: int
    policy_hash: str


class ReleasePageRead(BaseModel):
    items: list[ReleaseSummaryRead]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page"
    )


class ManifestClipRead(BaseModel):
    clip_id: str
    file_name: str | None = Field(default=None, description="clips/<clip>.flac in the dataset")
    position: int
    duration_s: float
    sample_rate: int
    loudness_dbfs: float
    sha256: str | None = Field(default=None, description="SHA-256 of the clip's bytes")
    shard: str | None = Field(default=None, description="shards/shard-NNNNN.tar holding it")
    offset: int | None = Field(default=None, description="where its bytes start in the shard")
    size: int | None = Field(default=None, description="how many bytes it has")


class ManifestFileRead(BaseModel):
    name: str
    size: int
    sha256: str
    clips: int | None = Field(default=None, description="shards only: how many clips")


class VoiceAnonymizationRead(BaseModel):
    """The voice transform applied to every clip of a release; its draws (per clip, or the
    release's one pseudo-voice) are not kept."""

    method: str = Field(
        description="none, pseudo_voice, mcadams or world (policy voice_anonymization)"
    )
    alpha_range: list[float] | None = None
    pitch_octaves_range: list[float] | None = None
    formant_octaves_range: list[float] | None = None
    timing: str | None = Field(
        default=None, description="pseudo_voice: how clips were retimed to the release's duration"
    )
    averaging_share: float | None = Field(
        default=None, description="pseudo_voice: share of the release's mean spectral frames"
    )


class ManifestRead(ReleaseSummaryRead):
    """The release manifest as stored next to its dataset files (``manifest.json``)."""

    text: str | None = None
    course: str | None = None
    skill: str | None = None
    license: str | None = None
    layout: str | None = None
    statistics: StatisticsRead
    shards: list[ManifestFileRead] = []
    files: list[ManifestFileRead] = Field(
        default=[],
        description="README.md, metadata.csv, validated.tsv, clip_durations.tsv, SHA256SUMS",
    )
    voice_anonymization: VoiceAnonymizationRead | None = Field(
        default=None, description="absent in manifests written before the setting existed"
    )
    clips: list[ManifestClipRead]


class AggregateRead(BaseModel):
    exercise_id: str
    release_count: int
    statistics: StatisticsRead = Field(
        description="merged over every release; contributor_count sums the batches' counts"
    )


class AuditReleaseRead(BaseModel):
    id: str
    exercise_id: str
    language: str | None
    release_day: dt.date
    clip_count: int
    contributor_count: int
    k_in_force: int
    policy_hash: str
    meets_k: bool


class AuditReleasePage(BaseModel):
    items: list[AuditReleaseRead]
    total: int
    offset: int
    limit: int
