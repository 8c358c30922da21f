"""TensorFlow started without its C++ start-up chatter, so the terminal tells our story, and set to
the CPUs its process was given.

On a CPU-only machine TensorFlow's import prints half a dozen lines straight to the process's
stderr (file descriptor 2, from C++, out of reach of Python's logging and of TF_CPP_MIN_LOG_LEVEL,
which absl ignores before it is initialised): no CUDA drivers, cuInit failed, absl's warning
about logging before InitializeLog, CPU instructions it was not built for, oneDNN's notice. The
import (and the GPU lookup that logs cuInit) runs with stderr captured, and only the lines known
to be such chatter are dropped: anything else TensorFlow says is written back. `--debug` (which
sets FASHION_TUNE_DEBUG, inherited by Ray's worker processes) shows everything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

log = logging.getLogger(__name__)

DEBUG_ENV = "FASHION_TUNE_DEBUG"

# The start-up lines of TensorFlow 2.21 and XLA on a machine with no GPU or a CPU it was not
# built for; each alone is harmless. Matched anywhere in the line.
CHATTER = re.compile(
    r"absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|cuda_executor\.cc|cuda_diagnostics\.cc"
    r"|failed call to cuInit|cpu_feature_guard\.cc|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags|oneDNN custom operations are on"
    r"|TF_ENABLE_ONEDNN_OPTS|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer"
    r"|TF-TRT Warning|This TensorFlow binary is optimized"
)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def import_tensorflow():
    """Import TensorFlow (Keras's backend) once per process, its chatter dropped; return the module.

    None where Keras was told to run on another backend (KERAS_BACKEND=jax: the model code alone
    runs there, as in benchmarks/keras_backend_gpu.py on a GPU machine without TensorFlow).
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return None
    if "tensorflow" in sys.modules or debugging():
        import tensorflow

        return tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's own INFO lines, once absl is up
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices("GPU")  # where cuInit fails, and says so
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not CHATTER.search(line)]
            sys.stderr.write("".join(kept))
    return tensorflow


def configure_tensorflow(threads: int) -> None:
    """Give TensorFlow the process's CPU share (a trial's, a service replica's) as threads, and let
    it share a GPU.

    Must run before TensorFlow's first op: afterwards it can no longer change these, and
    says so with a RuntimeError (then we keep what it has, e.g. in a reused worker).
    """
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        # TensorFlow takes a whole GPU by default; with fractional GPUs per trial it must grow.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as e:
        log.debug("TensorFlow already initialised, keeping its settings: %s", e)
