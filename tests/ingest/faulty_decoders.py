"""Sanitize tasks that misbehave on purpose, run inside real decoder workers.

They stand in for a native decoder that crashes or hangs on hostile input; anything else is
passed to the real sanitizer.
"""

from __future__ import annotations

import os
import signal
import time

from ingest.audio import AudioLimits, SanitizedClip, sanitize_audio

CRASH = b"CRASH-THE-DECODER"
HANG = b"HANG-THE-DECODER"


def crash_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    if data.startswith(CRASH):
        os._exit(139)  # what a segfault in libsndfile looks like to the parent
    return sanitize_audio(data, limits)


def hang_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    if data.startswith(HANG):
        time.sleep(60)
    return sanitize_audio(data, limits)


KILL = b"KILL-THE-DECODER"


def killed_mid_decode_or_sanitize(data: bytes, limits: AudioLimits) -> SanitizedClip:
    """Dies by SIGKILL half a second into its decode; other uploads are in flight meanwhile."""
    if data.startswith(KILL):
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return sanitize_audio(data, limits)
