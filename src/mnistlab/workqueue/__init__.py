"""The machinery searches (tune) and sweeps share, below both: where a study lives (storage),
the queue of trials that workers take from (claims), and worker processes on this machine
(workers). Neither tune nor sweep reaches into the other; both come here."""

from mnistlab.workqueue.claims import queue_wait, set_aside
from mnistlab.workqueue.storage import (
    PRUNERS,
    SAMPLERS,
    Engine,
    answering,
    default_storage,
    join,
    load_study,
    open_study,
    setup_of,
)
from mnistlab.workqueue.workers import check_count, spawn, stop_on_signals, work

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Engine",
    "answering",
    "check_count",
    "default_storage",
    "join",
    "load_study",
    "open_study",
    "queue_wait",
    "set_aside",
    "setup_of",
    "spawn",
    "stop_on_signals",
    "work",
]
