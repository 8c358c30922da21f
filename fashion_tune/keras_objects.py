"""The package's own Keras objects, the ones a saved model can hold: the smoothed loss, the mirror
layer and the temperature layer, each registered with Keras under "fashion_tune>Name".

Keras loads a `.keras` file whose config names one of them only once its class is registered, and
registering means importing this module, which imports Keras. `fashion_tune/__init__.py` imports it
as soon as Keras is imported, by anyone: `import fashion_tune` is then all that
`keras.models.load_model` needs for any model the tool wrote, while a command that never touches
a model (`--help`, `report`) never imports Keras. model.py, averaging.py and calibration.py take
the classes from here.
"""

from __future__ import annotations

from fashion_tune.quiet_tensorflow import import_tensorflow

import_tensorflow()  # Keras's backend, started quietly, before Keras itself
import keras  # noqa: E402  (after the quiet start above)

PACKAGE = "fashion_tune"  # Keras's registered names: "fashion_tune>SmoothedSparseCrossentropy", ...


@keras.saving.register_keras_serializable(package=PACKAGE)
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on class indices against smoothed targets: the true class gets 1 - s + s/K,
    every other class s/K (Keras's sparse cross-entropy has no label smoothing)."""

    def __init__(self, smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        targets = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.smoothing)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HorizontalFlip(keras.layers.Layer):
    """The mirror image, always (unlike RandomFlip, which is off at inference)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)  # (batch, height, width, channels): mirror the width

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class Temperature(keras.layers.Layer):
    """Probabilities rescaled by a temperature T: softmax(log(p) / T) (calibration.rescaled, as a layer)."""

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities):
        log_p = keras.ops.log(keras.ops.clip(probabilities, 1e-12, 1.0))
        return keras.ops.softmax(log_p / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
