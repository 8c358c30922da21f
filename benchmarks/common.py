"""What several benchmarks share: a one-model study through the real CLI, and its per-epoch rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_model_space(path: Path, epochs: int, num_samples: int = 1) -> Path:
    """A space whose every trial trains the same model (TrainParams defaults) for `epochs`, with
    no early stopping: equal work per trial, so throughput figures compare like with like."""
    path.write_text(
        f"metric: val_accuracy\nfixed: {{epochs: {epochs}}}\n"
        "params:\n  filters: {type: categorical, choices: [32]}\n"  # the default, as the one 'searched' value
        f"search: {{num_samples: {num_samples}, grace_period: {epochs}}}\n"
    )
    return path


def run_study(space: Path, name: str, results_dir: Path, data_dir: str, *flags: str) -> dict:
    """Run `fashion_tune search` (quiet); return its study.json. A failed study ends the benchmark
    with its command and the end of its error output."""
    cmd = [sys.executable, "-m", "fashion_tune", "-q", "search", "--space", str(space), "--name", name,
           "--results-dir", str(results_dir), "--data-dir", data_dir, *flags]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        sys.exit(f"study {name!r} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads((results_dir / name / "study.json").read_text())


def epoch_rows(study_dir: Path) -> list[dict]:
    """Every epoch every trial reported (result.json lines), trial by trial."""
    return [json.loads(line) for f in sorted(study_dir.glob("trial_*/result.json"))
            for line in f.read_text().splitlines() if line]
