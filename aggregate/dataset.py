"""The layout of a released dataset, and the one place a released clip's bytes are produced.

A release is stored under ``releases/<release>/`` as a few objects:

    shards/shard-00000.tar …   tar shards (USTAR, uncompressed) whose members are
                               ``clips/<clip>.flac`` in the release's random order
    metadata.csv               one row per clip: file_name, text, language, exercise_id,
                               duration_s, sample_rate
    metadata.jsonl             the same rows as JSON Lines: what ``datasets``' audiofolder
                               reads (the card's ``configs`` name it)
    validated.tsv              Common Voice-style: path, sentence, locale, exercise_id, …
    clip_durations.tsv         Common Voice-style: clip, duration[ms]
    README.md                  the dataset card: YAML front matter, then prose
    SHA256SUMS                 ``sha256sum -c`` lines for every file of the dataset folder
    manifest.json              written last: the release, its shards and files with their
                               sizes and SHA-256, and every clip with its shard and offset

Unpacking every shard into a folder beside the other files gives the dataset folder
(``clips/…`` next to ``metadata.csv``), which ``datasets.load_dataset(folder)`` loads as an
audiofolder. The shards are also WebDataset shards (key ``clips/<clip>``, field ``flac``).

Why JSON Lines beside the CSV: ``datasets`` 3 reads a ``metadata.csv`` through pandas, and
under pandas 3 its text columns come out as ``large_string``, which ``datasets`` 3 refuses for
``file_name``; JSON Lines is read by pyarrow alone, the same under ``datasets`` 3 and 4 and any
pandas. The audiofolder refuses two metadata formats in one folder, so the card's ``configs``
give it the clips and ``metadata.jsonl`` only; ``metadata.csv`` stays for spreadsheets and
pandas users.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from scipy import signal

from policies import flac as flac_format
from policies.voice import VoiceAnonymizer

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
SHARD_PREFIX = "shards/"
CLIP_FOLDER = "clips/"
MANIFEST = "manifest.json"
METADATA_CSV = "metadata.csv"
METADATA_JSONL = "metadata.jsonl"
VALIDATED_TSV = "validated.tsv"
DURATIONS_TSV = "clip_durations.tsv"
CARD = "README.md"
CHECKSUMS = "SHA256SUMS"
# The small files of the dataset folder, in the order an archive carries them.
DATASET_FILES = (CARD, METADATA_CSV, METADATA_JSONL, VALIDATED_TSV, DURATIONS_TSV, CHECKSUMS)
# Those SHA256SUMS lists (itself excepted), after the clips.
CHECKSUMMED_FILES = tuple(name for name in DATASET_FILES if name != CHECKSUMS)
METADATA_COLUMNS = ("file_name", "text", "language", "exercise_id", "duration_s", "sample_rate")


def release_clip_bytes(
    pending_flac: bytes, voice: VoiceAnonymizer, *, bandwidth_hz: float | None = None
) -> bytes:
    """The bytes a clip is released as, from the canonical FLAC it was stored with.

    The single place a released clip's bytes are produced: every shard member comes from
    here. Under a policy with ``voice_anonymization`` the voice is transformed
    (``policies.voice``); then the clip is limited to the release's one band (P4: the rate a
    phone recorded at must not survive as the spectrum's cutoff) and encoded canonically again,
    so the auditor checks P7 on either.
    """
    flac = voice.released_audio(pending_flac) if voice.enabled else pending_flac
    if bandwidth_hz is None or not math.isfinite(bandwidth_hz):
        return flac
    decoded = flac_format.decode(flac, sample_rate=0)
    limited = limit_band(
        decoded.pcm.astype(np.float32) / 32767.0, decoded.sample_rate, bandwidth_hz=bandwidth_hz
    )
    return flac_format.encode_samples(limited, decoded.sample_rate)


# The release's filter passes up to this share of the bucket's narrowest band and is ~80 dB
# down before that band's own roll-off begins, so every clip ends up with the same roll-off.
PASS_SHARE = 0.85
_TAPS = 255


@functools.lru_cache(maxsize=32)
def _low_pass(sample_rate: int, cutoff_hz: float) -> np.ndarray:
    return np.asarray(
        signal.firwin(_TAPS, cutoff_hz, window=("kaiser", 8.0), fs=sample_rate),
        dtype=np.float32,
    )


def release_cutoff_hz(bandwidth_hz: float) -> float:
    """Where the release's low-pass filter is centred for a band of ``bandwidth_hz``."""
    return PASS_SHARE * bandwidth_hz


def limit_band(samples: np.ndarray, sample_rate: int, *, bandwidth_hz: float) -> np.ndarray:
    """``samples`` low-passed (linear phase, no delay) below ``bandwidth_hz``."""
    cutoff = min(release_cutoff_hz(bandwidth_hz), 0.45 * sample_rate)
    taps = _low_pass(sample_rate, round(cutoff, 1))
    filtered = np.asarray(signal.oaconvolve(samples, taps, mode="same"), dtype=np.float32)
    return np.clip(filtered, -1.0, 1.0, out=filtered)


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}shard-{index:05d}.tar"


def clip_file_name(clip_id: str) -> str:
    """The clip's path inside the dataset folder and inside its shard."""
    return f"{CLIP_FOLDER}{clip_id}.flac"


def padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def member_header(name: str, size: int, mtime: int) -> bytes:
    """A USTAR header carrying nothing but the name, size, mode and the release day.

    The same bytes as ``tarfile``'s (``_tarfile_header``), made from a template of the
    release day's header: only the name, the size and the checksum change from member to
    member. A name longer than the name field, or a size past its 11 octal digits, goes
    through ``tarfile`` (which splits the name or refuses the size)."""
    encoded = name.encode("utf-8")
    if len(encoded) > _NAME_FIELD or size >= _MAX_OCTAL_SIZE or size < 0:
        return _tarfile_header(name, size, mtime)
    template, template_sum = _header_template(mtime)
    size_field = b"%011o\0" % size
    checksum = template_sum + sum(encoded) + sum(size_field)
    return b"".join(
        (
            encoded,
            bytes(_NAME_FIELD - len(encoded)),
            template[_NAME_FIELD:_SIZE_AT],
            size_field,
            template[_SIZE_AT + _SIZE_FIELD : _CHECKSUM_AT],
            b"%06o\0 " % checksum,
            template[_CHECKSUM_AT + _CHECKSUM_FIELD :],
        )
    )


_NAME_FIELD = 100
_SIZE_AT, _SIZE_FIELD = 124, 12
_CHECKSUM_AT, _CHECKSUM_FIELD = 148, 8
_MAX_OCTAL_SIZE = 8**11


@functools.lru_cache(maxsize=16)
def _header_template(mtime: int) -> tuple[bytes, int]:
    """``tarfile``'s header of an empty, unnamed member dated ``mtime``, and the checksum
    of its bytes with the name, size and checksum fields left out (blank)."""
    header = _tarfile_header("", 0, mtime)
    blank = (
        bytes(_NAME_FIELD)
        + header[_NAME_FIELD:_SIZE_AT]
        + bytes(_SIZE_FIELD)
        + header[_SIZE_AT + _SIZE_FIELD : _CHECKSUM_AT]
        + b" " * _CHECKSUM_FIELD
        + header[_CHECKSUM_AT + _CHECKSUM_FIELD :]
    )
    return blank, sum(blank)


def _tarfile_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


class HashingWriter:
    """Writes to a binary file while counting the bytes and hashing them with SHA-256."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.digest.update(data)
        self.size += len(data)


class TarWriter:
    """A tar stream of regular files: a header, the data, padding; the end marker on close.

    Returns where each member's data starts, so one clip can be read out of a shard by range.
    """

    def __init__(self, out: HashingWriter, *, mtime: int) -> None:
        self._out = out
        self._mtime = mtime

    def add(self, name: str, data: bytes) -> int:
        header = member_header(name, len(data), self._mtime)
        self._out.write(header)
        offset = self._out.size
        self._out.write(data)
        self._out.write(b"\0" * (padded(len(data)) - len(data)))
        return offset

    def close(self) -> None:
        self._out.write(END_OF_ARCHIVE)


@dataclass(frozen=True)
class StoredFile:
    """A file of the release as stored: its path in the dataset, size and SHA-256."""

    name: str
    size: int
    sha256: str
    clips: int | None = None  # shards only

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.clips is not None:
            entry["clips"] = self.clips
        return entry


@dataclass(frozen=True)
class ClipRow:
    """What the dataset's tables say of one clip."""

    clip_id: str
    duration_s: float
    sample_rate: int
    sha256: str


@dataclass(frozen=True)
class Describing:
    """What the catalog said of the release's exercise: the same for every clip."""

    exercise_id: str
    text: str | None
    language: str | None
    course: str | None
    skill: str | None


class TableWriters:
    """``metadata.csv``, ``metadata.jsonl``, ``validated.tsv``, ``clip_durations.tsv`` and the
    clip lines of ``SHA256SUMS``, written row by row as the clips are read in their release
    order."""

    def __init__(self, files: Mapping[str, IO[str]], describing: Describing) -> None:
        self._describing = describing
        self._checksums = files[CHECKSUMS]
        self._jsonl = files[METADATA_JSONL]
        self._metadata = csv.writer(files[METADATA_CSV], lineterminator="\n")
        self._validated = csv.writer(
            files[VALIDATED_TSV], delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL
        )
        self._durations = csv.writer(files[DURATIONS_TSV], delimiter="\t", lineterminator="\n")
        self._metadata.writerow(METADATA_COLUMNS)
        self._validated.writerow(("path", "sentence", "locale", "exercise_id", "course", "skill"))
        self._durations.writerow(("clip", "duration[ms]"))

    def add(self, clip: ClipRow) -> None:
        d = self._describing
        name = clip_file_name(clip.clip_id)
        self._metadata.writerow(
            (
                name,
                d.text or "",
                d.language or "",
                d.exercise_id,
                repr(clip.duration_s),
                clip.sample_rate,
            )
        )
        # Strings stay strings when absent (""), so every release has the same column types.
        row = (
            name,
            d.text or "",
            d.language or "",
            d.exercise_id,
            clip.duration_s,
            clip.sample_rate,
        )
        self._jsonl.write(
            json.dumps(dict(zip(METADATA_COLUMNS, row, strict=True)), ensure_ascii=False) + "\n"
        )
        basename = name.removeprefix(CLIP_FOLDER)
        self._validated.writerow(
            (
                basename,
                _one_line(d.text),
                d.language or "",
                d.exercise_id,
                d.course or "",
                d.skill or "",
            )
        )
        self._durations.writerow((basename, round(clip.duration_s * 1000)))
        self._checksums.write(f"{clip.sha256}  {name}\n")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def size_category(clips: int) -> str:
    """The Hugging Face ``size_categories`` bucket of a dataset of ``clips`` rows."""
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if clips < limit:
            return label
    return "1M<n<10M"


ANONYMIZATION = (
    "Clips are released only in batches holding clips of at least k distinct contributors "
    "(the k in force is given above). Learner identifiers never leave the service: released "
    "clips get fresh random names and a random order from a cryptographic random source, carry "
    "no per-clip time (every file is dated the release day), and are re-encoded as plain FLAC "
    "with no metadata beyond the encoder's. The key that linked a batch's clips to their "
    "contributors lived only in memory and was deleted when the batch was released."
)


def dataset_card(header: dict[str, Any], *, license_id: str) -> str:
    """``README.md``: YAML front matter a hub or ``datasets`` reads, then a human summary.

    String values are written as JSON strings, which are valid YAML scalars whatever they
    hold.
    """
    q = json.dumps
    language = header.get("language")
    lines = ["---", f"license: {q(license_id)}"]
    if language:
        lines += ["language:", f"- {q(language)}"]
    lines += [
        f"pretty_name: {q('Chorus release ' + header['release_id'])}",
        "size_categories:",
        f"- {q(size_category(header['clip_count']))}",
        "task_categories:",
        "- automatic-speech-recognition",
        "tags:",
        "- speech",
        "- chorus",
        # datasets reads these files only: the clips and the JSON Lines metadata (see above).
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path:",
        f"    - {q(CLIP_FOLDER + '*.flac')}",
        f"    - {q(METADATA_JSONL)}",
        "chorus:",
        f"  release_id: {q(header['release_id'])}",
        f"  exercise_id: {q(header['exercise_id'])}",
        f"  release_day: {q(header['release_day'])}",
        f"  clip_count: {header['clip_count']}",
        f"  contributor_count: {header['contributor_count']}",
        f"  k: {header['k']}",
        f"  policy_hash: {q(header['policy_hash'])}",
        f"  anonymization: {q(ANONYMIZATION)}",
        "---",
        "",
        f"# Chorus release {header['release_id']}",
        "",
        f"{header['clip_count']} clip(s) of exercise `{header['exercise_id']}` from "
        f"{header['contributor_count']} distinct contributors (k = {header['k']} in force), "
        f"released on {header['release_day']} under licence `{license_id}`.",
        "",
    ]
    if header.get("bandwidth_hz"):
        lines += [
            f"Every clip is limited to the same band, below {header['bandwidth_hz']} Hz "
            "(the narrowest the batch's recordings carried), so the rate a device recorded "
            "at cannot be read off a clip's spectrum.",
            "",
        ]
    if header.get("text"):
        lines += [f"Prompt: {_one_line(header['text'])}", ""]
    lines += [
        "## Files",
        "",
        "- `clips/<clip>.flac`: the clips, mono 16-bit FLAC, in the release's random order",
        "- `metadata.csv`: file_name, text, language, exercise_id, duration_s, sample_rate",
        "- `metadata.jsonl`: the same rows as JSON Lines (what `load_dataset` reads, with "
        "`datasets` 3 or 4)",
        "- `validated.tsv`, `clip_durations.tsv`: the same in Common Voice's layout",
        "- `SHA256SUMS`: check with `sha256sum -c SHA256SUMS`",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'clips = load_dataset("path/to/this/folder", split="train")',
        "```",
        "",
        "## How it was anonymized",
        "",
        ANONYMIZATION,
        "",
    ]
    return "\n".join(lines)
