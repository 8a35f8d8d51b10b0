"""TEMPORARY placeholder until the real module lands."""
from __future__ import annotations

import numpy as np

PRINT_SHAPE = (24, 32)
SAME_RECORDING_SCORE = 0.97


def recording_print(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy import signal

    _f, _t, spec = signal.stft(samples, fs=sample_rate, nperseg=512, noverlap=256)
    power = np.abs(spec[:24 * 4 : 4, :]) ** 2 + 1e-10
    logp = 10 * np.log10(power)
    logp = np.maximum(logp, logp.max() - 40)
    idx = np.linspace(0, logp.shape[1] - 1, 32)
    res = np.stack([np.interp(idx, np.arange(logp.shape[1]), row) for row in logp])
    res = res - res.mean()
    norm = np.linalg.norm(res) or 1.0
    return (res / norm).astype(np.float32)


def print_to_bytes(fp: np.ndarray) -> bytes:
    return fp.astype(np.float16).tobytes()


def print_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(PRINT_SHAPE)


def similarity_scores(query: np.ndarray, prints: np.ndarray) -> np.ndarray:
    return prints.reshape(len(prints), -1) @ query.reshape(-1)


def is_duplicate(query: np.ndarray, prints: np.ndarray) -> bool:
    return bool(len(prints)) and bool(similarity_scores(query, prints).max() >= SAME_RECORDING_SCORE)
