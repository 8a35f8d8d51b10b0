"""Where the API process's memory goes under a steady upload load (tracemalloc).

The app of the embedded default runs under uvicorn in this process with ``tracemalloc`` on;
a thread uploads real FSDD recordings, each from a new learner with a fresh Idempotency-Key, at
``--rate`` per second. After ``--warm-up`` seconds a snapshot is taken, then one every
``--window`` seconds: each line says how much traced memory and RSS grew since the warm-up
snapshot and which source lines hold the growth (top ``--top``, by size). Growth that levels
off is a cache filling; growth that keeps rising with the uploads is a leak.

    .venv/bin/python -m benchmarks.memory_profile [--duration 300] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.service_env import EXERCISES, embedded_service, fsdd_recordings  # noqa: E402
from core.idempotency import new_key  # noqa: E402
from ingest.consent import load_private_key, mint_token  # noqa: E402
from tests.e2e.procs import rss_kib  # noqa: E402

_IGNORED = (tracemalloc.__file__, "<frozen importlib._bootstrap>", "<unknown>")


def _upload_forever(
    base: str,
    private_pem: str,
    clips: list[bytes],
    rate: float,
    stop: threading.Event,
    counts: dict[str, int],
) -> None:
    key = load_private_key(private_pem)
    serial = 0
    with httpx.Client(base_url=base, timeout=60) as client:
        next_at = time.perf_counter()
        while not stop.is_set():
            serial += 1
            token = mint_token(key, learner_id=f"profile-{serial}")
            response = client.post(
                "/v1/clips",
                files=[
                    (
                        "metadata",
                        (
                            None,
                            json.dumps(
                                {"exercise_id": EXERCISES[serial % len(EXERCISES)]}
                            ).encode(),
                        ),
                    ),
                    ("audio", ("a.wav", clips[serial % len(clips)], "audio/wav")),
                ],
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": new_key()},
            )
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--warm-up", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0, help="uploads per second")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--fsdd", type=Path, default=fsdd_recordings())
    args = parser.parse_args()

    from chorus.app import create_app
    from core.settings import Settings
    from tests.live_server import serving

    clips = [path.read_bytes() for path in sorted(args.fsdd.glob("*.wav"))[::50]]
    tracemalloc.start(10)
    with tempfile.TemporaryDirectory(prefix="chorus-memory-") as tmp:
        env, private_pem = embedded_service(Path(tmp), CHORUS_SCHEDULER_ENABLED="false")
        settings = Settings.model_validate(
            {name.removeprefix("CHORUS_").lower(): value for name, value in env.items()}
        )
        app = create_app(settings)
        with serving(app) as base:
            stop = threading.Event()
            counts: dict[str, int] = {}
            loader = threading.Thread(
                target=_upload_forever, args=(base, private_pem, clips, args.rate, stop, counts)
            )
            loader.start()
            try:
                time.sleep(args.warm_up)
                baseline = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, name) for name in _IGNORED]
                )
                rss_base = rss_kib(os.getpid())
                started = time.monotonic()
                while time.monotonic() - started < args.duration:
                    time.sleep(args.window)
                    snapshot = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, name) for name in _IGNORED]
                    )
                    differences = snapshot.compare_to(baseline, "lineno")
                    traced = sum(d.size_diff for d in differences)
                    print(
                        f"[{time.monotonic() - started:4.0f} s after warm-up] uploads "
                        f"{counts}, traced +{traced / 1024:.0f} KiB, RSS "
                        f"+{(rss_kib(os.getpid()) - rss_base) / 1024:.1f} MiB",
                        flush=True,
                    )
                    for difference in differences[: args.top]:
                        frame = difference.traceback[0]
                        print(
                            f"    {difference.size_diff / 1024:+8.1f} KiB "
                            f"{difference.count_diff:+6d} blocks  {frame.filename}:"
                            f"{frame.lineno}",
                            flush=True,
                        )
            finally:
                stop.set()
                loader.join()


if __name__ == "__main__":
    main()
