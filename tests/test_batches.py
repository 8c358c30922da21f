"""The input pipelines every fit and predict reads (batches.py)."""

from __future__ import annotations

import numpy as np

from fashion_tune import batches
from fashion_tune.data import Splits


def arrays(n: int = 70):
    """Images whose first pixel is their index, so a batch says which images it holds."""
    x = np.zeros((n, 28, 28, 1), dtype=np.float32)
    x[:, 0, 0, 0] = np.arange(n)
    return x, np.arange(n, dtype=np.int32) % 10


def epoch_order(dataset) -> list[np.ndarray]:
    return [images.numpy()[:, 0, 0, 0].astype(int) for images, _ in dataset]


def test_shuffled_gives_every_image_once_an_epoch_in_a_new_order_with_its_label():
    x, y = arrays()
    dataset = batches.shuffled(x, y, batch_size=32)
    first, second = epoch_order(dataset), epoch_order(dataset)
    assert [len(b) for b in first] == [32, 32, 6]  # the short last batch is kept, as Keras keeps it
    assert sorted(np.concatenate(first)) == list(range(70)) == sorted(np.concatenate(second))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    for images, labels in dataset:
        assert np.array_equal(images.numpy()[:, 0, 0, 0].astype(int) % 10, labels.numpy())


def test_shuffled_order_follows_the_seed():
    import keras

    x, y = arrays()
    orders = []
    for seed in (3, 3, 4):
        keras.utils.set_random_seed(seed)
        orders.append(np.concatenate(epoch_order(batches.shuffled(x, y, batch_size=32))))
    assert np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], orders[2])


def test_in_order_keeps_the_order_with_and_without_labels():
    x, y = arrays()
    assert np.concatenate(epoch_order(batches.in_order(x, y, batch_size=32))).tolist() == list(range(70))
    images_only = [b.numpy()[:, 0, 0, 0].astype(int) for b in batches.in_order(x, batch_size=64)]
    assert [len(b) for b in images_only] == [64, 6]


def test_fit_arguments_validate_on_the_held_out_slice_or_none():
    x, y = arrays()
    held_out = Splits(x_train=x, y_train=y, x_val=x[:20], y_val=y[:20], source="", checksums={})
    given = batches.for_fit(x, y, 32, held_out.validation)
    assert np.concatenate(epoch_order(given["validation_data"])).tolist() == list(range(20))
    assert sorted(np.concatenate(epoch_order(given["x"]))) == list(range(70)) and given["shuffle"] is False
    none = Splits(x_train=x, y_train=y, x_val=None, y_val=None, source="", checksums={})
    assert batches.for_fit(x, y, 32, none.validation)["validation_data"] is None


def test_autotuning_is_off():
    """tf.data's autotuning thread made most epochs start 5-9 s late with two training processes
    on two cores (batches.py); benchmarks/cpu_ceiling.py measures the stall itself."""
    x, y = arrays()
    for dataset in (batches.shuffled(x, y, 32), batches.in_order(x, y)):
        assert dataset.options().autotune.enabled is False


def test_a_model_trains_and_predicts_from_them_as_from_arrays():
    from fashion_tune.config import TrainParams
    from fashion_tune.model import compiled_model

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64)
    model = compiled_model(TrainParams(conv_blocks=1, filters=8, dense_units=16, epochs=1))
    history = model.fit(**batches.for_fit(x, y, 16, (x, y)), epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    assert np.allclose(model.predict(batches.in_order(x), verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_each_image_is_its_photo_view_with_the_share_asked_for_drawn_afresh_each_epoch_and_seeded():
    import keras

    x, y = arrays(400)
    photos = x.copy()
    photos[:, 0, 1, 0] = 1.0  # a photo view is marked by its second pixel

    def epochs_of(share: float, seed: int = 0, epochs: int = 2) -> list[dict]:
        """For each epoch: image index -> whether it was shown as its photo view (labels still its own)."""
        keras.utils.set_random_seed(seed)
        dataset = batches.shuffled(x, y, 64, photos, share)
        shown = []
        for _ in range(epochs):
            seen = {}
            for images, labels in dataset:
                index = images.numpy()[:, 0, 0, 0].astype(int)
                assert np.array_equal(index % 10, labels.numpy())
                seen.update(zip(index.tolist(), (images.numpy()[:, 0, 1, 0] == 1).tolist()))
            assert sorted(seen) == list(range(400))  # every image once an epoch, as its view or not
            shown.append(seen)
        return shown

    assert not any(any(e.values()) for e in epochs_of(0.0)) and all(all(e.values()) for e in epochs_of(1.0))
    first, second = epochs_of(0.3)
    assert 0.24 < np.mean(list(first.values())) < 0.36 and 0.24 < np.mean(list(second.values())) < 0.36
    assert first != second  # drawn afresh each epoch
    assert epochs_of(0.3) == [first, second] and epochs_of(0.3, seed=1) != [first, second]
    raw = np.concatenate([images.numpy() for images, _ in batches.shuffled(x, y, 64, None, 0.5)])
    assert not (raw[:, 0, 1, 0] == 1).any()  # no views given: the images as they are


def test_a_fit_asked_for_photo_views_without_them_says_so():
    import pytest

    x, y = arrays(10)
    splits = Splits(x_train=x, y_train=y, x_val=None, y_val=None, source="", checksums={})
    assert splits.photo_views_for(0.0) is None
    with pytest.raises(ValueError, match="photo_share is 0.25, but these splits were prepared without photo views"):
        splits.photo_views_for(0.25)
