"""A study and its folder, the way a Run is a run and its folder.

    study = Study("studies/lr")
    study.optimize(parse_space(["lr=log:1e-4:3e-2"]), base, runtime, trials=20)
    summary = study.finish(runtime)   # best.toml, study.json, pictures, the best's test accuracy

The folder holds the trials' run folders (trials/NNNN), study.json (where the study lives,
for `report` and `plot`), best.toml and the study's pictures; with the default storage, also
the SQLite database (study.db). A study driven from Python leaves what the CLI leaves.
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from mnistlab.config import Runtime, TrainConfig
from mnistlab.errors import ConfigError, Setting
from mnistlab.files import atomic_write, read_small
from mnistlab.tune import results, search
from mnistlab.tune.space import Dimension
from mnistlab.workqueue import workers as processes
from mnistlab.workqueue.storage import Engine, default_storage

STUDY = "study.json"
BEST = "best.toml"


def is_study(folder: str | Path) -> bool:
    return (Path(folder) / STUDY).is_file()


class Study:
    """A search on Optuna: its storage (`engine`) and the folder its trials are written in."""

    def __init__(self, folder: str | Path, engine: Engine | None = None):
        self.folder = Path(folder)
        self.engine = engine or Engine(default_storage(self.folder))

    @classmethod
    def open(cls, folder: str | Path, storage: str | None = None) -> "Study":
        """The study a folder's study.json names (`storage` replaces its URL, for one whose
        password was left out of the file)."""
        path = Path(folder) / STUDY
        try:
            where = json.loads(read_small(path))
            engine = Engine(storage or str(where["storage"]), str(where["study"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: not a study description ({error})") from None
        return cls(folder, engine)

    def optimize(
        self,
        space: dict[str, Dimension] | list[str],
        base: TrainConfig,
        runtime: Runtime | None = None,
        *,
        trials: int | None = None,
        timeout: float | None = None,
        workers: int = 1,
        dataset=None,
        on_trial: Callable | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Search until the study has `trials` finished trials, `timeout` seconds pass, or a
        grid is done; in this process, or in `workers` processes on this machine (each with
        `runtime.threads` threads, or its share of the cores). The base gets a validation
        split (5,000 images) unless it has one."""
        from mnistlab.tune.space import parse_space

        specs = space if isinstance(space, list) else None
        space = parse_space(space) if specs is not None else space
        if not space:
            raise ConfigError(
                (Setting("space"), ": give at least one dimension, e.g. lr=log:1e-4:3e-2")
            )
        from mnistlab.datasets import get_spec

        get_spec(base.dataset)  # refused before the folder is made
        runtime = runtime or Runtime.from_environment()
        base = search.search_config(base)
        search.check_budget(self.engine, trials, timeout)  # refused before anything is made
        search.queue_of(self.engine, space, base)
        self._check_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._describe()
        if workers > 1:
            if specs is None:
                specs = [_spec(dimension) for dimension in space.values()]
            search.open_search(self.engine, space, base)  # made, and queued, once
            from mnistlab import cores

            each = runtime.threads or cores.threads(cores.usable(), processes=workers)
            share = dataclasses.replace(runtime, threads=each)
            job = _job(self, specs, base, share, trials, timeout)

            def here() -> None:  # this process is one of the workers, searching beside them
                self._search(space, base, share, trials, timeout, dataset, on_trial, should_stop)

            processes.spawn(job, workers, here, should_stop)
            return
        self._search(space, base, runtime, trials, timeout, dataset, on_trial, should_stop)

    def _search(self, space, base, runtime, trials, timeout, dataset, on_trial, should_stop):
        search.optimize(
            self.engine,
            space,
            base,
            self.folder,
            runtime,
            trials=trials,
            timeout=timeout,
            dataset=dataset,
            on_trial=on_trial,
            should_stop=should_stop,
        )

    def summary(self, top: int = 5) -> dict:
        return results.summary(self.engine, top)

    def finish(
        self, runtime: Runtime | None = None, *, measure: bool = True, pictures: bool = True
    ) -> dict:
        """The best's test accuracy (measured once, unless `measure` is False), best.toml,
        study.json and the pictures; returns the summary, with `measured` (None before any
        trial completed)."""
        measured = results.measure_best(self.engine, runtime) if measure else None
        summary = self.summary()
        self.folder.mkdir(parents=True, exist_ok=True)  # a machine that ran no trial of it
        self._describe()
        if summary["best"]:
            atomic_write(self.folder / BEST, results.best_config_toml(self.engine))
        if pictures:
            self.draw_pictures(summary)
        return {**summary, "measured": measured}

    def draw_pictures(self, summary: dict | None = None) -> list[Path]:
        """The study's pictures, in its folder (none before a trial completed)."""
        from mnistlab.tune.pictures import study_pictures

        return study_pictures(summary or self.summary(), self.folder)

    def _check_folder(self) -> None:
        """A folder holds one study: another's trials would collide on trials/0000."""
        path = self.folder / STUDY
        if not path.is_file():
            return
        try:
            other = Study.open(self.folder).engine
        except ConfigError:
            return  # not readable as a study: rewritten by this one
        if (other.study, other.storage) != (self.engine.study, self.engine.shown()):
            raise ConfigError(
                (
                    Setting("out"),
                    f": {self.folder} holds study {other.study!r} ({other.storage}); give this "
                    "study a folder of its own",
                ),
            )

    def _describe(self) -> None:
        """study.json: where the study lives (a password left out), for report and plot."""
        where = {"storage": self.engine.shown(), "study": self.engine.study}
        atomic_write(self.folder / STUDY, json.dumps(where, indent=2) + "\n")


def _spec(dimension: Dimension) -> str:
    """A dimension written back as NAME=KIND:ARGS."""
    from mnistlab.tune.space import encode

    if dimension.kind == "choice":
        return f"{dimension.name}=choice:" + ",".join(map(str, map(encode, dimension.choices)))
    return f"{dimension.name}={dimension.kind}:{dimension.low!r}:{dimension.high!r}"


def _job(study, specs: list[str], base, runtime, trials, timeout) -> str:
    """The search a worker runs, as one JSON argument."""
    return json.dumps(
        {
            "folder": str(Path(study.folder).resolve()),
            "engine": dataclasses.asdict(study.engine),
            "space": list(specs),
            "base": dataclasses.asdict(base),
            "runtime": dataclasses.asdict(runtime),  # (its threads: the worker's share)
            "trials": trials,
            "timeout": timeout,
        }
    )
