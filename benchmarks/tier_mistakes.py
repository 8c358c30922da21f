"""Where an exported model loses accuracy on product photos, on validation images only.

The images retrain held out (its --val-fraction of the training set, by its seed: the model never
trained on them, and the test images stay unread) are rendered under each of `evaluate`'s tiers
(photo_views.tier_views, cached) and scored with flip averaging, as the shipped model answers. The
corrupted tier is also split by its corruption (blur, noise, contrast, brightness, JPEG), each scored
as decoded (the corrupted 28x28 image fed as it is) and as preprocessed (images.py, as `predict` and
`serve` see it): what preprocessing wins back, and what it cannot. --picture saves, for each
corruption, images the model gets right raw and wrong preprocessed: raw | as decoded | preprocessed.

    python benchmarks/tier_mistakes.py --data-dir ../shared/data/fashion-mnist --model results/reference/model \
        [--seed 0] [--val-fraction 0.1] [--picture mistakes.png] [--out tier_mistakes.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default="results/reference/model", help="an exported model's folder")
    parser.add_argument("--seed", type=int, default=0, help="retrain's --seed: which images it held out")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="retrain's held-out share")
    parser.add_argument("--picture", help="a PNG of mistakes per corruption")
    parser.add_argument("--out", default="tier_mistakes.json")
    args = parser.parse_args()

    from fashion_tune.quiet_tensorflow import import_tensorflow

    import_tensorflow()  # before Keras: no start-up chatter

    from fashion_tune import photo_views, robustness
    from fashion_tune.classifier import ExportedModel
    from fashion_tune.config import DataSettings
    from fashion_tune.data import prepare
    from fashion_tune.layout import ExportDir

    splits = prepare(DataSettings(data_dir=args.data_dir, seed=args.seed, val_fraction=args.val_fraction))
    images, labels = photo_views.as_uint8(splits.x_val), splits.y_val
    model = ExportedModel(ExportDir(Path(args.model)))
    right_raw = model.probabilities(splits.x_val).argmax(1) == labels
    out = {"images": len(labels), "model": args.model, "raw": float(right_raw.mean()), "tiers": {}}
    preprocessed = {}
    for tier in robustness.TIERS:
        preprocessed[tier.name] = photo_views.tier_views(images, tier.name)
        right = model.probabilities(preprocessed[tier.name]).argmax(1) == labels
        out["tiers"][tier.name] = float(right.mean())
        print(f"{tier.name:<14} {right.mean():.4f} ({right.mean() - right_raw.mean():+.4f} against raw)", flush=True)
    kinds, decoded = corrupted_as_decoded(images)
    right_decoded = model.probabilities(decoded).argmax(1) == labels
    right_corrupted = model.probabilities(preprocessed["corrupted"]).argmax(1) == labels
    out["corruptions"] = {}
    for kind in robustness.CORRUPTIONS:
        of_kind = kinds == kind
        out["corruptions"][kind] = {"images": int(of_kind.sum()), "raw": float(right_raw[of_kind].mean()),
                                    "as_decoded": float(right_decoded[of_kind].mean()),
                                    "preprocessed": float(right_corrupted[of_kind].mean())}
        print(f"  {kind:<11} raw {right_raw[of_kind].mean():.4f}, as decoded {right_decoded[of_kind].mean():.4f}, "
              f"preprocessed {right_corrupted[of_kind].mean():.4f} ({of_kind.sum()} images)", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.picture:
        lost = right_raw & ~right_corrupted
        picture(splits.x_val, decoded, preprocessed["corrupted"], kinds, lost, args.picture)


def corrupted_as_decoded(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's corruption under the corrupted tier (evaluate's seed 0), and the corrupted image
    as decoded, with no preprocessing: model input."""
    from PIL import Image

    from fashion_tune import robustness

    tier = robustness.TIER_NAMES.index("corrupted")
    kinds, decoded = [], np.zeros(images.shape + (1,), np.float32)
    for i, image in enumerate(images):
        # the corruption render_corrupted gives this image, then the image it renders
        kinds.append(robustness.drawn_corruption(robustness.image_rng(0, tier, i)))
        jpeg = robustness.render_corrupted(image, robustness.image_rng(0, tier, i))
        decoded[i, :, :, 0] = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), np.float32) / 255.0
    return np.array(kinds), decoded


def picture(raw, decoded, preprocessed, kinds, lost, path: str, per_kind: int = 6) -> None:
    from PIL import Image

    from fashion_tune import robustness

    columns = []
    for kind in robustness.CORRUPTIONS:
        chosen = np.nonzero(lost & (kinds == kind))[0][:per_kind]
        rows = [np.concatenate([raw[i, :, :, 0], decoded[i, :, :, 0], preprocessed[i, :, :, 0], np.ones((28, 2))],
                               axis=1) for i in chosen]
        rows += [np.zeros((28, 86))] * (per_kind - len(rows))
        columns.append(np.concatenate(rows, axis=0))
    grid = np.concatenate(columns, axis=1)
    Image.fromarray(np.round(grid * 255).astype(np.uint8)).resize((grid.shape[1] * 3, grid.shape[0] * 3),
                                                                   Image.Resampling.NEAREST).save(path)


if __name__ == "__main__":
    main()
