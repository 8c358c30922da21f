"""Training images seen as product photos (photo_views.py): rendered once by the photo path's own
renderers and preprocessing, cached, and made again when the cache is damaged."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_tune import photo_views, robustness


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_TUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "photo_views"


@pytest.fixture(scope="module")
def originals(fashion_dir):
    from fashion_tune.data import load

    return load(str(fashion_dir)).train_images[:24]


def test_views_are_the_photo_paths_answer_for_each_image_rendered_once_and_cached(cache, originals, monkeypatch):
    views = photo_views.views(originals, workers=1)
    assert views.shape == (24, 28, 28, 1) and views.dtype == np.float32 and 0 <= views.min() <= views.max() <= 1
    # Each view is what images.py makes of the image rendered under its drawn tier, on the images' 0-255 scale.
    tiers = np.random.default_rng(photo_views.SEED).integers(len(robustness.TIERS), size=24)
    assert len(set(tiers.tolist())) > 2  # the tiers are mixed
    expected, missing = robustness.photo_inputs(tiers, originals, photo_views.SEED)
    expected[missing] = originals[missing][..., None] / 255
    assert np.abs(views - expected).max() <= 0.5 / 255 + 1e-6
    assert not np.allclose(views[..., 0], originals / 255, atol=0.05)  # not the images themselves
    assert [p.name for p in cache.iterdir()] == [photo_views.cached_path(originals, tiers, photo_views.SEED).name]

    def no_rendering(*args):
        raise AssertionError("rendered again")

    monkeypatch.setattr(robustness, "photo_inputs", no_rendering)
    assert np.array_equal(photo_views.views(originals, workers=1), views)  # read from the cache


def test_a_damaged_cache_file_is_rendered_again(cache, originals):
    first = photo_views.views(originals[:6], workers=1)
    (path,) = cache.iterdir()
    path.write_bytes(b"not an array")
    assert np.array_equal(photo_views.views(originals[:6], workers=1), first)
    assert np.load(path).shape == (6, 28, 28)


def test_tier_views_are_evaluates_tiers_with_its_seed(cache, originals):
    views = photo_views.tier_views(originals[:6], "uneven_light", workers=1)
    expected, missing = robustness.tier_inputs(robustness.TIER_NAMES.index("uneven_light"), originals[:6], seed=0)
    assert not missing.any() and np.abs(views - expected).max() <= 0.5 / 255 + 1e-6
    assert not np.array_equal(photo_views.views(originals[:6], workers=1), views)  # the training views differ


def test_a_fit_with_photo_share_trains_on_the_views(cache, fashion_dir):
    """training.fit (retrain's) shows the views: the same seed with and without them trains differently."""
    from fashion_tune import data, training
    from fashion_tune.config import DataSettings, TrainParams
    from fashion_tune.model import compiled_model

    splits = photo_views.with_views(data.prepare(DataSettings(data_dir=str(fashion_dir), subset=300)))
    losses = {}
    for share in (0.0, 1.0):
        params = TrainParams(epochs=1, conv_blocks=1, filters=4, dense_units=8, batch_size=64, photo_share=share)
        fitted = training.fit(compiled_model(params, len(splits.y_train)), params, splits, verbose=0)
        losses[share] = fitted.history["loss"][0]
    assert losses[0.0] != losses[1.0]


@pytest.mark.slow
def test_a_search_whose_space_sets_photo_share_renders_the_views_for_its_trials(tmp_path, fashion_dir, write_space):
    import os
    import subprocess
    import sys

    space = write_space("metric: val_accuracy\nfixed: {epochs: 1, conv_blocks: 1, filters: 4, dense_units: 8, "
                        "photo_share: 0.5}\nparams:\n  learning_rate: {type: categorical, choices: [0.001, 0.003]}\n"
                        "search: {num_samples: 2, max_concurrent: 2, tpe_startup_trials: 2}\n")
    env = {**os.environ, "FASHION_TUNE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "fashion_tune", "search", "--space", str(space), "--subset", "300",
                           "--data-dir", str(fashion_dir), "--results-dir", str(tmp_path / "r"), "--name", "photos"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rendering 270 training images as product photos" in done.stderr
    assert len(list((tmp_path / "cache" / "photo_views").iterdir())) == 1
    rows = (tmp_path / "r" / "photos" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 3 and all("completed" in row for row in rows[1:]), rows
