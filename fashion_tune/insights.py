"""What mattered in a study: hyperparameter importances and Optuna's plots, read from its optuna.db.

Importances come from the trials that ran their full budget (Optuna's COMPLETE trials; a trial
stopped early is PRUNED, its value an earlier epoch's and not comparable), by two of Optuna's
evaluators that work differently: fANOVA (a random forest's split of the variance over the whole
space) and PED-ANOVA (how the best tenth of the trials differ from all of them). Where the two
agree, the ranking is worth acting on. With fewer than MIN_COMPLETED such trials the best tenth is a
single trial and the forest fits noise: the summary says so instead of printing numbers.

Optuna and matplotlib only: no Ray, no TensorFlow.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fashion_tune import atomic, plots
from fashion_tune.layout import StudyDir

log = logging.getLogger(__name__)

MIN_COMPLETED = 10
EVALUATORS = ("fANOVA", "PED-ANOVA")
# Optuna's plots, saved as <name>.png in the study's insights/ folder; title -> name.
FIGURES = {
    "optimisation history": "optimization_history",
    "learning curves (every trial, stopped ones too)": "intermediate_values",
    "parallel coordinates": "parallel_coordinate",
    "importances (fANOVA)": "param_importances",
    "slices": "slice",
}


@dataclass
class Insights:
    completed: int  # trials that ran their full budget
    total: int
    importances: dict[str, dict[str, float]] = field(default_factory=dict)  # evaluator -> {param: share}
    figures: dict[str, Path] = field(default_factory=dict)  # title -> PNG
    why_no_importances: str = ""

    def ranked(self) -> list[str]:
        """The searched hyperparameters, most important first by fANOVA (empty without importances)."""
        return list(self.importances.get(EVALUATORS[0], {}))


def analyse(study: StudyDir, name: str, seed: int) -> Optional[Insights]:
    """Importances and plots of the study in study.optuna_db; None for a study without one (it ran
    before studies kept their Optuna study)."""
    if not study.optuna_db.is_file():
        return None
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = optuna.load_study(study_name=name, storage=study.optuna_storage)
    trials = stored.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    searched = sorted({p for t in completed for p in t.params})
    found = Insights(completed=len(completed), total=len(trials))
    if len(completed) < MIN_COMPLETED:
        found.why_no_importances = (f"only {len(completed)} of {len(trials)} trials ran their full budget; importances "
                                    f"need at least {MIN_COMPLETED}")
    elif len(searched) < 2:
        found.why_no_importances = "a single searched hyperparameter: nothing to rank it against"
    elif len({t.value for t in completed}) < 2 or len({tuple(sorted(t.params.items())) for t in completed}) < 2:
        # fANOVA fails on it ("zero total variance"): the proposals settled on one configuration, or all scored alike
        found.why_no_importances = (f"the {len(completed)} trials that ran their full budget all had the same "
                                    f"configuration or the same value: nothing varies to rank")
    else:
        evaluators = {EVALUATORS[0]: optuna.importance.FanovaImportanceEvaluator(seed=seed),
                      EVALUATORS[1]: optuna.importance.PedAnovaImportanceEvaluator()}
        for label, evaluator in evaluators.items():
            found.importances[label] = optuna.importance.get_param_importances(stored, evaluator=evaluator)
    if completed:
        found.figures = _plots(stored, study.insights, fanova_seed=seed, with_importances=bool(found.importances))
    return found


def _plots(stored, folder: Path, fanova_seed: int, with_importances: bool) -> dict[str, Path]:
    plots.pyplot()  # matplotlib drawing to files (Agg), before Optuna's plots import it
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for title, name in FIGURES.items():
        if name == "param_importances" and not with_importances:
            continue
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=fanova_seed)
        kwargs = {"evaluator": evaluator} if name == "param_importances" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental, every call
            drawn = getattr(optuna_plots, f"plot_{name}")(stored, **kwargs)
        path = folder / f"{name}.png"
        atomic.write_bytes(path, plots.png_bytes((drawn.flat[0] if hasattr(drawn, "flat") else drawn).figure))
        made[title] = path
    return made


def markdown(found: Optional[Insights], study: StudyDir, shown_folder: Path) -> list[str]:
    """The summary's "What mattered" section; shown_folder: the study's folder as the user named it."""
    lines = ["", "## What mattered", ""]
    if found is None:
        return lines + ["No optuna.db in this study (it ran before studies kept their Optuna study): no importances."]
    if found.importances:
        lines += [f"Importance of each searched hyperparameter (shares summing to 1), from the {found.completed} "
                  f"trials that ran their full budget (of {found.total}; stopped and failed trials left out). Two of "
                  "Optuna's evaluators: where they agree, the ranking is worth acting on.", "",
                  "| hyperparameter | " + " | ".join(EVALUATORS) + " |", "|---|" + "---|" * len(EVALUATORS)]
        lines += [f"| {p} | " + " | ".join(f"{found.importances[e].get(p, 0.0):.2f}" for e in EVALUATORS) + " |"
                  for p in found.ranked()]
    else:
        lines.append(f"No importances: {found.why_no_importances}.")
    if found.figures:
        links = " · ".join(f"[{title}]({path.relative_to(study.path).as_posix()})"
                           for title, path in found.figures.items())
        lines += ["", f"Optuna's plots: {links}"]
    lines += ["",
              "The whole study in Optuna's dashboard: "
              f"`optuna-dashboard sqlite:///{shown_folder / study.optuna_db.name}`"]
    return lines
