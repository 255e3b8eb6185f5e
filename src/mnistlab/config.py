"""The settings of a run, each with its default and help written once.

Two frozen dataclasses, kept apart on purpose:
- `TrainConfig` is the experiment: everything that changes the result (data set, model,
  optimizer, seed, ...). It keys sweeps, is saved as a run's config.json, and a resumed run
  must match it.
- `Runtime` is the machine: where and how it runs (device, threads, data folder, mirrors,
  progress bars). Changing it never changes what a run means.

The CLI builds its flags from these fields (type, default and the `help` note), a TOML file
may set any of them, and a variant is `dataclasses.replace(config, field=value)`, so a sweep
is a loop. Every value, from a flag, a TOML file, a grid or Python, passes the same checks in
`__post_init__`; messages name the field, and the CLI writes it as its flag.
"""

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.errors import ConfigError, Setting, invalid, unknown

# Every choice, declared once: validation, argparse and the help texts read these. The data
# sets are the registry in data.py.
MODELS = ("mlp", "logreg")
IMPLEMENTATIONS = ("module", "scratch", "manual")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "none")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
AUGMENTATIONS = ("none", "shift", "affine", "elastic")
NORMALIZATIONS = ("standard", "half")
EXPORT_FORMATS = ("onnx", "export", "torchscript", "safetensors")

# Upper limits that keep a mistyped number from reaching torch as an allocation or overflow.
MAX_SEED = 2**63 - 1
MAX_WIDTH = 1 << 20
MAX_DEPTH = 100  # hidden layers
# Weights in the whole model, checked from the settings before any is made: 1 GiB in float32,
# before gradients and Adam's state.
MAX_WEIGHTS = 1 << 28
MAX_EPOCHS = 100_000
# `check`'s checks (mnistlab.diagnose), in the order they run; `only` may name some of them,
# and the slow ones it leaves out (gradients, overfit, agrees) are not run.
CHECKS = (
    "leaf", "gradient", "output", "logits", "count", "initial_loss", "gradients", "overfit",
    "agrees",
)  # fmt: skip
CHECK_TIME_LIMIT = 120.0  # seconds `check` gives one model file to run and be checked
MAX_BATCH = 1 << 24
MAX_WORKERS = 64  # worker processes one command starts on this machine


def _note(text: str, choices: tuple[str, ...] | None = None) -> dict:
    return {"help": text, "choices": choices}


@dataclass(frozen=True)
class TrainConfig:
    """The experiment: every setting that changes a run's result."""

    dataset: str = field(
        default="mnist", metadata=_note("mnist, fashion-mnist, or one of $MNISTLAB_DATASETS")
    )
    model: str = field(default="mlp", metadata=_note("mlp, or logreg (784 -> 10)", MODELS))
    impl: str = field(
        default="module",
        metadata=_note(
            "module (torch.nn), scratch (tensors + autograd) or manual (hand-written backward)",
            IMPLEMENTATIONS,
        ),
    )
    hidden: tuple[int, ...] = field(
        default=(500,),
        metadata=_note("hidden layer widths, e.g. --hidden 500 or --hidden 1024 1024"),
    )
    activation: str = field(
        default="relu", metadata=_note("activation after each hidden layer", ACTIVATIONS)
    )
    dropout: float = field(default=0.0, metadata=_note("dropout after each hidden layer"))
    optimizer: str = field(default="adam", metadata=_note("the optimizer", OPTIMIZERS))
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
        metadata=_note("learning-rate schedule (onecycle: warm-up then cosine decay)", SCHEDULES),
    )
    warmup: float = field(default=0.1, metadata=_note("onecycle: fraction of steps warming up"))
    epochs: int = field(default=2, metadata=_note("passes over the training set"))
    batch_size: int = field(default=512, metadata=_note("training batch size"))
    seed: int = field(
        default=0, metadata=_note("seeds weights, batch order, dropout and augmentation")
    )
    val_split: float = field(
        default=0.0, metadata=_note("fraction of the training set held out for validation")
    )
    augment: str = field(default="none", metadata=_note("whole-batch augmentation", AUGMENTATIONS))
    # auto: bf16 only where the hardware has it, and for the default and best recipes three
    # seeds lost no accuracy to it (docs/speed.md, "bf16"); each epoch records what it used.
    precision: str = field(
        default="auto",
        metadata=_note(
            "auto (bf16 where the CPU or GPU multiplies it natively, fp32 elsewhere), fp32, or "
            "bf16 autocast for matmuls",
            PRECISIONS,
        ),
    )
    normalize: str = field(
        default="standard",
        metadata=_note(
            "input scaling: standard (the training pixels' mean and std) or half (pixels to "
            "[-1, 1], the notebook's Normalize((0.5,), (0.5,)))",
            NORMALIZATIONS,
        ),
    )

    def __post_init__(self):
        _check_types(self)
        _check_choices(self)
        # The data set is checked where it is used (a registry may come from the machine's
        # environment, which a config's validation does not read): datasets.get_spec.
        check = _Checker()
        check.positive("lr", self.lr)
        check.between("epochs", self.epochs, 1, MAX_EPOCHS)
        check.between("batch_size", self.batch_size, 1, MAX_BATCH)
        check.between("seed", self.seed, 0, MAX_SEED)
        for name in ("dropout", "warmup", "val_split", "momentum", "label_smoothing"):
            check.fraction(name, getattr(self, name))
        check.at_least("weight_decay", self.weight_decay, 0)
        if len(self.hidden) > MAX_DEPTH:
            raise ConfigError(
                (
                    Setting("hidden"),
                    f": at most {MAX_DEPTH} hidden layers, got {len(self.hidden):,}",
                )
            )
        if any(not 1 <= width <= MAX_WIDTH for width in self.hidden):
            raise ConfigError(
                (
                    Setting("hidden"),
                    f" widths must be between 1 and {MAX_WIDTH:,}, got {list(self.hidden)}",
                ),
            )
        sizes = self.layer_sizes
        layers = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)]
        if sum(layers) > MAX_WEIGHTS:
            raise ConfigError(
                (
                    Setting("hidden"),
                    f" widths {list(self.hidden)} make a model of {sum(layers):,} weights, "
                    f"more than the {MAX_WEIGHTS:,} allowed",
                ),
            )
        if self.model == "mlp" and not self.hidden:
            raise ConfigError(
                (Setting("hidden"), " needs at least one width for an mlp (or use model logreg)")
            )
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(
                (Setting("betas"), f" takes two numbers in [0, 1), got {list(self.betas)}")
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError((Setting("nesterov"), " needs optimizer sgd and a momentum above 0"))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 500, 10)."""
        return (INPUTS, *(self.hidden if self.model == "mlp" else ()), CLASSES)


@dataclass(frozen=True)
class Runtime:
    """The machine: where and how a run is computed. Nothing here changes its result."""

    device: str = field(
        default="auto", metadata=_note("where to train (auto: an accelerator if any)", DEVICES)
    )
    threads: int = field(
        default=0,
        metadata=_note(
            "CPU threads for torch (0: the cores other programs leave free when the command starts)"
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_note(
            "folder holding the dataset's IDX files (else $MNISTLAB_DATA_DIR; then the cache "
            "and ./data)"
        ),
    )
    mirrors: tuple[str, ...] = field(
        default=(),
        metadata=_note(
            "extra download mirrors tried first, then $MNISTLAB_MIRROR's (DATASET=URL: for "
            "one data set)"
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_note(
            "folder for downloads and decoded arrays (else $MNISTLAB_CACHE_DIR, else the "
            "user cache)"
        ),
    )
    progress: bool = field(default=False, metadata=_note("show progress bars"))

    def __post_init__(self):
        _check_types(self)
        _check_choices(self)
        _Checker().between("threads", self.threads, 0, 4096)

    @classmethod
    def from_environment(cls, **given) -> "Runtime":
        """The settings given, then what the MNISTLAB_* variables say (the data and cache
        folders where none is given, the mirrors after those given): a runtime for a call
        that names none. mnistlab.environment reads them; nothing below the runtime does."""
        from mnistlab import environment

        return environment.runtime(cls(**given), environment.read())

    def data_options(self) -> dict:
        """How data is found and fetched, as data.load and data.locate take it after the
        data folder."""
        return dict(mirrors=self.mirrors, cache_dir=self.cache_dir, progress=self.progress)


class _Checker:
    """Range checks whose messages name the field."""

    def positive(self, name, value):
        if not value > 0:
            raise invalid(name, f"must be a positive number, got {value}")

    def at_least(self, name, value, low):
        if value < low:
            raise invalid(name, f"must be at least {low}, got {value}")

    def between(self, name, value, low, high):
        if not low <= value <= high:
            raise invalid(name, f"must be between {low:,} and {high:,}, got {value}")

    def fraction(self, name, value):
        if not 0 <= value < 1:
            raise invalid(name, f"must be in [0, 1), got {value}")


def _kind(annotation):
    """The annotation's base type, and its item type for tuples; None -> optional."""
    if typing.get_origin(annotation) is tuple:
        return tuple, typing.get_args(annotation)[0]
    if isinstance(annotation, types.UnionType):  # str | None
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None)), None
    return annotation, None


def coerce(name: str, kind, value):
    """`value` as a `kind` (bool, int, float, str), or a ConfigError naming `name`.

    Exact: 1.5 is not an int, "abc" not a list, true not a number, NaN not a number.
    """
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise invalid(name, f"must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise invalid(name, f"must be a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise invalid(name, f"must be a finite number, got {value}")
            return float(value)
        raise invalid(name, f"must be a number, got {value!r}")
    if not isinstance(value, kind):
        raise invalid(name, f"must be a {kind.__name__}, got {value!r}")
    return value


BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_value(name: str, text: str, kind=TrainConfig):
    """A setting written as text (a flag, a grid's or a space's value) read as its field's
    type: a tuple joins its items with 'x' (hidden=1024x1024, betas=0.9x0.95), a bool is
    true/false, yes/no or 1/0. A ConfigError naming the field when it cannot be read; the
    range checks are the config's own, when the value is used."""
    fields = {item.name: item for item in dataclasses.fields(kind)}
    if name not in fields:
        raise ConfigError((Setting(name), f": not a setting; settings: {', '.join(fields)}"))
    base, item_kind = _kind(fields[name].type)
    if base is tuple:
        return tuple(_parse(name, item_kind, item) for item in text.split("x"))
    return _parse(name, base, text)


def _parse(name: str, kind, text: str):
    word = text.strip()
    if kind is bool:
        if word.lower() not in BOOLEANS:
            raise invalid(name, f"cannot read {text!r} as true or false")
        return BOOLEANS[word.lower()]
    if kind in (int, float):
        try:
            value = kind(word)
        except ValueError:
            raise invalid(name, f"cannot read {text!r} as {kind.__name__}") from None
        return coerce(name, kind, value)
    return word


def _check_types(settings) -> None:
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        kind, item_kind = _kind(item.type)
        if value is None and item.default is None:
            continue
        if kind is tuple:
            if not isinstance(value, list | tuple):
                raise ConfigError(
                    (
                        Setting(item.name),
                        f" must be a list of {item_kind.__name__} values, got {value!r}",
                    ),
                )
            value = tuple(coerce(item.name, item_kind, entry) for entry in value)
        else:
            value = coerce(item.name, kind, value)
        # Tuples keep the settings hashable and comparable; TOML and JSON give lists.
        object.__setattr__(settings, item.name, value)


def _check_choices(settings) -> None:
    for item in dataclasses.fields(settings):
        allowed = item.metadata.get("choices")
        value = getattr(settings, item.name)
        if allowed and value not in allowed:
            raise unknown(item.name, value, allowed)


def field_names(kind=TrainConfig) -> list[str]:
    return [item.name for item in dataclasses.fields(kind)]


def show(value) -> str:
    """A setting as a person writes it: 1024x1024, 0.9 0.95, relu, 0.001 (- for none)."""
    if isinstance(value, list | tuple):
        if not value:
            return "-"
        return (
            "x".join(map(str, value))
            if all(isinstance(v, int) for v in value)
            else " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        )
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_name(config: TrainConfig) -> str:
    """'MLP 784-500-10 (relu)' or 'logistic regression 784-10'."""
    if config.model == "logreg":
        return "logistic regression 784-10"
    return "MLP " + "-".join(map(str, config.layer_sizes)) + f" ({config.activation})"


def describe(config: TrainConfig) -> str:
    """One line: the model and how it is trained."""
    smoothing = f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else ""
    if config.normalize != "standard":
        smoothing += f", inputs scaled {config.normalize}"
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    return (
        f"{model_name(config)}, impl {config.impl}, {config.optimizer} lr {config.lr:g} "
        f"{config.schedule}{smoothing}, batch {config.batch_size}, {epochs}"
    )
