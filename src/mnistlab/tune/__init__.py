"""Searches on Optuna: chosen on a validation split, shared through a database.

A study lives in an Optuna storage: by default an SQLite file in the study folder, or a
server's URL (postgresql://...) that any number of workers, on any machines, join by study
name. Every trial is an ordinary run folder (STUDY/trials/NNNN), trained on the training set
less a validation split carved from it deterministically (5,000 images by default); it
reports validation accuracy after every epoch, and the pruner (median, or hyperband) stops
hopeless trials early. The test set is not read during the search: only when it is over is
the best trial's test accuracy measured, once, and stored apart (a study attribute). Workers
send heartbeats; a worker that dies leaves its trial RUNNING until its heartbeat is stale,
then it is marked FAIL and its parameters are tried again by another.

    space.py    NAME=KIND:ARGS, and a trial's config from it
    storage.py  the storage, the study made or joined, its queue
    search.py   the objective, and what Optuna does not promise (an exact budget, a grid's end)
    results.py  summary, the best's test accuracy, best.toml
    workers.py  worker processes on this machine
    study.py    Study: the search and its folder
"""

from mnistlab.tune.space import Dimension, parse_space, read_space
from mnistlab.tune.study import Study, is_study
from mnistlab.workqueue.storage import PRUNERS, SAMPLERS, Engine, default_storage

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Dimension",
    "Engine",
    "Study",
    "default_storage",
    "is_study",
    "parse_space",
    "read_space",
]
