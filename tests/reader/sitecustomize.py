"""For the documentation test's commands (on PYTHONPATH, so every Python process they start
imports it): MNIST's training split cut to its first $MNISTLAB_TEST_TRAIN_IMAGES images.

The pages are tested for their commands, not for their figures: each command still finds,
verifies by hash and decodes the original files, and trains, sweeps, searches, benchmarks,
reports and exports as written, on real digits, in a tenth of the time. What only the whole
training set shows (the default recipe's accuracy, the notebook's, bf16 against fp32) is
asserted by the tests that train on all of it.

`mnistlab.data.load` is wrapped when that module is first imported, not here: a command that
never loads data (report, a served page) imports no more than it would.
"""

import dataclasses
import importlib.abc
import importlib.machinery
import os
import sys

IMAGES = int(os.environ.get("MNISTLAB_TEST_TRAIN_IMAGES", "0"))


def _cut(load):
    def load_cut(name="mnist", data_dir=None, **options):
        dataset = load(name, data_dir, **options)
        if dataset.name != "mnist":
            return dataset
        images, labels = dataset.train.images[:IMAGES], dataset.train.labels[:IMAGES]
        return dataclasses.replace(
            dataset, train=dataclasses.replace(dataset.train, images=images, labels=labels)
        )

    return load_cut


class _WrapLoad(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "mnistlab.data":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.load = _cut(module.load)

        spec.loader.exec_module = exec_module
        return spec


if IMAGES > 0:
    sys.meta_path.insert(0, _WrapLoad())
