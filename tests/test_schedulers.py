"""The pausing schedulers (search/schedulers.py: Ray's HyperBand and our successive halving on it) never
leave a trial paused for ever: not when a trial fails mid-bracket, not after --resume, where trials
come back at any epoch into new brackets.

Ray's scheduler classes are driven here as Tune's controller drives them (tune_controller.py: a
result goes to on_trial_result and the decision is applied; stop_trial calls on_trial_remove for a
paused or pending trial and on_trial_complete for a running one; a failed trial reaches
on_trial_error), over thousands of random runs, in milliseconds each. That the real controller
does the same end to end is tests/test_search.py's (the pausing schedulers and the interrupted
halving study)."""

from __future__ import annotations

import random

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from fashion_tune.search import schedulers

MAX_EPOCHS, GRACE, REDUCTION = 3, 1, 2  # the smoke space's: rungs at epochs 1, 2, 3


class Run:
    """A trial as the scheduler sees it (status, is_saving) and the epoch its checkpoint holds."""

    def __init__(self, name: str, epoch: int, status: str, quality: float):
        self.trial_id, self.epoch, self.status, self.quality = name, epoch, status, quality
        self.is_saving, self.last_result, self.named = False, None, False

    def init_local_path(self):  # Tune's Trial: names its folder (schedulers.NamesTrialFolders)
        self.named = True

    def __repr__(self):
        return f"{self.trial_id}({self.status}, epoch {self.epoch})"


class Controller:
    """What the scheduler calls back: stop_trial, with the callbacks Tune's own makes."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def stop_trial(self, trial: Run):
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.status = Trial.TERMINATED


def run_study(seed: int, scheduler_name: str, resumed: bool, failure_rate: float, slots: int = 2) -> list[Run]:
    """Six trials to their end or to a stall; returns those left unfinished (none: no stall).
    resumed: each trial comes back finished or at a random epoch, as --resume hands them over."""
    rng = random.Random(seed)
    scheduler = schedulers.make(scheduler_name, GRACE, REDUCTION, MAX_EPOCHS)
    scheduler.set_search_properties("val_accuracy", "max")
    controller = Controller(scheduler)
    trials = []
    for i in range(6):
        finished = resumed and rng.random() < 0.25
        epoch = MAX_EPOCHS if finished else rng.randint(0, MAX_EPOCHS) if resumed else 0
        trial = Run(f"t{i}", epoch, Trial.TERMINATED if finished else Trial.PENDING, rng.random())
        trials.append(trial)
        scheduler.on_trial_add(controller, trial)  # --resume hands the scheduler every trial, finished ones too
    for _ in range(500):
        running = [t for t in trials if t.status == Trial.RUNNING]
        while len(running) < slots and (chosen := scheduler.choose_trial_to_run(controller)):
            chosen.status = Trial.RUNNING
            running.append(chosen)
        if not running:
            return [t for t in trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
        trial = rng.choice(running)
        if rng.random() < failure_rate:
            scheduler.on_trial_error(controller, trial)
            trial.status = Trial.ERROR
        elif trial.epoch == MAX_EPOCHS:  # its function returns: Tune stops it
            controller.stop_trial(trial)
        else:
            trial.epoch += 1
            trial.last_result = {"training_iteration": trial.epoch, "val_accuracy": trial.quality + 0.01 * trial.epoch}
            decision = scheduler.on_trial_result(controller, trial, trial.last_result)
            if decision == TrialScheduler.PAUSE:
                trial.status = Trial.PAUSED
            elif decision == TrialScheduler.STOP:
                controller.stop_trial(trial)
    raise AssertionError(f"seed {seed}: still running after 500 steps: {trials}")


@pytest.mark.parametrize("scheduler_name", ["halving", "hyperband"])
@pytest.mark.parametrize("resumed, failure_rate", [(False, 0.05), (True, 0.0), (True, 0.05)])
def test_no_trial_is_left_paused_for_ever(scheduler_name, resumed, failure_rate):
    stalled = {seed: left for seed in range(400) if (left := run_study(seed, scheduler_name, resumed, failure_rate))}
    assert not stalled, f"{len(stalled)} of 400 runs stalled, e.g. {next(iter(stalled.items()))}"


def test_a_trial_the_bracket_forgot_to_unpause_goes_on_when_nothing_else_runs():
    """The state a replayed 128-trial HyperBand study stalled in: a bracket halved, its good trial
    paused but not marked to go on, nothing running. The scheduler starts it rather than wait for
    ever (without the safety net, choose_trial_to_run returns None here). Successive halving: its
    first rung is epoch 1 (HyperBand's first bracket compares later); the net is HyperBand's, shared."""
    scheduler = schedulers.make("halving", GRACE, REDUCTION, MAX_EPOCHS)
    scheduler.set_search_properties("val_accuracy", "max")
    controller = Controller(scheduler)
    good, bad = Run("good", 0, Trial.PENDING, 0.9), Run("bad", 0, Trial.PENDING, 0.1)
    for trial in (good, bad):
        scheduler.on_trial_add(controller, trial)
    for trial in (good, bad):
        trial.status, trial.epoch = Trial.RUNNING, 1
        trial.last_result = {"training_iteration": 1, "val_accuracy": trial.quality}
        decision = scheduler.on_trial_result(controller, trial, trial.last_result)
        if decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
        elif decision == TrialScheduler.STOP:
            controller.stop_trial(trial)
    assert good.status == Trial.PAUSED  # it waited for its peer at the rung
    controller.stop_trial(bad)  # ends (stopped, or its run over): nothing runs now
    bracket, _ = scheduler._trial_info[good]
    bracket.trials_to_unpause.discard(good)  # what Ray's missed
    assert scheduler.choose_trial_to_run(controller) is good


def test_a_trial_restored_past_its_new_brackets_rung_goes_on():
    """Restored after epoch 1 into a new bracket comparing at epoch 1, it reports epoch 2: every trial
    of the bracket has passed two rungs at once, and it goes on to its budget."""
    scheduler = schedulers.make("halving", GRACE, REDUCTION, MAX_EPOCHS)
    scheduler.set_search_properties("val_accuracy", "max")
    controller = Controller(scheduler)
    trial = Run("restored", 1, Trial.PENDING, 0.9)
    scheduler.on_trial_add(controller, trial)
    assert scheduler.choose_trial_to_run(controller) is trial
    trial.status = Trial.RUNNING
    result = {"training_iteration": 2, "val_accuracy": 0.9}
    assert scheduler.on_trial_result(controller, trial, result) == TrialScheduler.CONTINUE


@pytest.mark.parametrize("name", ["asha", "halving", "hyperband", "i-epoch", "none"])
def test_every_scheduler_names_a_trials_folder_as_it_is_added(name):
    """Ray 2.60 may start a waiting trial on a cached actor without naming its folder (its reset then
    fails): every scheduler names it as Tune adds the trial (schedulers.NamesTrialFolders)."""
    scheduler = schedulers.make(name, GRACE, REDUCTION, MAX_EPOCHS)
    scheduler.set_search_properties("val_accuracy", "max")
    trial = Run("t", 0, Trial.PENDING, 0.5)
    scheduler.on_trial_add(Controller(scheduler), trial)
    assert trial.named


class Listed:
    """Tune's controller as a scheduler sees it choose: its trials in the order added, and the live ones
    (all but the terminated: Tune's set keeps a failed trial until it stops it)."""

    def __init__(self):
        self.trials: list[Run] = []

    def add(self, trial: Run, scheduler) -> None:
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)

    def get_trials(self) -> list[Run]:
        return self.trials

    def get_live_trials(self) -> set[Run]:
        return {t for t in self.trials if t.status != Trial.TERMINATED}


@pytest.mark.parametrize("name", ["asha", "i-epoch", "none"])
def test_the_trial_started_next_is_the_one_rays_fifo_scheduler_chooses(name):
    """schedulers.ChoosesAmongLiveTrials looks among the live trials, not every trial as Ray's
    FIFOScheduler does at each step of Tune's loop: its choice is still Ray's, over random studies whose
    trials are added, start, pause, end, fail and recover (Tune adds a recovered trial again, last)."""
    from ray.tune.schedulers import FIFOScheduler

    rng = random.Random(0)
    statuses = [Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR]
    for study in range(300):
        scheduler = schedulers.make(name, GRACE, REDUCTION, MAX_EPOCHS)
        scheduler.set_search_properties("val_accuracy", "max")
        controller = Listed()
        for step in range(40):
            action = rng.random()
            if action < 0.3 or not controller.trials:
                controller.add(Run(f"t{step}", 0, Trial.PENDING, 0.5), scheduler)
            elif action < 0.4:  # recovered after a failure: Tune moves it last and adds it again
                recovered = rng.choice(controller.trials)
                controller.trials.remove(recovered)
                recovered.status = Trial.PENDING
                controller.add(recovered, scheduler)
            else:
                rng.choice(controller.trials).status = rng.choice(statuses)
            expected = FIFOScheduler().choose_trial_to_run(controller)
            assert scheduler.choose_trial_to_run(controller) is expected, (study, step, controller.trials)


class Restored:
    """A trial as Tune hands it to a new scheduler on --resume: its last result, and its folder."""

    def __init__(self, trial_id: str, folder, values: list[float]):
        self.trial_id, self.path = trial_id, str(folder)
        self.last_result = {"training_iteration": len(values), "val_accuracy": values[-1]} if values else None
        self.init_local_path = lambda: None
        folder.mkdir()
        (folder / "result.json").write_text("".join(
            f'{{"training_iteration": {e}, "val_accuracy": {v}}}\n' for e, v in enumerate(values, 1)))


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_i_epoch_cut_keeps_the_best_share_so_far_and_reads_them_back_on_resume(tmp_path, mode):
    """At epoch 2, with R = 2: a trial goes on when it is not below the median of those before it.
    On --resume a new scheduler learns the epoch-2 values of the trials that got there from their
    records (a trial that went past epoch 2 from its result.json, one stopped there from its last
    result) and cuts the next trial exactly as the first scheduler would have."""
    sign = 1 if mode == "max" else -1
    cut = schedulers.make("i-epoch", 2, 2, 9)
    cut.set_search_properties("val_accuracy", mode)
    decisions = []
    for n, value in enumerate([0.5, 0.7, 0.6, 0.55, 0.65]):
        trial = Run(f"t{n}", 2, Trial.RUNNING, value)
        assert cut.on_trial_result(None, trial, {"training_iteration": 1, "val_accuracy": sign * 0.1}) == "CONTINUE"
        decisions.append(cut.on_trial_result(None, trial, {"training_iteration": 2, "val_accuracy": sign * value}))
    # before each: -, [0.5], [0.5, 0.7], [0.5, 0.6, 0.7], [0.5, 0.55, 0.6, 0.7] -> medians -, 0.5, 0.6, 0.6, 0.575
    assert decisions == ["CONTINUE", "CONTINUE", "CONTINUE", "STOP", "CONTINUE"]
    assert cut.on_trial_result(None, Run("t1", 3, Trial.RUNNING, 0), {"training_iteration": 3}) == "CONTINUE"

    resumed = schedulers.make("i-epoch", 2, 2, 9)
    resumed.set_search_properties("val_accuracy", mode)
    for trial in [Restored("a", tmp_path / "a", [sign * 0.1, sign * 0.5, sign * 0.9]),  # went past the cut
                  Restored("b", tmp_path / "b", [sign * 0.1, sign * 0.7]),  # at the cut
                  Restored("c", tmp_path / "c", [sign * 0.1]),  # not there yet
                  Restored("d", tmp_path / "d", [])]:  # not started
        resumed.on_trial_add(None, trial)
    # held as "larger is better" in either mode
    assert sorted(resumed.at_cut.values()) == [0.5, 0.7] and resumed.cutoff() == pytest.approx(0.6)
    assert resumed.on_trial_result(None, Run("e", 2, Trial.RUNNING, 0),
                                   {"training_iteration": 2, "val_accuracy": sign * 0.59}) == "STOP"
    assert resumed.on_trial_result(None, Run("f", 2, Trial.RUNNING, 0),
                                   {"training_iteration": 2, "val_accuracy": sign * 0.61}) == "CONTINUE"
