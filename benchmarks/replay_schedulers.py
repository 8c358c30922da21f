"""Every scheduler against the simplest ways to do as well, over many seeds, on recorded curves.

Each variant (searcher x scheduler) searches the recorded space once per seed through the real
driver (`fashion_tune search --replay`: our searcher, schedulers, optuna.db and reports; trials
report the recorded curves instead of training), all in one local Ray, one study after another.
What a user gets from a study stopped after B trial-epochs is the configuration it would hand to
`retrain` then (the best val accuracy any trial had reported by then, as the leaderboard ranks),
worth that configuration's full-budget val accuracy in the recording (its mean over the recorded
seeds). For each variant and budget B: the mean over seeds, its 95% interval (t distribution),
and the mean trial-epochs the variant needed to get there.

    python benchmarks/replay_schedulers.py [--recording results/reference/replay/curves.jsonl]
        [--space tabular] [--seeds 0-29] [--variants tpe-asha tpe-none ...] [--budgets 108 216 432 864]
        [--time-scale 0.01] [--studies results/benchmarks/replay] [--out results/reference/replay/summary.json]

--time-scale: each replayed epoch takes its recorded seconds times this, so the asynchronous
schedulers see trials arrive in the order the real trainings would (large models later). Studies
already finished under --studies are read, not run again, so seeds can be added a session at a
time; an interrupted one is resumed. --finished-only runs nothing and summarises what is there (two
processes can share the work by seeds: `--seeds 0-14` and `--seeds 15-29`, then `--finished-only`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# How each variant stops trials: the scheduler and the flags that go with it.
SCHEDULES = {
    "asha": ("asha", {}),
    "halving": ("halving", {"max_concurrent": 0}),  # pausing schedulers refuse a concurrency limit
    "hyperband": ("hyperband", {"max_concurrent": 0}),
    "i-epoch-1": ("i-epoch", {"grace_period": 1}),
    "i-epoch-3": ("i-epoch", {"grace_period": 3}),
    "none": ("none", {}),
}
# searcher, scheduler, flags: each schedule with TPE, and with random proposals (what TPE must beat)
VARIANTS = {f"{searcher}-{name}": (searcher, scheduler, flags)
            for searcher in ("tpe", "random") for name, (scheduler, flags) in SCHEDULES.items()}
# The default a user gets: `search` with no scheduler or searcher flag.
SHIPPED = "tpe-asha"


def seeds_arg(text: str) -> list[int]:
    """'0-29' or '0,3,5' -> the seeds."""
    if "-" in text:
        low, high = map(int, text.split("-"))
        return list(range(low, high + 1))
    return [int(s) for s in text.split(",")]


def run_study(variant: str, seed: int, args, studies: Path) -> Path:
    """The variant's study for this seed: read if finished, resumed if interrupted, else run."""
    from fashion_tune.records import StudyRecord
    from fashion_tune.search import new_study, resume_study

    name = f"{variant}-seed{seed}"
    study = studies / name
    if (study / "study.json").is_file():
        if not StudyRecord.read(study / "study.json").finished:
            resume_study(name, {"results_dir": str(studies)}, {})
        return study
    searcher, scheduler, extra = VARIANTS[variant]
    num_samples = args.full_trials if scheduler == "none" else args.trials
    flags = {"space": args.space, "name": name, "results_dir": str(studies), "num_samples": num_samples,
             "searcher": searcher, "scheduler": scheduler, "seed": seed, "replay": args.recording,
             "replay_time_scale": args.time_scale, **extra}
    new_study(flags, {})
    return study


def _finished(study: Path) -> bool:
    from fashion_tune.records import StudyRecord

    return (study / "study.json").is_file() and StudyRecord.read(study / "study.json").finished


def anytime(study: Path, curves, budgets: list[int], epochs: int) -> dict[int, float | None]:
    """For each budget: the full-budget val accuracy of the configuration the study would hand to
    retrain after that many trial-epochs, or at its end if it ended before spending them."""
    from fashion_tune import results
    from fashion_tune.layout import StudyDir

    folder = StudyDir(study)
    configs = {row["trial_id"]: row["config"] for row in _trial_configs(study)}
    progress = results.search_progress(folder, "val_accuracy", "max", results.read_record(folder))
    best, best_trial, found = None, None, {}
    waiting = sorted(budgets)
    for p in progress:
        if p.best is not None and (best is None or p.best > best):
            best, best_trial = p.best, p.trial_id  # the trial whose epoch set the new best
        while waiting and p.trial_epochs >= waiting[0]:
            found[waiting.pop(0)] = curves.full_budget_accuracy(configs[best_trial], epochs)
    found["end"] = curves.full_budget_accuracy(configs[best_trial], epochs)
    # A study that ended before spending a budget hands over its final pick at that budget too (the
    # anytime curve is flat after its end); its own trial-epochs are in "trial_epochs".
    found.update({budget: found["end"] for budget in waiting})
    found["trial_epochs"] = progress[-1].trial_epochs
    return found


def _trial_configs(study: Path) -> list[dict]:
    return [{"trial_id": p.name.removeprefix("trial_"), "config": json.loads((p / "params.json").read_text())}
            for p in study.glob("trial_*") if (p / "params.json").is_file()]


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and the 95% interval of the mean (t distribution)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def summarise(found: dict[str, dict[int, dict]], budgets: list[int]) -> dict:
    """Per variant and budget: seeds, mean trial-epochs, mean accuracy and its 95% interval."""
    summary = {}
    for variant, by_seed in found.items():
        rows = {}
        for budget in [*budgets, "end"]:
            values = [r[budget] for r in by_seed.values() if r.get(budget) is not None]
            if not values:
                continue
            mean, low, high = interval(values)
            rows[str(budget)] = {"seeds": len(values), "mean_accuracy": round(mean, 5),
                                 "interval_95": [round(low, 5), round(high, 5)]}
        spent = [r["trial_epochs"] for r in by_seed.values()]
        summary[variant] = {"seeds": sorted(by_seed), "mean_trial_epochs": round(statistics.fmean(spent), 1),
                            "by_budget": rows, "shipped_default": variant == SHIPPED}
    return summary


def difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b), with its 95% interval (Welch's t: the variants' seeds are independent
    searches, their spreads unequal)."""
    from scipy import stats

    test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    return {"difference": round(statistics.fmean(a) - statistics.fmean(b), 5),
            "interval_95": [round(float(low), 5), round(float(high), 5)], "seeds": [len(a), len(b)]}


def against_the_targets(found: dict[str, dict[int, dict]], budgets: list[int]) -> dict:
    """Issue 31's two questions of the shipped default, on the seeds both variants have:
    - at each budget B with 4B or more measured: its pick at B against TPE alone's at its end
      (every trial to the full budget), i.e. at >= 4x fewer trial-epochs;
    - at every budget: each i-epoch cut against it (a cut "beats" it when the interval is above 0)."""
    def values(variant, budget):
        return [r[budget] for r in found.get(variant, {}).values() if r.get(budget) is not None]

    shipped, alone = SHIPPED, SHIPPED.split("-")[0] + "-none"
    out = {"shipped": shipped, "vs_every_trial_to_its_budget": {}, "i_epoch_minus_shipped": {}}
    if values(shipped, budgets[0]) and values(alone, "end"):
        for budget in budgets:
            if 4 * budget <= max(budgets):
                out["vs_every_trial_to_its_budget"][f"{budget} vs {alone} at its end"] = difference(
                    values(shipped, budget), values(alone, "end"))
    for variant in (v for v in found if "i-epoch" in v):
        out["i_epoch_minus_shipped"][variant] = {
            str(budget): difference(values(variant, budget), values(shipped, budget))
            for budget in budgets if len(values(variant, budget)) > 1 and len(values(shipped, budget)) > 1}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", default="results/reference/replay/curves.jsonl")
    parser.add_argument("--space", default="tabular")
    parser.add_argument("--seeds", type=seeds_arg, default=list(range(30)))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[108, 216, 432, 864])
    parser.add_argument("--trials", type=int, default=128, help="trials a study of a scheduler that stops trials runs")
    parser.add_argument("--full-trials", type=int, default=32, help="trials a study without early stopping runs")
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--studies", default="results/benchmarks/replay")
    parser.add_argument("--out", default="results/reference/replay/summary.json")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: summarise the studies already finished under --studies")
    args = parser.parse_args()
    args.recording = str(Path(args.recording).resolve())

    from fashion_tune import ray_start
    from fashion_tune.search.replay import Curves
    from fashion_tune.space import load_space

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    space = load_space(args.space)
    curves = Curves.for_space(args.recording, space)
    studies = Path(args.studies).resolve()
    studies.mkdir(parents=True, exist_ok=True)
    if not args.finished_only:
        ray_start.start_local(num_cpus=2)
    found: dict[str, dict[int, dict]] = {}
    started = time.time()
    for seed in args.seeds:
        for variant in args.variants:
            began = time.time()
            if args.finished_only:
                study = studies / f"{variant}-seed{seed}"
                if not _finished(study):
                    continue
            else:
                study = run_study(variant, seed, args, studies)
            found.setdefault(variant, {})[seed] = anytime(study, curves, args.budgets, space.max_epochs)
            print(f"seed {seed} {variant}: {found[variant][seed]} ({time.time() - began:.0f} s; "
                  f"{(time.time() - started) / 60:.1f} min so far)", flush=True)
    recording = Path(args.recording)
    summary = {"recording": str(recording.relative_to(ROOT)) if ROOT in recording.parents else recording.name,
               "space": args.space, "time_scale": args.time_scale,
               "trials": args.trials, "full_trials": args.full_trials, "budgets": args.budgets,
               "measure": "full-budget val accuracy (recording's mean over seeds) of the configuration the study "
                          "would hand to retrain after each budget of trial-epochs",
               "variants": summarise(found, args.budgets), "targets": against_the_targets(found, args.budgets),
               "per_seed": found}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    for variant, row in summary["variants"].items():
        cells = "  ".join(f"{b}: {r['mean_accuracy']:.4f} [{r['interval_95'][0]:.4f}, {r['interval_95'][1]:.4f}]"
                          for b, r in row["by_budget"].items())
        print(f"{variant:18s} {row['mean_trial_epochs']:7.1f} trial-epochs  {cells}")


if __name__ == "__main__":
    main()
