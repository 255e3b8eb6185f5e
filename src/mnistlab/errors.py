"""Errors the CLI turns into one line and a non-zero exit instead of a traceback.

Each class carries its exit code: 2 for what the user asked (a setting, a folder, a
checkpoint that does not fit), 1 for what went wrong while doing it (data, divergence).
"""


class MnistlabError(Exception):
    """Base class: the message alone tells the user what was wrong and what to do.

    `details` are further lines (each one line). `fields` name the settings the message speaks
    of, by their names (`lr must be ...`, `a lower learning rate than lr 0.01`): the CLI writes
    each as its flag (`--lr`), so the library never names a flag.
    """

    exit_code = 1

    def __init__(self, message: str = "", *fields: str | None, details: tuple[str, ...] = ()):
        super().__init__("\n".join([message, *details]))
        self.headline = message  # one line, whatever user values it quotes
        self.details = tuple(details)  # further lines, each one line (what was tried, ...)
        self.fields = tuple(name for name in fields if name)

    @property
    def field(self) -> str | None:
        return self.fields[0] if self.fields else None


class DataError(MnistlabError):
    """A data file is missing, corrupt, truncated or has the wrong checksum."""


class ConfigError(MnistlabError, ValueError):
    """A configuration value is out of range or unknown.

    Its first field is the setting, and the message starts with its name (`lr must be
    positive`), which the CLI writes as its flag (`--lr must be positive`). The parts travel
    apart too, so that nothing reads them back out of the text: `reason` is what is wrong
    without the setting's name (argparse names the flag itself), `choices` the values an
    unknown one could have been, and `file` the settings file an error about a whole file
    (unreadable, not TOML) already names.
    """

    exit_code = 2

    def __init__(
        self,
        message: str = "",
        *fields: str | None,
        details: tuple[str, ...] = (),
        reason: str | None = None,
        choices: tuple[str, ...] = (),
        file: str | None = None,
    ):
        super().__init__(message, *fields, details=details)
        self.reason = message if reason is None else reason
        self.choices = tuple(choices)
        self.file = file


def invalid(name: str, reason: str) -> ConfigError:
    """A setting's value that cannot be used: `name reason` (`lr must be positive, got 0`)."""
    return ConfigError(f"{name} {reason}", name, reason=reason)


def unknown(name: str, value, choices, what: str = "value") -> ConfigError:
    """A value that is not one of `choices`: the one sentence every such error says."""
    reason = f"unknown {what} {value!r}; choose one of: {', '.join(choices)}"
    return ConfigError(f"{name}: {reason}", name, reason=reason, choices=tuple(choices))


class CheckpointError(MnistlabError):
    """A checkpoint is missing, unreadable or belongs to another architecture."""

    exit_code = 2


class RunError(MnistlabError):
    """A run folder cannot be used as asked: not a run, in use, finished, or other settings."""

    exit_code = 2


class TrainingDiverged(MnistlabError):
    """The loss became NaN or infinite."""


class StorageLost(MnistlabError):
    """The study's database stopped answering during a search or a shared sweep."""


class PictureError(MnistlabError):
    """The pictures could not be drawn; the run itself is saved."""


class ImageError(MnistlabError):
    """An image that cannot be read, is too large, or holds no ink."""

    exit_code = 2


class ImageTooLarge(ImageError):
    """An image past the pixel limit, refused from its header before it is decoded."""


class UnsupportedImage(ImageError):
    """Bytes that are no image of a format we decode."""
