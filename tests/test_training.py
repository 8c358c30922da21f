"""training.fit's early stopping across an interruption: a fit that goes on from its backup keeps
the best epoch found before it (its loss, its weights, the epochs waited since)."""

import csv

import numpy as np

from fashion_tune.config import TrainParams
from fashion_tune.layout import BackupDir

SMALL = dict(conv_blocks=1, filters=4, dense_units=8, batch_size=64, epochs=8)


def test_early_stopping_goes_on_from_the_best_epoch_before_an_interruption(tmp_path, fashion_dir):
    """A backup after epoch 4 whose best held-out loss was epoch 2's: with patience 2 the resumed
    fit has already waited 2 epochs, stops after one more, and ends on epoch 2's weights, which
    is also the epoch it reports (Keras's own EarlyStopping would end on epoch 5's)."""
    import keras

    from fashion_tune import atomic, data, training
    from fashion_tune.config import DataSettings
    from fashion_tune.model import compiled_model

    params = TrainParams(**SMALL)
    splits = data.prepare(DataSettings(data_dir=str(fashion_dir), subset=1000), validation=True)
    backup = BackupDir(tmp_path / "backup")
    backup.path.mkdir()
    model = compiled_model(params)
    atomic.save_model(model, backup.epoch_model(4))
    best = [np.full_like(w, 0.01 * i) for i, w in enumerate(model.get_weights())]  # recognisable weights
    np.savez(backup.best_weights, *best)
    with open(backup.history, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "val_loss", training.EPOCH_SECONDS])
        for epoch, val_loss in enumerate([0.9, 0.001, 0.5, 0.6]):  # epoch 2 (0-based 1): a loss no epoch beats
            writer.writerow([epoch, 1.0, val_loss, 1.0])

    result = training.fit(keras.models.load_model(backup.epoch_model(4)), params, splits, patience=2,
                          backup=backup, verbose=0)
    assert result.epochs_run == 5 and result.chosen_epoch == 2
    assert all(np.array_equal(a, b) for a, b in zip(result.model.get_weights(), best))


def test_a_best_epoch_that_is_the_last_saved_one_is_the_model_the_fit_goes_on_from(tmp_path, fashion_dir):
    """Interrupted after epoch 4 was saved but before its best weights were: epoch 4 (the best)
    is the model the backup holds, and the fit ends on it when no later epoch beats it."""
    import keras

    from fashion_tune import atomic, data, training
    from fashion_tune.config import DataSettings
    from fashion_tune.model import compiled_model

    params = TrainParams(**SMALL)
    splits = data.prepare(DataSettings(data_dir=str(fashion_dir), subset=1000), validation=True)
    backup = BackupDir(tmp_path / "backup")
    backup.path.mkdir()
    atomic.save_model(compiled_model(params), backup.epoch_model(4))
    with open(backup.history, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "val_loss", training.EPOCH_SECONDS])
        for epoch, val_loss in enumerate([0.9, 0.5, 0.6, 0.001]):  # epoch 4: a loss no epoch beats
            writer.writerow([epoch, 1.0, val_loss, 1.0])

    saved = keras.models.load_model(backup.epoch_model(4))
    epoch_4 = saved.get_weights()
    result = training.fit(saved, params, splits, patience=1, backup=backup, verbose=0)
    assert result.epochs_run == 5 and result.chosen_epoch == 4
    assert all(np.array_equal(a, b) for a, b in zip(result.model.get_weights(), epoch_4))


def test_the_best_weights_are_backed_up_whenever_the_held_out_loss_improves(tmp_path, fashion_dir):
    from fashion_tune import data, training
    from fashion_tune.config import DataSettings
    from fashion_tune.model import compiled_model

    params = TrainParams(**{**SMALL, "epochs": 2})
    splits = data.prepare(DataSettings(data_dir=str(fashion_dir), subset=1000), validation=True)
    backup = BackupDir(tmp_path)
    result = training.fit(compiled_model(params), params, splits, patience=5, backup=backup, verbose=0)
    with np.load(backup.best_weights) as saved:
        kept = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert all(np.array_equal(a, b) for a, b in zip(kept, result.model.get_weights()))  # the weights it ended on
