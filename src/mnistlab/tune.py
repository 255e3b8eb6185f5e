"""Searches on Optuna: chosen on a validation split, shared through a database.

A study lives in an Optuna storage: by default an SQLite file in the study folder, or a
server's URL (postgresql://..., mysql://...) that any number of `mnistlab tune` processes, on
any machines, join by study name. Every trial is an ordinary run folder (STUDY/trials/NNNN),
trained on the training set less a validation split carved from it deterministically (5,000
images by default); it reports validation accuracy after every epoch, and the pruner (median,
or hyperband) stops hopeless trials early. The test set is not read during the search: only
when it is over is the best trial's test accuracy measured, once, and stored apart (a study
attribute). Workers send heartbeats; a worker that dies leaves its trial RUNNING until its
heartbeat is stale, then it is marked FAIL and its parameters are tried again by another.

A space is written NAME=KIND:ARGS, for any TrainConfig setting:
    lr=log:1e-4:3e-2   dropout=float:0:0.5   epochs=int:2:20   hidden=choice:256,512,1024x1024
"""

import dataclasses
import itertools
import json
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnistlab.config import Runtime, TrainConfig, from_saved, show
from mnistlab.errors import ConfigError, RunError, TrainingDiverged

KINDS = ("log", "float", "int", "choice")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
VALIDATION_IMAGES = 5_000


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def grid(self) -> list:
        if self.kind == "choice":
            return [_encode(choice) for choice in self.choices]
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise ConfigError(f"space {self.name}: a grid needs choice or int dimensions", "space")


def _encode(value):
    # Optuna's choices are primitives: a tuple (hidden=1024x1024) is kept as its text.
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def parse_space(specs: list[str]) -> dict[str, Dimension]:
    """["lr=log:1e-4:3e-2", "hidden=choice:256,1024x1024"] -> {name: Dimension}."""
    from mnistlab.sweep import _convert

    fields = {item.name: item for item in dataclasses.fields(TrainConfig)}
    space = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        name = name.strip().replace("-", "_")
        kind, _, args = rest.partition(":")
        if name not in fields or kind not in KINDS or not args:
            raise ConfigError(
                f"--space {spec!r}: write NAME=KIND:ARGS with NAME a training setting and KIND "
                f"one of {', '.join(KINDS)} (lr=log:1e-4:3e-2, hidden=choice:256,512)"
            )
        if kind == "choice":
            default = fields[name].default
            values = tuple(_convert(name, value, default) for value in args.split(","))
            space[name] = Dimension(name, kind, choices=values)
            continue
        try:
            low, high = (float(value) for value in args.split(":"))
        except ValueError:
            raise ConfigError(f"--space {spec!r}: {kind} takes LOW:HIGH") from None
        if not low < high or (kind == "log" and low <= 0):
            raise ConfigError(f"--space {spec!r}: needs LOW < HIGH (and LOW > 0 for log)")
        space[name] = Dimension(name, kind, low, high)
    return space


def read_space(path: str | Path) -> list[str]:
    """A TOML file's [space] table (name = "kind:args") as --space specs."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle).get("space", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the space in {path}: {error}") from None
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: [space] must be a table of name = "kind:args"')
    return [f"{name}={value}" for name, value in table.items()]


def suggest(trial, space: dict[str, Dimension], base: TrainConfig) -> TrainConfig:
    """The trial's config: the base with each dimension sampled."""
    from mnistlab.sweep import _convert

    values = {}
    for name, dimension in space.items():
        if dimension.kind == "log":
            values[name] = trial.suggest_float(name, dimension.low, dimension.high, log=True)
        elif dimension.kind == "float":
            values[name] = trial.suggest_float(name, dimension.low, dimension.high)
        elif dimension.kind == "int":
            values[name] = trial.suggest_int(name, int(dimension.low), int(dimension.high))
        else:
            chosen = trial.suggest_categorical(name, dimension.grid())
            values[name] = _convert(name, str(chosen), getattr(base, name))
    return dataclasses.replace(base, **values)


@dataclass(frozen=True)
class Engine:
    """Where a study lives and how it is searched."""

    storage: str  # an Optuna storage URL
    study: str
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0  # the sampler's, in the process that makes the study; joiners draw their own
    heartbeat: int = 30  # seconds between a worker's heartbeats; stale after 3
    retries: int = 2  # a failed trial's parameters are tried this many more times
    baseline: bool = False  # the base settings are the first trial, scored like the others


def default_storage(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def _LockedSQLite():  # noqa: N802 - a class, made on first use (optuna is imported late)
    """RDBStorage on SQLite, with trials claimed one process at a time.

    A worker claims a queued trial by reading that it is waiting and marking it running. A
    server database locks the row between the two; SQLite cannot, so two local workers could
    claim the same trial and run it twice. A file lock beside the database makes the claim
    whole."""
    from filelock import FileLock
    from optuna.storages import RDBStorage

    class LockedSQLite(RDBStorage):
        def __init__(self, url: str, **options):
            super().__init__(url, **options)
            self._claim = FileLock(url.removeprefix("sqlite:///") + ".lock")

        def set_trial_state_values(self, trial_id, state, values=None):
            with self._claim:
                return super().set_trial_state_values(trial_id, state, values)

    return LockedSQLite


def _storage(engine: Engine):
    """The study's storage, with heartbeats; a trial whose worker went silent is failed and
    its parameters queued again."""
    import random
    import time
    import warnings

    import optuna

    sqlite = engine.storage.startswith("sqlite")
    shown = describe_study(engine)["storage"]  # a password kept out of messages
    for attempt in range(6):
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kind = _LockedSQLite() if sqlite else optuna.storages.RDBStorage
            try:
                return kind(
                    engine.storage,
                    engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
                    heartbeat_interval=engine.heartbeat,
                    grace_period=3 * engine.heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=engine.retries
                    ),
                )
            except ImportError as error:
                raise ConfigError(
                    f"--storage {shown}: needs {error.name} (for PostgreSQL: "
                    "pip install 'mnistlab[postgres]')"
                ) from None
            except Exception as error:  # noqa: BLE001 - a bad URL, an unreachable server
                # Workers started together on a new database race to create its tables: the
                # loser finds them made, and tries again.
                race = ("already exists", "duplicate", "UNIQUE constraint", "locked")
                if attempt < 5 and any(words in str(error) for words in race):
                    time.sleep(0.2 + random.random())
                    continue
                first = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ConfigError(f"--storage: cannot open {shown} ({first})") from None
    raise AssertionError("unreachable")


def open_study(
    engine: Engine,
    space: dict[str, Dimension] | None = None,
    points: list[dict] | None = None,
    base: TrainConfig | None = None,
):
    """The study, created if new (any worker may be first). A grid's points, or `points`
    (user attributes of a queued trial each: a sweep's runs), are queued by the creator, and
    with `engine.baseline` the `base` settings before them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if engine.sampler == "grid" and not space:
        raise ConfigError("a grid search needs a --space")
    baseline = queued_baseline(engine, space, base)
    setup = _setup(space, points)

    def sampler(seed: int | None):
        if engine.sampler in ("grid", "random"):  # a grid's points are queued: nothing samples
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=2),
        "hyperband": optuna.pruners.HyperbandPruner(),
        "none": optuna.pruners.NopPruner(),
    }[engine.pruner]
    storage = _storage(engine)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=engine.study,
            direction="maximize",
            sampler=sampler(engine.seed),
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker made it: join it
        # A seed of its own: workers seeded alike draw the same points, and run each twice.
        study = optuna.load_study(
            study_name=engine.study, storage=storage, sampler=sampler(None), pruner=pruner
        )
        _join(study, engine, setup)
        return study
    # Only the process that created the study (the database says which) queues the points;
    # workers claim queued trials one at a time, so each point runs once, however many
    # workers share the study.
    if baseline is not None:
        study.enqueue_trial(baseline, {"baseline": True})
    if engine.sampler == "grid":
        grid = itertools.product(*(d.grid() for d in space.values()))
        for index, point in enumerate(grid):
            study.enqueue_trial(dict(zip(space, point, strict=True)), {"point": index})
    for index, attributes in enumerate(points or []):
        study.enqueue_trial({}, {"point": index, **attributes})
    # Last: a worker that joins waits for this, so it never finds half a queue.
    study.set_user_attr("setup", setup)
    return study


def _setup(space: dict[str, Dimension] | None, points: list[dict] | None) -> dict:
    """What a study was made to run: its space, and a sweep's runs (a digest of their keys).
    A worker that joins must bring the same."""
    import hashlib

    described = {name: repr(dimension) for name, dimension in sorted((space or {}).items())}
    runs = None
    if points is not None:
        runs = hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()[:16]
    return {"space": described, "runs": runs}


def _join(study, engine: Engine, setup: dict, wait: float = 120.0) -> None:
    """Wait until the study's creator has queued its trials (however long a large queue
    takes, while it grows), then check that this worker was given the same search or sweep;
    a ConfigError when it was not, or when the queue stops growing for `wait` seconds."""
    import time

    from optuna.trial import TrialState

    deadline, queued = time.monotonic() + wait, 0
    while True:
        made = study.user_attrs
        trials = study.get_trials(deepcopy=False)
        # A study made before "setup" was written is ready once any trial has started.
        if "setup" in made or any(t.state != TrialState.WAITING for t in trials):
            break
        if len(trials) > queued:  # still queueing
            deadline, queued = time.monotonic() + wait, len(trials)
        if time.monotonic() > deadline:
            raise ConfigError(
                f"study {engine.study} is still not set up after {wait:.0f} s: the process that "
                "created it stopped before it had queued its trials; use another --study (or "
                f"remove it: optuna delete-study --study-name {engine.study} --storage URL)"
            )
        time.sleep(0.25)
    made = made.get("setup")
    if made is None:
        return
    if bool(setup["runs"]) != bool(made["runs"]):
        kinds = ("a sweep", "a search") if made["runs"] else ("a search", "a sweep")
        raise ConfigError(
            f"study {engine.study} holds {kinds[0]}, not {kinds[1]}: use another --study"
        )
    if setup["runs"] != made["runs"]:
        raise ConfigError(
            f"study {engine.study} holds another sweep: give the same settings, or another --study"
        )
    if setup["space"] != made["space"]:
        theirs = ", ".join(made["space"]) or "none"
        raise ConfigError(
            f"study {engine.study} searches another space (over {theirs}): give the same "
            "--space, or another --study"
        )


def queued_baseline(engine: Engine, space: dict[str, Dimension] | None, base) -> dict | None:
    """The point `--baseline` queues (None without it); a ConfigError when it cannot be."""
    if not engine.baseline or base is None:
        return None
    if engine.sampler == "grid":
        raise ConfigError("--baseline: a grid runs its own points; put the base's values in it")
    return baseline_point(space or {}, base)


def baseline_point(space: dict[str, Dimension], base: TrainConfig) -> dict:
    """The base settings as a point of the space, so a search shows how its starting point
    scores on the same validation split; a base value outside the space is an error."""
    point = {}
    for name, dimension in space.items():
        value = getattr(base, name)
        if dimension.kind == "choice":
            inside = _encode(value) in dimension.grid()
        else:
            inside = dimension.low <= value <= dimension.high
        if not inside:
            raise ConfigError(
                f"--baseline: the base's {name} {show(value)} lies outside the space's "
                f"{name}; set it inside (with --{name.replace('_', '-')}) or widen the space",
                "space",
            )
        point[name] = _encode(value)
    return point


def _grid_wait(heartbeat: int, should_stop: Callable[[], bool] | None = None):
    """After each trial of a grid: go on while points are queued; when none are, wait for the
    trials still running (one whose worker died is failed when its heartbeat is stale, and
    queued again), and stop when nothing is left, or when `should_stop()` turns true."""
    import time
    import warnings

    import optuna
    from optuna.trial import TrialState

    def callback(study, trial) -> None:
        while True:
            if should_stop is not None and should_stop():  # (this worker's trial is done)
                study.stop()
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.stop()
                return
            time.sleep(min(1.0, heartbeat))

    return callback


def search_config(base: TrainConfig, training_images: int = 60_000) -> TrainConfig:
    """The base with a validation split of 5,000 images (a tenth of a smaller training set),
    unless one was asked for."""
    if base.val_split:
        return base
    held = min(VALIDATION_IMAGES, training_images // 10)
    return dataclasses.replace(base, val_split=held / training_images)


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

    from mnistlab import data, runs
    from mnistlab import train as training
    from mnistlab.runs import Run, StopFlag

    runtime = runtime or Runtime()
    dataset = dataset or data.load(base.dataset, runtime.data_dir, mirrors=runtime.mirrors)
    device = training.resolve_device(runtime.device)
    study = open_study(engine, space, base=base)
    prepared: dict[float, object] = {}

    def objective(trial) -> float:
        if engine.sampler == "grid" and "point" not in trial.user_attrs:
            # Asked when the queue had just run dry: no point is left for this worker.
            _set_aside(trial, requeue=False)
        config = suggest(trial, space, base)
        if trials is not None and _claimed(trial.study, trial.number) > trials:
            # Other workers hold the last trials of the budget: running this one would
            # overshoot it (by up to a trial per worker). A queued one (a grid's point) stays
            # queued, for a later search with a larger budget.
            _set_aside(trial, requeue=any(key in trial.user_attrs for key in QUEUED))
        if should_stop is not None and should_stop():
            _set_aside(trial, requeue=True)
        if config.val_split not in prepared:  # the test split is never read: test=False
            prepared[config.val_split] = training.prepare(config, dataset, device, test=False)
        tensors = prepared[config.val_split]
        stop = StopFlag()  # set by the pruner

        def stopping() -> bool:
            return bool(stop) or (should_stop is not None and should_stop())

        def report(record):
            trial.report(record["val_accuracy"], record["epoch"])
            # After the last epoch there is nothing left to save: the trial is complete.
            if record["epoch"] < config.epochs and trial.should_prune():
                stop.set("pruned")

        folder_of_trial = Path(folder) / "trials" / f"{trial.number:04d}"
        # Kept in the study, so that any machine can summarise it: the run folder is on the
        # machine that ran the trial only.
        trial.set_user_attr("run", str(folder_of_trial.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("config", runs.plain(dataclasses.asdict(config)))
        trial.set_user_attr("val_images", len(tensors.y_val))
        with Run.create(folder_of_trial, config) as run:
            try:
                result = run.fit(
                    tensors=tensors, pictures=False, on_epoch=report, should_stop=stopping
                )
            except TrainingDiverged as error:
                trial.set_user_attr("diverged", str(error))
                raise optuna.TrialPruned(str(error)) from None
        if result.interrupted and not stop:  # stopped by the user, not by the pruner
            _set_aside(trial, requeue=True)
        if stop:
            raise optuna.TrialPruned(f"pruned after epoch {len(run.history)}")
        return run.history[-1]["val_accuracy"]

    callbacks = [on_trial] if on_trial else []
    if engine.sampler == "grid":
        callbacks.append(_grid_wait(engine.heartbeat, should_stop))
    if trials is not None:
        callbacks.append(_enough(trials))
    check_budget(engine, trials, timeout)
    study.optimize(
        objective,
        n_trials=trials,
        timeout=timeout,
        callbacks=callbacks,
        catch=(),
    )


FINISHED = ("COMPLETE", "PRUNED")


QUEUED = ("point", "baseline", "requeued")  # the marks of a trial taken from the queue
KEPT = ("point", "baseline", "key")  # what a trial queued again carries over


def _set_aside(trial, requeue: bool) -> None:
    """This worker does not run the trial (or stops it), and stops: with `requeue`, its
    settings go back to the queue (a grid's point, a sweep's run, the baseline, or the point
    the sampler chose) for this or any worker to run later."""
    import optuna

    if requeue:
        kept = {key: trial.user_attrs[key] for key in KEPT if key in trial.user_attrs}
        trial.study.enqueue_trial(trial.params, {**kept, "requeued": True})
    trial.set_user_attr("idle", True)
    trial.study.stop()
    raise optuna.TrialPruned("set aside" + ("; its settings are queued again" if requeue else ""))


def _finished(study) -> int:
    """Trials that count against --trials: complete or pruned, idle ones (a worker that found
    nothing to do) aside."""
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
        if _finished(study) >= trials:
            study.stop()

    return callback


def load_study(engine: Engine):
    """An existing study, to read; a ConfigError that says what is there when it is not."""
    import optuna

    if engine.storage.startswith("sqlite:///"):
        path = Path(engine.storage.removeprefix("sqlite:///"))
        if not path.is_file():  # (opening it would make an empty database)
            raise ConfigError(
                f"no study database at {path}: no search has run there (give the --out of one, "
                "or its --storage and --study)"
            )
    storage = _storage(engine)
    try:
        return optuna.load_study(study_name=engine.study, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ConfigError(
            f"{describe_study(engine)['storage']} holds no study {engine.study!r} (it holds: "
            f"{names}); give --study NAME"
        ) from None


def check_budget(engine: Engine, trials: int | None, timeout: float | None) -> None:
    """A search must know when to end: a ConfigError when nothing says."""
    if trials is None and timeout is None and engine.sampler != "grid":
        raise ConfigError("give --trials or --timeout (or --sampler grid, which ends by itself)")


def measure_best(engine: Engine, runtime: Runtime | None = None) -> dict | None:
    """The best trial's test accuracy, measured once (now) and stored as a study attribute,
    apart from the validation accuracy it was chosen by."""
    import optuna

    from mnistlab import runs
    from mnistlab.evaluate import evaluate

    study = load_study(engine)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return None
    best = max(completed, key=lambda trial: trial.value)
    saved = study.user_attrs.get("best_test")
    if saved and saved.get("trial") == best.number:
        return saved  # measured already: the test set is looked at once
    if not runs.is_run(best.user_attrs["run"]):
        # Run on another machine: measured there, when its search ends.
        return {"trial": best.number, "elsewhere": where_it_ran(best.user_attrs)}
    loaded = runs.load(best.user_attrs["run"], runtime)
    tensors = loaded.tensors
    result = evaluate(loaded.model, tensors.x_test, tensors.y_test, len(tensors.classes))
    measured = {"trial": best.number, "val_accuracy": best.value, "test_accuracy": result.accuracy}
    study.set_user_attr("best_test", measured)
    return measured


def summary(engine: Engine, top: int = 5) -> dict:
    """Trial counts by state, the best trials, parameter importances and the stored test
    accuracy of the best."""
    import optuna

    study = load_study(engine)
    trials = [trial for trial in study.trials if not trial.user_attrs.get("idle")]
    counts = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    completed = sorted(
        (t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
        key=lambda t: t.value,
        reverse=True,
    )
    importances = {}
    if len(completed) >= 2 and completed[0].params:
        try:
            with warnings.catch_warnings():  # "importances will be equal": shown as such
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # too few distinct values to say
            importances = {}
    return {
        "study": engine.study,
        "counts": counts,
        "best": [
            {
                "trial": t.number,
                "val_accuracy": t.value,
                "params": t.params,
                "run": t.user_attrs.get("run"),
            }
            for t in completed[:top]
        ],
        "importances": importances,
        "standard_error": _standard_error(completed[0]) if completed else None,
        "best_test": study.user_attrs.get("best_test"),
        "baseline": next(
            (
                {"trial": t.number, "state": t.state.name.lower(), "val_accuracy": t.value}
                for t in trials
                if t.user_attrs.get("baseline")
            ),
            None,
        ),
        "trials": [
            {"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
            for t in trials
        ],
    }


def where_it_ran(attributes: dict) -> str:
    """Where a trial's run folder is, as HOST:FOLDER (the folder alone for a trial of an
    earlier version)."""
    host = attributes.get("host")
    return f"{host}:{attributes.get('run')}" if host else str(attributes.get("run"))


def _standard_error(trial) -> float | None:
    """One standard error of the trial's validation accuracy, sqrt(p (1 - p) / n): trials
    closer than this are not told apart by the split. n is the trial's validation images
    (read off its run folder for a trial of an earlier version)."""
    from mnistlab import runs

    held = trial.user_attrs.get("val_images")
    if held is None:
        try:
            config = runs.read_config(trial.user_attrs["run"])
            trained = runs.read_metrics(trial.user_attrs["run"])[-1]["samples"]
        except (KeyError, IndexError, RunError):  # a run folder gone, or never written
            return None
        held = round(trained * config.val_split / (1 - config.val_split))
    accuracy = trial.value
    return (accuracy * (1 - accuracy) / held) ** 0.5 if held else None


def best_config_toml(engine: Engine) -> str:
    """The best trial's settings as a TOML file that `mnistlab train --config` reproduces."""

    from mnistlab import runs

    study = load_study(engine)
    best = study.best_trial
    if "config" in best.user_attrs:  # any machine can write it
        config = from_saved(best.user_attrs["config"])
    else:  # a trial of an earlier version: its run folder
        config = runs.read_config(best.user_attrs["run"])
    lines = [f"# study {engine.study}, trial {best.number}: validation accuracy {best.value:.4f}"]
    for name, value in dataclasses.asdict(config).items():
        lines.append(f"{name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def spawn_workers(
    argv: list[str], workers: int, out: Path, should_stop: Callable[[], bool] | None = None
) -> None:
    """`workers` processes on this machine running the same `mnistlab tune` command as workers,
    the cores divided among them; each joins the study as any other machine would. Started
    with -P, so that nothing in the working directory is imported. When `should_stop()` turns
    true each is asked to stop (SIGTERM: it stops after its step and queues its trial again)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mnistlab.errors import RunError

    threads = max(1, (os.cpu_count() or 1) // workers)
    argv = [word for word in argv if word != "--summary"]
    if "--workers" in argv:
        position = argv.index("--workers")
        argv = argv[:position] + argv[position + 2 :]
    command = [sys.executable, "-P", "-m", "mnistlab", *argv, "--worker", "--out", str(out)]
    # Each in a process group of its own: a Ctrl-C at the terminal reaches this process only,
    # which asks each worker once (a second signal would make a worker abort its trial).
    processes = [
        subprocess.Popen([*command, "--threads", str(threads)], process_group=0)
        for _ in range(workers)
    ]

    def ask() -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    asked = False
    try:
        while any(process.poll() is None for process in processes):
            if should_stop is not None and should_stop() and not asked:
                asked = True
                ask()
            time.sleep(0.1)
    except BaseException:  # aborted here (a second Ctrl-C): the workers abort too
        ask()
        raise
    stopped = (128 + signal.SIGINT, 128 + signal.SIGTERM)
    codes = [process.returncode for process in processes]
    failed = [code for code in codes if code and not (asked and code in stopped)]
    if failed:
        raise RunError(f"{len(failed)} of {workers} workers failed (exits {codes})")


def describe_study(engine: Engine) -> dict:
    """Where a study lives, as study.json records it (a password in the URL is left out)."""
    from urllib.parse import urlsplit, urlunsplit

    storage, parts = engine.storage, urlsplit(engine.storage)
    if parts.password:  # kept out of files; the report then needs --storage to reach it
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        storage = urlunsplit(parts._replace(netloc=netloc))
    return {"storage": storage, "study": engine.study}


def sweep(engine: Engine, configs, folder: Path, runtime: Runtime, on_record, should_stop):
    """A sweep's runs through a study (sweep.run with an engine): each process claims runs
    from one queue, so each runs once; it writes its runs under its own `folder`/runs and the
    records go to the study. Returns every finished run's record, in the sweep's order."""
    from optuna.trial import TrialState

    from mnistlab import sweep as sweeps

    keys = [sweeps.run_key(config) for config in configs]
    study = open_study(
        dataclasses.replace(engine, sampler="random", pruner="none"),
        points=[{"key": key} for key in keys],
    )
    datasets: dict = {}

    def objective(trial) -> float:
        if "point" not in trial.user_attrs:  # the queue ran dry: nothing left for us
            _set_aside(trial, requeue=False)
        index = trial.user_attrs["point"]
        record = sweeps._train(
            configs[index], Path(folder) / "runs" / keys[index], runtime, datasets, should_stop
        )
        if record is None:  # stopped mid-run: the run goes back to the queue for anyone
            _set_aside(trial, requeue=True)
        record = {"key": keys[index], **record}
        trial.set_user_attr("record", record)
        if on_record is not None:
            on_record(record, False)
        return sweeps.chosen_by_record(record)

    study.optimize(objective, callbacks=[_grid_wait(engine.heartbeat, should_stop)])
    finished = {
        t.user_attrs["record"]["key"]: t.user_attrs["record"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    return [finished[key] for key in keys if key in finished]
