"""The command line: `python -m fashion_tune <command>` or `fashion-tune <command>`.

Thin on purpose: parse, call the module that does the work, turn a UserError into one line
on stderr and exit code 2. --debug shows the traceback instead. Heavy imports (TensorFlow,
Ray) happen inside the commands, so --help answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from fashion_tune.errors import StudyInterrupted, UserError

log = logging.getLogger("fashion_tune")


def _add_data_args(parser: argparse.ArgumentParser, split: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        help="folder with the Fashion-MNIST files (official .gz or Kaggle CSV); default: "
        "$FASHION_TUNE_DATA, else ~/.keras/datasets/fashion-mnist, else download there",
    )
    group.add_argument("--subset", type=int, help="use a stratified subset of N training images")
    if split:
        group.add_argument("--val-fraction", type=float, default=0.1,
                           help="share of the training images held out for validation (default 0.1)")


def _data_settings(args):
    from fashion_tune.config import DataSettings

    # The split's seed is the study's --seed; search.new_study sets it.
    return DataSettings(data_dir=args.data_dir, subset=args.subset,
                        val_fraction=getattr(args, "val_fraction", DataSettings.val_fraction))


def cmd_search(args) -> int:
    from fashion_tune import search

    if args.resume:
        study_dir = search.resume_study(args.resume, args.results_dir or "results", args.address)
    else:
        flags = {key: getattr(args, key) for key in (
            "space", "name", "results_dir", "num_samples", "max_concurrent", "cpus_per_trial",
            "gpus_per_trial", "searcher", "scheduler", "grace_period", "reduction_factor", "tpe_startup_trials",
            "max_failures", "seed", "address", "mixed_precision", "jit_compile")}
        study_dir = search.new_study(flags, _data_settings(args))
    print(f"study written to {study_dir}")
    print(f"summary: {study_dir / 'summary.md'}")
    return 0


def cmd_report(args) -> int:
    from fashion_tune import results

    study_dir = Path(args.results_dir) / args.study
    report = results.write_reports(study_dir)
    print(report["summary_md"])
    return 0


def cmd_retrain(args) -> int:
    from fashion_tune import retrain

    config = retrain.config_path_for(args.study, args.config, args.results_dir)
    out = retrain.retrain(config, epochs=args.epochs, patience=args.early_stopping, holdout_fraction=args.holdout,
                          data_settings=_data_settings(args), out_dir=args.out)
    print(f"model: {out / retrain.MODEL_FILE}")
    return 0


def cmd_evaluate(args) -> int:
    from fashion_tune import evaluate

    model_path = evaluate.model_path_for(args.study, args.model, args.results_dir)
    metrics = evaluate.evaluate(model_path, args.out, args.data_dir)
    out = Path(args.out) if args.out else model_path.parent.parent / evaluate.EVALUATION_DIR
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
          f"ECE {metrics['calibration']['ece']:.4f}")
    print(f"report: {out / 'report.md'}")
    return 0


def cmd_export(args) -> int:
    from fashion_tune import evaluate, export

    model_path = evaluate.model_path_for(args.study, args.model, args.results_dir)
    out = export.export(model_path, Path(args.out), args.results_dir, force=args.force)
    print(f"exported to {out}")
    return 0


def cmd_predict(args) -> int:
    from fashion_tune import predict

    model_path = predict.resolve_model(args.model, args.results_dir)
    predictions = predict.classify(args.images, model_path)
    if args.json:
        print(predict.format_json(predictions, args.top, model_path))
    else:
        out, err = predict.format_text(predictions, args.top)
        for line in out:
            print(line)
        for line in err:
            print(line, file=sys.stderr)
    # Non-zero when any file could not be classified, so scripts notice; the rest were classified.
    return 1 if any(p.error for p in predictions) else 0


def cmd_baselines(args) -> int:
    from fashion_tune import baselines

    rows = baselines.run_baselines(baselines.resolve_names(args.only), args.epochs, _data_settings(args),
                                   Path(args.out), studies=args.study or (), results_dir=args.results_dir)
    for row in sorted(rows, key=lambda r: -r["test_accuracy"]):
        print(f"{row['model']:<28} test accuracy {row['test_accuracy']:.4f}  macro F1 {row['macro_f1']:.4f}")
    print(f"table: {Path(args.out) / 'baselines.md'}")
    return 0


def cmd_lr_find(args) -> int:
    import time

    from fashion_tune import lr_find, retrain
    from fashion_tune.config import TrainParams

    if args.study or args.config:
        config = retrain.config_path_for(args.study, args.config, args.results_dir)
        params = TrainParams.from_config(retrain.read_best_config(config)["params"])
        out = Path(args.out) if args.out else config.parent / "lr_find"
    else:
        params = TrainParams()
        out = Path(args.out) if args.out else Path(args.results_dir) / f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    result = lr_find.lr_find(params, _data_settings(args), out, args.min_lr, args.max_lr, args.steps)
    low, high = result["range"]
    print(f"suggested learning_rate: {result['suggestion']:.2e} (steepest fall of the loss); "
          f"lowest loss at {result['lowest_loss_rate']:.2e}")
    print(f"for a space file: learning_rate: {{type: float, low: {low:.1e}, high: {high:.1e}, log: true}}")
    print(f"plot: {out / 'lr_find.png'}")
    return 0


def cmd_serve(args) -> int:
    from fashion_tune import predict, serve

    model = Path(args.model) if args.model else predict.resolve_model(None, args.results_dir).parent
    if args.max_mb <= 0:
        raise UserError(f"--max-mb is {args.max_mb}, must be > 0")
    serve.serve_forever(model, args.host, args.port, args.replicas, int(args.max_mb * 1024 * 1024), args.address)
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
    s.add_argument("--searcher", choices=("tpe", "random"), help="how trials are proposed (default tpe)")
    s.add_argument("--scheduler", choices=("asha", "none"),
                   help="asha stops weak trials early; none trains every trial fully (default asha)")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial (default 1)")
    s.add_argument("--reduction-factor", type=int, help="ASHA keeps the best 1/N at each rung (default 3)")
    s.add_argument("--tpe-startup-trials", type=int, help="random trials before TPE models (default 10)")
    s.add_argument("--max-failures", type=int, help="retries of a failed trial from its checkpoint (default 0)")
    s.add_argument("--seed", type=int, help="seeds TPE, the data split and the trials (default 0)")
    s.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: local Ray)")
    s.add_argument("--mixed-precision", action="store_true", default=None,
                   help="train every trial in mixed float16 (GPUs with tensor cores)")
    s.add_argument("--jit-compile", action="store_true", default=None, help="compile every trial's step with XLA")
    _add_data_args(s)
    s.set_defaults(run=cmd_search)

    r = commands.add_parser("report", help="(re)write a study's leaderboard, best config and summary")
    r.add_argument("--study", required=True, help="study name")
    r.add_argument("--results-dir", default="results", help="where studies live (default: results)")
    r.set_defaults(run=cmd_report)

    def study_or(sub, other: str, other_help: str):
        group = sub.add_mutually_exclusive_group(required=True)
        group.add_argument("--study", help="study name (in --results-dir)")
        group.add_argument(other, help=other_help)
        sub.add_argument("--results-dir", default="results", help="where studies live (default: results)")

    t = commands.add_parser("retrain", help="train a study's best configuration on the full training set")
    study_or(t, "--config", "a best_config.json instead of a study")
    t.add_argument("--epochs", type=int, help="epochs to train (default: the configuration's budget)")
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="hold out a slice and stop when its loss has not improved for PATIENCE epochs")
    t.add_argument("--holdout", type=float, default=0.1, help="share held out for early stopping (default 0.1)")
    t.add_argument("--out", help="output folder (default: <study>/retrain)")
    _add_data_args(t, split=False)
    t.set_defaults(run=cmd_retrain)

    e = commands.add_parser("evaluate", help="score the retrained model on the 10,000 test images, with figures")
    study_or(e, "--model", "a .keras model instead of a study's retrained one")
    e.add_argument("--out", help="output folder (default: <study>/evaluation)")
    e.add_argument("--data-dir", help="folder with the Fashion-MNIST files")
    e.set_defaults(run=cmd_evaluate)

    x = commands.add_parser("export", help="write the model as .keras and SavedModel with a model card")
    study_or(x, "--model", "a .keras model instead of a study's retrained one")
    x.add_argument("--out", required=True, help="export folder")
    x.add_argument("--force", action="store_true", help="replace --out if it exists")
    x.set_defaults(run=cmd_export)

    p = commands.add_parser("predict", help="classify product photos (files or folders)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--model", help="export folder or .keras file (default: the newest export)")
    p.add_argument("--results-dir", default="results", help="where the newest export is recorded (default: results)")
    p.add_argument("--top", type=int, default=3, help="categories to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_predict)

    b = commands.add_parser("baselines", help="train and evaluate the hand-designed baselines; compare with studies")
    b.add_argument("--only", nargs="+", metavar="PRESET", help="presets to run (default: mlp cnn cnn_unnormalised)")
    b.add_argument("--epochs", type=int, default=10, help="epochs per baseline (default 10)")
    b.add_argument("--study", action="append", help="add this evaluated study to the table (repeatable)")
    b.add_argument("--results-dir", default="results", help="where studies live (default: results)")
    b.add_argument("--out", default="results/baselines", help="output folder (default: results/baselines)")
    _add_data_args(b, split=False)
    b.set_defaults(run=cmd_baselines)

    f = commands.add_parser("lr-find", help="sweep the learning rate to find a sensible range")
    group = f.add_mutually_exclusive_group()
    group.add_argument("--study", help="use this study's best configuration (default: TrainParams defaults)")
    group.add_argument("--config", help="a best_config.json")
    f.add_argument("--results-dir", default="results", help="where studies live (default: results)")
    f.add_argument("--min-lr", type=float, default=1e-4, help="start of the sweep (default 1e-4)")
    f.add_argument("--max-lr", type=float, default=1e-1, help="end of the sweep (default 1e-1)")
    f.add_argument("--steps", type=int, default=100, help="batches in the sweep (default 100)")
    f.add_argument("--out", help="output folder (default: <study>/lr_find or results/lr-find-<time>)")
    _add_data_args(f, split=False)
    f.set_defaults(run=cmd_lr_find)

    v = commands.add_parser("serve", help="HTTP service and web page: upload a photo, get its category (Ray Serve)")
    v.add_argument("--model", help="export folder (default: the newest export)")
    v.add_argument("--results-dir", default="results", help="where the newest export is recorded (default: results)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument("--replicas", type=int, default=1, help="model replicas (default 1); more on a cluster")
    v.add_argument("--max-mb", type=float, default=10, help="largest upload accepted, in MB (default 10)")
    v.add_argument("--address", help="Ray cluster to run on (default: local Ray)")
    v.set_defaults(run=cmd_serve)
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
