"""What "every core busy" reads on this host: one training process per core, nothing else, with
/proc/stat sampled every 5 s as quick_study.py samples a study.

Each process prints the idle wall seconds before each epoch's first batch. With `--input
arrays` the processes train on NumPy arrays as Keras feeds them (tf.data autotuning on), which
left most epochs idle 5-9 s with two processes (2026-11-23; see fashion_tune/batches.py); the
default feeds them as the package does. quick_study.py's CPU figure means something only beside
this one, measured on the same host at about the same time.

    python benchmarks/cpu_ceiling.py [--processes 2] [--epochs 4] [--input batches|arrays]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import ROOT, sample_cpu_busy

sys.path.insert(0, str(ROOT))


def train(epochs: int, feed: str) -> None:
    """One trial's work on one thread: the 3-block model at batch 256 on random images."""
    import numpy as np

    from fashion_tune import batches
    from fashion_tune.config import TrainParams
    from fashion_tune.model import compiled_model
    from fashion_tune.quiet_tensorflow import import_tensorflow

    tf = import_tensorflow()
    import keras  # after TensorFlow's quiet start
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    images = np.random.default_rng(0).random((6000, 28, 28, 1), dtype=np.float32)
    labels = np.random.default_rng(1).integers(0, 10, 6000)
    params = TrainParams(batch_size=256, conv_blocks=3, epochs=epochs)
    idle = []  # per epoch: wall seconds minus the process's CPU seconds from epoch begin to first batch

    class EpochStart(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = (time.perf_counter(), time.process_time())

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                idle.append((time.perf_counter() - self.began[0]) - (time.process_time() - self.began[1]))

    model = compiled_model(params, len(images))
    if feed == "arrays":
        model.fit(images, labels, batch_size=256, epochs=epochs, verbose=0, callbacks=[EpochStart()])
    else:
        model.fit(**batches.for_fit(images, labels, 256), epochs=epochs, verbose=0, callbacks=[EpochStart()])
    print("idle at the start of each epoch (s): " + " ".join(f"{s:.1f}" for s in idle), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="training processes (default: 2, one a core here)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--input", choices=("batches", "arrays"), default="batches",
                        help="batches: as the package feeds a fit (default); arrays: NumPy arrays straight to Keras")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return train(args.epochs, args.input)

    children = [subprocess.Popen([sys.executable, __file__, "--child", "--epochs", str(args.epochs),
                                 "--input", args.input], cwd=ROOT)
                for _ in range(args.processes)]
    _, samples = sample_cpu_busy(lambda: all(child.poll() is None for child in children))  # all still training
    for child in children:
        child.wait()
    busy = samples["cpu"][2:-1]  # set aside: the imports and model builds, and the sample in which one ended
    print(f"{args.processes} single-thread training processes fed {args.input}, {len(busy)} samples of 5 s: CPU busy "
          f"mean {100 * statistics.mean(busy):.1f}%, min {100 * min(busy):.0f}%; every sample: "
          + " ".join(f"{100 * b:.0f}" for b in busy))


if __name__ == "__main__":
    main()
