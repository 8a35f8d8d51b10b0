"""Telling recordings apart (P6: k contributors must be k distinct recordings).

A bucket refuses the same recording twice: exactly, by the SHA-256 of its canonical samples
(keyed with the bucket's key before it is stored, ``aggregate.pending.recording_tag``), and
re-encoded, resampled or lightly noised, by its robust print (``ingest.fingerprint``), which is
stored only sealed. Without this, four accounts uploading one recording and a victim uploading
theirs make a "five-contributor" release whose only unique clip is the victim's.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ingest import fingerprint


def samples_digest(samples: np.ndarray) -> bytes:
    """SHA-256 of canonical samples as 16-bit PCM: what a re-upload of the same audio, in the
    same or another lossless container, reproduces exactly."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).digest()


def fingerprint_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """The recording's robust print, compact, to be sealed with the clip's facts."""
    return fingerprint.print_to_bytes(fingerprint.recording_print(samples, sample_rate))


def is_duplicate_print(candidate: bytes, known: list[bytes]) -> bool:
    """Whether ``candidate`` sounds like the same recording as one of ``known``."""
    if not known:
        return False
    prints = np.stack([fingerprint.print_from_bytes(data) for data in known])
    return fingerprint.is_duplicate(fingerprint.print_from_bytes(candidate), prints)
