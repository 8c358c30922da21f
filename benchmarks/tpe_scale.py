"""TPE's proposal time against the trials a study holds, up to tens of thousands, without running them.

A study of 10,000 replayed trials takes this 2-core machine hours, most of it Ray starting and
feeding trial actors; what grows with the trials in the driver is TPE (each proposal looks at every
trial so far). Here the trials of a real replayed study (its optuna.db: complete and pruned trials
with their values per epoch) are copied, round and round, into an in-memory Optuna study of N
trials, and the sampler the search uses (TPESampler, the study's seed) proposes --asks trials over
the search space, each told pruned at once so that N stays N. Printed and written to --out: the
mean CPU time of a proposal at each N, and the growth exponent between Ns (1: linear in trials).

    python benchmarks/tpe_scale.py --study results/benchmarks/scale/scale-10000 \
        [--trials 100 1000 3000 10000 30000] [--asks 20] [--out results/reference/replay/tpe_scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def source_trials(study: Path) -> list:
    import optuna

    storage = f"sqlite:///{study / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
            if t.state in ended]


def ask_time(trials: list, count: int, asks: int, seed: int) -> float:
    """Mean CPU seconds of one proposal by a study that holds `count` of `trials` (cycled)."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.add_trials([trials[i % len(trials)] for i in range(count)])
    distributions = trials[0].distributions
    spent = []
    for _ in range(asks):
        began = time.process_time()
        trial = study.ask(fixed_distributions=distributions)
        spent.append(time.process_time() - began)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return sum(spent) / len(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a replayed study's folder (its optuna.db is read)")
    parser.add_argument("--trials", nargs="+", type=int, default=[100, 1000, 3000, 10000, 30000])
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--out", default="results/reference/replay/tpe_scale.json")
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = source_trials(Path(args.study))
    rows = []
    for count in args.trials:
        rows.append({"trials": count, "ask_ms": round(1000 * ask_time(trials, count, args.asks, seed=0), 2)})
        print(f"{count:>7} trials: {rows[-1]['ask_ms']:8.2f} ms a proposal", flush=True)
    growth = [round(math.log(b["ask_ms"] / a["ask_ms"]) / math.log(b["trials"] / a["trials"]), 2)
              for a, b in zip(rows, rows[1:])]
    print("growth exponent of a proposal's time between counts:", growth)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"source": f"{len(trials)} ended trials of {Path(args.study).name}",
                                          "asks": args.asks, "rows": rows, "growth_exponent": growth}, indent=1) + "\n")


if __name__ == "__main__":
    main()
