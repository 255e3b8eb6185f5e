"""One frozen dataclass holds every training setting; its defaults are written here only.

The CLI builds its flags from these fields (type, default and the `help` note), a TOML file
may set any of them, and every run saves `asdict(config)` beside its results. A variant is
`dataclasses.replace(config, field=value)`, so a sweep is a loop.
"""

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mnistlab.errors import ConfigError

MODELS = ("mlp", "logreg")
IMPLEMENTATIONS = ("module", "scratch", "manual")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
AUGMENTATIONS = ("none", "shift", "affine", "elastic")


def _note(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = field(default="mnist", metadata=_note("mnist or fashion-mnist"))
    model: str = field(default="mlp", metadata=_note("mlp, or logreg (784 -> 10)"))
    impl: str = field(
        default="module",
        metadata=_note(
            "module (torch.nn), scratch (tensors + autograd) or manual (hand-written backward)"
        ),
    )
    hidden: tuple[int, ...] = field(
        default=(500,),
        metadata=_note("hidden layer widths, e.g. --hidden 500 or --hidden 1024 1024"),
    )
    activation: str = field(default="relu", metadata=_note("relu, gelu, tanh, sigmoid or none"))
    dropout: float = field(default=0.0, metadata=_note("dropout after each hidden layer"))
    optimizer: str = field(default="adam", metadata=_note("sgd, adam or adamw"))
    lr: float = field(default=1e-2, metadata=_note("peak learning rate"))
    betas: tuple[float, ...] = field(
        default=(0.8, 0.9),
        metadata=_note(
            "Adam's two moment decay rates (shorter memories than torch's 0.9, 0.999 suit a "
            "two-epoch run of a few hundred steps)"
        ),
    )
    label_smoothing: float = field(
        default=0.1,
        metadata=_note(
            "share of the target spread over all classes (0: plain cross-entropy); it keeps a "
            "short run from growing over-confident"
        ),
    )
    momentum: float = field(default=0.0, metadata=_note("SGD momentum"))
    nesterov: bool = field(default=False, metadata=_note("Nesterov momentum (SGD)"))
    weight_decay: float = field(default=0.0, metadata=_note("L2 penalty (decoupled for adamw)"))
    schedule: str = field(
        default="onecycle",
        metadata=_note(
            "learning-rate schedule: constant, cosine, or onecycle (warm-up then cosine decay)"
        ),
    )
    warmup: float = field(default=0.1, metadata=_note("onecycle: fraction of steps warming up"))
    epochs: int = field(default=2, metadata=_note("passes over the training set"))
    batch_size: int = field(default=512, metadata=_note("training batch size"))
    seed: int = field(default=0, metadata=_note("seeds weights, batch order and dropout"))
    val_split: float = field(
        default=0.0, metadata=_note("fraction of the training set held out for validation")
    )
    augment: str = field(
        default="none", metadata=_note("whole-batch augmentation: none, shift, affine or elastic")
    )
    precision: str = field(default="fp32", metadata=_note("fp32, or bf16 autocast for matmuls"))
    device: str = field(default="auto", metadata=_note("auto, cpu, cuda or mps"))
    threads: int = field(default=0, metadata=_note("CPU threads for torch (0: torch's choice)"))
    data_dir: str | None = field(
        default=None,
        metadata=_note(
            "folder holding the dataset's IDX files (else $MNISTLAB_DATA_DIR, the cache, ./data)"
        ),
    )

    def __post_init__(self):
        # Tuples keep the config hashable and comparable; TOML and JSON give lists.
        object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))
        object.__setattr__(self, "betas", tuple(float(beta) for beta in self.betas))
        choices = {
            "model": MODELS,
            "impl": IMPLEMENTATIONS,
            "activation": ACTIVATIONS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
            "precision": PRECISIONS,
            "augment": AUGMENTATIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"--{name.replace('_', '-')}: unknown value "
                    f"{getattr(self, name)!r}; choose one of: {', '.join(allowed)}"
                )
        from mnistlab.data import DATASETS

        if self.dataset not in DATASETS:
            raise ConfigError(
                f"--dataset: unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if any(width < 1 for width in self.hidden):
            raise ConfigError(f"--hidden widths must be at least 1, got {list(self.hidden)}")
        if self.model == "mlp" and not self.hidden:
            raise ConfigError(
                "--hidden needs at least one width for an mlp (or use --model logreg)"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        for name, low, high in (
            ("dropout", 0, 1),
            ("warmup", 0, 1),
            ("val_split", 0, 1),
            ("momentum", 0, 1),
            ("label_smoothing", 0, 1),
        ):
            value = getattr(self, name)
            if not low <= value < high:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be in [{low}, {high}), got {value}"
                )
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"--betas takes two numbers in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0 or self.threads < 0:
            raise ConfigError("--weight-decay and --threads cannot be negative")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("--nesterov needs --optimizer sgd and a --momentum above 0")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 500, 10)."""
        return (784, *(self.hidden if self.model == "mlp" else ()), 10)


ASSIGNMENT = dict(
    optimizer="sgd", lr=0.01, batch_size=64, epochs=5, schedule="constant", label_smoothing=0.0
)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def from_dict(values: dict, base: TrainConfig | None = None) -> TrainConfig:
    """A config from plain values (a TOML file, a saved config.json); unknown keys are errors."""
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ConfigError(
            f"unknown config keys: {', '.join(unknown)}; known keys: {', '.join(field_names())}"
        )
    try:
        return dataclasses.replace(base or TrainConfig(), **values)
    except TypeError as error:
        raise ConfigError(f"bad config value: {error}") from None


def load_toml(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    return from_dict(values.get("train", values), base)
