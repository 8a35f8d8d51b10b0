"""Report scorer: ranking quality on two independent report generators, and speed against the
previous implementation, measured in the same run.

Quality: reports simulated from the STAPLE gold files ``core.sample_data`` finds
(``CHORUS_DATA_DIR``, ``../shared/data``, else the excerpts in ``tests/data``) by
``reports_ml.simulate`` (generator A, seed 1: the one features and settings were chosen on) and
by ``reports_ml.simulate_holdout`` (generator B, seed 5: other mistakes, another share of
correct reports, short accepted lists, courses rendered in Korean, Thai and Japanese script;
used only here). Per-course ROC AUC of the model, the article's logistic regression over
hashed word n-grams (the baseline row) and the count ranking, out of fold with prompts split
into folds and leaving one course out, on each generator; and B scored by a model trained on
all of A (a generator, scripts and mistakes it never saw).

Speed: a larger simulation (more learners per prompt) gives ~1,000,000 reports. The current
tree and a baseline tree (by default the commit before ``reports_ml/similarity.py`` arrived,
checked out with ``git archive``) each run the same worker in a fresh process, in the order
baseline, current, current, baseline (``--rounds 2``), so both see the same machine load.
Measured per run: wall time of ``train_model`` on all reports, batch scoring throughput of a
freshly loaded model (cold prompt caches, then warm), and ``score_one`` latency over random
single reports (cold: first report of each prompt for a freshly loaded model; warm).

    .venv/bin/python benchmarks/scorer.py [--quick] [--jobs 2] [--rounds 2] [--skip-speed]

``--quick`` uses 120 prompts per file, 3 folds and ~30,000 reports for speed and writes its
figures to the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and "--speed-worker" in sys.argv:
    # The worker imports the tree it measures, not necessarily this one.
    sys.path.insert(0, sys.argv[sys.argv.index("--tree") + 1])
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


# --- speed: one worker process per tree and round -------------------------------------------


def _speed_worker(args: argparse.Namespace) -> None:
    from reports_ml.model import ReportModel, train_model

    records = pickle.loads(Path(args.data).read_bytes())  # noqa: S301  # written by this run
    load_before = _load()
    started = time.perf_counter()
    model = train_model(records, n_jobs=args.jobs)
    train_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = model.save(Path(folder) / "model.joblib")
        fresh = ReportModel.load(path)
        single = ReportModel.load(path)
    rng = np.random.default_rng(0)
    sample = [records[i] for i in rng.choice(len(records), size=args.batch, replace=False)]
    throughput = {}
    for state in ("cold", "warm"):
        started = time.perf_counter()
        fresh.score(sample, n_jobs=args.jobs)
        throughput[state] = round(args.batch / (time.perf_counter() - started))
    picks = rng.choice(len(records), size=args.singles, replace=False).tolist()
    latency = {}
    for state in ("cold", "warm"):
        times = []
        for i in picks:
            started = time.perf_counter()
            single.score_one(records[i])
            times.append((time.perf_counter() - started) * 1000)
        p50, p99 = np.percentile(times, [50, 99])
        latency[state] = {
            "p50": round(float(p50), 3),
            "p99": round(float(p99), 3),
            "max": round(max(times), 3),
        }
    print(
        json.dumps(
            {
                "train_seconds": round(train_seconds, 1),
                "batch_reports_per_second": throughput,
                "score_one_ms": latency,
                "load_before": load_before,
                "load_after": _load(),
            }
        )
    )


def _baseline_ref() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "reports_ml/similarity.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def _checkout(ref: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "core", "reports_ml"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run_worker(tree: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--speed-worker",
        "--tree",
        str(tree),
        "--data",
        str(data),
        "--jobs",
        str(args.jobs),
        "--batch",
        str(args.batch),
        "--singles",
        str(args.singles),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tree).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def _pick(result: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = result
    for key in path:
        value = value[key]
    return float(value)


def speed(by_course: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from reports_ml.simulate import SimulationParams, simulate_reports

    learners = 3_300.0 if args.quick else 33_000.0
    records = simulate_reports(by_course, seed=2, params=SimulationParams(learners_median=learners))
    print(f"\nspeed set: {len(records):,} reports (learners_median {learners:,.0f})")
    baseline_ref = args.baseline or _baseline_ref()
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="scorer-bench-") as folder:
        data = Path(folder) / "records.pickle"
        data.write_bytes(pickle.dumps(records))
        del records
        baseline_tree = _checkout(baseline_ref, Path(folder) / "baseline")
        trees = {"baseline": baseline_tree, "current": REPO_ROOT}
        order = ["baseline", "current", "current", "baseline"] * ((args.rounds + 1) // 2)
        for name in order[: 2 * args.rounds]:
            result = _run_worker(trees[name], data, args)
            runs[name].append(result)
            print(
                f"  {name:8} train {result['train_seconds']:6.1f} s, batch "
                f"{result['batch_reports_per_second']['cold']:>7,}/s cold "
                f"{result['batch_reports_per_second']['warm']:>7,}/s warm, score_one p99 "
                f"{result['score_one_ms']['cold']['p99']:.2f} ms cold "
                f"{result['score_one_ms']['warm']['p99']:.2f} ms warm "
                f"(load {result['load_before']})",
                flush=True,
            )
    summary: dict[str, Any] = {"baseline_ref": baseline_ref, "runs": runs}
    measures: dict[str, tuple[str, ...]] = {
        "train_seconds": ("train_seconds",),
        "batch_cold_per_s": ("batch_reports_per_second", "cold"),
        "batch_warm_per_s": ("batch_reports_per_second", "warm"),
        "score_one_cold_p99_ms": ("score_one_ms", "cold", "p99"),
        "score_one_warm_p99_ms": ("score_one_ms", "warm", "p99"),
    }
    for key, path in measures.items():
        old = float(np.median([_pick(r, path) for r in runs["baseline"]]))
        new = float(np.median([_pick(r, path) for r in runs["current"]]))
        summary[key] = {"baseline": old, "current": new, "ratio": round(new / old, 3)}
        print(f"  {key:24} baseline {old:10.2f}  current {new:10.2f}  ratio {new / old:.2f}")
    return summary


# --- quality -----------------------------------------------------------------------------------


def _describe(records: list[Any]) -> dict[str, Any]:
    from reports_ml.evaluate import roc_auc_score

    out: dict[str, Any] = {}
    for course in [*sorted({r.course for r in records}), "all"]:
        part = [r for r in records if course in ("all", r.course)]
        labels = np.array([bool(r.label) for r in part])
        counts = np.array([r.times_reported for r in part], dtype=float)
        out[course] = {
            "reports": len(part),
            "correct_share": round(float(labels.mean()), 4),
            "count_baseline_auc": round(roc_auc_score(labels, counts), 4),
        }
        print(f"  {course:10} {len(part):7d} reports, {labels.mean():.1%} correct")
    return out


def _print_evaluation(evaluation: Any) -> None:
    methods = list(evaluation.overall.auc)
    print(f"\n{evaluation.split}")
    print(f"{'course':10} {'reports':>8} {'correct':>8} " + " ".join(f"{m:>7}" for m in methods))
    for group in [*evaluation.courses, evaluation.overall]:
        print(
            f"{group.name:10} {group.n_reports:8d} {group.n_correct:8d} "
            + " ".join(f"{group.auc[m]:7.3f}" for m in methods)
        )
    below = [g.name for g in evaluation.courses if g.auc["model"] < 0.95]
    print(f"courses with model AUC below 0.95: {below or 'none'}")


def _timed(name: str, run: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    started = time.perf_counter()
    evaluation = run()
    seconds = time.perf_counter() - started
    _print_evaluation(evaluation)
    below = [g.name for g in evaluation.courses if g.auc["model"] < 0.95]
    return evaluation, {
        **evaluation.to_dict(),
        "courses_below_0_95": below,
        "seconds": round(seconds),
        "name": name,
    }


def _language(course: str) -> str:
    """A course's language, whatever script it is written in (``en_pt~ko`` -> ``en_pt``)."""
    return course.split("~")[0]


def quality(
    generator_a: list[Any],
    generator_b: list[Any],
    folds: int,
    jobs: int,
    plot: Path,
) -> dict[str, Any]:
    from reports_ml.evaluate import (
        cross_validate_by_prompt,
        evaluate_model,
        leave_one_course_out,
        plot_auc_by_course,
    )
    from reports_ml.model import train_model

    results: dict[str, Any] = {}
    evaluations = []
    for generator, records in (("A", generator_a), ("B", generator_b)):
        for split, run in (
            ("by_prompt", lambda r=records: cross_validate_by_prompt(r, folds=folds, n_jobs=jobs)),
            (
                "leave_one_course_out",
                lambda r=records, g=generator: leave_one_course_out(
                    r, n_jobs=jobs, group_of=_language if g == "B" else None
                ),
            ),
        ):
            print(f"\ngenerator {generator}:", end="")
            evaluation, row = _timed(f"{generator} {split}", run)
            evaluations.append(evaluation)
            results[f"{generator}_{split}"] = row
    print("\ngenerator B scored by a model trained on all of generator A:", end="")
    model = train_model(generator_a, n_jobs=jobs)
    evaluation, row = _timed(
        "B by a model of A", lambda: evaluate_model(model, generator_b, n_jobs=jobs)
    )
    results["B_by_model_of_A"] = row
    plot_auc_by_course(evaluations[:2], plot)
    print(f"\nplot (generator A): {plot}")
    return results


def _load_prompts(per_file: int | None) -> dict[str, Any]:
    from reports_ml.staple import course_from_path, load_staple

    by_course: dict[str, Any] = {}
    from core.sample_data import find_sample_data

    found = find_sample_data()
    if found is None:
        raise SystemExit("no STAPLE gold files: set CHORUS_DATA_DIR (README: Test data)")
    print(f"STAPLE gold files: {found.describe()}", file=sys.stderr)
    for path in found.staple_files():
        by_course.setdefault(course_from_path(path), []).extend(load_staple(path)[:per_file])
    return by_course


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for features")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/current pairs (speed)")
    parser.add_argument("--folds", type=int, help="prompt folds (default 5; 3 with --quick)")
    parser.add_argument(
        "--baseline",
        help="git ref of the baseline tree (default: the commit "
        "before reports_ml/similarity.py was added)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="figures as JSON (default: benchmarks/scorer_results.json, "
        "scorer_speed_results.json with --skip-quality; with --quick, in the temporary folder)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help="the per-course AUC plot (default: benchmarks/"
        "scorer_auc.png; with --quick, in the temporary folder)",
    )
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    parser.add_argument("--skip-quality", action="store_true", help="speed only")
    # The speed worker (run by this script in a fresh process for each tree):
    parser.add_argument("--speed-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--singles", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_worker:
        _speed_worker(args)
        return
    from reports_ml.simulate import simulate_reports
    from reports_ml.simulate_holdout import simulate_holdout

    folder = Path(tempfile.gettempdir()) if args.quick else REPO_ROOT / "benchmarks"
    suffix = "_quick" if args.quick else ""
    # A speed-only run leaves the quality figures alone.
    name = "scorer_speed_results" if args.skip_quality else "scorer_results"
    args.out = args.out or folder / f"{name}{suffix}.json"
    args.plot = args.plot or folder / f"scorer_auc{suffix}.png"
    args.batch = 20_000 if args.quick else 200_000
    args.singles = 500 if args.quick else 5_000

    print(f"load average at start: {_load()}")
    by_course = _load_prompts(120 if args.quick else None)
    results: dict[str, Any] = {
        "command": " ".join(["benchmarks/scorer.py", *sys.argv[1:]]),
        "quick": args.quick,
    }
    if not args.skip_quality:
        generator_a = simulate_reports(by_course, seed=1)
        generator_b = simulate_holdout(by_course, seed=5)
        print("generator A:")
        results["data_A"] = _describe(generator_a)
        print("generator B:")
        results["data_B"] = _describe(generator_b)
        folds = args.folds or (3 if args.quick else 5)
        results["quality"] = quality(generator_a, generator_b, folds, args.jobs, args.plot)
    if not args.skip_speed:
        results["speed"] = speed(by_course, args)
    results["load_average_end"] = _load()
    print(f"load average at the end: {_load()}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures: {args.out}")


if __name__ == "__main__":
    main()
