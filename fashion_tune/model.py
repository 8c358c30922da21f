"""The CNN: what network a set of hyperparameters means, and the one way to make and load one.

build_model() is a pure function from TrainParams to an uncompiled Keras model (no I/O, no Ray).
compile_model() attaches the optimizer and loss the parameters ask for; compiled_model() seeds,
builds and compiles, the way every trial, retrain, lr-find and baseline starts. load_model() reads
a saved model back with Keras's safe mode on. Sampling lives in the search space, fitting in
trainable.py (a trial) and training.py (everything else).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

from fashion_tune.config import TrainParams
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.errors import UserError

# Batch norm's moving statistics (used at inference, so for every validation score) follow the
# batches with this momentum. With Keras's 0.99 they lag the fast-moving weights of a first epoch:
# in the reference study, trials with batch 256 (211 steps an epoch) trained to 0.76-0.81 accuracy
# in epoch 1 but scored 0.10-0.30 on validation, and ASHA stopped them at that first rung; one
# re-run with 0.9 (PyTorch's default) scored 0.86. See results/reference/benchmarks.md.
BATCH_NORM_MOMENTUM = 0.9


def build_model(params: TrainParams, name: str = "fashion_cnn"):
    """conv blocks (conv [-> BN] -> relu, x convs_per_block; pool; dropout) -> dense -> softmax."""
    import keras

    # Layers take the global dtype policy when they are made: set it for this model only.
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16" if params.mixed_precision else "float32")
    try:
        return _build(params, name)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _build(params: TrainParams, name: str):
    import keras
    from keras import layers

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = inputs
    if params.augment:
        # Active only while training; at inference these layers pass images through.
        x = layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=params.seed, name="shift")(x)
        x = layers.RandomFlip("horizontal", seed=params.seed, name="flip")(x)
    pool = layers.MaxPooling2D if params.pooling == "max" else layers.AveragePooling2D
    for block in range(params.conv_blocks):
        for conv in range(params.convs_per_block):
            x = layers.Conv2D(
                params.block_filters(block),
                params.kernel_size,
                padding="same",
                use_bias=not params.batch_norm,  # batch norm's shift makes a bias redundant
                name=f"block{block + 1}_conv{conv + 1}",
            )(x)
            if params.batch_norm:
                x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"block{block + 1}_bn{conv + 1}")(x)
            x = layers.Activation("relu")(x)
        x = pool(2, name=f"block{block + 1}_pool")(x)
        if params.conv_dropout > 0:
            x = layers.Dropout(params.conv_dropout, seed=params.seed)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(params.dense_units, use_bias=not params.batch_norm, name="dense")(x)
    if params.batch_norm:
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name="dense_bn")(x)
    x = layers.Activation("relu")(x)
    if params.dense_dropout > 0:
        x = layers.Dropout(params.dense_dropout, seed=params.seed)(x)
    # float32 softmax even under mixed precision, so probabilities stay well calibrated.
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def learning_rate(params: TrainParams, steps_per_epoch: int = 1):
    """The optimizer's learning rate: a constant, or a cosine decay over all params.epochs.

    The schedule counts optimizer steps, which a checkpoint saves, so a resumed trial carries on
    along the same curve; and it spans the run's whole budget, so a retrain with more epochs
    stretches it rather than ending early at a low rate.
    """
    import keras

    if params.lr_schedule == "constant":
        return params.learning_rate
    return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=params.epochs * steps_per_epoch)


def make_optimizer(params: TrainParams, steps_per_epoch: int = 1):
    import keras

    rate = learning_rate(params, steps_per_epoch)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=params.weight_decay)
    return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)


def compile_model(model, params: TrainParams, train_images: Optional[int] = None):
    """Attach the optimizer, loss and metrics that `params` asks for; return the model.

    train_images: how many images an epoch has; a learning-rate schedule needs it to count steps.
    """
    if train_images is None and params.lr_schedule != "constant":
        raise ValueError(f"lr_schedule {params.lr_schedule!r} needs the number of training images")
    steps_per_epoch = max(1, math.ceil((train_images or 1) / params.batch_size))
    model.compile(optimizer=make_optimizer(params, steps_per_epoch), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=params.jit_compile)
    return model


def compiled_model(params: TrainParams, train_images: Optional[int] = None,
                   network: Optional[Callable[[TrainParams], object]] = None):
    """Seed Keras with params.seed, build the network (build_model, or `network`: a baseline's
    builder) and compile it as `params` asks. The same weights for the same seed, every time."""
    import keras

    keras.utils.set_random_seed(params.seed)
    return compile_model((network or build_model)(params), params, train_images)


def load_model(path: Path, compile: bool = True):
    """Load a .keras model; safe_mode stays on (no arbitrary code from the file).

    compile=False leaves out the optimizer: all inference needs, and a third of the file to save.
    """
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as e:  # Keras raises several types for a bad file; the user needs one line
        raise UserError(f"{path}: cannot load it as a Keras model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
