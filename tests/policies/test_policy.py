"""Policies load from the shipped files or a path; unsafe values refuse with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from policies.policy import Policy, builtin_policies, load_policy

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "policies" / "files" / "default.toml"


def test_builtins_match_the_design() -> None:
    assert builtin_policies() == ["default", "demo"]
    default = load_policy("default")
    assert (default.k, default.max_clips_per_contributor, default.min_exercise_learners) == (
        25,
        1,
        1000,
    )
    assert default.min_contributor_age == 16
    assert default.accepted_consent_versions == ("speech-research-v1",)
    assert default.retention_cycles == 30
    assert default.release_interval == "daily"
    demo = load_policy("demo")
    assert (demo.k, demo.min_exercise_learners) == (5, 100)
    assert demo.content_hash != default.content_hash


def _write(tmp_path: Path, replacements: dict[str, str]) -> Path:
    text = DEFAULT_TOML.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return path


def test_a_policy_file_by_path_and_its_hash(tmp_path: Path) -> None:
    same = load_policy(str(_write(tmp_path, {})))
    assert same.content_hash == load_policy("default").content_hash
    stricter = load_policy(str(_write(tmp_path, {"k = 25": "k = 30"})))
    assert stricter.k == 30
    assert stricter.content_hash != same.content_hash
    assert len(stricter.content_hash) == 64


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("k = 25", "k = 1", "k"),
        ("min_contributor_age = 16", "min_contributor_age = 12", "min_contributor_age"),
        (
            "max_clips_per_contributor = 1",
            "max_clips_per_contributor = 0",
            "max_clips_per_contributor",
        ),
        (
            'accepted_consent_versions = ["speech-research-v1"]',
            "accepted_consent_versions = []",
            "accepted_consent_versions",
        ),
        ("retention_cycles = 30", "retention_cycles = 0", "retention_cycles"),
        ("min_speech_s = 0.06", "min_speech_s = 0.0", "min_speech_s"),
        ("min_speech_s = 0.06", "min_speech_s = 0.5", "min_speech_s"),
        ('release_interval = "daily"', 'release_interval = "sometimes"', "release_interval"),
        ("k = 25", "k = 25\nsecret_backdoor = true", "secret_backdoor"),
    ],
)
def test_unsafe_values_refuse_to_load(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = _write(tmp_path, {old: new})
    with pytest.raises(ConfigurationError) as refused:
        load_policy(str(path))
    assert field in refused.value.detail
    assert "refused" in refused.value.detail


def test_unknown_policy_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="neither a built-in policy"):
        load_policy("lenient")
    broken = tmp_path / "broken.toml"
    broken.write_text("k = = 3")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_policy(str(broken))


def test_policies_are_frozen() -> None:
    policy = load_policy("demo")
    with pytest.raises(ValueError, match="frozen"):
        policy.k = 1  # type: ignore[misc]
    assert isinstance(policy, Policy)
