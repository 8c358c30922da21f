"""The command line: `python -m fashion_tune <command>` or `fashion-tune <command>`.

Thin on purpose, in the style of Optuna's CLI: each command is a small class with its arguments
beside its handler, registered in COMMANDS; its docstring's first paragraph opens its --help. A
handler parses, calls the module that does the work and prints what it returns. A UserError
becomes one line on stderr and exit code 2 (--debug shows the traceback instead); an interrupted
search or retrain exits with 130. The search and data options are made from the settings' own fields
(config.py), so a new setting needs no edit here. Heavy imports (TensorFlow, Ray) happen inside
the handlers, so --help answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from fashion_tune import layout, quiet_tensorflow
from fashion_tune.config import DataSettings, RetrainSettings, SearchSettings, flag_of
from fashion_tune.data import TEST_IMAGES
from fashion_tune.errors import Interrupted, UserError

log = logging.getLogger("fashion_tune")

# ----------------------------------------------------------------------------- shared arguments

_ARG_TYPES = {"int": int, "float": float, "str": str}


def add_settings(parser, cls, names: Optional[Sequence[str]] = None,
                 default_text: Optional[Mapping[str, str]] = None, aliases: Optional[Mapping[str, Sequence[str]]] = None
                 ) -> None:
    """A flag for each command-line field of a settings class (all, or `names`), from its metadata.

    Every flag defaults to None, 'not given', so the space file and the defaults can fill in;
    default_text says where a command's defaults come from when that is not the field's own."""
    for f in cls.command_line_fields():
        if names is not None and f.name not in names:
            continue
        kind = cls.field_type(f.name)
        choices = cls.RULES[f.name].choices if f.name in cls.RULES else ()
        options = dict(dest=f.name, default=None, help=_help_of(f, (default_text or {}).get(f.name)))
        if kind == "bool":
            options["action"] = argparse.BooleanOptionalAction  # --no-X overrides a space file's X: true
        elif choices:
            options.update(type=_ARG_TYPES[kind], choices=choices)
        else:
            options.update(type=_checked(cls, f.name, kind), metavar=f.name.upper())
        parser.add_argument(flag_of(f.name), *(aliases or {}).get(f.name, ()), **options)


def _checked(cls, name: str, kind: str):
    """argparse type for a settings field: the value as typed, checked against the field's rule,
    so that a mistake is reported against the flag the user typed (argparse names it)."""
    def parse(text: str):
        value = text if kind == "str" else _number(_ARG_TYPES[kind], text)
        rule = cls.RULES.get(name)
        if rule is not None and not rule.test(value):
            raise argparse.ArgumentTypeError(f"{text!r} {rule.text}" if kind == "str" else f"{text} {rule.text}")
        return value

    return parse


def _number(kind, text: str):
    """`text` as an int or a finite float (kind), or the argparse error that says which it is not."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _help_of(field: dataclasses.Field, default_text: Optional[str]) -> str:
    text = default_text or field.metadata["default_text"]
    if text is None and not (field.default is None or field.default is False or field.default == ""):
        text = f"{field.default:g}" if isinstance(field.default, float) else str(field.default)
        if field.metadata["in_space"]:
            text = f"the space file's, else {text}"
    return field.metadata["help"] + (f" (default: {text})" if text else "")


def given(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The values of cls's flags as parsed (None: not given)."""
    return {f.name: getattr(args, f.name, None) for f in cls.command_line_fields()}


def bounded(kind, low, high=None, inclusive=True):
    """argparse type: a number of `kind` (int or float) from low (inclusive, unless not) up to high."""
    def parse(text: str):
        value = _number(kind, text)
        below = value < low if inclusive else value <= low
        if below or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f"{'>=' if inclusive else '>'} {low}"
            raise argparse.ArgumentTypeError(f"{text} must be {span}")
        return value

    return parse


def add_robustness_images(parser) -> None:
    parser.add_argument("--robustness-images", type=bounded(int, 0, TEST_IMAGES), default=None, metavar="N",
                        help="test images rendered as product photos per robustness tier (default: all 10,000; "
                             "0: skip the tiers)")


def add_results_dir(parser) -> None:
    parser.add_argument("--results-dir", default=SearchSettings.results_dir,
                        help=f"where studies live (default: {SearchSettings.results_dir})")


def add_study_or(parser, other: str, other_help: str, required: bool = True) -> None:
    """--study NAME, or the file `other` names instead; and --results-dir."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--study", help="study name (in --results-dir)")
    group.add_argument(other, help=other_help)
    add_results_dir(parser)


# ----------------------------------------------------------------------------- the commands


class Command:
    """A subcommand: the first paragraph of its docstring opens its --help; `summary` is its line
    in the list of commands."""

    summary = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


class Search(Command):
    """Run a hyperparameter study: Ray Tune runs the trials that Optuna's TPE proposes and ASHA
    stops the weak ones early, on local Ray or on a cluster (--address). A setting not given here
    comes from the space file's `search:` section, then the defaults. The study is written to
    RESULTS_DIR/NAME; `--resume NAME` continues an interrupted one."""

    summary = "run a hyperparameter study"

    def add_arguments(self, parser):
        parser.add_argument("--resume", metavar="NAME",
                            help="continue the interrupted study NAME where it stopped, with its own settings")
        add_settings(parser, SearchSettings)
        add_settings(parser.add_argument_group("data"), DataSettings)

    def run(self, args):
        from fashion_tune import search, storage
        from fashion_tune.records import StudyRecord

        flags, data_flags = given(args, SearchSettings), given(args, DataSettings)
        if args.resume:
            study = search.resume_study(args.resume, flags, data_flags)
        else:
            study = search.new_study(flags, data_flags)
        results_dir = StudyRecord.read(study.record).settings.results_dir
        if storage.in_object_storage(results_dir):
            print(f"study written to {storage.Bucket(results_dir).study_uri(study.path.name)}, "
                  f"its working copy to {study.path}")
        else:
            print(f"study written to {study.path}")
        print(f"summary: {study.summary}")
        return 0


class Report(Command):
    """(Re)write a study's leaderboard.csv, best_config.json and summary.md from the files in its
    folder, without Ray or TensorFlow: for a study that was interrupted, copied, or is still running."""

    summary = "(re)write a study's leaderboard, best config and summary"

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="study name (in --results-dir)")
        add_results_dir(parser)

    def run(self, args):
        from fashion_tune import results, storage

        with storage.study_here(args.results_dir, args.study) as results_dir:
            study = layout.StudyDir.named(results_dir, args.study)
            if study.path.is_dir():
                layout.check_writable(study.path, "--study")
            print(results.write_reports(study)["summary_md"])
        return 0


class Retrain(Command):
    """Train a study's best configuration (or any best_config.json) on the full training set for
    its full epoch budget, with the study's data folder unless --data-dir says otherwise. With
    --top K the study's K best trials are trained and averaged as one model; with --flip-tta the
    saved model also averages each image with its mirror image. The space file's `retrain:`
    section sets these before the study runs; flags override it. With --early-stopping a
    stratified slice is held out and training stops when its loss stops improving; with
    --calibrate one is held out to temperature-scale the model's confidence and choose its review
    threshold. Writes model.keras, history.csv, retrain.json and TensorBoard curves."""

    summary = "train a study's best configuration (or its top K, averaged) on the full training set"

    def add_arguments(self, parser):
        add_study_or(parser, "--config", "a best_config.json instead of a study")
        add_settings(parser, RetrainSettings, default_text={
            "epochs": "the space file's retrain: epochs, else the configuration's budget",
            "top": "the space file's retrain: top, else 1", "flip_tta": "the space file's retrain: flip_tta, else off",
            "calibrate": "the space file's retrain: calibrate, else off"})
        parser.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                            help="hold out --val-fraction and stop when its loss has not improved for PATIENCE epochs")
        parser.add_argument("--out", help="output folder (default: <study>/retrain, or retrain/ beside --config)")
        add_settings(parser.add_argument_group("data"), DataSettings, aliases={"val_fraction": ["--holdout"]},
                     default_text={"data_dir": "the study's, else $FASHION_TUNE_DATA, else Keras's cache",
                                   "val_fraction": "the study's, else 0.1; used with --early-stopping and --calibrate"})

    def run(self, args):
        from fashion_tune import retrain, storage

        with storage.study_here(args.results_dir, args.study) as results_dir:
            model_dir = retrain.run(args.study, args.config, results_dir, args.out, given(args, RetrainSettings),
                                    given(args, DataSettings), patience=args.early_stopping)
        print(f"model: {model_dir.model}")
        return 0


class Evaluate(Command):
    """Score the retrained model on the 10,000 untouched test images: accuracy, loss, per-class
    report, confusion matrices, the most confident mistakes, certainty and calibration, with a
    review threshold for the predictions a person should check; as report.md, metrics.json,
    figures and TensorBoard."""

    summary = "score the retrained model on the 10,000 test images, with figures"

    def add_arguments(self, parser):
        add_study_or(parser, "--model", "a .keras model instead of a study's retrained one")
        parser.add_argument("--out", help="output folder (default: <study>/evaluation, or evaluation/ beside --model)")
        add_robustness_images(parser)
        add_settings(parser, DataSettings, names=("data_dir",),
                     default_text={"data_dir": "the folder the retraining read, else $FASHION_TUNE_DATA, else "
                                               "Keras's cache"})

    def run(self, args):
        from fashion_tune import evaluate, storage

        with storage.study_here(args.results_dir, args.study) as results_dir:
            model_dir = layout.trained_model(args.study, args.model, results_dir)
            metrics, out = evaluate.evaluate(model_dir, args.out, args.data_dir, args.robustness_images)
        print(evaluate.headline(metrics))
        print(f"report: {out.report}")
        return 0


class Export(Command):
    """Write the retrained model for shipping: model.keras, a TensorFlow SavedModel (for TF
    Serving) and a model card (classes, preprocessing, configuration, test metrics, data checksums,
    library versions). predict and serve use the newest export by default."""

    summary = "write the model as .keras and SavedModel with a model card"

    def add_arguments(self, parser):
        add_study_or(parser, "--model", "a .keras model instead of a study's retrained one")
        parser.add_argument("--out", required=True, help="export folder")
        parser.add_argument("--force", action="store_true", help="replace --out if it exists")

    def run(self, args):
        from fashion_tune import export, storage

        with storage.study_here(args.results_dir, args.study) as results_dir:
            model_dir = layout.trained_model(args.study, args.model, results_dir)
            out = export.export(model_dir, layout.ExportDir(Path(args.out)), results_dir, force=args.force)
        print(f"exported to {out.path}")
        return 0


class Predict(Command):
    """Classify product photos (files, or folders of them) with an exported model: the newest
    export, else the reference model committed with the repository. A file that is not a readable
    image, or shows no garment, gets its own error line and exit code 1; the others are still
    classified. Answers below the model card's review threshold are marked unsure."""

    summary = "classify product photos (files or folders)"

    def add_arguments(self, parser):
        parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
        parser.add_argument("--model", help="export folder or .keras file (default: the newest export)")
        add_results_dir(parser)
        parser.add_argument("--top", type=bounded(int, 1), default=3, help="categories to show per image (default 3)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--include-input", action="store_true",
                            help="with --json: add each model input (28x28) as a PNG data URL")
        parser.add_argument("--show", metavar="DIR",
                            help="write what the model saw, each photo's 28x28 model input, as DIR/<photo name>.png")

    def run(self, args):
        from fashion_tune import predict, storage

        if args.include_input and not args.json:
            raise UserError("--include-input adds the model inputs to --json output; add --json, or use --show DIR")
        if args.show is not None:
            layout.check_output(args.show, "--show", reads=args.images)
        exported = layout.resolve_export(args.model, storage.results_dir_here(args.results_dir))
        predictions = predict.classify(args.images, exported, include_input=args.include_input)
        if args.show:
            written = predict.write_inputs(predictions, Path(args.show))
            log.info("wrote %d model input(s) to %s", len(written), args.show)
        if args.json:
            print(predict.format_json(predictions, args.top, exported))
        else:
            out, err = predict.format_text(predictions, args.top)
            for line in out:
                print(line)
            for line in err:
                print(line, file=sys.stderr)
        # Non-zero when any file could not be classified, so scripts notice; the rest were classified.
        return 1 if any(p.error for p in predictions) else 0


class Baselines(Command):
    """Train and evaluate the hand-designed baselines (an MLP and the seeds' CNN, on normalised and
    raw pixels) exactly as a tuned model is trained and evaluated, and compare them with evaluated
    studies in one table."""

    summary = "train and evaluate the hand-designed baselines; compare with studies"

    def add_arguments(self, parser):
        parser.add_argument("--only", nargs="+", metavar="PRESET", help="presets to run (default: all)")
        parser.add_argument("--epochs", type=int, default=10, help="epochs per baseline (default 10)")
        parser.add_argument("--study", action="append", help="add this evaluated study to the table (repeatable)")
        add_results_dir(parser)
        parser.add_argument("--out", help="output folder (default: RESULTS_DIR/baselines)")
        add_robustness_images(parser)
        add_settings(parser.add_argument_group("data"), DataSettings, names=("data_dir", "subset"))

    def run(self, args):
        from fashion_tune import baselines, storage

        results_dir = storage.results_dir_here(args.results_dir)
        out = layout.BaselinesDir.for_command(args.out, results_dir)
        layout.check_output(out.path, "--out" if args.out else "--results-dir")
        with contextlib.ExitStack() as studies:  # a bucket's studies pulled, to read their evaluations
            for study in args.study or ():
                studies.enter_context(storage.study_here(args.results_dir, study))
            rows = baselines.run_baselines(baselines.resolve_names(args.only), args.epochs,
                                           DataSettings.layered(given(args, DataSettings)), out,
                                           studies=args.study or (), results_dir=results_dir,
                                           robustness_images=args.robustness_images)
        for line in baselines.ranking(rows):
            print(line)
        print(f"table: {out.table_md}")
        return 0


class LrFind(Command):
    """Learning-rate range test: train a study's best configuration (or the default model) for a
    few batches while the learning rate rises exponentially, and suggest a rate and a range for a
    space file from where the loss falls fastest."""

    summary = "sweep the learning rate to find a sensible range"

    def add_arguments(self, parser):
        add_study_or(parser, "--config", "a best_config.json", required=False)
        parser.add_argument("--min-lr", type=float, default=1e-4, help="start of the sweep (default 1e-4)")
        parser.add_argument("--max-lr", type=float, default=1e-1, help="end of the sweep (default 1e-1)")
        parser.add_argument("--steps", type=int, default=100, help="batches in the sweep (default 100)")
        parser.add_argument("--out", help="output folder (default: <study>/lr_find or RESULTS_DIR/lr-find-<time>)")
        add_settings(parser.add_argument_group("data"), DataSettings, names=("data_dir", "subset"))

    def run(self, args):
        from fashion_tune import lr_find, storage

        with storage.study_here(args.results_dir, args.study) as results_dir:
            result = lr_find.run(args.study, args.config, results_dir, args.out, given(args, DataSettings),
                                 min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps)
        print(f"suggested learning_rate: {result['suggestion']:.2e} (steepest fall of the loss); "
              f"lowest loss at {result['lowest_loss_rate']:.2e}")
        print(f"for a space file: {lr_find.for_space_file(result)}")
        print(f"plot: {result['plot']}")
        return 0


class Serve(Command):
    """The retailer's HTTP service on Ray Serve, with a web page: upload a product photo, get its
    category, a probability per class, and a warning when the model is unsure. Serves the newest
    export by default; --replicas and --address scale it out on a cluster."""

    summary = "HTTP service and web page: upload a photo, get its category (Ray Serve)"

    def add_arguments(self, parser):
        parser.add_argument("--model", help="export folder (default: the newest export)")
        add_results_dir(parser)
        parser.add_argument("--host", default="127.0.0.1",
                            help="address to listen on (default 127.0.0.1: this machine only)")
        parser.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="port (default 8000)")
        parser.add_argument("--replicas", type=bounded(int, 1), default=1,
                            help="model replicas (default 1); more on a cluster")
        parser.add_argument("--max-mb", type=bounded(float, 0, inclusive=False), default=10,
                            help="largest upload accepted, in MB (default 10)")
        parser.add_argument("--address", help="Ray cluster to run on (default: local Ray)")
        parser.add_argument("--connect-timeout", type=bounded(float, 0, inclusive=False),
                            default=SearchSettings.connect_timeout,
                            help=f"seconds to wait for the cluster at --address (default "
                                 f"{SearchSettings.connect_timeout:g})")

    def run(self, args):
        from fashion_tune import serve, storage

        exported = layout.resolve_export(args.model, storage.results_dir_here(args.results_dir))
        serve.serve_forever(exported, args.host, args.port, args.replicas, args.max_mb, args.address,
                            args.connect_timeout)
        return 0


COMMANDS: dict[str, type[Command]] = {
    "search": Search,
    "report": Report,
    "retrain": Retrain,
    "evaluate": Evaluate,
    "export": Export,
    "predict": Predict,
    "baselines": Baselines,
    "lr-find": LrFind,
    "serve": Serve,
}

# ----------------------------------------------------------------------------- the entry point

# The commands' arguments that name a file or folder.
PATHS = ("out", "show", "results_dir", "model", "config", "data_dir", "space", "resume", "study")


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line (the usage block is what --help is for)."""

    def error(self, message):
        self.exit(2, f"fashion-tune: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fashion-tune",
        description="Find, train and ship the best Fashion-MNIST clothing classifier by distributed "
        "hyperparameter search (Ray Tune + Optuna TPE + ASHA).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command_class in COMMANDS.items():
        command = command_class()
        description = " ".join(inspect.getdoc(command_class).split("\n\n")[0].split())
        sub = commands.add_parser(name, help=command.summary, description=description)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a mistake argparse has told (2)
        return e.code
    empty = next((name for name in PATHS if getattr(args, name, None) == ""), None)
    if empty:  # Path("") is the current folder: an empty path is a mistake, not a place
        print(f"fashion-tune: error: --{empty.replace('_', '-')} is empty; give a path", file=sys.stderr)
        return 2
    if args.debug:  # dependencies' start-up lines too, here and in Ray's worker processes
        os.environ[quiet_tensorflow.DEBUG_ENV] = "1"
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.debug else "fashion_tune: %(message)s",
    )
    # Only our own INFO lines by default; libraries stay at WARNING.
    logging.getLogger().setLevel(logging.WARNING)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.run(args)
    except Interrupted as e:
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
    except OSError as e:  # a file or folder the checks before the work did not foresee: one line still
        if args.debug:
            raise
        print(f"fashion-tune: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
