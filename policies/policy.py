"""The privacy policy: every threshold Chorus enforces, validated before the service starts.

Unsafe values (k < 2, min_contributor_age < 13, a contribution cap < 1, no accepted consent
version) refuse to load, so the service cannot run with them (P1, P2, P5, P6, P10).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ConfigurationError

POLICY_DIR = Path(__file__).resolve().parent / "files"
ReleaseInterval = Literal["hourly", "daily", "weekly"]
VoiceAnonymization = Literal["none", "mcadams", "world", "pseudo_voice"]
# How a pseudo-voice release times its clips: each its own, all at the release's median
# duration, or that with the voicing onset and offset at the release target's shares too.
PseudoVoiceTiming = Literal["own", "uniform", "anchored"]


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int = Field(ge=1)
    k: int = Field(default=25, ge=2, description="distinct contributors per released batch")
    max_clips_per_contributor: int = Field(default=1, ge=1)
    min_exercise_learners: int = Field(default=1000, ge=1)
    min_contributor_age: int = Field(default=16, ge=13)
    accepted_consent_versions: tuple[str, ...] = Field(
        default=("speech-research-v1",), min_length=1
    )
    max_upload_bytes: int = Field(default=5_000_000, ge=1024, le=100_000_000)
    min_duration_s: float = Field(default=0.3, gt=0)
    max_duration_s: float = Field(default=30.0, gt=0, le=600)
    min_sample_rate: int = Field(default=8000, ge=1000)
    max_sample_rate: int = Field(default=48000, le=384_000)
    output_sample_rate: int = Field(default=16000, ge=8000, le=48000)
    min_speech_s: float = Field(
        default=0.06, ge=0.03, description="voiced audio a clip must hold to count (P6)"
    )
    release_bandwidth_hz: float | None = Field(
        default=None,
        ge=1000,
        description=(
            "an upper bound on the one band every clip of a release is limited to (P4); the "
            "band is otherwise the narrowest its bucket's recordings carry"
        ),
    )
    release_interval: ReleaseInterval = "daily"
    retention_cycles: int = Field(default=30, ge=1)
    release_license: str = Field(
        default="cc-by-4.0",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.+-]*$",
        description="the licence a released dataset carries (an SPDX-style id, lower case)",
    )
    voice_anonymization: VoiceAnonymization = Field(
        default="none",
        description="transform applied to every released voice (policies.voice): none, "
        "pseudo_voice (one voice drawn per release), mcadams or world (drawn per clip)",
    )
    # α = 1 leaves a voice as it is: the range stays clear of it, so every clip is transformed.
    voice_mcadams_alpha_min: float = Field(default=0.7, ge=0.5, le=0.95)
    voice_mcadams_alpha_max: float = Field(default=0.9, ge=0.5, le=0.95)
    # Shift sizes (octaves) for ``world``; the direction is drawn per clip. Pitch moves the
    # voice, formants the vocal tract: a formant shift of at least 0.05 octave is kept.
    voice_pitch_octaves_min: float = Field(default=0.4, ge=0.0, le=1.5)
    voice_pitch_octaves_max: float = Field(default=0.8, ge=0.0, le=1.5)
    voice_formant_octaves_min: float = Field(default=0.1, ge=0.05, le=0.5)
    voice_formant_octaves_max: float = Field(default=0.2, ge=0.05, le=0.5)
    # ``pseudo_voice`` only: the release's timing, and the share of the release's mean mapped
    # envelope mixed into every clip's (1: every clip of a release has the same spectral
    # frames; what is left of the speaker is the voicing pattern). The measured best point is
    # "anchored" with 0.9; it needs every clip of a bucket to say the same prompt (see
    # docs/privacy.md, "Voice anonymization").
    voice_pseudo_timing: PseudoVoiceTiming = Field(default="own")
    voice_pseudo_averaging: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError("min_duration_s must be below max_duration_s")
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError("min_sample_rate must not exceed max_sample_rate")
        if (
            self.release_bandwidth_hz is not None
            and self.release_bandwidth_hz > self.output_sample_rate / 2
        ):
            raise ValueError("release_bandwidth_hz must not exceed half of output_sample_rate")
        if self.min_speech_s > self.min_duration_s:
            raise ValueError("min_speech_s must not exceed min_duration_s")
        for low, high in (
            ("voice_mcadams_alpha_min", "voice_mcadams_alpha_max"),
            ("voice_pitch_octaves_min", "voice_pitch_octaves_max"),
            ("voice_formant_octaves_min", "voice_formant_octaves_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        if self.voice_pseudo_averaging > 0 and self.voice_pseudo_timing == "own":
            raise ValueError("voice_pseudo_averaging needs voice_pseudo_timing other than 'own'")
        if self.voice_anonymization == "world" and importlib.util.find_spec("pyworld") is None:
            raise ValueError("voice_anonymization 'world' needs pyworld (pip install '.[voice]')")
        if any(not version.strip() for version in self.accepted_consent_versions):
            raise ValueError("accepted_consent_versions must not contain blank versions")
        return self

    @property
    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of every field: what an auditor compares."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def builtin_policies() -> list[str]:
    return sorted(path.stem for path in POLICY_DIR.glob("*.toml"))


def load_policy(name_or_path: str) -> Policy:
    """A built-in policy by name (``default``, ``demo``) or a TOML file by path."""
    path = POLICY_DIR / f"{name_or_path}.toml"
    if name_or_path in builtin_policies():
        source = path
    else:
        source = Path(name_or_path)
        if not source.is_file():
            raise ConfigurationError(
                f"policy {name_or_path!r} is neither a built-in policy "
                f"({', '.join(builtin_policies())}) nor a readable file"
            )
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"policy file {source} is not valid TOML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"policy {source.name} refused: {problems}") from None
