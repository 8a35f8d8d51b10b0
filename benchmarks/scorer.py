"""Report scorer: ranking quality on simulated reports from real STAPLE data, and speed.

Quality: reports simulated (``reports_ml.simulate``, seeded) from the STAPLE gold files
``core.sample_data`` finds (``CHORUS_DATA_DIR``, ``../shared/data``, else the excerpts in
``tests/data``); per-course ROC AUC of the model, the count baseline and the
n-gram-only model, out of fold with prompts split into folds, and leaving one course out.
Checks: the model beats the count baseline on every course and the n-gram-only model overall.

Speed: a larger simulation (more learners per prompt) gives ~1,000,000 reports. Measured: wall
time of ``train_model`` on all of them, batch scoring throughput of a freshly loaded model
(cold prompt caches, then warm), and the latency of ``score_one`` over random single reports.
The machine's load average is printed too: on a shared machine wall times move with it.

    .venv/bin/python benchmarks/scorer.py [--quick] [--jobs 2] [--out F.json] [--plot F.png]

``--quick`` uses 120 prompts per file, 3 folds and ~30,000 reports for speed (under a minute)
and writes its figures to the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from core.sample_data import find_sample_data  # noqa: E402
from reports_ml.evaluate import (  # noqa: E402
    Evaluation,
    cross_validate_by_prompt,
    leave_one_course_out,
    plot_auc_by_course,
    roc_auc_score,
)
from reports_ml.model import ReportModel, train_model  # noqa: E402
from reports_ml.models import Prompt, ReportRecord  # noqa: E402
from reports_ml.simulate import SimulationParams, simulate_reports  # noqa: E402
from reports_ml.staple import course_from_path, load_staple  # noqa: E402


def _load_prompts(per_file: int | None) -> dict[str, list[Prompt]]:
    by_course: dict[str, list[Prompt]] = {}
    found = find_sample_data()
    if found is None:
        raise SystemExit("no STAPLE gold files: set CHORUS_DATA_DIR (README: Test data)")
    print(f"STAPLE gold files: {found.describe()}", file=sys.stderr)
    for path in found.staple_files():
        prompts = load_staple(path)
        by_course.setdefault(course_from_path(path), []).extend(prompts[:per_file])
    return by_course


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def _describe(records: list[ReportRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for course in [*sorted({r.course for r in records}), "all"]:
        part = [r for r in records if course in ("all", r.course)]
        labels = np.array([bool(r.label) for r in part])
        counts = np.array([r.times_reported for r in part], dtype=float)
        out[course] = {
            "reports": len(part),
            "correct_share": round(float(labels.mean()), 4),
            "count_baseline_auc": round(roc_auc_score(labels, counts), 4),
            "mean_times_reported": round(float(counts.mean()), 3),
        }
    return out


def _print_evaluation(evaluation: Evaluation) -> None:
    print(f"\n{evaluation.split}")
    print(f"{'course':8} {'reports':>8} {'correct':>8} {'model':>7} {'n-gram':>7} {'count':>7}")
    for group in [*evaluation.courses, evaluation.overall]:
        auc = group.auc
        print(
            f"{group.name:8} {group.n_reports:8d} {group.n_correct:8d} {auc['model']:7.3f} "
            f"{auc['ngram']:7.3f} {auc['count']:7.3f}",
        )


def _checks(evaluation: Evaluation) -> dict[str, bool]:
    courses = [group.name for group in evaluation.courses]
    beats_count = set(evaluation.wins("model", "count")) >= set(courses)
    beats_ngram = "all" in evaluation.wins("model", "ngram")
    print(f"model > count baseline on every course: {beats_count}")
    print(f"model > n-gram-only overall: {beats_ngram}")
    return {"model_beats_count_every_course": beats_count, "model_beats_ngram_overall": beats_ngram}


def quality(records: list[ReportRecord], folds: int, jobs: int, plot: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    evaluations = []
    for name, run in (
        ("by_prompt", lambda: cross_validate_by_prompt(records, folds=folds, n_jobs=jobs)),
        ("leave_one_course_out", lambda: leave_one_course_out(records, n_jobs=jobs)),
    ):
        started = time.perf_counter()
        evaluation = run()
        seconds = time.perf_counter() - started
        evaluations.append(evaluation)
        _print_evaluation(evaluation)
        results[name] = {**evaluation.to_dict(), **_checks(evaluation), "seconds": round(seconds)}
    plot_auc_by_course(evaluations, plot)
    print(f"\nplot: {plot}")
    return results


def speed(
    by_course: dict[str, list[Prompt]], learners: float, jobs: int, batch: int, singles: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    records = simulate_reports(by_course, seed=2, params=SimulationParams(learners_median=learners))
    print(f"\nspeed set: {len(records)} reports simulated in {time.perf_counter() - started:.0f} s")
    print(f"load average before training: {_load()}")
    started = time.perf_counter()
    cpu = time.process_time()
    model = train_model(records, n_jobs=jobs)
    train_seconds = time.perf_counter() - started
    train_cpu = time.process_time() - cpu
    print(f"train_model on {len(records)} reports: {train_seconds:.1f} s wall "
          f"({train_cpu:.1f} s CPU in the main process; --jobs {jobs})")
    with tempfile.TemporaryDirectory() as folder:
        path = model.save(Path(folder) / "model.joblib")
        size = path.stat().st_size
        fresh = ReportModel.load(path)
        single_model = ReportModel.load(path)
    rng = np.random.default_rng(0)
    sample = [records[i] for i in rng.choice(len(records), size=batch, replace=False).tolist()]
    throughput = {}
    for state in ("cold", "warm"):
        started = time.perf_counter()
        fresh.score(sample, n_jobs=jobs)
        seconds = time.perf_counter() - started
        throughput[state] = round(batch / seconds)
        print(f"batch scoring, {state} prompt caches: {batch / seconds:,.0f} reports/s "
              f"({batch} reports in {seconds:.2f} s)")
    picks = rng.choice(len(records), size=singles, replace=False).tolist()
    latency = {}
    for state in ("cold", "warm"):
        # cold: a freshly loaded model, so the first report of each prompt builds its index;
        # warm: the same reports again, as a running service that has seen the prompts.
        times = []
        for i in picks:
            started = time.perf_counter()
            single_model.score_one(records[i])
            times.append((time.perf_counter() - started) * 1000)
        p50, p99 = np.percentile(times, [50, 99])
        latency[state] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
                          "max": round(max(times), 3), "calls": singles}
        print(f"score_one, {state} prompt caches, {singles} random reports: p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms, max {max(times):.1f} ms")
    print(f"load average after: {_load()}")
    return {
        "reports": len(records),
        "learners_median": learners,
        "jobs": jobs,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds_main_process": round(train_cpu, 1),
        "model_file_bytes": size,
        "batch_reports": batch,
        "batch_reports_per_second": throughput,
        "score_one_ms": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for features")
    parser.add_argument("--seed", type=int, default=1, help="seed of the quality simulation")
    parser.add_argument("--out", type=Path, help="figures as JSON (default: benchmarks/"
                        "scorer_results.json; with --quick, in the temporary folder)")
    parser.add_argument("--plot", type=Path, help="the per-course AUC plot (default: benchmarks/"
                        "scorer_auc.png; with --quick, in the temporary folder)")
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    args = parser.parse_args()
    # A quick run must not replace the recorded figures of a full one.
    folder = Path(tempfile.gettempdir()) if args.quick else REPO_ROOT / "benchmarks"
    suffix = "_quick" if args.quick else ""
    args.out = args.out or folder / f"scorer_results{suffix}.json"
    args.plot = args.plot or folder / f"scorer_auc{suffix}.png"

    print(f"load average at start: {_load()}")
    by_course = _load_prompts(120 if args.quick else None)
    started = time.perf_counter()
    records = simulate_reports(by_course, seed=args.seed)
    print(f"simulated {len(records)} reports in {time.perf_counter() - started:.0f} s "
          f"(seed {args.seed})")
    data = _describe(records)
    for course, row in data.items():
        print(f"  {course:6} {row['reports']:7d} reports, {row['correct_share']:.1%} correct, "
              f"count baseline AUC {row['count_baseline_auc']:.3f}")
    results: dict[str, Any] = {
        "command": " ".join(["benchmarks/scorer.py", *sys.argv[1:]]),
        "quick": args.quick,
        "data": data,
        "quality": quality(records, 3 if args.quick else 5, args.jobs, args.plot),
    }
    if not args.skip_speed:
        learners = 3_300.0 if args.quick else 33_000.0
        results["speed"] = speed(
            by_course, learners, args.jobs, 20_000 if args.quick else 200_000,
            500 if args.quick else 5_000,
        )
    results["load_average_end"] = _load()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures: {args.out}")


if __name__ == "__main__":
    main()
