"""The CNN: what network a set of hyperparameters means, and the one way to make and load one.

build_model() is a pure function from TrainParams to an uncompiled Keras model (no I/O, no Ray).
compile_model() attaches the optimizer and loss the parameters ask for, their variables made at
once (with_training_state); compiled_model() seeds, builds and compiles, the way every trial,
retrain, lr-find and baseline starts. load_model() reads a saved model back with Keras's safe
mode on. Sampling lives in the search space, fitting in search/trainable.py (a trial) and training.py
(everything else).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

from fashion_tune.config import TrainParams
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.errors import UserError
from fashion_tune.quiet_tensorflow import import_tensorflow

# Batch norm's moving statistics (used at inference, so for every validation score) follow the
# batches with this momentum. With Keras's 0.99 they lag the fast-moving weights of a first epoch:
# in the reference study, trials with batch 256 (211 steps an epoch) trained to 0.76-0.81 accuracy
# in epoch 1 but scored 0.10-0.30 on validation, and ASHA stopped them at that first rung; one
# re-run with 0.9 (PyTorch's default) scored 0.86. See results/reference/benchmarks.md.
BATCH_NORM_MOMENTUM = 0.9


def build_model(params: TrainParams, name: str = "fashion_cnn"):
    """conv blocks (conv [-> BN] -> relu, x convs_per_block [+ shortcut]; pool; dropout) -> flatten or
    global average -> [dense ->] softmax."""
    import_tensorflow()  # Keras's backend, started quietly (each door into Keras here does this)
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
    for layer in augmentation_layers(params):
        x = layer(x)
    pool = layers.MaxPooling2D if params.pooling == "max" else layers.AveragePooling2D
    for block in range(params.conv_blocks):
        x = _conv_block(x, params, block)
        x = pool(2, name=f"block{block + 1}_pool")(x)
        if params.conv_dropout > 0:
            x = layers.Dropout(params.conv_dropout, seed=params.seed)(x)
    if params.head == "global_average":  # one mean per feature map: few weights, any position
        x = layers.GlobalAveragePooling2D(name="global_average")(x)
    else:
        x = layers.Flatten()(x)
    if params.dense_units > 0:
        x = layers.Dense(params.dense_units, use_bias=not params.batch_norm, name="dense")(x)
        if params.batch_norm:
            x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name="dense_bn")(x)
        x = layers.Activation("relu")(x)
    if params.dense_dropout > 0:
        x = layers.Dropout(params.dense_dropout, seed=params.seed)(x)
    # float32 softmax even under mixed precision, so probabilities stay well calibrated.
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, params: TrainParams, block: int):
    """convs_per_block x (conv [-> BN] -> relu). Residual: the block's input is added before the last
    relu, through a 1x1 conv where the number of maps changes (ResNet's basic block)."""
    from keras import layers

    filters, shortcut = params.block_filters(block), x
    for conv in range(params.convs_per_block):
        x = _conv_bn(x, params, filters, params.kernel_size, f"block{block + 1}_conv{conv + 1}",
                     f"block{block + 1}_bn{conv + 1}")
        if not (params.residual and conv == params.convs_per_block - 1):
            x = layers.Activation("relu")(x)
    if not params.residual:
        return x
    if shortcut.shape[-1] != filters:
        shortcut = _conv_bn(shortcut, params, filters, 1, f"block{block + 1}_shortcut", f"block{block + 1}_shortcut_bn")
    x = layers.Add(name=f"block{block + 1}_add")([x, shortcut])
    return layers.Activation("relu")(x)


def _conv_bn(x, params: TrainParams, filters: int, kernel_size: int, name: str, bn_name: str):
    from keras import layers

    # batch norm's shift makes a bias redundant
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not params.batch_norm, name=name)(x)
    if params.batch_norm:
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=bn_name)(x)
    return x


# The augmentation options (TrainParams fields), in the order their layers are applied: the image
# is moved first, then its pixels changed, and the occlusion goes on top of the final image.
AUGMENTATIONS = ("flip", "crop_padding", "translation", "rotation", "zoom", "contrast", "brightness", "erasing")


def augmentation_layers(params: TrainParams) -> list:
    """The random changes `params` asks for, as Keras preprocessing layers named after their option.

    They change images only while training (fit); at inference (predict, or a call with
    training=False) they pass images through untouched. Images are float32 in [0, 1], the
    object light on a black background.
    """
    from keras import layers

    chosen = []
    if params.augment:
        # Exactly what the reference study and model trained with (layers, names and seeds).
        chosen += [layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=params.seed, name="shift"),
                   layers.RandomFlip("horizontal", seed=params.seed, name="flip")]
    # Geometric changes fill the uncovered corners with the background's black; pixel changes clip
    # to [0, 1]. Ranges are given as (low, high): Keras reads a single number differently from layer
    # to layer (RandomContrast(0.3) only ever raises the contrast).
    fill = dict(fill_mode="constant", fill_value=0.0)
    pixels = dict(value_range=(0.0, 1.0))
    side = IMAGE_SHAPE[0]
    make = {
        "flip": lambda v, **kw: layers.RandomFlip("horizontal", **kw),
        # ResNet's "pad 4 pixels, crop 28x28 at random" is a whole-pixel shift with a black border:
        # a translation that rounds to the nearest pixel (no blur the test images never have).
        "crop_padding": lambda v, **kw: layers.RandomTranslation((-v / side, v / side), (-v / side, v / side), **fill,
                                                                  interpolation="nearest", **kw),
        "translation": lambda v, **kw: layers.RandomTranslation((-v, v), (-v, v), **fill, **kw),
        "rotation": lambda v, **kw: layers.RandomRotation((-v / 360, v / 360), **fill, **kw),  # a fraction of a turn
        "zoom": lambda v, **kw: layers.RandomZoom((-v, v), **fill, **kw),  # width follows: the aspect ratio is kept
        "contrast": lambda v, **kw: layers.RandomContrast((v, v), **pixels, **kw),
        "brightness": lambda v, **kw: layers.RandomBrightness((-v, v), **pixels, **kw),
        # A rectangle with sides 14-57% of the image's, filled with noise as the Random Erasing
        # paper found best (arXiv:1708.04896); (v, v): erased with probability exactly v.
        "erasing": lambda v, **kw: layers.RandomErasing((v, v), scale=(0.02, 0.33), fill_value=None, **pixels, **kw),
    }
    for offset, option in enumerate(AUGMENTATIONS, start=1):
        value = getattr(params, option)
        if value > 0 and not (option == "flip" and params.augment):  # augment flips already
            # A seed of its own: layers seeded alike draw the same numbers (every large rotation
            # would come with a large zoom). float32 under mixed precision too: RandomErasing
            # fails in float16, and the images stay exact; the first conv casts them.
            chosen.append(make[option](value, seed=params.seed + offset, name=option, dtype="float32"))
    return chosen


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
    model.compile(optimizer=make_optimizer(params, steps_per_epoch), loss=loss(params), metrics=["accuracy"],
                  jit_compile=params.jit_compile)
    return with_training_state(model)


def with_training_state(model):
    """Create the optimizer's and the metrics' variables now, as Keras itself does before fit under
    a distribution strategy. Left to the first step, they are created inside tf.function, which then
    traces the training step twice: 0.8 s more before every trial's first epoch on 2 cores
    (benchmarks/trial_startup.py). Keras has no public call for it; tests/test_model.py checks it."""
    import numpy as np

    example = (np.zeros((1, *model.input_shape[1:]), "float32"), np.zeros((1,), "int32"))
    model._symbolic_build(data_batch=example)
    return model


def loss(params: TrainParams):
    """Cross-entropy on the class indices; with label smoothing, against targets that give the true
    class 1 - s + s/10 and every other class s/10 (Keras's sparse cross-entropy has no smoothing)."""
    if params.label_smoothing == 0:
        return "sparse_categorical_crossentropy"
    from fashion_tune.keras_objects import SmoothedSparseCrossentropy

    return SmoothedSparseCrossentropy(smoothing=params.label_smoothing)


def compiled_model(params: TrainParams, train_images: Optional[int] = None,
                   network: Optional[Callable[[TrainParams], object]] = None):
    """Seed Keras with params.seed, build the network (build_model, or `network`: a baseline's
    builder) and compile it as `params` asks. The same weights for the same seed, every time."""
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(params.seed)
    return compile_model((network or build_model)(params), params, train_images)


def inference_copy(model):
    """The same network and weights without training state: no optimizer, so no slot variables
    (twice the weights' size with Adam) in a saved file. Neither clone_model nor from_config alone
    does it: both compile the copy of a compiled model, including a member nested in a TTA or
    ensemble model, whose config carries its compile settings."""
    copy = model.__class__.from_config(_without_compile_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _without_compile_config(config):
    if isinstance(config, dict):
        return {key: _without_compile_config(value) for key, value in config.items() if key != "compile_config"}
    if isinstance(config, list):
        return [_without_compile_config(value) for value in config]
    return config


def load_model(path: Path, compile: bool = True):
    """Load a .keras model; safe_mode stays on (no arbitrary code from the file).

    compile=False leaves out the optimizer: all inference needs, and a third of the file to save.
    """
    import_tensorflow()
    import keras  # and with it our own layers and loss (keras_objects.py, by fashion_tune/__init__.py)

    try:
        model = keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as e:  # Keras raises several types for a bad file; the user needs one line
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        raise UserError(f"{path}: cannot load it as a Keras model ({why})") from None
    return with_training_state(model) if model.compiled else model  # trained on or evaluated, so its state too
