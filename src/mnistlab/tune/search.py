"""The search: each trial an ordinary run on the training set less a validation split, scored
on that split after every epoch, pruned when hopeless. The test set is never read here.

Optuna runs the trials (`study.optimize`); what it does not promise is added here, each part
for a guarantee a test holds: a trial claimed past the `trials` budget is set aside (Optuna's
MaxTrialsCallback overshoots by a trial per worker), a grid's worker waits for the points
still running elsewhere (one whose worker dies is retried), and a stopped trial goes back to
the queue.
"""

import dataclasses
import math
import socket
from collections.abc import Callable
from pathlib import Path

from mnistlab.config import Runtime, TrainConfig
from mnistlab.errors import ConfigError, Setting, TrainingDiverged
from mnistlab.tune.space import Dimension, baseline_point, check, suggest
from mnistlab.workqueue.claims import queue_wait, set_aside
from mnistlab.workqueue.storage import Engine, answering, open_study, setup_of

VALIDATION_IMAGES = 5_000
MAX_TRIALS = 100_000  # a budget, and a grid's points (each queued as a trial)
FINISHED = ("COMPLETE", "PRUNED")
QUEUED = ("point", "baseline", "requeued")  # the marks of a trial taken from the queue


def search_config(base: TrainConfig, training_images: int = 60_000) -> TrainConfig:
    """The base with a validation split of 5,000 images (a tenth of a smaller training set),
    unless one was asked for."""
    if base.val_split:
        return base
    held = min(VALIDATION_IMAGES, training_images // 10)
    return dataclasses.replace(base, val_split=held / training_images)


def check_budget(engine: Engine, trials: int | None, timeout: float | None) -> None:
    """A search must know when to end: a ConfigError when nothing says, or when what it says
    is no end (no trials, a timeout that is not a positive number)."""
    if trials is not None and not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(
            (Setting("trials"), f" must be between 1 and {MAX_TRIALS:,}, got {trials}")
        )
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(
            (Setting("timeout"), f" must be a positive number of seconds, got {timeout}")
        )
    if trials is None and timeout is None and engine.sampler != "grid":
        raise ConfigError(
            (
                "give ",
                Setting("trials"),
                " or ",
                Setting("timeout"),
                " (or ",
                Setting("sampler"),
                " grid, which ends by itself)",
            )
        )


def queue_of(engine: Engine, space: dict[str, Dimension], base: TrainConfig | None) -> list:
    """The trials the study's creator queues: the baseline, then a grid's points."""
    import itertools

    if engine.sampler == "grid" and not space:
        raise ConfigError((Setting("space"), ": a grid search needs a space"))
    if base is not None:
        check(space, base)
    queue = []
    if engine.baseline and base is not None:
        if engine.sampler == "grid":
            raise ConfigError(
                (Setting("baseline"), ": a grid runs its own points; put the base's values in it")
            )
        queue.append((baseline_point(space, base), {"baseline": True}))
    if engine.sampler == "grid":
        points = math.prod(dimension.size() for dimension in space.values())
        if points > MAX_TRIALS:
            raise ConfigError(
                (
                    Setting("space"),
                    f": a grid of {points:,} points, more than the {MAX_TRIALS:,} a study "
                    "queues; narrow its int ranges or choices",
                ),
            )
        grid = itertools.product(*(dimension.grid() for dimension in space.values()))
        for index, point in enumerate(grid):
            queue.append((dict(zip(space, point, strict=True)), {"point": index}))
    return queue


def open_search(engine: Engine, space: dict[str, Dimension], base: TrainConfig | None = None):
    """The search's study, made (and its queue filled) or joined."""
    return open_study(engine, queue_of(engine, space, base), setup_of(space, None))


def finished(study) -> int:
    """Trials that count against the budget: complete or pruned, idle ones (a worker that
    found nothing to do) aside."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=[TrialState[s] for s in FINISHED])
    return sum(not trial.user_attrs.get("idle") for trial in trials)


def _claimed(study, number: int) -> int:
    """The finished trials, and the running ones numbered up to `number` (one reading of the
    study): of two workers that start the last trial of the budget together, the lower
    number runs it."""
    from optuna.trial import TrialState

    states = [TrialState[s] for s in (*FINISHED, "RUNNING")]
    return sum(
        not trial.user_attrs.get("idle")
        and (trial.state.name in FINISHED or trial.number <= number)
        for trial in study.get_trials(deepcopy=False, states=states)
    )


def _enough(trials: int):
    """After each trial: stop this worker once the study's finished trials reach `trials`."""

    def callback(study, trial) -> None:
        if finished(study) >= trials:
            study.stop()

    return callback


def optimize(
    engine: Engine,
    space: dict[str, Dimension],
    base: TrainConfig,
    folder: str | Path,
    runtime: Runtime | None = None,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    dataset=None,
    on_trial: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Work on the study until it has `trials` finished trials (complete or pruned), the
    `timeout` passes, or a grid is exhausted. `dataset` (loaded if None) is used for its
    training split only. When `should_stop()` turns true the trial in progress stops after
    its step and its settings go back to the queue, for this or any worker to run again."""
    import optuna

    from mnistlab import data, devices, resident, runfiles
    from mnistlab.runs import Run, StopFlag

    check_budget(engine, trials, timeout)
    runtime = runtime or Runtime.from_environment()
    dataset = dataset or data.load(base.dataset, runtime.data_dir, **runtime.data_options())
    device = devices.resolve(runtime.device)
    study = open_search(engine, space, base)
    prepared: dict[float, object] = {}

    def objective(trial) -> float:
        if engine.sampler == "grid" and "point" not in trial.user_attrs:
            # Asked when the queue had just run dry: no point is left for this worker.
            set_aside(trial, requeue=False)
        config = suggest(trial, space, base)
        if trials is not None and _claimed(trial.study, trial.number) > trials:
            # Other workers hold the last trials of the budget: running this one would
            # overshoot it. A queued one (a grid's point) stays queued, for a later search
            # with a larger budget.
            set_aside(trial, requeue=any(key in trial.user_attrs for key in QUEUED))
        if should_stop is not None and should_stop():
            set_aside(trial, requeue=True)
        if config.val_split not in prepared:  # the test split is never read: test=False
            prepared[config.val_split] = resident.prepare(config, dataset, device, test=False)
        held = prepared[config.val_split]
        stop = StopFlag()  # set by the pruner

        def stopping() -> bool:
            return bool(stop) or (should_stop is not None and should_stop())

        def report(record):
            trial.report(record["val_accuracy"], record["epoch"])
            # After the last epoch there is nothing left to save: the trial is complete.
            if record["epoch"] < config.epochs and trial.should_prune():
                stop.set("pruned")

        run_folder = Path(folder) / "trials" / f"{trial.number:04d}"
        # Kept in the study, so that any machine can summarise it: the run folder is on the
        # machine that ran the trial only.
        trial.set_user_attr("run", str(run_folder.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("config", runfiles.plain(dataclasses.asdict(config)))
        trial.set_user_attr("val_images", len(held.y_val))
        with Run.create(run_folder, config) as run:
            try:
                result = run.fit(
                    tensors=held, pictures=False, on_epoch=report, should_stop=stopping
                )
            except TrainingDiverged as error:
                trial.set_user_attr("diverged", str(error))
                raise optuna.TrialPruned(str(error)) from None
        if result.interrupted and not stop:  # stopped by the user, not by the pruner
            set_aside(trial, requeue=True)
        if stop:
            raise optuna.TrialPruned(f"pruned after epoch {len(run.history)}")
        return run.history[-1]["val_accuracy"]

    callbacks = [on_trial] if on_trial else []
    if engine.sampler == "grid":
        callbacks.append(queue_wait(engine.heartbeat, should_stop))
    if trials is not None:
        callbacks.append(_enough(trials))
    with answering(engine):
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=callbacks, catch=())
