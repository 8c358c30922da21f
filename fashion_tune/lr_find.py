"""Learning-rate range test: raise the learning rate exponentially batch by batch, watch the loss.

The loss falls fastest somewhere below the rate where it starts to climb; that steepest point is
the suggestion, and [suggestion / 10, the rate of the lowest loss] a sensible range for a space
file. Writes lr_find.csv and lr_find.png, and returns the figures.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import time
from typing import Any, Mapping, Optional

import numpy as np

from fashion_tune import atomic, batches, data, layout, plots
from fashion_tune.config import DataSettings, TrainParams
from fashion_tune.errors import UserError
from fashion_tune.layout import LrFindDir
from fashion_tune.model import compiled_model
from fashion_tune.results import read_best_config

log = logging.getLogger(__name__)

SMOOTHING = 0.9  # exponential moving average of the per-batch loss
DIVERGED = 4.0  # stop once the smoothed loss is this many times its lowest value


def lr_find(params: TrainParams, data_settings: DataSettings, out: LrFindDir, min_lr: float = 1e-4,
            max_lr: float = 1e-1, steps: int = 100) -> dict:
    """Sweep the learning rate over `steps` batches of `params`' model; write the curve to `out`."""
    if not 0 < min_lr < max_lr:
        raise UserError(f"--min-lr {min_lr} and --max-lr {max_lr}: need 0 < min-lr < max-lr")
    if steps < 10:
        raise UserError(f"--steps is {steps}, must be >= 10")
    splits = data.prepare(dataclasses.replace(data_settings, seed=params.seed), validation=False)
    # The sweep sets the rate batch by batch itself: a configured schedule would fight it.
    sweep_params = dataclasses.replace(params, lr_schedule="constant")
    model = compiled_model(sweep_params)
    sweep = sweep_callback(min_lr, max_lr, steps)
    batches_per_epoch = math.ceil(len(splits.y_train) / params.batch_size)
    model.fit(**batches.for_fit(splits.x_train, splits.y_train, params.batch_size),
              epochs=math.ceil(steps / batches_per_epoch), callbacks=[sweep], verbose=0)
    rates, losses = np.array(sweep.rates), np.array(sweep.smoothed)
    if len(rates) < 5:
        raise UserError(f"the loss diverged after {len(rates)} batches; lower --min-lr")
    steepest, lowest = steepest_fall(rates, losses)
    suggestion = float(rates[steepest])
    out.path.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["step", "learning_rate", "loss", "smoothed_loss"])
    writer.writerows(zip(range(1, len(rates) + 1), sweep.rates, sweep.losses, sweep.smoothed))
    atomic.write_text(out.table, table.getvalue())
    atomic.write_bytes(out.plot, plots.loss_vs_learning_rate(rates, losses, suggestion, "learning-rate range test"))
    result = {"suggestion": suggestion, "lowest_loss_rate": float(rates[lowest]),
              "range": [max(suggestion / 10, float(rates[0])), float(rates[lowest])],  # within what was swept
              "steps": len(rates), "diverged": sweep.diverged, "plot": out.plot}
    log.info("suggested learning_rate %.2e (steepest fall); lowest loss at %.2e; curve in %s",
             suggestion, result["lowest_loss_rate"], out.plot)
    return result


def steepest_fall(rates: np.ndarray, losses: np.ndarray) -> tuple[int, int]:
    """The step where the smoothed loss falls fastest against log(learning rate), before its lowest
    point, and that lowest point's step. The first tenth of the sweep is left out: there the loss
    falls fast at any rate (the network's first steps, and the moving average warming up), and the
    sweep's own first rate would be suggested (and a range below what was swept)."""
    lowest = int(np.argmin(losses))
    start = min(len(rates) // 10, lowest)
    steepest = start
    if lowest - start >= 2:
        steepest += int(np.argmin(np.gradient(losses[start: lowest + 1], np.log(rates[start: lowest + 1]))))
    if steepest == start and start < lowest:
        log.warning("the loss fell fastest at the start of the sweep (%.1e): the best rate may lie lower; "
                    "try a lower --min-lr", rates[start])
    return steepest, lowest


def run(study: Optional[str], config: Optional[str], results_dir: str, out: Optional[str],
        data_flags: Mapping[str, Any], **sweep) -> dict:
    """The `lr-find` command: a study's best configuration (--study / --config) or the TrainParams
    defaults, swept on the data the flags name; written where layout.lr_find_dir_for says."""
    params, config_path = TrainParams(), None
    if study or config:
        config_path = layout.best_config_of(study, config, results_dir)
        params = TrainParams.from_config(read_best_config(config_path)["params"])
    folder = layout.lr_find_dir_for(study, config_path, out, results_dir, time.strftime("%Y%m%d-%H%M%S"))
    reads = [config_path] if config_path else []
    layout.check_output(folder.path, "--out" if out else "the lr_find folder", reads=reads)
    return lr_find(params, DataSettings.layered(data_flags), folder, **sweep)


def for_space_file(result: dict) -> str:
    """The suggested range as a line for a space file's params."""
    low, high = result["range"]
    return f"learning_rate: {{type: float, low: {low:.1e}, high: {high:.1e}, log: true}}"


def sweep_callback(min_lr: float, max_lr: float, steps: int):
    """A Keras callback that raises the learning rate exponentially from min_lr to max_lr over
    `steps` batches, records each batch's loss, and stops once the loss diverges."""
    import keras

    class Sweep(keras.callbacks.Callback):
        """Sets the learning rate before each batch and records that batch's own loss."""

        def __init__(self):
            super().__init__()
            self.rates, self.losses, self.smoothed = [], [], []
            self.diverged = False
            self._average = 0.0  # exponential moving average, before bias correction
            self._mean, self._seen_in_epoch = 0.0, 0

        def on_epoch_begin(self, epoch, logs=None):
            self._mean, self._seen_in_epoch = 0.0, 0

        def on_train_batch_begin(self, batch, logs=None):
            step = len(self.rates)
            self.model.optimizer.learning_rate.assign(min_lr * (max_lr / min_lr) ** (step / (steps - 1)))

        def on_train_batch_end(self, batch, logs=None):
            # Keras reports the epoch's running mean; recover this batch's loss from it.
            mean = float(logs["loss"])
            n = self._seen_in_epoch + 1
            loss = n * mean - (n - 1) * self._mean
            self._mean, self._seen_in_epoch = mean, n
            self.rates.append(float(self.model.optimizer.learning_rate.numpy()))
            self.losses.append(loss)
            self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
            self.smoothed.append(self._average / (1 - SMOOTHING ** len(self.losses)))  # bias-corrected
            if not math.isfinite(loss) or self.smoothed[-1] > DIVERGED * min(self.smoothed):
                self.diverged = True
                self.model.stop_training = True
            if len(self.rates) >= steps:
                self.model.stop_training = True

    return Sweep()
