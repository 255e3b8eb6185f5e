"""Where a study lives: an Optuna storage with heartbeats, made or joined by any worker.

By default an SQLite file in the study folder; a server's URL (postgresql://...) lets any
number of workers, on any machines, join the study by name. The process that creates the
study queues its fixed trials (a grid's points, a sweep's runs, the baseline) and then writes
the study's setup; a worker that joins waits for that setup and checks it brought the same
search.
"""

import contextlib
import hashlib
import json
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from mnistlab.errors import ConfigError, Setting, StorageLost, unknown

SAMPLERS = ("tpe", "random", "grid")
HEARTBEAT = 30  # seconds between a worker's heartbeats; its trial is stale after 3 missed
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Engine:
    """Where a study lives and how it is searched."""

    storage: str  # an Optuna storage URL
    study: str = "study"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0  # the sampler's, in the process that makes the study; joiners draw their own
    heartbeat: int = HEARTBEAT
    retries: int = 2  # a failed trial's parameters are tried this many more times
    baseline: bool = False  # the base settings are the first trial, scored like the others

    def __post_init__(self):
        for name, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
            if getattr(self, name) not in allowed:
                raise unknown(name, getattr(self, name), allowed)

    def shown(self) -> str:
        """The storage URL as messages and files show it: a password is left out."""
        from urllib.parse import urlsplit, urlunsplit

        try:
            parts = urlsplit(self.storage)
            password = parts.password
        except ValueError:  # not a URL Python reads: whatever stands between user: and @ hidden
            return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", self.storage)
        if not password:
            return self.storage
        netloc = parts.netloc.replace(f":{password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


def default_storage(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def _locked_sqlite():
    """RDBStorage on SQLite, with trials claimed one process at a time.

    A worker claims a queued trial by reading that it is waiting and marking it running. A
    server database locks the row between the two (SELECT ... FOR UPDATE); SQLite cannot, so
    two local workers could claim the same trial and run it twice. A file lock beside the
    database makes the claim whole."""
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


def _is_creation_race(error: Exception) -> bool:
    """Workers started together on a new database race to create its tables: the loser finds
    them made (a duplicate table or key, or the file locked), and tries again."""
    import sqlalchemy.exc

    races = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)
    return isinstance(error, (*races, sqlalchemy.exc.ProgrammingError))


def _database_error(error: BaseException | None):
    """The database's own error in an exception's chain (Optuna, failing to record a trial on
    a storage that went away, raises others on top of it), or None."""
    import sqlalchemy.exc

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sqlalchemy.exc.DBAPIError):
            return error
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def answering(engine: Engine):
    """Work on the study; a database that stops answering meanwhile is a StorageLost that
    says so in one line (the trial in progress is failed by its stale heartbeat and retried,
    once the database answers again)."""
    try:
        yield
    except Exception as error:
        lost = _database_error(error)
        if lost is None:
            raise
        first = (str(lost.orig or lost).splitlines() or [type(lost).__name__])[0]
        raise StorageLost(
            (
                Setting("storage"),
                f": lost {engine.shown()} ({first}); the trial in progress is tried again "
                "once its heartbeat is stale: run the same command when the database answers",
            ),
        ) from None


def open_storage(engine: Engine):
    """The study's storage, with heartbeats; a trial whose worker went silent is failed and
    its parameters queued again."""
    import optuna

    sqlite = engine.storage.startswith("sqlite")
    for attempt in range(6):
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kind = _locked_sqlite() if sqlite else optuna.storages.RDBStorage
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
                needed = f"the Python package {error.name}" if error.name else "its database driver"
                raise ConfigError(
                    (
                        Setting("storage"),
                        f" {engine.shown()}: needs {needed} (for PostgreSQL: pip install "
                        "'mnistlab[postgres]')",
                    ),
                ) from None
            except Exception as error:  # noqa: BLE001 - a bad URL, an unreachable server
                if attempt < 5 and _is_creation_race(error):
                    time.sleep(0.2 + random.random())
                    continue
                first = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ConfigError(
                    (Setting("storage"), f": cannot open {engine.shown()} ({first})")
                ) from None
    raise AssertionError("unreachable")


def _sampler(engine: Engine, seed: int | None):
    import optuna

    if engine.sampler in ("grid", "random"):  # a grid's points are queued: nothing samples
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(engine: Engine):
    import optuna

    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }[engine.pruner]()


def open_study(engine: Engine, queue: list[tuple[dict, dict]] = (), setup: dict | None = None):
    """The study, created if new (any worker may be first). Only the creator queues `queue`
    ((params, user attributes) of each fixed trial), then writes `setup`; a worker that joins
    waits for the setup and must bring the same."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setup = setup or {"space": {}, "runs": None}
    storage = open_storage(engine)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=engine.study,
            direction="maximize",
            sampler=_sampler(engine, engine.seed),
            pruner=_pruner(engine),
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker made it: join it
        # A seed of its own: workers seeded alike draw the same points, and run each twice.
        study = optuna.load_study(
            study_name=engine.study,
            storage=storage,
            sampler=_sampler(engine, None),
            pruner=_pruner(engine),
        )
        join(study, engine, setup)
        return study
    # Workers claim queued trials one at a time, so each runs once however many share it.
    for params, attributes in queue:
        study.enqueue_trial(params, attributes)
    # Last: a worker that joins waits for this, so it never finds half a queue.
    study.set_user_attr("setup", setup)
    return study


def setup_of(space: dict | None, points: list[dict] | None) -> dict:
    """What a study was made to run: its space (names and dimensions, by their repr), and a
    sweep's runs (a digest of their keys)."""
    described = {name: repr(dimension) for name, dimension in sorted((space or {}).items())}
    runs = None
    if points is not None:
        runs = hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()[:16]
    return {"space": described, "runs": runs}


def join(study, engine: Engine, setup: dict, wait: float = 120.0) -> None:
    """Wait until the study's creator has queued its trials (however long a large queue
    takes, while it grows), then check that this worker was given the same search or sweep;
    a ConfigError when it was not, or when the queue stops growing for `wait` seconds."""
    from optuna.trial import TrialState

    deadline, queued = time.monotonic() + wait, 0
    while True:
        made = study.user_attrs
        trials = study.get_trials(deepcopy=False)
        if "setup" in made or any(t.state != TrialState.WAITING for t in trials):
            break
        if len(trials) > queued:  # still queueing
            deadline, queued = time.monotonic() + wait, len(trials)
        if time.monotonic() > deadline:
            raise ConfigError(
                (
                    f"{engine.study!r} is still not set up after {wait:.0f} s: the process that "
                    "created it stopped before it had queued its trials; give another ",
                    Setting("study"),
                    " (or remove it: optuna delete-study --study-name "
                    f"{engine.study} --storage URL)",
                )
            )
        time.sleep(0.25)
    made = made.get("setup")
    if made is None:
        return
    if bool(setup["runs"]) != bool(made["runs"]):
        kinds = ("a sweep", "a search") if made["runs"] else ("a search", "a sweep")
        raise ConfigError(
            (f"{engine.study!r} holds {kinds[0]}, not {kinds[1]}: give another ", Setting("study"))
        )
    if setup["runs"] != made["runs"]:
        raise ConfigError(
            (
                f"{engine.study!r} holds another sweep: give the same settings, or another ",
                Setting("study"),
            ),
        )
    if setup["space"] != made["space"]:
        theirs = ", ".join(made["space"]) or "none"
        raise ConfigError(
            (
                f"{engine.study!r} searches another space (over {theirs}): give the same space, "
                "or another ",
                Setting("study"),
            ),
        )


def load_study(engine: Engine):
    """An existing study, to read; a ConfigError that says what is there when it is not."""
    import optuna

    if engine.storage.startswith("sqlite:///"):
        path = Path(engine.storage.removeprefix("sqlite:///"))
        if not path.is_file():  # (opening it would make an empty database)
            raise ConfigError(
                f"no study database at {path}: no search has run there (give the folder of "
                "one, or its storage and study name)"
            )
    storage = open_storage(engine)
    try:
        return optuna.load_study(study_name=engine.study, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ConfigError(
            f"{engine.shown()} holds no study {engine.study!r} (it holds: {names})"
        ) from None
