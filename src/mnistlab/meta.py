"""The installed version: pyproject.toml's, read from the package's metadata, so that it is
written once."""

import functools
from importlib import metadata


@functools.cache
def version() -> str:
    return metadata.version("mnistlab")
