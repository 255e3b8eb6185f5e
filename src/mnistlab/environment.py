"""The MNISTLAB_* environment variables, read in one place.

Only the program's edges call `read`: the command line, the notebook API, and
`Runtime.from_environment` (for a library object given no runtime). They hand the values to
the library as settings (`Runtime` fields, a registry file), so a library call does what its
arguments say, whatever the environment; the processes a command starts (search and sweep
workers, `check`'s) get the values in their jobs.
"""

import dataclasses
import os
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Environment:
    data_dir: str | None = None  # MNISTLAB_DATA_DIR: the data folder when none is named
    cache_dir: str | None = None  # MNISTLAB_CACHE_DIR: downloads and decoded arrays
    mirrors: tuple[str, ...] = ()  # MNISTLAB_MIRROR: URL or DATASET=URL, after those named
    datasets: str | None = None  # MNISTLAB_DATASETS: a registry file of more data sets


def read(environ: Mapping[str, str] | None = None) -> Environment:
    """The variables' values (an empty one counts as unset)."""
    environ = os.environ if environ is None else environ
    return Environment(
        data_dir=environ.get("MNISTLAB_DATA_DIR") or None,
        cache_dir=environ.get("MNISTLAB_CACHE_DIR") or None,
        mirrors=tuple(environ.get("MNISTLAB_MIRROR", "").replace(",", " ").split()),
        datasets=environ.get("MNISTLAB_DATASETS") or None,
    )


def runtime(base, environment: Environment):
    """`base` (a config.Runtime) with what the environment adds: its data and cache folders
    where none is named, its mirrors after those named."""
    return dataclasses.replace(
        base,
        data_dir=base.data_dir or environment.data_dir,
        cache_dir=base.cache_dir or environment.cache_dir,
        mirrors=tuple(dict.fromkeys(base.mirrors + environment.mirrors)),
    )


def use(environment: Environment) -> None:
    """At an edge: the data sets of the environment's registry file become known."""
    from mnistlab import datasets

    datasets.use_registry(environment.datasets)
