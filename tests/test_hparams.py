"""The study's HParams experiment as TensorBoard reads it: ranges, and which five it shows first."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fashion_tune import hparams
from fashion_tune.space import load_space
from tests.conftest import SPACES


def experiment_in(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).experiment


def marked(experiment):
    return [info.name for info in experiment.hparam_infos if info.differs]


def test_the_dashboard_shows_the_space_files_first_five_then_the_five_that_mattered(tmp_path):
    space = load_space(SPACES / "default.yaml")
    names = [p.name for p in space.params]
    assert len(names) > hparams.SHOWN_BY_TENSORBOARD
    hparams.write_experiment(tmp_path, space)
    # TensorBoard ticks the hyperparameters marked as differing (five at most): the space file's first five.
    assert marked(experiment_in(tmp_path)) == names[:5]
    # After the study, the five most important, and still one experiment in the folder.
    mattered = ["dense_dropout", "learning_rate", "filters", "batch_norm", "conv_blocks", "pooling"]
    hparams.write_experiment(tmp_path, space, shown=mattered)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    experiment = experiment_in(tmp_path)
    assert sorted(marked(experiment)) == sorted(mattered[:5])
    assert {info.name for info in experiment.hparam_infos} == {*names, "epochs_trained", "ran_full_budget"}
