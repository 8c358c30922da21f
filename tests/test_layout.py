"""Where things live (layout.py) and how the package's modules stand on each other."""

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from fashion_tune import layout
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir, ModelDir, StudyDir
from tests.conftest import ROOT


def test_a_study_folder_holds_what_the_readme_says(tmp_path):
    study = StudyDir.named(tmp_path, "s")
    assert [p.name for p in (study.record, study.space_copy, study.leaderboard, study.best_config, study.summary)] == [
        "study.json", "space.yaml", "leaderboard.csv", "best_config.json", "summary.md"]
    assert study.retrained.model == tmp_path / "s" / "retrain" / "model.keras"
    assert study.retrained.record.name == "retrain.json" and study.retrained.history.name == "history.csv"
    # the retrained model's evaluation sits in the study folder, not inside retrain/
    assert study.retrained.evaluation.metrics == tmp_path / "s" / "evaluation" / "metrics.json"
    assert ModelDir(tmp_path / "m").evaluation.path == tmp_path / "m" / "evaluation"


def test_trial_folders_are_those_tune_wrote(tmp_path):
    study = StudyDir(tmp_path)
    for name in ("trial_b", "trial_a", "retrain"):
        (tmp_path / name).mkdir()
    (tmp_path / "trial_a" / "params.json").write_text("{}")
    (tmp_path / "trial_b" / "params.json").write_text("{}")
    assert [p.name for p in study.trial_dirs()] == ["trial_a", "trial_b"]
    assert layout.trial_folder_name("abc") == "trial_abc"


def test_what_a_command_names(tmp_path):
    results = str(tmp_path)
    assert layout.best_config_of("s", None, results) == tmp_path / "s" / "best_config.json"
    assert layout.best_config_of(None, "x/best.json", results) == Path("x/best.json")
    with pytest.raises(UserError, match="give either --study NAME or --config FILE"):
        layout.best_config_of("s", "x.json", results)
    assert layout.retrain_dir_for("s", None, None, results) == StudyDir.named(tmp_path, "s").retrained
    assert layout.retrain_dir_for(None, "x/best.json", None, results).path == Path("x/retrain")  # beside the file
    assert layout.retrain_dir_for("s", None, "elsewhere", results).path == Path("elsewhere")
    assert layout.lr_find_dir_for("s", None, None, results, "t").path == tmp_path / "s" / "lr_find"
    assert layout.lr_find_dir_for(None, None, None, results, "t").path == tmp_path / "lr-find-t"
    assert layout.lr_find_dir_for("s", None, "elsewhere", results, "t").path == Path("elsewhere")


def test_a_trained_model_is_a_study_s_or_a_file_s(tmp_path):
    with pytest.raises(UserError, match="run `fashion-tune retrain --study s` first"):
        layout.trained_model("s", None, str(tmp_path))
    model = tmp_path / "mine.keras"
    model.write_bytes(b"")
    given = layout.trained_model(None, str(model), str(tmp_path))
    assert (given.model, given.record, given.evaluation.path) == (model, tmp_path / "retrain.json",
                                                                  tmp_path / "evaluation")


def write_export(folder: Path) -> ExportDir:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"")
    return ExportDir(folder)


def test_the_model_to_classify_with(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(layout, "REFERENCE_EXPORT", tmp_path / "reference")
    with pytest.raises(UserError, match="no exported model found"):
        layout.resolve_export(None, str(results))
    reference = write_export(tmp_path / "reference")
    assert layout.resolve_export(None, str(results)) == reference  # before any export of your own
    mine = write_export(tmp_path / "mine")
    pointer = layout.record_latest_export(str(results), mine)
    assert pointer.read_text().strip() == str(mine.path.resolve())
    assert layout.resolve_export(None, str(results)).path == mine.path.resolve()  # the newest export
    other = write_export(tmp_path / "other")
    assert layout.resolve_export(str(other.path), str(results)) == other  # --model wins
    assert layout.resolve_export(str(other.model), str(results)) == other  # a .keras file in it too
    with pytest.raises(UserError, match="no model.keras there"):
        layout.resolve_export(str(tmp_path), str(results))
    (mine.model).unlink()
    with pytest.raises(UserError, match="LATEST_EXPORT points at .*mine, which holds no model.keras"):
        layout.resolve_export(None, str(results))


# ----------------------------------------------------------------------------- the import graph

PACKAGE = ROOT / "fashion_tune"
# The pipeline's steps: each stands on the shared modules (layout, data, model, results, ...),
# none on another step. cli (and baselines, a comparison of trained-and-evaluated models) compose them.
# "search" is the search/ wing: every module in it.
STEPS = {"search", "retrain", "evaluate", "export", "predict", "serve", "lr_find"}
# Modules that import neither Ray nor TensorFlow when imported (TensorFlow only inside functions).
LIGHT = {"atomic", "batches", "calibration", "config", "data", "errors", "hparams", "images", "insights", "layout",
         "model", "plots", "results", "space", "training", "search", "search.study"}
HEAVY = {"ray", "tensorflow", "keras", "optuna"}
# Where Ray may be imported: the search wing (every Tune plug-in beside the Tuner), the service, and
# the one place that starts or joins it.
RAY_HOMES = {"serve", "ray_start"}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name inside it: "results", "search.study", "search"."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts != ("__main__",):
            found[".".join(parts)] = path
    return found


def imports(module: str, top_level_only: bool = False) -> set[str]:
    """What `module` imports: fashion_tune's modules by their first name inside the package ("search"
    for anything in the search wing), others by their package."""
    tree = ast.parse(modules()[module].read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if node.module == "fashion_tune" else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            found.add(parts[1] if parts[0] == "fashion_tune" and len(parts) > 1 else parts[0])
    return found


def step_of(module: str) -> str:
    return module.split(".")[0]


def test_pipeline_steps_are_siblings_not_a_tower():
    for module in sorted(modules()):
        step = step_of(module)
        if step in STEPS:
            assert not imports(module) & STEPS - {step}, f"{module} imports another step: {imports(module) & STEPS}"


def test_ray_is_fenced_in_the_search_wing_the_service_and_ray_start():
    users = {module for module in modules() if "ray" in imports(module)}
    assert users, "no module imports Ray: the fence test reads the imports wrongly"
    outside = sorted(m for m in users if step_of(m) != "search" and m not in RAY_HOMES)
    assert not outside, f"Ray imported outside search/, serve.py and ray_start.py: {outside}"


def test_shared_modules_import_neither_ray_nor_tensorflow_at_import_time():
    assert LIGHT <= set(modules())
    for module in sorted(LIGHT):
        assert not imports(module, top_level_only=True) & HEAVY, module
    assert not imports("layout") & (HEAVY | STEPS | {"data", "model", "results"})  # paths only


def test_no_module_imports_a_module_that_imports_it():
    """No circle in the import graph, counting imports inside functions too."""
    graph = {step_of(m): set() for m in modules()}
    for module in modules():
        graph[step_of(module)] |= imports(module) & set(graph) - {step_of(module)}

    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt))) for nxt in graph[start])

    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, f"modules in an import circle: {circles}"


def test_the_readme_layout_names_every_module():
    """README.md's Layout section has a line for every module of the package (search/'s by their path there)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([a-z_]+\.py)\b", section))
    missing = sorted(path.relative_to(PACKAGE).as_posix() for path in modules().values()
                     if path.name not in named and path.name not in ("__init__.py",))
    assert not missing, f"README.md's Layout section lacks {missing}"


LONGEST = 60  # lines a function may have without saying why in its docstring ("Long because ...")


def test_no_function_is_longer_than_60_lines_without_a_reason():
    long = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST and "Long because" not in (ast.get_docstring(node) or ""):
                    long.append(f"{module}.{node.name} ({lines} lines)")
    assert not long, long


def test_the_committed_results_name_no_machine_s_folders():
    """A committed study reads the same on any clone (results/publish.py makes it so): no JSON value
    under results/ is an absolute path, and no text names a home or a machine's work folder."""
    def absolute_paths(value):
        if isinstance(value, dict):
            return [p for v in value.values() for p in absolute_paths(v)]
        if isinstance(value, list):
            return [p for v in value for p in absolute_paths(v)]
        return [value] if isinstance(value, str) and re.match(r"^/[^/\s]+/", value) else []

    # What is committed: a developer's own studies and benchmark runs under results/ are ignored by git
    # (Tune's search_gen_state-*.json there is a pickle).
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for path in sorted(ROOT / name for name in tracked.stdout.splitlines()):
        if path.suffix == ".json":  # a JSON document, or JSON lines (a trial's result.json)
            values = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
                if path.name == "result.json" else json.loads(path.read_text())
            found += [f"{path.relative_to(ROOT)}: {p}" for p in absolute_paths(values)]
        if path.suffix in (".json", ".md", ".csv", ".yaml"):
            found += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"/(?:work|root|home|Users)/[\w./-]*",
                                                                           path.read_text())]
    assert not found, found[:10]
