"""What flip averaging and ensembles cost at inference: per-image latency and file size of the
shipped model as saved, and of the trained network inside it alone, with flip TTA, and as
ensembles of 2 and 3 (with TTA), each through ExportedModel, the path `predict` and `serve` answer
through.

A saved model may already average (retrain's --flip-tta, --top) and calibrate (--calibrate): the
network alone is its first member, taken out, so each row means what its name says whatever the
shipped model holds. The ensembles are copies of that network (an ensemble's cost does not depend
on its weights). The variants are measured in alternation, --pairs rounds, so a noisy host's drift
lands on each alike; each round times --calls single-image calls (a person uploading one photo)
and a batch of 256.

    python benchmarks/inference_cost.py [--model results/reference/model/model.keras] [--pairs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, alternate, paired_ratios

sys.path.insert(0, str(ROOT))

SHIPPED = "shipped model, as saved"
# Built from the network alone: (members, flip averaging).
VARIANTS = {"network alone": (1, False), "flip TTA": (1, True), "ensemble of 2 + TTA": (2, True),
            "ensemble of 3 + TTA": (3, True)}


def nested_layers(model):
    """Every layer inside `model`, however deep (a calibration wraps an averaging model, which wraps
    its members)."""
    for layer in getattr(model, "layers", []):
        yield layer
        yield from nested_layers(layer)


def first_member(model):
    """The first trained network inside a model that averages (averaging.py names its members
    member1, member2, ...); None if the model is one network."""
    return next((layer for layer in nested_layers(model) if layer.name == "member1"), None)


def what_it_holds(model) -> str:
    """The shipped model's averaging and calibration, in words, from its layers."""
    names = {layer.name for layer in nested_layers(model)}
    members = sum(1 for name in names if name.startswith("member") and name[6:].isdigit())
    parts = ([f"{members} members"] if members > 1 else []) + (["flip averaging"] if "mirror" in names else []) + \
        (["temperature"] if "temperature" in names else [])
    return ", ".join(parts) or "one network"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "results/reference/model/model.keras"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="single-image calls timed per round")
    args = parser.parse_args()

    from fashion_tune.averaging import averaged
    from fashion_tune.classifier import ExportedModel
    from fashion_tune.layout import ExportDir
    from fashion_tune.model import load_model

    folder = Path(tempfile.mkdtemp(prefix="inference_cost-"))
    shipped = load_model(args.model, compile=False)
    network = first_member(shipped) or shipped
    built = {SHIPPED: shipped,
             **{name: averaged([network] * members, flip) for name, (members, flip) in VARIANTS.items()}}
    exported, sizes = {}, {}
    for name, model in built.items():
        export = ExportDir(folder / name.replace(" ", "_").replace("+", "and").replace(",", ""))
        export.path.mkdir()
        model.save(export.model)
        sizes[name] = export.model.stat().st_size / 2**20
        exported[name] = ExportedModel(export)
    one = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    batch = np.random.default_rng(1).random((256, 28, 28, 1), dtype=np.float32)

    def measure(model: ExportedModel):
        def run() -> dict:
            model.probabilities(one), model.probabilities(batch)  # traced and warm
            singles = []
            for _ in range(args.calls):
                began = time.perf_counter()
                model.probabilities(one)
                singles.append(time.perf_counter() - began)
            began = time.perf_counter()
            model.probabilities(batch)
            return {"single_ms": 1000 * statistics.median(singles),
                    "batch_ms": 1000 * (time.perf_counter() - began) / len(batch)}
        return run

    figures = alternate({name: measure(model) for name, model in exported.items()}, args.pairs)
    print(f"\nmodel {args.model} ({what_it_holds(shipped)}); {args.pairs} rounds, {args.calls} single-image calls each")
    print("variant                  size (MiB)  one image (ms, median of rounds)  per image in a batch of 256 (ms)")
    for name, rounds in figures.items():
        print(f"{name:<25}{sizes[name]:>10.1f}  {statistics.median(r['single_ms'] for r in rounds):>32.2f}  "
              f"{statistics.median(r['batch_ms'] for r in rounds):>32.3f}")
    base = [r["single_ms"] for r in figures["network alone"]]
    for name in [SHIPPED, *list(VARIANTS)[1:]]:
        print(paired_ratios(f"{name} / network alone, one image", [r["single_ms"] for r in figures[name]], base))


if __name__ == "__main__":
    main()
