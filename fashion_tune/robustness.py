"""Robustness tiers: the test images rendered as the photos a retailer actually uploads.

Each tier renders test images as product photos under named conditions (seeded per tier and
image, so every run and every model sees the same photos), encodes each as JPEG and sends it
through images.to_model_input_from_bytes, the path `predict` and `serve` use; the model is then
scored on what preprocessing made of them. A photo in which preprocessing finds no garment counts
as a wrong answer. The renderer is ours, and deliberately simple: an object's Fashion-MNIST
intensity is how much of a garment colour covers the background at each pixel.
"""

from __future__ import annotations

import colorsys
import io
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import numpy as np

EXAMPLES = 8  # photos per tier shown in the report
CHUNK = 250  # images per worker task


@dataclass(frozen=True)
class Tier:
    name: str
    description: str
    render: Callable  # (uint8 28x28 image, np.random.Generator) -> JPEG bytes


def _hsv(rng, hue=(0.0, 1.0), saturation=(0.0, 1.0), value=(0.0, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.uniform(*hue), rng.uniform(*saturation), rng.uniform(*value)), np.float32)


def _coverage(image: np.ndarray, size: int, tilt: float = 0.0) -> np.ndarray:
    """The 28x28 image enlarged to size x size (Lanczos), optionally tilted: float in [0, 1]."""
    from PIL import Image

    big = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
    if tilt:
        big = big.rotate(tilt, resample=Image.Resampling.BILINEAR, expand=True)
    return np.clip(np.asarray(big, np.float32) / 255.0, 0, 1)


def _place(coverage: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.float32)
    canvas[top: top + coverage.shape[0], left: left + coverage.shape[1]] = coverage
    return canvas


def _centred(coverage: np.ndarray, side: int) -> np.ndarray:
    top = (side - coverage.shape[0]) // 2
    return _place(coverage, side, side, top, (side - coverage.shape[1]) // 2)


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _paint(coverage: np.ndarray, background: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A garment of `colour` over a background (a colour, or an (H, W, 3) image)."""
    a = coverage[..., None]
    return background * (1 - a) + colour * a


def render_packshot(image: np.ndarray, rng) -> bytes:
    side = int(rng.integers(200, 401))
    coverage = _centred(_coverage(image, round(side * rng.uniform(0.7, 0.9))), side)
    white = np.float32(rng.uniform(0.94, 1.0))
    return _jpeg(_paint(coverage, white, _hsv(rng, value=(0.0, 0.35))), int(rng.integers(85, 96)))


def render_uneven_light(image: np.ndarray, rng) -> bytes:
    from scipy import ndimage

    side = int(rng.integers(240, 401))
    coverage = _centred(_coverage(image, round(side * rng.uniform(0.6, 0.85))), side)
    y, x = np.mgrid[-1:1:side * 1j, -1:1:side * 1j].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)  # light falls off by 10-30% across the photo, in any direction
    ramp = 1 - rng.uniform(0.10, 0.30) * (np.cos(angle) * x + np.sin(angle) * y + 1) / 2
    light = ramp * (1 - rng.uniform(0.0, 0.2) * (x * x + y * y) / 2)  # and a vignette
    offset = np.array([np.sin(angle), np.cos(angle)]) * rng.uniform(0.02, 0.05) * side  # shadow away from the light
    shadow = ndimage.gaussian_filter(ndimage.shift(coverage, offset, order=1), 0.03 * side)
    background = np.ones(3, np.float32) * rng.uniform(0.8, 0.97) + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    backdrop = background * (1 - rng.uniform(0.15, 0.35) * np.clip(shadow, 0, 1))[..., None]
    photo = _paint(coverage, backdrop, _hsv(rng, value=(0.0, 0.6))) * light[..., None]
    photo = photo + rng.normal(0, rng.uniform(0.01, 0.03), photo.shape).astype(np.float32)
    return _jpeg(photo, int(rng.integers(60, 91)))


def render_off_centre(image: np.ndarray, rng) -> bytes:
    longest = int(rng.integers(240, 401))
    aspect = rng.uniform(0.6, 1.6)
    height, width = (longest, round(longest * aspect)) if aspect < 1 else (round(longest / aspect), longest)
    # at most 0.7 of the shorter side, so that tilted by 15 degrees (x1.22) it still fits inside the margins
    coverage = _coverage(image, round(min(height, width) * rng.uniform(0.45, 0.7)), tilt=rng.uniform(-15, 15))
    margin = max(2, round(0.02 * longest))
    top = int(rng.integers(margin, max(margin, height - coverage.shape[0] - margin) + 1))
    left = int(rng.integers(margin, max(margin, width - coverage.shape[1] - margin) + 1))
    coverage = _place(coverage[: height - top, : width - left], height, width, top, left)
    photo = _paint(coverage, _hsv(rng, saturation=(0.1, 0.5), value=(0.75, 1.0)), _hsv(rng, value=(0.0, 0.45)))
    if rng.random() < 0.3:  # a thin drawn frame
        frame = int(rng.integers(1, 4))
        colour = _hsv(rng, value=(0.0, 0.4))
        photo[:frame], photo[-frame:], photo[:, :frame], photo[:, -frame:] = colour, colour, colour, colour
    return _jpeg(photo, int(rng.integers(75, 96)))


def render_light_on_dark(image: np.ndarray, rng) -> bytes:
    side = int(rng.integers(200, 401))
    coverage = _centred(_coverage(image, round(side * rng.uniform(0.65, 0.9))), side)
    dark = _hsv(rng, saturation=(0.0, 0.5), value=(0.0, 0.2))
    light = _hsv(rng, saturation=(0.0, 0.4), value=(0.75, 1.0))
    photo = _paint(coverage, dark, light)
    photo = photo + rng.normal(0, 0.01, photo.shape).astype(np.float32)
    return _jpeg(photo, int(rng.integers(75, 96)))


CORRUPTIONS = ("blur", "noise", "contrast", "brightness", "jpeg")


def drawn_corruption(rng) -> str:
    """Which corruption render_corrupted gives an image: its generator's first draw."""
    return CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]


def render_corrupted(image: np.ndarray, rng) -> bytes:
    """Fashion-MNIST-C style: one corruption, at a random severity, of the 28x28 image itself."""
    from scipy import ndimage

    x = image.astype(np.float32) / 255.0
    kind = drawn_corruption(rng)
    quality = 95
    if kind == "blur":
        x = ndimage.gaussian_filter(x, rng.uniform(0.5, 1.0))
    elif kind == "noise":
        x = x + rng.normal(0, rng.uniform(0.04, 0.08), x.shape)
    elif kind == "contrast":
        x = (x - x.mean()) * rng.uniform(0.4, 0.7) + x.mean()
    elif kind == "brightness":
        x = x + rng.uniform(0.1, 0.3)
    else:
        quality = int(rng.integers(10, 26))
    return _jpeg(np.repeat(np.clip(x, 0, 1)[..., None], 3, axis=-1), quality)


TIERS = (
    Tier("packshot", "clean pack-shot: dark garment of any colour on white, enlarged to 200-400 px", render_packshot),
    Tier("uneven_light", "off-white background, light falling off 10-30% plus a vignette, a soft shadow, "
         "sensor noise, JPEG quality 60-90", render_uneven_light),
    Tier("off_centre", "off-centre on a non-square canvas (aspect 0.6-1.6) with small margins, tilted up to "
         "15 degrees, a coloured background, a thin frame on 30%", render_off_centre),
    Tier("light_on_dark", "light garment on a dark background", render_light_on_dark),
    Tier("corrupted", "the 28x28 image with one corruption: blur, noise, low contrast, brightness or JPEG "
         "quality 10-25 (Fashion-MNIST-C style)", render_corrupted),
)
TIER_NAMES = tuple(t.name for t in TIERS)


def image_rng(seed: int, tier: int, index: int):
    """The generator image `index` is rendered with under tier number `tier` (seed: evaluate's 0)."""
    return np.random.default_rng([seed, tier, index])


def _inputs_of_chunk(tiers: np.ndarray, images: np.ndarray, first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render (image i under tier tiers[i]) and preprocess a run of images: model inputs, and which
    ones had no garment found."""
    from fashion_tune import images as photos

    inputs = np.zeros((len(images), 28, 28, 1), np.float32)
    missing = np.zeros(len(images), bool)
    for i, (tier_index, image) in enumerate(zip(tiers, images)):
        tier = TIERS[tier_index]
        jpeg = tier.render(image, image_rng(seed, int(tier_index), first + i))
        try:
            inputs[i] = photos.to_model_input_from_bytes(jpeg, f"{tier.name} #{first + i}")
        except photos.NoGarmentFound:
            missing[i] = True
    return inputs, missing


def photo_inputs(tiers: np.ndarray, images: np.ndarray, seed: int, pool=None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for every image, image i rendered under tier tiers[i], in order (chunks go to
    `pool` when given); and which ones had no garment found."""
    starts = range(0, len(images), CHUNK)
    args = [(tiers[s: s + CHUNK], images[s: s + CHUNK], s, seed) for s in starts]
    results = list(pool.map(_inputs_of_chunk, *zip(*args)) if pool else [_inputs_of_chunk(*a) for a in args])
    if not results:
        return np.zeros((0, 28, 28, 1), np.float32), np.zeros(0, bool)
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def tier_inputs(tier_index: int, images: np.ndarray, seed: int, pool=None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for every image under one tier, in order; chunks go to `pool` when given."""
    return photo_inputs(np.full(len(images), tier_index), images, seed, pool)


def examples(tier_index: int, images: np.ndarray, seed: int, count: int = EXAMPLES) -> list[bytes]:
    """The JPEGs of a tier's first `count` photos, for the report's example strip."""
    return [TIERS[tier_index].render(image, image_rng(seed, tier_index, i)) for i, image in enumerate(images[:count])]


def process_pool(workers: int | None = None):
    """Worker processes for rendering: spawned, so they start without the parent's TensorFlow, and
    deaf to Ctrl-C, which reaches the whole process group: the command alone hears it, stops, and
    says so (exit 130), rather than a worker dying mid-task under it."""
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    if workers == 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=signal.signal,
                               initargs=(signal.SIGINT, signal.SIG_IGN))


def measure(model, images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0,
            workers: int | None = None) -> dict:
    """Accuracy of `model` under every tier on the first `count` test images (all when count >=
    len(images)): {"images", "seed", "raw_accuracy", "tiers": {name: {...}}}; and the examples."""
    from fashion_tune import batches
    from fashion_tune.data import to_model_input

    images, labels = images[:count], labels[:count]
    raw = float((model.predict(batches.in_order(to_model_input(images)), verbose=0).argmax(axis=1) == labels).mean())
    tiers, strips = {}, {}
    pool = process_pool(workers)
    try:
        for index, tier in enumerate(TIERS):
            inputs, missing = tier_inputs(index, images, seed, pool)
            predicted = model.predict(batches.in_order(inputs), verbose=0).argmax(axis=1)
            correct = (predicted == labels) & ~missing
            tiers[tier.name] = {"description": tier.description, "accuracy": float(correct.mean()),
                                "drop": raw - float(correct.mean()), "no_garment_found": int(missing.sum())}
            strips[tier.name] = (examples(index, images, seed), inputs[:EXAMPLES], predicted[:EXAMPLES])
    finally:
        if pool:
            # After Ctrl-C, the tasks not yet begun are dropped: waiting for every queued render
            # (the workers ignore Ctrl-C) held the command past two minutes in CI.
            pool.shutdown(cancel_futures=True)
    return {"images": int(len(images)), "seed": seed, "raw_accuracy": raw, "tiers": tiers}, strips
