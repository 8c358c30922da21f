"""The batches every fit and predict reads: in-memory arrays as a tf.data pipeline, autotuning off.

Given NumPy arrays, Keras builds a tf.data pipeline with autotuning on. Autotuning runs a thread
that sleeps between optimisation rounds, and TensorFlow 2.21 does not wake it when an epoch ends:
dropping the epoch's iterator waits for that thread to finish its sleep (seen in gdb). Measured on
this 2-core host (benchmarks/cpu_ceiling.py, 2026-11-23): two training processes fed arrays began
most epochs 5-9 s idle and kept the cores 70-85% busy; fed these pipelines, 100% busy, no idle
start. In-memory batches need no tuning: one batch is gathered while the model trains on the last.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from fashion_tune.quiet_tensorflow import import_tensorflow


def shuffled(x: np.ndarray, y: np.ndarray, batch_size: int, photos: Optional[np.ndarray] = None,
             photo_share: float = 0.0):
    """(images, labels) batches in a new random order each epoch, the last batch possibly short.
    With `photos` (photo_views.views of x) and a photo_share, each image is its photo view with that
    probability, drawn afresh each epoch. The order and the draws follow TensorFlow's global seed
    (model.compiled_model sets it from params.seed)."""
    tf = import_tensorflow()
    order = tf.data.Dataset.range(len(x)).shuffle(len(x), reshuffle_each_iteration=True)
    if photos is None or not photo_share:
        return _gathered(order.batch(batch_size), x, y)
    # Dataset.random, not a random op inside a map: under a global seed the op would draw the same
    # values every epoch (each epoch's iterator starts it again), the dataset draws new ones.
    draws = tf.data.Dataset.random(rerandomize_each_iteration=True)
    chosen = draws.map(lambda r: r % 1_000_000 < round(photo_share * 1_000_000))
    arrays = (tf.constant(x), tf.constant(y), tf.constant(photos))
    batches = tf.data.Dataset.zip(tf.data.Dataset.zip(order, chosen).batch(batch_size),
                                  tf.data.Dataset.from_tensors(arrays).repeat())
    return _finished(batches.map(_photo_or_image))


def in_order(x: np.ndarray, y: Optional[np.ndarray] = None, batch_size: int = 512):
    """Batches of images (with their labels, when given) in their order: for scoring and predicting."""
    tf = import_tensorflow()
    return _gathered(tf.data.Dataset.range(len(x)).batch(batch_size), x, y)


def for_fit(x: np.ndarray, y: np.ndarray, batch_size: int, validation: Optional[tuple] = None,
            photos: Optional[np.ndarray] = None, photo_share: float = 0.0) -> dict:
    """Keras fit's data arguments: shuffled(x, y, ...) to train on, and the (images, labels) of
    `validation`, when given, in order to score after every epoch (model.fit(**for_fit(...), ...))."""
    return {"x": shuffled(x, y, batch_size, photos, photo_share),
            "shuffle": False,  # shuffled already; Keras warns of a shuffle it cannot do otherwise
            "validation_data": in_order(*validation) if validation is not None else None}


def _gathered(indices, x: np.ndarray, y: Optional[np.ndarray]):
    tf = import_tensorflow()
    arrays = (tf.constant(x),) if y is None else (tf.constant(x), tf.constant(y))
    # The arrays come in beside the indices rather than captured by the map function, as Keras's
    # own pipeline does, so nothing ever serialises hundreds of megabytes of images into a graph.
    batches = tf.data.Dataset.zip(indices, tf.data.Dataset.from_tensors(arrays).repeat())
    batches = batches.map(lambda i, data: tuple(tf.gather(a, i) for a in data) if y is not None
                          else tf.gather(data[0], i))
    return _finished(batches)


def _photo_or_image(picked, data):
    tf = import_tensorflow()
    indices, chosen = picked
    x, y, photos = (tf.gather(a, indices) for a in data)
    return tf.where(chosen[:, None, None, None], photos, x), y


def _finished(batches):
    tf = import_tensorflow()
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False  # no graph rewrite to pay for
    return batches.prefetch(1).with_options(options)
