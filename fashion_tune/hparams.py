"""The study's one HParams experiment for TensorBoard, and the names of what a trial's events hold.

Tune's TensorBoard logger writes an HParams "experiment" into every trial's events, each listing that
trial's own values with no range (a float without a range cannot be filtered in the dashboard), and
TensorBoard takes the first one it finds. Here the study folder holds the one experiment: every
searched hyperparameter with its range from the space file, how far each trial got, and our metrics
(search/trial_events.py writes each trial's curves and session under the same names).

TensorBoard's HParams dashboard ticks only five hyperparameters for display, those marked as
differing first, then by name (tensorboard's backend_context._sort_and_reduce_to_hparams_limit,
index.js _computeHParams); `differs` serves no other purpose there. So the five marked are the
five to show: the first five of the space file while the study runs, the five that mattered most
once it has ended (insights.py); the others stay one tick away, and every one can be filtered on.

TensorBoard's protos and tensorboardX only: no Ray, no TensorFlow (`report` rewrites the experiment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fashion_tune.space import ParamSpec, SearchSpace

# What a trial reports each epoch (search/trainable.py), as scalar tags and HParams metrics, by these names.
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "epoch_time_s")

# Besides its hyperparameters, each trial's HParams session says how far it got, so the table can
# compare like with like: a trial ASHA stopped after 1 epoch next to one that ran its budget.
EPOCHS_TRAINED, RAN_FULL_BUDGET = "epochs_trained", "ran_full_budget"


# How many hyperparameters TensorBoard's HParams dashboard shows before the user ticks more.
SHOWN_BY_TENSORBOARD = 5


def write_experiment(folder: Path, space: SearchSpace, shown: Sequence[str] = ()) -> None:
    """The study's HParams experiment, in `folder` (the study's, TensorBoard's logdir), replacing
    any written before: every searched hyperparameter with its range, how far each trial got, and
    METRICS. shown: the hyperparameters to show first (default: the space file's order). Built from
    TensorBoard's hparams protos (tensorboardX's copy has no `differs`), written by tensorboardX as
    the trials' events are: TensorBoard's hparams API would import TensorFlow into the driver."""
    from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, Interval, MetricInfo, MetricName
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    ticked = [*shown, *(p.name for p in space.params)][:SHOWN_BY_TENSORBOARD] if space.params else []

    def info(spec: ParamSpec) -> HParamInfo:
        hparam = HParamInfo(name=spec.name, differs=spec.name in ticked)
        if spec.type != "categorical":
            hparam.type = DataType.Value("DATA_TYPE_FLOAT64")
            hparam.domain_interval.CopyFrom(Interval(min_value=spec.low, max_value=spec.high))
            return hparam
        kind = {bool: "BOOL", str: "STRING"}.get(type(spec.choices[0]), "FLOAT64")
        hparam.type = DataType.Value(f"DATA_TYPE_{kind}")
        for choice in spec.choices:
            value = hparam.domain_discrete.values.add()
            if kind == "BOOL":
                value.bool_value = choice
            elif kind == "STRING":
                value.string_value = choice
            else:
                value.number_value = choice
        return hparam

    progress = (ParamSpec(EPOCHS_TRAINED, "int", low=1, high=space.max_epochs),
                ParamSpec(RAN_FULL_BUDGET, "categorical", choices=(True, False)))
    experiment = Experiment(hparam_infos=[info(spec) for spec in (*space.params, *progress)],
                            metric_infos=[MetricInfo(name=MetricName(tag=m), display_name=m)
                                          for m in METRICS])
    content = HParamsPluginData(experiment=experiment, version=0).SerializeToString()
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
    for older in folder.glob("events.out.tfevents.*"):  # TensorBoard reads one experiment: this one
        older.unlink()
    writer = SummaryWriter(str(folder))
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag="_hparams_/experiment", metadata=metadata)]))
    writer.close()
