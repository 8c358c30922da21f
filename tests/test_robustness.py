"""The robustness tiers' renderer: every tier draws what its description says, the same photo
for the same seed (so every run and every model is scored on the same photos), and a tier's
model inputs come back in order whether or not worker processes render them."""

import io

import numpy as np
import pytest
from PIL import Image

from fashion_tune import data, robustness


@pytest.fixture(scope="module")
def originals(fashion_dir) -> np.ndarray:
    return data.load(str(fashion_dir)).test_images[:12]


def photo(tier: str, original: np.ndarray, index: int = 0, seed: int = 0) -> np.ndarray:
    number = robustness.TIER_NAMES.index(tier)
    jpeg = robustness.TIERS[number].render(original, robustness.image_rng(seed, number, index))
    assert jpeg[:2] == b"\xff\xd8"  # every tier is sent as a JPEG
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32) / 255


def corners(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[:8, :8], pixels[:8, -8:], pixels[-8:, :8], pixels[-8:, -8:]]).reshape(-1, 3)


def test_the_same_seed_draws_the_same_photo_and_another_seed_another(originals):
    number = robustness.TIER_NAMES.index("uneven_light")
    render = robustness.TIERS[number].render
    first = render(originals[0], robustness.image_rng(0, number, 0))
    assert render(originals[0], robustness.image_rng(0, number, 0)) == first
    assert render(originals[0], robustness.image_rng(1, number, 0)) != first


def test_each_tier_draws_its_conditions(originals):
    for i, original in enumerate(originals):
        packshot = photo("packshot", original, i)
        assert corners(packshot).mean() > 0.9 and 200 <= packshot.shape[0] == packshot.shape[1] <= 400
        dark = photo("light_on_dark", original, i)
        assert corners(dark).mean() < 0.3 and dark.max() > 0.7
    shapes = {photo("off_centre", o, i).shape[:2] for i, o in enumerate(originals)}
    assert any(h != w for h, w in shapes)  # non-square canvases
    uneven = photo("uneven_light", originals[0])
    assert np.ptp([c.mean() for c in np.split(corners(uneven), 4)]) > 0.03  # the light is not even
    small = photo("corrupted", originals[0])
    assert small.shape[:2] == (28, 28)  # Fashion-MNIST-C style: the 28x28 image itself


def test_tier_inputs_are_the_same_with_worker_processes(originals):
    alone, missing_alone = robustness.tier_inputs(1, originals, seed=0)
    pool = robustness.process_pool(2)
    try:
        pooled, missing_pooled = robustness.tier_inputs(1, originals, seed=0, pool=pool)
    finally:
        pool.shutdown()
    assert alone.shape == (12, 28, 28, 1) and np.array_equal(alone, pooled) and np.array_equal(missing_alone,
                                                                                               missing_pooled)
