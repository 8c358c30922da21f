"""The command line: `python -m fashion_tune <command>` or `fashion-tune <command>`.

Thin on purpose: parse, call the module that does the work, turn a UserError into one line
on stderr and exit code 2. --debug shows the traceback instead. Heavy imports (TensorFlow,
Ray) happen inside the commands, so --help answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from fashion_tune.errors import StudyInterrupted, UserError

log = logging.getLogger("fashion_tune")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        help="folder with the Fashion-MNIST files (official .gz or Kaggle CSV); default: "
        "$FASHION_TUNE_DATA, else ~/.keras/datasets/fashion-mnist, else download there",
    )
    group.add_argument("--subset", type=int, help="use a stratified subset of N training images")
    group.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of the training images held out for validation (default 0.1)")


def _data_settings(args):
    from fashion_tune.config import DataSettings

    # The split's seed is the study's --seed; search.new_study sets it.
    return DataSettings(data_dir=args.data_dir, subset=args.subset, val_fraction=args.val_fraction)


def cmd_search(args) -> int:
    from fashion_tune import search

    if args.resume:
        study_dir = search.resume_study(args.resume, args.results_dir or "results", args.address)
    else:
        flags = {key: getattr(args, key) for key in (
            "space", "name", "results_dir", "num_samples", "max_concurrent", "cpus_per_trial",
            "gpus_per_trial", "grace_period", "reduction_factor", "tpe_startup_trials",
            "max_failures", "seed", "address")}
        study_dir = search.new_study(flags, _data_settings(args))
    print(f"study written to {study_dir}")
    print(f"summary: {study_dir / 'summary.md'}")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from fashion_tune import results

    study_dir = Path(args.results_dir) / args.study
    report = results.write_reports(study_dir)
    print(report["summary_md"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashion-tune",
        description="Find, train and ship the best Fashion-MNIST clothing classifier by distributed "
        "hyperparameter search (Ray Tune + Optuna TPE + ASHA).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = commands.add_parser(
        "search",
        help="run a hyperparameter study",
        description="Run a study: Ray Tune trials proposed by Optuna's TPE, pruned by ASHA. "
        "Settings not given here come from the space file's `search:` section, then defaults.",
    )
    s.add_argument("--space", help="search-space YAML (default: search_spaces/default.yaml)")
    s.add_argument("--name", help="study name; results go to RESULTS_DIR/NAME (default: <space>-<timestamp>)")
    s.add_argument("--results-dir", help="where studies live (default: results); on a cluster, shared storage")
    s.add_argument("--resume", metavar="NAME", help="continue the interrupted study NAME where it stopped")
    s.add_argument("--num-samples", type=int, help="trials to run")
    s.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources allow)")
    s.add_argument("--cpus-per-trial", type=float, help="CPUs per trial, also TensorFlow's threads (default 1)")
    s.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, may be fractional: 0.25 (default 0)")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial (default 1)")
    s.add_argument("--reduction-factor", type=int, help="ASHA keeps the best 1/N at each rung (default 3)")
    s.add_argument("--tpe-startup-trials", type=int, help="random trials before TPE models (default 10)")
    s.add_argument("--max-failures", type=int, help="retries of a failed trial from its checkpoint (default 0)")
    s.add_argument("--seed", type=int, help="seeds TPE, the data split and the trials (default 0)")
    s.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: local Ray)")
    _add_data_args(s)
    s.set_defaults(run=cmd_search)

    r = commands.add_parser("report", help="(re)write a study's leaderboard, best config and summary")
    r.add_argument("--study", required=True, help="study name")
    r.add_argument("--results-dir", default="results", help="where studies live (default: results)")
    r.set_defaults(run=cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.debug else "fashion_tune: %(message)s",
    )
    # Only our own INFO lines by default; libraries stay at WARNING.
    logging.getLogger().setLevel(logging.WARNING)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.run(args)
    except StudyInterrupted as e:
        print(f"fashion-tune: {e}", file=sys.stderr)
        return 130
    except UserError as e:
        if args.debug:
            raise
        print(f"fashion-tune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fashion-tune: interrupted", file=sys.stderr)
        return 130
