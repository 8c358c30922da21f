"""Does TPE find as good a configuration when shown only a window of ended trials (search/tpe.py)?

Up to its window the search's TPE is Optuna's, proposal for proposal (tests/test_tpe.py); past it,
its "above" density is built from the latest trials only. Our recorded space (128 configurations)
is found in a few hundred trials, so the question is asked of a standard one: the 6-dimensional
Hartmann function (maximised; its best is 3.32237), --trials sequential trials a study, over
--seeds seeds, by Optuna's TPE and by the search's with a --window smaller than the shipped one (the
window's effect is then larger and starts sooner). Printed and written to --out: the best value
reached after each count of trials, mean over seeds with its 95% t interval, for each, and the
paired difference (windowed minus Optuna's) with its interval. Every study is the same function,
so a seed's two studies share their first `window` proposals.

    python benchmarks/tpe_window.py [--trials 2000] [--window 500] [--seeds 10] \
        [--out results/reference/replay/tpe_window.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Hartmann-6: the coefficients of Dixon and Szegö (1978), as in every benchmark suite.
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
              [17, 8, 0.05, 10, 0.1, 14]])
P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6(x: np.ndarray) -> float:
    return float(np.sum(ALPHA * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))


def best_by_count(sampler, trials: int, counts: list[int]) -> tuple[list[float], float]:
    """The best value after each of `counts` trials, and the CPU seconds of the study."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=sampler)
    began = time.process_time()
    best, out = -np.inf, []
    for number in range(1, trials + 1):
        trial = study.ask()
        value = hartmann6(np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)]))
        study.tell(trial, value)
        best = max(best, value)
        if number in counts:
            out.append(best)
    return out, time.process_time() - began


def interval(values) -> dict:
    from scipy import stats

    values = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return {"mean": round(float(values.mean()), 5), "interval": [round(float(values.mean()) - half, 5),
                                                                 round(float(values.mean()) + half, 5)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="results/reference/replay/tpe_window.json")
    args = parser.parse_args()

    import optuna

    from fashion_tune.search import tpe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe.WINDOW = args.window
    counts = sorted({c for c in (args.window, 2 * args.window, args.trials // 2, args.trials) if c <= args.trials})
    found = {"optuna": [], "windowed": []}
    seconds = {"optuna": [], "windowed": []}
    for seed in range(args.seeds):
        for kind, make in (("optuna", optuna.samplers.TPESampler), ("windowed", tpe.WindowedTPE)):
            best, spent = best_by_count(make(seed=seed), args.trials, counts)
            found[kind].append(best)
            seconds[kind].append(spent)
        print(f"seed {seed}: best after {args.trials} trials {found['optuna'][-1][-1]:.4f} (Optuna's TPE, "
              f"{seconds['optuna'][-1]:.0f} s) {found['windowed'][-1][-1]:.4f} (window {args.window}, "
              f"{seconds['windowed'][-1]:.0f} s)", flush=True)
    rows = []
    for i, count in enumerate(counts):
        optunas = [b[i] for b in found["optuna"]]
        windowed = [b[i] for b in found["windowed"]]
        rows.append({"trials": count, "optuna": interval(optunas), "windowed": interval(windowed),
                     "windowed_minus_optuna": interval(np.subtract(windowed, optunas))})
        print(f"{count:>6} trials: Optuna's TPE {rows[-1]['optuna']}, windowed {rows[-1]['windowed']}, "
              f"difference {rows[-1]['windowed_minus_optuna']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "function": "hartmann6 (maximum 3.32237)", "window": args.window, "seeds": args.seeds, "rows": rows,
        "cpu_seconds_a_study": {k: round(float(np.mean(v)), 1) for k, v in seconds.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
