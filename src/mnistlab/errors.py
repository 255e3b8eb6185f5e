"""Errors the CLI turns into one line and a non-zero exit instead of a traceback."""


class MnistlabError(Exception):
    """Base class: the message alone tells the user what was wrong and what to do."""


class DataError(MnistlabError):
    """A data file is missing, corrupt, truncated or has the wrong checksum."""


class ConfigError(MnistlabError, ValueError):
    """A configuration value is out of range or unknown."""


class CheckpointError(MnistlabError):
    """A checkpoint is missing, unreadable or belongs to another architecture."""


class TrainingDiverged(MnistlabError):
    """The loss became NaN or infinite."""
