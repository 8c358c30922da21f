"""Models that answer with an average: test-time flip averaging (TTA) and ensembles of retrained
models, each built as one Keras model, so that evaluate, export, predict and serve use them
unchanged and the averaging travels inside the .keras file and the SavedModel.

On validation (results/reference/benchmarks.md, "Model choices") flip averaging added 0.23
points on average, an ensemble of three seeds 0.3-0.5; each costs its factor in inference compute.
"""

from __future__ import annotations

from typing import Sequence

from fashion_tune.data import IMAGE_SHAPE
from fashion_tune.keras_objects import HorizontalFlip  # Keras, started quietly
from fashion_tune.model import inference_copy


def averaged(members: Sequence, flip: bool, name: str = "fashion_averaged"):
    """One model whose probabilities are the mean of every member's, on the image and (flip) on
    its mirror image. Members are trained models mapping (N, 28, 28, 1) images to probabilities;
    they are copied without their optimizers (inference needs none) as member1, member2, ..."""
    import keras

    if len(members) == 1 and not flip:
        return members[0]
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    views = [inputs, HorizontalFlip(name="mirror")(inputs)] if flip else [inputs]
    answers = []
    for number, member in enumerate(members, start=1):
        copy = inference_copy(member)
        copy.name = f"member{number}"
        answers += [copy(view) for view in views]
    return keras.Model(inputs, keras.layers.Average(name="probabilities")(answers), name=name)


def describe(flip: bool, members: int) -> str:
    """What a model averages, in words (logs, model card)."""
    parts = [f"an ensemble of {members} models"] if members > 1 else []
    parts += ["each image and its mirror image"] if flip else []
    return "averages " + " over ".join(parts) if parts else "one model, no averaging"
