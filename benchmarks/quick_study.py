"""A study on this machine: wall time, trials, best val accuracy, and how busy the CPUs were.

Runs the real CLI on a space (default search_spaces/quick.yaml; local Ray, the full training set)
while sampling /proc/stat every 5 s, then reads the study's reports.

    python benchmarks/quick_study.py --data-dir ../shared/data/fashion-mnist [--results-dir /tmp/bench]
        [--space reference --name reference] [any other search flag, e.g. --subset 20000]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, sample_cpu_busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--results-dir", default="/tmp/fashion_tune_bench")
    parser.add_argument("--space", default="search_spaces/quick.yaml")
    parser.add_argument("--name", help="study name (default: <space>-bench-<time>)")
    args, search_flags = parser.parse_known_args()  # the rest goes to `search` as it is

    name = args.name or f"{Path(args.space).stem}-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "fashion_tune", "search", "--space", args.space, "--name", name,
           "--results-dir", args.results_dir, "--data-dir", args.data_dir, *search_flags]
    began = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    sampled_at, samples = sample_cpu_busy(lambda: process.poll() is None)
    wall = time.perf_counter() - began
    Path(args.results_dir, name, "cpu_busy.json").write_text(
        json.dumps({"wall_s": wall, "sampled_at": sampled_at, "samples": samples}))
    if process.returncode:
        sys.exit(f"the study failed with exit code {process.returncode}")

    study = Path(args.results_dir) / name
    best = json.loads((study / "best_config.json").read_text())
    with open(study / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    statuses = {s: sum(r["status"] == s for r in rows) for s in ("completed", "stopped early", "failed")}
    print(f"study {study}")
    print(f"wall time: {wall / 60:.1f} min")
    print(f"trials: {len(rows)} ({statuses['completed']} completed, {statuses['stopped early']} stopped early, "
          f"{statuses['failed']} failed); trial-epochs: {sum(int(r['epochs_trained']) for r in rows)}")
    print(f"best val_accuracy: {best['value']:.4f} (trial {best['trial_id']}, epoch {best['best_epoch']})")
    per_core = {cpu: statistics.mean(v) for cpu, v in samples.items() if cpu != "cpu"}
    print("CPU busy, mean over the study: " + ", ".join(f"{cpu} {100 * u:.0f}%" for cpu, u in sorted(per_core.items()))
          + f"; all {100 * statistics.mean(samples['cpu']):.0f}%")
    # The tail: once the second-to-last trial has ended, one trial is left and the other cores idle.
    ends = sorted(max(json.loads(line)["timestamp"] for line in f.read_text().splitlines() if line)
                  for f in study.glob("trial_*/result.json") if f.stat().st_size)
    if len(ends) >= 2:
        before = [u for t, u in zip(sampled_at, samples["cpu"]) if t <= ends[-2]]
        print(f"CPU busy until one trial was left ({(ends[-1] - ends[-2]) / 60:.1f} min of tail set aside): "
              f"{100 * statistics.mean(before):.1f}% over {len(before)} samples of 5 s")


if __name__ == "__main__":
    main()
