"""What several benchmarks share: a one-model study through the real CLI, its per-epoch rows,
variants measured in alternation with their per-pair ratios, and the CPUs' busy time."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def cpu_times() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per CPU line of /proc/stat ("cpu" is all of them)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *values = line.split()
            values = list(map(int, values))
            idle = values[3] + values[4]  # idle + iowait
            out[name] = (sum(values) - idle, sum(values))
    return out


def sample_cpu_busy(running: Callable[[], bool], every_s: float = 5) -> tuple[list[float], dict[str, list[float]]]:
    """While running() is true, each CPU's busy share of every `every_s` seconds ("cpu": all of
    them), and when each sample ended (Unix time, as Tune's result timestamps)."""
    sampled_at: list[float] = []
    samples: dict[str, list[float]] = {}
    last = cpu_times()
    while running():
        time.sleep(every_s)
        now = cpu_times()
        sampled_at.append(time.time())
        for cpu, (busy, total) in now.items():
            samples.setdefault(cpu, []).append((busy - last[cpu][0]) / max(1, total - last[cpu][1]))
        last = now
    return sampled_at, samples


def one_model_space(path: Path, epochs: int, num_samples: int = 1) -> Path:
    """A space whose every trial trains the same model (TrainParams defaults) for `epochs`, with
    no early stopping: equal work per trial, so throughput figures compare like with like."""
    path.write_text(
        f"metric: val_accuracy\nfixed: {{epochs: {epochs}}}\n"
        "params:\n  filters: {type: categorical, choices: [32]}\n"  # the default, as the one 'searched' value
        f"search: {{num_samples: {num_samples}, grace_period: {epochs}}}\n"
    )
    return path


def run_study(space: Path, name: str, results_dir: Path, data_dir: str | None, *flags: str) -> dict:
    """Run `fashion_tune search` (quiet); return its study.json. A failed study ends the benchmark
    with its command and the end of its error output. data_dir None: no --data-dir (a replayed study)."""
    data = ["--data-dir", data_dir] if data_dir is not None else []
    return _search(name, results_dir, "--space", str(space), "--name", name, *data, *flags)


def resume_study(name: str, results_dir: Path) -> dict:
    """Continue an interrupted study with `fashion_tune search --resume`; return its study.json."""
    return _search(name, results_dir, "--resume", name)


def _search(name: str, results_dir: Path, *flags: str) -> dict:
    cmd = [sys.executable, "-m", "fashion_tune", "-q", "search", "--results-dir", str(results_dir), *flags]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        sys.exit(f"study {name!r} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads((results_dir / name / "study.json").read_text())


def epoch_rows(study_dir: Path) -> list[dict]:
    """Every epoch every trial reported (result.json lines), trial by trial."""
    return [json.loads(line) for f in sorted(study_dir.glob("trial_*/result.json"))
            for line in f.read_text().splitlines() if line]


# Per-pair ratios whose range exceeds this share of their median are too scattered to conclude from.
WIDE_SPREAD = 0.10


def alternate(variants: dict[str, Callable[[], dict]], pairs: int) -> dict[str, list[dict]]:
    """Measure the variants in turn, A B A B ..., `pairs` rounds: a shared host's drift lands on
    every variant alike instead of on whichever ran last. Each variant's figures, round by round."""
    figures = {name: [] for name in variants}
    for round_ in range(1, pairs + 1):
        for name, measure in variants.items():
            figures[name].append(measure())
            print(f"round {round_}/{pairs}: {name} done", flush=True)
    return figures


def paired_ratios(label: str, numerators: list[float], denominators: list[float]) -> str:
    """One line: the median of the per-pair ratios, their range, and whether they agree enough to conclude."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    median = statistics.median(ratios)
    spread = (max(ratios) - min(ratios)) / median
    if len(ratios) < 3:
        verdict = "fewer than 3 pairs: too few to judge the spread"
    elif spread > WIDE_SPREAD:
        verdict = f"spread {spread:.0%} of the median: too wide to conclude, rerun on a quieter host"
    else:
        verdict = f"spread {spread:.0%} of the median"
    return (f"{label}: median {median:.3f} over {len(ratios)} pairs (each: "
            f"{', '.join(f'{r:.3f}' for r in ratios)}); {verdict}")
