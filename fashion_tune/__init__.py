"""fashion_tune: distributed hyperparameter search for a Fashion-MNIST clothing classifier."""

import importlib
import os

import wrapt

__version__ = "0.1.0"

# oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI or newer,
# yet on an AVX2 CPU they train our networks about 1.4-1.5x faster (benchmarks/cpu_kernels.py). Read once,
# when TensorFlow is imported, so it is set here, before any of our modules can import it, in the
# driver and in every Ray worker that unpickles a trial. A value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Our Keras objects (keras_objects.py) are registered the moment Keras is imported, by us or by the
# user: `import fashion_tune` is all `keras.models.load_model` needs for a model the tool wrote, and a
# command that never loads a model never pays for Keras. (wrapt: a post-import hook, as Python has none.)
wrapt.register_post_import_hook(lambda keras: importlib.import_module("fashion_tune.keras_objects"), "keras")
