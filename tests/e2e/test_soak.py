"""A short soak: open-loop uploads at half the measured capacity answer without error, and the
server's memory does not climb. The 10-minute run at 80 % is ``benchmarks/soak.py``; a 5-second
capacity burst overestimates what the server sustains, so the short gate keeps more headroom."""

from __future__ import annotations

import pytest

from benchmarks.soak import markdown, parse_args, run_soak

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("fsdd_dir")  # fails clearly when the shared data is missing
def test_short_soak_has_no_errors_and_no_memory_growth() -> None:
    # Uploads only: releases under load are the scale-out test's subject.
    args = parse_args(["--duration", "20", "--window", "10", "--capacity-seconds", "5",
                       "--load", "0.5", "--release-interval", "600"])
    result = run_soak(args)
    print(markdown(result, args))

    assert result.capacity_rps > 5, "the service takes uploads at all"
    # The load was really offered: every scheduled upload was sent and answered.
    assert result.uploads == int(args.duration * result.target_rps)
    assert result.errors == 0, markdown(result, args)
    growth_kib = result.rss_end_kib - result.rss_warm_kib
    assert growth_kib < 32 * 1024, f"the API process grew by {growth_kib / 1024:.0f} MiB"
