"""The idempotency store: RAM per entry, and what a sweep of expired entries costs an upload.

Measured on the tmpfs store itself (``core.idempotency.TmpfsIdempotencyStore``), through the
calls an upload makes (claim, then complete):

- **bytes per entry**: the store's files on /dev/shm (database, write-ahead log, shared memory)
  divided by the entries, after ``--entries`` uploads;
- **a sweep's effect**: claim + complete latency on the calling thread while the background
  sweeper deletes ``--expired`` expired entries, against the same calls with no sweep running,
  alternated ``--rounds`` times in the same run;
- **the previous design** (one file per entry, swept on a request's thread), loaded from git
  (``--baseline``): its bytes per entry and the claim that runs its sweep.

    .venv/bin/python benchmarks/idempotency.py [--entries 100000] [--expired 100000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from core.idempotency import (  # noqa: E402
    _SWEEP_PAUSE_S,
    IdempotentUpload,
    TmpfsIdempotencyStore,
    idempotent_upload,
    new_key,
)

SHM = Path("/dev/shm")


def _upload(index: int) -> IdempotentUpload:
    return idempotent_upload(
        new_key(), learner_id=f"learner-{index}", exercise_id="digit-3", audio=os.urandom(64)
    )


def _files_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def _accept(store: TmpfsIdempotencyStore, index: int) -> float:
    upload = _upload(index)
    started = time.perf_counter()
    store.claim(upload)
    store.complete(upload)
    return (time.perf_counter() - started) * 1000


def bytes_per_entry(folder: Path, entries: int) -> float:
    store = TmpfsIdempotencyStore(folder)
    for index in range(entries):
        _accept(store, index)
    return _files_bytes(folder) / entries


def _fill_expired(store: TmpfsIdempotencyStore, count: int) -> None:
    expired = TmpfsIdempotencyStore(store.folder, ttl_s=-1, sweep_every_s=3600)
    for index in range(count):
        upload = _upload(index)
        expired.complete(upload)


def _latencies(
    store: TmpfsIdempotencyStore, *, until: Callable[[], bool], least: int
) -> list[float]:
    found: list[float] = []
    index = 0
    while not until() or index < least:
        found.append(_accept(store, index))
        index += 1
    return found


def _timed_sweep(store: TmpfsIdempotencyStore, done: threading.Event, took: list[float]) -> None:
    started = time.perf_counter()
    store.sweep(pause_s=_SWEEP_PAUSE_S)  # as the background sweeper does
    took.append(time.perf_counter() - started)
    done.set()


def sweep_effect(folder: Path, *, expired: int, rounds: int) -> dict[str, list[float]]:
    """Latencies with a sweep running on the sweeper's thread, and without, alternated."""
    results: dict[str, list[float]] = {"sweeping": [], "idle": [], "sweep_s": []}
    store = TmpfsIdempotencyStore(folder, sweep_every_s=3600)
    for _round in range(rounds):
        _fill_expired(store, expired)
        done = threading.Event()
        sweeper = threading.Thread(target=_timed_sweep, args=(store, done, results["sweep_s"]))
        sweeper.start()
        during = _latencies(store, until=done.is_set, least=200)
        sweeper.join()
        results["sweeping"] += during
        results["idle"] += _latencies(store, until=lambda: True, least=len(during))
    return results


def _baseline_module(commit: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "show", f"{commit}:core/idempotency.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "idempotency_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("idempotency_baseline", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline(folder: Path, *, commit: str, entries: int) -> tuple[float, float, float]:
    """The one-file-per-entry store: (bytes per entry, a claim's ms, the sweeping claim's ms)."""
    module = _baseline_module(commit)
    store = module.TmpfsIdempotencyStore(folder, ttl_s=1, sweep_every_s=3600)
    for _index in range(entries):
        digest = module.key_hash(new_key())
        store.claim(digest)
        store.complete(digest)
    used = 0
    for path in folder.iterdir():
        used += os.stat(path).st_blocks * 512  # a whole page each, as tmpfs allocates
    per_entry = used / entries
    time.sleep(1.1)  # all expired
    started = time.perf_counter()
    store.claim(module.key_hash(new_key()))
    plain = (time.perf_counter() - started) * 1000
    store._next_sweep = 0.0  # the next claim is the one a minute that sweeps
    started = time.perf_counter()
    store.claim(module.key_hash(new_key()))
    sweeping = (time.perf_counter() - started) * 1000
    return per_entry, plain, sweeping


def _stats(values: list[float]) -> str:
    array = np.asarray(values)
    return (
        f"p50 {np.percentile(array, 50):.2f} ms, p99 {np.percentile(array, 99):.2f} ms, "
        f"max {array.max():.1f} ms ({len(array)} uploads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="cf1b612", help="commit of the previous store")
    parser.add_argument("--baseline-entries", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chorus-bench-idempotency-", dir=SHM))
    try:
        per_entry = bytes_per_entry(work / "size", args.entries)
        print(
            f"tmpfs SQLite store: {per_entry:.0f} bytes of /dev/shm per entry "
            f"after {args.entries} uploads"
        )
        effect = sweep_effect(work / "sweep", expired=args.expired, rounds=args.rounds)
        sweeps = ", ".join(f"{s:.1f}" for s in effect["sweep_s"])
        print(f"sweeping {args.expired} expired entries in the background (s: {sweeps})")
        print(f"  claim + complete while sweeping: {_stats(effect['sweeping'])}")
        print(f"  claim + complete, no sweep:      {_stats(effect['idle'])}")
        size, plain, sweeping = baseline(
            work / "baseline", commit=args.baseline, entries=args.baseline_entries
        )
        print(
            f"previous store ({args.baseline}, one file per entry): {size:.0f} bytes of "
            f"/dev/shm per entry; a claim {plain:.2f} ms, the claim that sweeps "
            f"{args.baseline_entries} expired entries {sweeping:.0f} ms"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
