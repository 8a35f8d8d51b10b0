"""Where the sample recordings and course prompts are: one lookup for the demo, the benchmarks
and the tests.

The first folder that holds FSDD recordings wins:

1. ``CHORUS_DATA_DIR`` when it is set;
2. ``../shared/data`` beside the repository;
3. ``tests/data`` in the repository: twelve real FSDD recordings (two to a speaker) and
   excerpts of the STAPLE gold files, enough for a short demo and the benchmarks' small modes.

A full folder is laid out as ``fsdd/recordings/*.wav`` and ``staple/*.gold.txt``; the fixtures
hold ``fsdd/*.wav`` and ``staple/excerpt.*.gold.txt``. ``SampleData.complete`` says which one
was found, so that what needs the whole data sets can say so instead of measuring on twelve
clips. The environment is read when the function is called, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_VARIABLE = "CHORUS_DATA_DIR"


@dataclass(frozen=True)
class SampleData:
    """One data folder: its FSDD recordings, its STAPLE gold files, and whether it is whole."""

    root: Path
    fsdd: Path
    staple: Path
    complete: bool

    def staple_files(self) -> list[Path]:
        """Every STAPLE gold file, by name."""
        return sorted(self.staple.glob("*.gold.txt"))

    def staple_file(self, course: str) -> Path | None:
        """The gold file of ``course`` (e.g. ``en_hu``): the dev split when there are several."""
        matching = [path for path in self.staple_files() if f".{course}." in path.name]
        matching.sort(key=lambda path: (not path.name.startswith("dev."), path.name))
        return matching[0] if matching else None

    def describe(self) -> str:
        kind = "full data" if self.complete else "the small fixtures"
        return f"{kind} in {self.root}"


def candidate_folders(
    *, environ: Mapping[str, str] | None = None, repo_root: Path = REPO_ROOT
) -> list[tuple[Path, bool]]:
    """The folders looked at, in order, each with whether it is meant to hold the whole sets."""
    environ = os.environ if environ is None else environ
    folders: list[tuple[Path, bool]] = []
    configured = environ.get(DATA_DIR_VARIABLE)
    if configured:
        folders.append((Path(configured), True))
    folders.append((repo_root.parent / "shared" / "data", True))
    folders.append((repo_root / "tests" / "data", False))
    return folders


def find_sample_data(
    *, environ: Mapping[str, str] | None = None, repo_root: Path = REPO_ROOT
) -> SampleData | None:
    """The first candidate folder holding FSDD recordings, or None (an installed copy without
    the repository's ``tests/data`` and no ``CHORUS_DATA_DIR``)."""
    for root, whole in candidate_folders(environ=environ, repo_root=repo_root):
        for fsdd in (root / "fsdd" / "recordings", root / "fsdd"):
            if fsdd.is_dir() and any(fsdd.glob("*.wav")):
                staple = root / "staple"
                complete = whole and fsdd.name == "recordings" and staple.is_dir()
                return SampleData(root=root, fsdd=fsdd, staple=staple, complete=complete)
    return None


def full_sample_data(
    *, environ: Mapping[str, str] | None = None, repo_root: Path = REPO_ROOT
) -> SampleData | None:
    """The data found, if it is the whole data sets rather than the repository's fixtures."""
    found = find_sample_data(environ=environ, repo_root=repo_root)
    return found if found is not None and found.complete else None
