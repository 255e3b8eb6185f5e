"""A run: a folder that describes itself, and the one object that starts, resumes, saves,
stops and draws it. The CLI, sweeps and notebooks all go through `Run`.

A run folder holds config.json (the experiment), machine.json (where it ran: device, threads,
the data folder, versions), metrics.jsonl (one JSON line per finished epoch), checkpoint.pt
(after every epoch and at an interruption) and the run's pictures. The folder is the user's
data, so a `Run`:
- never writes into a non-empty folder that is not a mnistlab run;
- is the only process using its folder (a lock, held from create/open until close);
- resumes only with the settings it was started with (epochs may grow, impl may change:
  the three implementations share weights and optimizer state);
- stops between two steps when the caller's stop flag is set, leaving a checkpoint that
  resumes to exactly the weights an uninterrupted run reaches.

    with Run.create("runs/wide", TrainConfig(hidden=(1024,))) as run:
        result = run.fit(Runtime(data_dir="data"))
"""

import dataclasses
import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

from mnistlab import checkpoint, data, devices, meta, resident
from mnistlab import train as training
from mnistlab.config import Runtime, TrainConfig, describe, show
from mnistlab.datasets import get_spec
from mnistlab.errors import CheckpointError, PictureError, RunError, Setting
from mnistlab.files import LOCK, remove_stale_temporaries
from mnistlab.runfiles import (
    CHECKPOINT,
    CONFIG,
    EVALUATION,
    MACHINE,
    data_dir_of,
    is_run,
    lock_folder,
    read_metrics,
    write_json,
    write_metrics,
)

# Settings a resumed run may change: more epochs, and another of the three implementations.
RESUMABLE_CHANGES = ("epochs", "impl")


class StopFlag:
    """Asked between steps: `set()` it (from a signal handler, a thread, a callback) and the
    run stops after the current step with a checkpoint on disk."""

    def __init__(self):
        self.reason: str | None = None

    def set(self, reason: str = "stop requested") -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None

    def __call__(self) -> bool:
        return self.reason is not None

    @property
    def exit_status(self) -> int:
        """The status a command stopped this way exits with: as a shell reports a process a
        signal stopped (the reason is the signal's name), 130 (Ctrl-C's) for any other stop."""
        return signal_status(self.reason) if self.reason in signal.Signals.__members__ else 130


def signal_status(name: str) -> int:
    """128 + the signal's number: what a shell reports for a process the signal stopped."""
    return 128 + signal.Signals[name].value


def _check_target(folder: Path) -> None:
    """Refuse, before anything is loaded or written, a folder that cannot hold a run."""
    try:
        _check_folder(folder)
    except OSError as error:  # a name too long, a folder that cannot be listed, ...
        raise RunError(f"cannot make the run folder {folder}: {error.strerror}") from None


def _check_folder(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise RunError(f"cannot make the run folder {folder}: {parent} is a file")
    if folder.exists():
        entries = [p for p in folder.iterdir() if p.name != LOCK]
        if entries and not is_run(folder):
            raise RunError(
                f"{folder} is not empty and is not a mnistlab run folder; nothing in it was "
                "touched: choose another folder"
            )
        if (folder / CHECKPOINT).exists():
            raise RunError(
                (
                    f"{folder} already holds a run; continue it with ",
                    Setting("resume"),
                    f" {folder} or choose another folder",
                ),
            )


class Run:
    """One training run and its folder. Make one with `create`, `new` or `open`."""

    def __init__(self, folder: Path, config: TrainConfig, lock: FileLock, saved: dict | None):
        self.folder = folder
        self.config = config
        self.history: list[dict] = list(saved["history"]) if saved else []
        self.pictures: list[Path] = []
        self._lock = lock
        self._saved = saved  # the checkpoint being resumed, until fit() has used it
        self._state = None  # (model, optimizer, position) after a fit

    # --- starting and resuming ---------------------------------------------------------------

    @classmethod
    def create(cls, folder: str | Path, config: TrainConfig) -> "Run":
        """A new run in `folder` (made if missing; an empty folder or an unstarted run's is
        reused). Refuses a folder holding anything else."""
        folder = Path(folder)
        get_spec(config.dataset)  # an unknown data set is refused before the folder is made
        _check_target(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"cannot make the run folder {folder}: {error.strerror}") from None
        lock = lock_folder(folder)
        try:
            _check_target(folder)  # again, now that no other process can be writing it
            remove_stale_temporaries(folder)
            write_json(folder / CONFIG, dataclasses.asdict(config))
        except BaseException:
            lock.release()
            raise
        return cls(folder, config, lock, None)

    @classmethod
    def new(cls, config: TrainConfig, root: str | Path = "runs") -> "Run":
        """A new run in a fresh folder ROOT/DATASET-MODEL-TIME (-2, -3, ... when taken)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for count in itertools.count(1):
            name = f"{config.dataset}-{config.model}-{stamp}" + (f"-{count}" if count > 1 else "")
            folder = Path(root) / name
            try:
                folder.mkdir(parents=True)  # claims the name: mkdir fails if it exists
            except FileExistsError:
                continue
            except OSError as error:
                raise RunError(f"cannot make the run folder {folder}: {error.strerror}") from None
            return cls.create(folder, config)
        raise AssertionError("unreachable")

    @classmethod
    def open(cls, folder: str | Path, changes: dict | None = None) -> "Run":
        """An existing run, to continue it. `changes` are settings asked for now: only those
        in RESUMABLE_CHANGES may differ from the run's own (and epochs may only grow)."""
        path = checkpoint.resolve(folder)
        folder = path.parent
        lock = lock_folder(folder)
        try:
            remove_stale_temporaries(folder)
            saved = checkpoint.load(path)
            config = _resumed_config(folder, saved, changes or {})
        except BaseException:
            lock.release()
            raise
        return cls(folder, config, lock, saved)

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def finished(self) -> bool:
        position = self._position()
        return position.epoch >= self.config.epochs

    def close(self) -> None:
        """Let other processes use the folder."""
        self._lock.release()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- training ----------------------------------------------------------------------------

    def fit(
        self,
        runtime: Runtime | None = None,
        *,
        tensors: resident.Tensors | None = None,
        dry_run: bool = False,
        pictures: bool = True,
        on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        pacer=None,
    ) -> training.TrainResult:
        """Train to `config.epochs`, saving metrics and a checkpoint after every epoch.

        `tensors` reuses data already on the device (a sweep loads it once); otherwise the
        data set is found or fetched as `runtime` says. When `should_stop()` turns true the
        run stops after the current step and saves where it stood (`result.interrupted`).
        A finished run draws its pictures unless `pictures` is False. With `pacer`
        (mnistlab.cores.Pacer) the thread count is chosen again each epoch (train.train).
        """
        runtime = runtime or Runtime.from_environment()
        if tensors is None:
            tensors = self.load_tensors(runtime)
        if dry_run:
            tensors = resident.dry_run(tensors, self.config.batch_size)
        model, optimizer, position = self._start(tensors.x_train.device)
        self._write_machine(runtime, tensors.x_train.device)

        def epoch_done(record, position):
            self.history.append(record)
            self._save(model, optimizer, position, tensors.normalization)
            if on_epoch is not None:
                on_epoch(record)

        result = training.train(
            self.config,
            tensors,
            model=model,
            optimizer=optimizer,
            position=position,
            history=self.history,
            on_batch=on_batch,
            on_epoch=epoch_done,
            should_stop=should_stop,
            pacer=pacer,
        )
        self._state = (model, optimizer, result.position)
        if result.interrupted and result.position.batch:  # finished epochs are saved already
            self._save(model, optimizer, result.position, tensors.normalization)
        if not result.interrupted and result.test_logits is not None:
            self._write_evaluation(result, tensors)
        if pictures and not result.interrupted:
            self.draw_pictures(result, tensors)
        return result

    def _write_evaluation(self, result, tensors) -> None:
        """The final test evaluation (per-class accuracy, confusion matrix) for reports, and
        the calibration of the model's confidence (calibration.py) for predictions: fitted on
        the validation split where the run holds one out, else on the test set (it changes
        no prediction, only how sure each one says it is)."""
        from mnistlab import calibration
        from mnistlab.evaluate import predict, score

        evaluation = score(result.test_logits, tensors.y_test, len(tensors.classes))
        if tensors.x_val is not None and len(tensors.x_val):
            val_logits = predict(result.model, tensors.x_val)
            fitted = calibration.fit(val_logits, tensors.y_val, "validation")
        else:
            fitted = calibration.fit(result.test_logits, tensors.y_test, "test")
        write_json(
            self.folder / EVALUATION,
            {**evaluation.as_dict(tensors.classes), "calibration": fitted.as_dict()},
        )

    def load_tensors(self, runtime: Runtime) -> resident.Tensors:
        """The run's data set on the runtime's device, normalised as the run trains on it."""
        dataset = _dataset(self.config, self.folder, runtime)
        return resident.prepare(self.config, dataset, devices.resolve(runtime.device))

    def draw_pictures(self, result: training.TrainResult, tensors: resident.Tensors):
        """The curves, confusion matrix, mistakes and first-layer weights, in the folder."""
        from mnistlab import plots

        try:
            self.pictures = plots.run_pictures(
                self.folder,
                result.model,
                tensors,
                self.history,
                result.test_logits,
                title=describe(self.config),
            )
        except OSError as error:
            raise PictureError(
                f"could not draw the run pictures ({error.strerror or error}); the run is "
                f"saved: draw them with 'mnistlab plot {self.folder}'"
            ) from None
        return self.pictures

    def _position(self) -> training.Position:
        if self._state is not None:
            return self._state[2]
        if self._saved is not None:
            saved = self._saved
            return training.Position(saved["epoch"], saved["batch"], saved["rng"], saved["partial"])
        return training.Position()

    def _start(self, device: torch.device):
        """Model, optimizer and position: fresh, from the checkpoint, or from the last fit."""
        if self._state is not None:
            return self._state
        model, optimizer = training.build(self.config, device)
        if self._saved is not None:
            checkpoint.load_weights(model, self._saved["model"], str(self.folder))
            try:
                optimizer.load_state_dict(self._saved["optimizer"])
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise CheckpointError(
                    f"{self.folder}: its optimizer state does not fit optimizer "
                    f"{self.config.optimizer} ({error})"
                ) from None
        return model, optimizer, self._position()

    def _save(self, model, optimizer, position, normalization) -> None:
        checkpoint.save(
            self.folder / CHECKPOINT,
            config=self.config,
            model=model,
            optimizer=optimizer,
            position=position,
            history=self.history,
            normalization=normalization,
        )
        write_metrics(self.folder, self.history)

    def _write_machine(self, runtime: Runtime, device: torch.device) -> None:
        data_dir = _data_dir(runtime, self.folder)
        write_json(
            self.folder / MACHINE,
            {
                "device": str(device),
                "threads": torch.get_num_threads(),
                # Resolved, so that it means the same folder from wherever the run is used.
                "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
                "mnistlab": meta.version(),
                "torch": torch.__version__,
            },
        )


def _resumed_config(folder: Path, saved: dict, changes: dict) -> TrainConfig:
    config = saved["config"]
    asked = dataclasses.replace(config, **changes)

    differences = [
        f"{name} {show(getattr(config, name))} -> {show(getattr(asked, name))}"
        for name in changes
        if name not in RESUMABLE_CHANGES and getattr(asked, name) != getattr(config, name)
    ]
    if differences:
        raise RunError(
            f"{folder} was trained with other settings than those asked for now: "
            f"{'; '.join(differences)}. A resumed run keeps its settings (only epochs may grow "
            "and impl may change); start a new run to train with these"
        )
    if asked.epochs < config.epochs:
        raise RunError(
            f"{folder} trains for {config.epochs} epochs; epochs may only grow when resuming, "
            f"not to {asked.epochs}"
        )
    return asked


@dataclasses.dataclass(frozen=True)
class Saved:
    """A saved run, read-only: its config, model (weights loaded), history and data."""

    folder: Path
    config: TrainConfig
    model: object
    history: list[dict]
    tensors: resident.Tensors


def _data_dir(runtime: Runtime, folder: Path) -> str | None:
    """The data folder a run records: the runtime's, else the one it recorded before."""
    return runtime.data_dir or data_dir_of(folder)


def _dataset(config: TrainConfig, folder: Path, runtime: Runtime) -> data.Dataset:
    """A run's data: looked for in the runtime's folder, then where the run found it."""
    folders = [runtime.data_dir, data_dir_of(folder)]
    return data.load(config.dataset, folders, **runtime.data_options())


def load(path: str | Path, runtime: Runtime | None = None) -> Saved:
    """A run folder or checkpoint, with its data set on the runtime's device, normalised as
    the run was (the data is found where the run found it unless the runtime says)."""
    runtime = runtime or Runtime.from_environment()
    device = devices.resolve(runtime.device)
    saved, model = checkpoint.load_model(path, device)
    folder = checkpoint.resolve(path).parent
    config = saved["config"]
    dataset = _dataset(config, folder, runtime)
    prepared = resident.prepare(config, dataset, device, tuple(saved["normalization"]))
    history = saved["history"] or read_metrics(folder)
    return Saved(folder, config, model, history, prepared)
