"""Sweeps: config variants x seeds, each an ordinary run, and the folder that holds them.

    sweep = Sweep("sweeps/width")
    result = sweep.run(plan(base, variants(base, "width"), seeds=[0, 1]), runtime)
    result.rows   # one per configuration: mean ± std over seeds, n

Each run lives in `SWEEP/runs/<key>/`, where `key` is a hash of its experiment config (never
of where it ran: a sweep resumed with another data folder or thread count redoes nothing), so
`mnistlab evaluate`, `plot`, `report` and `--resume` take any of them. Every finished run is
also appended as one JSON line to `results.jsonl`; running a sweep again skips what is done and
continues a run that was stopped mid-way from its checkpoint. One process at a time works in a
sweep folder (a lock), unless the sweep is shared through a study's storage (`engine`): then
every process given the same sweep and storage, on any machine, takes runs from one queue,
each run once; `workers` processes on this machine do the same through an SQLite study in the
folder (several small runs at once use two cores better than one run on both). A finished
sweep writes summary.md, summary.csv and its pictures.
"""

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnistlab.config import Runtime, TrainConfig
from mnistlab.datasets import get_spec
from mnistlab.errors import RunError
from mnistlab.files import atomic_write
from mnistlab.runfiles import CHECKPOINT, lock_folder, plain
from mnistlab.sweep.grids import PRESETS, parse_grid, plan, run_key, variants
from mnistlab.sweep.results import (
    RESULTS,
    chosen_by_record,
    read_results,
    summarize,
    write_summary,
)

__all__ = [
    "PRESETS",
    "RESULTS",
    "Sweep",
    "SweepResult",
    "is_sweep",
    "parse_grid",
    "plan",
    "read_results",
    "run_key",
    "variants",
]


def is_sweep(folder: str | Path) -> bool:
    return (Path(folder) / RESULTS).is_file()


def study_name(folder: str | Path) -> str:
    """The study a sweep's runs are queued in, unless one is named: sweep-FOLDERNAME."""
    return f"sweep-{Path(folder).name}"


@dataclass(frozen=True)
class SweepResult:
    records: list[dict]  # the sweep's finished runs, in its order
    rows: list[dict]  # the summary: one row per configuration
    planned: int  # runs the sweep holds
    others: int  # runs of other settings found in the folder (report shows them)

    @property
    def complete(self) -> bool:
        return len(self.records) == self.planned


class Sweep:
    """A sweep folder; `engine` (a tune.Engine) shares its runs through a study's storage."""

    def __init__(self, folder: str | Path, engine=None):
        self.folder = Path(folder)
        self.engine = engine

    def run(
        self,
        configs: list[TrainConfig],
        runtime: Runtime | None = None,
        *,
        pictures: bool = True,
        on_record: Callable[[dict, bool], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        workers: int = 1,
        summary: bool = True,
    ) -> SweepResult:
        """Train every config not already in the folder's results, then write the summary
        (and pictures) of what is done. `on_record(record, skipped)` sees each run as it is
        done or found done before in this process (with `workers`, the runs the other worker
        processes train are not seen)."""
        runtime = runtime or Runtime.from_environment()
        for name in {config.dataset for config in configs}:
            get_spec(name)  # an unknown data set is refused before the folder is made
        if self.folder.exists() and not self.folder.is_dir():
            raise RunError(f"cannot use {self.folder} as a sweep folder: it is a file")
        self.folder.mkdir(parents=True, exist_ok=True)
        if workers > 1:  # held here, for the workers this process starts to share
            lock = lock_folder(self.folder)
            try:
                records = self._in_processes(configs, runtime, workers, on_record, should_stop)
                atomic_write(self.folder / RESULTS, "".join(json.dumps(r) + "\n" for r in records))
            finally:
                lock.release()
        elif self.engine is not None:
            records = self._shared(configs, runtime, on_record, should_stop)
            atomic_write(self.folder / RESULTS, "".join(json.dumps(r) + "\n" for r in records))
        else:
            lock = lock_folder(self.folder)
            try:
                records = self._local(configs, runtime, on_record, should_stop)
            finally:
                lock.release()
        keys = {run_key(config) for config in configs}
        others = len({record["key"] for record in read_results(self.folder)} - keys)
        rows = summarize(records)
        if rows and summary:
            self.write_summary(rows, pictures)
        return SweepResult(records, rows, len(configs), others)

    def rows(self) -> list[dict]:
        """The summary of every run in the folder."""
        return summarize(read_results(self.folder))

    def write_summary(self, rows: list[dict] | None = None, pictures: bool = True) -> list[Path]:
        """summary.md, summary.csv and (with `pictures`) the accuracy-against-cost plots."""
        from mnistlab.sweep.pictures import sweep_pictures

        rows = self.rows() if rows is None else rows
        written = list(write_summary(self.folder, rows))
        if pictures:
            written += sweep_pictures(rows, self.folder)
        return written

    def _local(self, configs, runtime, on_record, should_stop) -> list[dict]:
        done = {record["key"]: record for record in read_results(self.folder)}
        datasets: dict[tuple, object] = {}
        records = []
        for config in configs:
            key = run_key(config)
            if key in done:
                records.append(done[key])
                if on_record is not None:
                    on_record(done[key], True)
                continue
            if should_stop is not None and should_stop():
                break
            record = _train(config, self.folder / "runs" / key, runtime, datasets, should_stop)
            if record is None:
                break  # an unfinished run is not recorded; the next invocation continues it
            record = {"key": key, **record}
            _append(self.folder, record)
            done[key] = record
            records.append(record)
            if on_record is not None:
                on_record(record, False)
        return records

    def _in_processes(self, configs, runtime, workers, on_record, should_stop) -> list[dict]:
        """The runs shared among `workers` processes on this machine, this one among them,
        each with its share of the cores, through the sweep's study (an SQLite file in the
        folder, unless the sweep has an engine): the queue machines sharing a sweep use."""
        from mnistlab import cores
        from mnistlab.workqueue import workers as processes
        from mnistlab.workqueue.storage import Engine, default_storage, load_study

        processes.check_count(workers)
        engine = self.engine or Engine(default_storage(self.folder), study_name(self.folder))
        each = runtime.threads or cores.threads(cores.usable(), processes=workers)
        share = dataclasses.replace(runtime, threads=each)
        job = {
            "folder": str(self.folder.resolve()),
            "engine": dataclasses.asdict(engine),
            "configs": [dataclasses.asdict(config) for config in configs],
            "runtime": dataclasses.asdict(share),
        }

        def here() -> None:  # this process is one of the workers, taking runs beside them
            Sweep(self.folder, engine)._shared(configs, share, on_record, should_stop)

        processes.spawn(json.dumps(job), workers, here, should_stop, kind="sweep")
        return _finished(load_study(engine), [run_key(config) for config in configs])

    def _shared(self, configs, runtime, on_record, should_stop) -> list[dict]:
        """The runs through a study: each process claims runs from one queue, so each runs
        once; it writes its runs under its own folder and the records go to the study."""
        from mnistlab.workqueue.claims import queue_wait, set_aside
        from mnistlab.workqueue.storage import answering, open_study, setup_of

        keys = [run_key(config) for config in configs]
        points = [{"key": key} for key in keys]
        engine = dataclasses.replace(self.engine, sampler="random", pruner="none")
        queue = [({}, {"point": index, **point}) for index, point in enumerate(points)]
        study = open_study(engine, queue, setup_of(None, points))
        datasets: dict = {}

        def objective(trial) -> float:
            if "point" not in trial.user_attrs:  # the queue ran dry: nothing left for us
                set_aside(trial, requeue=False)
            index = trial.user_attrs["point"]
            folder = self.folder / "runs" / keys[index]
            record = _train(configs[index], folder, runtime, datasets, should_stop)
            if record is None:  # stopped mid-run: the run goes back to the queue for anyone
                set_aside(trial, requeue=True)
            record = {"key": keys[index], **record}
            trial.set_user_attr("record", record)
            if on_record is not None:
                on_record(record, False)
            return chosen_by_record(record)

        with answering(engine):
            study.optimize(objective, callbacks=[queue_wait(engine.heartbeat, should_stop)])
        return _finished(study, keys)


def _finished(study, keys: list[str]) -> list[dict]:
    """The records of the study's finished runs, in the order of `keys`."""
    from optuna.trial import TrialState

    finished = {
        t.user_attrs["record"]["key"]: t.user_attrs["record"]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    return [finished[key] for key in keys if key in finished]


def _append(folder: Path, record: dict) -> None:
    path = folder / RESULTS
    if path.is_symlink():  # planted: never followed, read or appended to
        raise RunError(f"{path} is a link, not the sweep's results file; remove it")
    # After a crash mid-write the file may end inside a line: start a fresh one.
    torn = path.is_file() and path.stat().st_size > 0 and not _ends_a_line(path)
    # O_NOFOLLOW: a results.jsonl planted as a link is refused, never followed and appended to.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    try:
        descriptor = os.open(path, flags, 0o666)
    except OSError as error:
        raise RunError(f"cannot append to {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "a") as handle:
        handle.write(("\n" if torn else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _train(config, run_folder, runtime, datasets, should_stop) -> dict | None:
    """One run of the sweep (continued from its checkpoint if it has one); its record."""
    from mnistlab import models
    from mnistlab.runs import Run

    if (run_folder / CHECKPOINT).exists():
        run = Run.open(run_folder)
    else:
        run = Run.create(run_folder, config)
    with run:
        if not run.finished:
            source = (config.dataset, config.val_split)
            if source not in datasets:
                datasets[source] = run.load_tensors(runtime)
            result = run.fit(
                runtime, tensors=datasets[source], pictures=False, should_stop=should_stop
            )
            if result.interrupted:
                return None
        final = run.history[-1]
        record = {
            "config": dataclasses.asdict(config),
            "run": str(Path("runs") / run_folder.name),
            "parameters": models.count_parameters(config.layer_sizes),
            "train_flops": sum(
                models.epoch_flops(config.layer_sizes, epoch["samples"]) for epoch in run.history
            ),
            "seconds": float(sum(epoch["seconds"] for epoch in run.history)),
            "test_accuracy": float(final["test_accuracy"]),
            "test_loss": final["test_loss"],
            "history": run.history,
        }
        if "val_accuracy" in final:
            record["val_accuracy"] = final["val_accuracy"]
    return json.loads(json.dumps(plain(record)))  # the form it has when read back from disk
