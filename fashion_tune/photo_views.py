"""Training images as the service sees product photos: each rendered once as a photo, sent through
the photo path's preprocessing, and kept on disk.

A model trained on the 28x28 images has never seen what images.py makes of a photo: a background
not quite flat, an edge eaten by a shadow, noise that survives the shrink (issue 32). Each training
image is rendered by one of robustness.py's renderers (drawn per image), encoded as JPEG and
preprocessed by images.py exactly as `predict` and `serve` do. The conditions have a seed of their
own (SEED), not the one `evaluate` renders the test images with.

The validation images are rendered too, under each of `evaluate`'s tiers (tier_views), so that
whether to train on photos, and how much, is chosen on validation images per tier
(benchmarks/model_choices.py), never on the test images.

Rendering costs about 10 ms an image on one core, so every rendering is cached
($FASHION_TUNE_CACHE/photo_views/, one file per set of images, conditions and VERSION): a search or
retrain pays it once, every trial and epoch after that reads the file. TrainParams.photo_share is
the probability that a training image is shown as its view in an epoch (batches.shuffled draws it
afresh each epoch). A view in which preprocessing found no garment is the raw image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import time

import numpy as np

from fashion_tune import atomic
from fashion_tune.layout import PHOTO_VIEWS_DIR, cache_root

log = logging.getLogger(__name__)

SEED = 7919  # the training views' conditions; `evaluate` renders the test images with its --seed (0)
# Bump when a renderer or the preprocessing changes what a view holds: cached views of an older
# version are then made again rather than read.
VERSION = 1


def with_views(splits):
    """`splits` (data.Splits) with its training images' photo views."""
    return dataclasses.replace(splits, x_train_photos=views(as_uint8(splits.x_train)))


def as_uint8(x: np.ndarray) -> np.ndarray:
    """Model input (N, 28, 28, 1) in [0, 1] back to the images' own uint8 (N, 28, 28), exactly."""
    return np.round(x[..., 0] * 255).astype(np.uint8)


def views(images: np.ndarray, workers: int | None = None) -> np.ndarray:
    """The photo view of every uint8 (N, 28, 28) image, as model input: float32 (N, 28, 28, 1)."""
    from fashion_tune.robustness import TIER_NAMES

    tiers = np.random.default_rng(SEED).integers(len(TIER_NAMES), size=len(images))
    return _cached(images, tiers, SEED, "training images as product photos", workers)


def tier_views(images: np.ndarray, tier_name: str, seed: int = 0, workers: int | None = None) -> np.ndarray:
    """Every image rendered under one of `evaluate`'s tiers (robustness.TIERS), as model input, cached:
    validation images, to choose training options on (issue 32) without the test images."""
    from fashion_tune.robustness import TIER_NAMES

    return _cached(images, np.full(len(images), TIER_NAMES.index(tier_name)), seed,
                   f"images under the {tier_name} tier", workers)


def cached_path(images: np.ndarray, tiers: np.ndarray, seed: int):
    digest = hashlib.sha256(images.tobytes() + tiers.astype(np.int64).tobytes()).hexdigest()[:20]
    return cache_root() / PHOTO_VIEWS_DIR / f"{len(images)}-{digest}-seed{seed}-v{VERSION}.npy"


def _cached(images: np.ndarray, tiers: np.ndarray, seed: int, what: str, workers: int | None) -> np.ndarray:
    from fashion_tune.data import to_model_input

    path = cached_path(images, tiers, seed)
    if path.is_file():
        try:
            return to_model_input(np.load(path))
        except (OSError, ValueError):  # a damaged cache file is made again
            log.warning("%s could not be read: rendering it again", path)
    began = time.perf_counter()
    log.info("rendering %s %s (once; kept in %s)", f"{len(images):,}", what, path.parent)
    rendered = _render(images, tiers, seed, workers)
    buffer = io.BytesIO()
    np.save(buffer, rendered)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buffer.getvalue())
    log.info("rendered in %.0f s", time.perf_counter() - began)
    return to_model_input(rendered)


def _render(images: np.ndarray, tiers: np.ndarray, seed: int, workers: int | None) -> np.ndarray:
    """uint8 (N, 28, 28): each image's view, on the 0-255 scale of the images themselves (the
    preprocessing's output rounded to it, as the raw images are). An image in which preprocessing
    found no garment keeps its raw pixels."""
    from fashion_tune import robustness

    pool = robustness.process_pool(workers)
    try:
        inputs, missing = robustness.photo_inputs(tiers, images, seed, pool)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    rendered = as_uint8(inputs)
    rendered[missing] = images[missing]
    if missing.any():
        log.info("%d of %s had no garment found: those images stay as they are", int(missing.sum()),
                 f"{len(images):,}")
    return rendered
