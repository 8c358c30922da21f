"""TPE's proposal time against the trials a study holds, up to tens of thousands, without running them.

A study of 10,000 replayed trials takes this 2-core machine hours, most of it Ray starting and
feeding trial actors; what grows with the trials in the driver is TPE (each proposal looks at every
trial so far). Here the trials of a real replayed study (its optuna.db: complete and pruned trials
with their values per epoch) are copied, round and round, into an in-memory Optuna study of N
trials, and each sampler proposes --asks trials over the search space, each told pruned at once so
that N stays N: Optuna's TPESampler as it is, and the search's (fashion_tune/search/tpe.py: TPE
shown the best and the latest 1,000 ended trials). Printed and written to --out: the mean CPU time
of a proposal at each N for each, and the growth exponent between Ns (1: linear in trials).

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


def ask_time(trials: list, count: int, asks: int, sampler) -> float:
    """Mean CPU seconds of one proposal by `sampler` in a study that holds `count` of `trials` (cycled)."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=sampler)
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

    from fashion_tune.search import tpe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = source_trials(Path(args.study))
    samplers = {"ask_ms": lambda: optuna.samplers.TPESampler(seed=0),
                "search_ask_ms": lambda: tpe.sampler(seed=0, startup_trials=10)}
    rows = []
    for count in args.trials:
        rows.append({"trials": count, **{key: round(1000 * ask_time(trials, count, args.asks, make()), 2)
                                         for key, make in samplers.items()}})
        print(f"{count:>7} trials: {rows[-1]['ask_ms']:8.2f} ms a proposal by Optuna's TPE, "
              f"{rows[-1]['search_ask_ms']:8.2f} by the search's", flush=True)
    growth = {key: [round(math.log(b[key] / a[key]) / math.log(b["trials"] / a["trials"]), 2)
                    for a, b in zip(rows, rows[1:])] for key in samplers}
    print("growth exponent of a proposal's time between counts:", growth)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"source": f"{len(trials)} ended trials of {Path(args.study).name}",
                                          "asks": args.asks, "window": tpe.WINDOW, "rows": rows,
                                          "growth_exponent": growth}, indent=1) + "\n")


if __name__ == "__main__":
    main()
