"""What is checked of a study's settings before anything starts: rules that join a setting to the
space file or to another setting, each told in one line naming the flag (or the space file's key)
and the rule. A setting's own range is its field's rule (config.py)."""

from __future__ import annotations

from typing import Any, Mapping

from fashion_tune.config import PAUSING_SCHEDULERS, SearchSettings, TrainParams, xla_conflict
from fashion_tune.errors import UserError
from fashion_tune.space import SearchSpace


def check_settings(settings: SearchSettings, space: SearchSpace, flags: Mapping[str, Any]) -> None:
    """Every rule below; flags: what the command line gave (None: not given), to name the source."""
    _check_scheduler_options(settings, space, flags)
    _check_concurrency(settings, space, flags)
    _check_jit_compile(settings, space)
    _check_retrain_top(settings, space, flags)
    if settings.replay_time_scale is not None and not settings.replay:
        raise UserError("--replay-time-scale does nothing without --replay (trials that train take the time they take)")


def _where(name: str, flags: Mapping[str, Any], space: SearchSpace, section: str = "search") -> str:
    """Where a setting came from: its flag, or the space file's key."""
    return f"--{name.replace('_', '-')}" if flags.get(name) is not None else f"{space.path}: {section}.{name}"


def _check_concurrency(settings: SearchSettings, space: SearchSpace, flags: Mapping[str, Any]) -> None:
    if settings.scheduler in PAUSING_SCHEDULERS and settings.max_concurrent:
        # Tune's concurrency limit counts a paused trial as running: a bracket waiting for its peers
        # would wait for trials that are never started.
        raise UserError(
            f"{_where('max_concurrent', flags, space)} is {settings.max_concurrent}, but --scheduler "
            f"{settings.scheduler} pauses trials at each rung until their peers arrive, and a paused trial counts as "
            "running: pass --max-concurrent 0 (no limit: trials at once then follow --cpus-per-trial and "
            "--gpus-per-trial), or use --scheduler asha")


def _check_scheduler_options(settings: SearchSettings, space: SearchSpace, flags: Mapping[str, Any]) -> None:
    if settings.grace_period > space.max_epochs:
        raise UserError(f"{_where('grace_period', flags, space)} is {settings.grace_period}, must be <= the trial "
                        f"budget of {space.max_epochs} epochs (fixed.epochs in {space.path})")
    # Typed for a scheduler that never reads it: refused, not recorded as if it counted.
    readers = {"grace_period": ("asha", "halving", "i-epoch"),
               "reduction_factor": ("asha", "halving", "hyperband", "i-epoch")}
    for name, schedulers in readers.items():
        if flags.get(name) is not None and settings.scheduler not in schedulers:
            raise UserError(f"--{name.replace('_', '-')} does nothing with --scheduler {settings.scheduler} (only "
                            f"{' and '.join(schedulers)} use it); leave it out")


def _check_retrain_top(settings: SearchSettings, space: SearchSpace, flags: Mapping[str, Any]) -> None:
    """The space file's retrain rule must be possible: its top K trials need K trials."""
    top = (space.retrain_defaults or {}).get("top") or 1
    if top > settings.num_samples:
        raise UserError(f"{space.path}: retrain.top is {top}, more than the {settings.num_samples} trials the study "
                        f"runs ({_where('num_samples', flags, space)}); retrain could not find them")


def _check_jit_compile(settings: SearchSettings, space: SearchSpace) -> None:
    """XLA with augmentation Keras cannot compile: refused before the study starts, not in every trial."""
    if not (settings.jit_compile or space.fixed.get("jit_compile")):
        return
    where = "--jit-compile" if settings.jit_compile else f"{space.path}: fixed.jit_compile"
    for name in TrainParams.NOT_XLA:
        searched = next((p for p in space.params if p.name == name), None)
        values = (searched.choices or (searched.high,)) if searched else (space.fixed.get(name),)
        nonzero = next((v for v in values if v), None)
        if nonzero is not None:
            raise UserError(f"{where}: {xla_conflict(name, nonzero)}" + (" (searched)" if searched else ""))
