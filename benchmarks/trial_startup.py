"""What a trial costs before its first epoch: new process, TensorFlow import, data from the object
store, model build, first step (graph tracing).

The driver puts the training split in Ray's object store once (as `search` does with
tune.with_parameters), then starts --repeats actors one after another; each times its own steps
with fashion_tune's real functions, twice: as the first trial of a new process, then as a trial
in that process reused (a study's trials after the first on each worker: search/study.py
reuse_actors), which begins by clearing Keras's state as search/trainable.py does.

    python benchmarks/trial_startup.py --data-dir ../shared/data/fashion-mnist [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import ROOT

sys.path.insert(0, str(ROOT))

STEPS = ("process_s", "tensorflow_import_s", "data_from_object_store_s", "model_build_s", "first_step_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import ray

    from fashion_tune import data
    from fashion_tune.config import DataSettings

    splits = data.prepare(DataSettings(data_dir=args.data_dir))
    ray.init(address="local", include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    began = time.perf_counter()
    ref = ray.put(splits)
    put_s = time.perf_counter() - began

    @ray.remote(num_cpus=1)
    class TrialProcess:
        def __init__(self, requested_at: float):
            self.process_s = time.time() - requested_at  # a new worker process, Ray's and our imports

        def start(self, refs: list) -> dict:
            timings, self.process_s = {"process_s": self.process_s}, 0.0  # a reused process is there already
            t = time.perf_counter()
            from fashion_tune.quiet_tensorflow import configure_tensorflow

            configure_tensorflow(threads=1)  # imports TensorFlow, as a trial's first step does
            import keras

            keras.backend.clear_session(free_memory=True)  # as search/trainable.py does
            timings["tensorflow_import_s"], t = time.perf_counter() - t, time.perf_counter()
            trial_splits = ray.get(refs[0])  # in a list, so Ray hands over the reference; numpy arrays come zero-copy
            timings["data_from_object_store_s"], t = time.perf_counter() - t, time.perf_counter()
            from fashion_tune.config import TrainParams
            from fashion_tune.model import compiled_model

            params = TrainParams()
            model = compiled_model(params, len(trial_splits.y_train))
            timings["model_build_s"], t = time.perf_counter() - t, time.perf_counter()
            model.train_on_batch(trial_splits.x_train[: params.batch_size], trial_splits.y_train[: params.batch_size])
            timings["first_step_s"] = time.perf_counter() - t
            return timings

    new, reused = [], []
    for _ in range(args.repeats):
        actor = TrialProcess.remote(time.time())
        new.append(ray.get(actor.start.remote([ref])))
        reused.append(ray.get(actor.start.remote([ref])))
        ray.kill(actor)
    ray.shutdown()
    size_mb = (splits.x_train.nbytes + splits.x_val.nbytes) / 1e6
    print(f"training split in the object store: {size_mb:.0f} MB, put once by the driver in {put_s:.2f} s")
    print(f"median of {args.repeats} (default model, 1 TensorFlow thread):  new process  reused process")
    for step in STEPS:
        new_s, reused_s = statistics.median(r[step] for r in new), statistics.median(r[step] for r in reused)
        print(f"  {step:<26} {new_s:18.3f} s {reused_s:12.3f} s")
    totals = [statistics.median(sum(r[s] for s in STEPS) for r in runs) for runs in (new, reused)]
    print(f"  {'before the first epoch':<26} {totals[0]:18.3f} s {totals[1]:12.3f} s")


if __name__ == "__main__":
    main()
