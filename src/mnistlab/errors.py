"""Errors the CLI turns into one line and a non-zero exit instead of a traceback.

Each class carries its exit code: 2 for what the user asked (a setting, a folder, a
checkpoint that does not fit), 1 for what went wrong while doing it (data, divergence).
"""


class Setting(str):
    """A setting's name inside an error's message. The library shows it as it is (`lr must be
    positive`); the command line shows its flag (`--lr must be positive`): the parts travel
    apart, so nothing reads a name back out of the text."""


# A message: a string, or its parts in order, settings marked (("", Setting("lr"), " must ...")).
Text = str | tuple[str, ...]


def _parts(text: Text) -> tuple[str, ...]:
    return (text,) if isinstance(text, str) else tuple(text)


def _joined(text: Text, name=str) -> str:
    return "".join(name(part) if isinstance(part, Setting) else part for part in _parts(text))


class MnistlabError(Exception):
    """Base class: the message alone tells the user what was wrong and what to do.

    `details` are further lines (each one line). The settings a message speaks of are marked
    in it (`(Setting("lr"), " must be ...")`) and listed in `fields`, with any named apart;
    `render(name)` writes each marked setting as `name` makes it (the CLI: its flag), so the
    library never names a flag.
    """

    exit_code = 1

    def __init__(self, message: Text = "", *fields: str | None, details: tuple[Text, ...] = ()):
        self._texts = (message, *details)
        marked = [
            part for text in self._texts for part in _parts(text) if isinstance(part, Setting)
        ]
        self.headline = _joined(message)  # one line, whatever user values it quotes
        self.details = tuple(map(_joined, details))  # further lines (what was tried, ...)
        self.fields = tuple(dict.fromkeys(str(name) for name in [*marked, *fields] if name))
        super().__init__("\n".join([self.headline, *self.details]))

    def render(self, name=str) -> list[str]:
        """The headline and each detail, every marked setting written as `name(setting)`."""
        return [_joined(text, name) for text in self._texts]

    @property
    def field(self) -> str | None:
        return self.fields[0] if self.fields else None


class DataError(MnistlabError):
    """A data file is missing, corrupt, truncated or has the wrong checksum."""


class ConfigError(MnistlabError, ValueError):
    """A configuration value is out of range or unknown.

    Its first field is the setting, marked in the message (`lr must be positive`), which the
    CLI writes as its flag (`--lr must be positive`). The other parts travel apart too, so
    that nothing reads them back out of the text: `reason` is what is wrong
    without the setting's name (argparse names the flag itself), `choices` the values an
    unknown one could have been, and `file` the settings file an error about a whole file
    (unreadable, not TOML) already names.
    """

    exit_code = 2

    def __init__(
        self,
        message: Text = "",
        *fields: str | None,
        details: tuple[Text, ...] = (),
        reason: str | None = None,
        choices: tuple[str, ...] = (),
        file: str | None = None,
    ):
        super().__init__(message, *fields, details=details)
        self.reason = self.headline if reason is None else reason
        self.choices = tuple(choices)
        self.file = file


def invalid(name: str, reason: str) -> ConfigError:
    """A setting's value that cannot be used: `name reason` (`lr must be positive, got 0`)."""
    return ConfigError((Setting(name), f" {reason}"), reason=reason)


def unknown(name: str, value, choices, what: str = "value") -> ConfigError:
    """A value that is not one of `choices`: the one sentence every such error says."""
    reason = f"unknown {what} {value!r}; choose one of: {', '.join(choices)}"
    return ConfigError((Setting(name), f": {reason}"), reason=reason, choices=tuple(choices))


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
