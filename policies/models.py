"""Schemas of the auditor API (read-only)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field


class PolicyRead(BaseModel):
    name: str
    version: int
    content_hash: str
    recorded_in_audit_log: bool
    k: int
    max_clips_per_contributor: int
    min_exercise_learners: int
    min_contributor_age: int
    accepted_consent_versions: list[str]
    max_upload_bytes: int
    min_duration_s: float
    max_duration_s: float
    min_sample_rate: int
    max_sample_rate: int
    output_sample_rate: int
    release_interval: str
    retention_cycles: int
    voice_anonymization: str
    voice_mcadams_alpha_min: float
    voice_mcadams_alpha_max: float
    voice_pitch_octaves_min: float
    voice_pitch_octaves_max: float
    voice_formant_octaves_min: float
    voice_formant_octaves_max: float


class ChainStatusRead(BaseModel):
    ok: bool
    entries: int
    first_broken_seq: int | None
    reason: str | None


class AuditEntryRead(BaseModel):
    seq: int
    kind: str
    cycle: int
    day: dt.date
    body: dict[str, Any]
    prev_hash: str
    hash: str


class AuditLogPage(BaseModel):
    items: list[AuditEntryRead]
    total: int
    next_after: int | None
    chain: ChainStatusRead


class FindingRead(BaseModel):
    check: str
    invariant: str
    message: str
    subject: str | None
    cause: str = Field(description="what most likely led to a finding of this kind")
    remedy: str = Field(description="how an operator clears it")


class CheckRead(BaseModel):
    name: str
    invariants: list[str]
    description: str
    findings: int
    status: Literal["ok", "fail", "n/a"]
    not_applicable: str | None = Field(
        default=None, description="why the check does not apply to this deployment (n/a)"
    )


class AuditVerifyRead(BaseModel):
    ok: bool
    findings: list[FindingRead]
    checks: list[CheckRead]
