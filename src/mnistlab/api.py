"""The few entry points a notebook needs, each a thin call into the library.

    import mnistlab
    dataset = mnistlab.load_data()                       # MNIST, found or fetched, verified
    run = mnistlab.fit(recipe="assignment", folder="runs/mlp")   # a progress bar in Jupyter
    mnistlab.evaluate_run(run).accuracy
    mnistlab.count_parameters(mnistlab.build_model())    # 397510
    mnistlab.show(run)                                   # the run's pictures, inline
    mnistlab.check(my_model)                             # what is wrong with a model I wrote

None of them changes global state: torch's random generator and thread count stay as they
were (every random stream has its own generator), and nothing is printed. They are where a
notebook meets the library, so they read the MNISTLAB_* variables (mnistlab.environment): the
data and cache folders and mirrors they name, and the data sets of $MNISTLAB_DATASETS's
registry file, which become known to the process.
"""

import dataclasses
from pathlib import Path

from mnistlab import data, models, runfiles, runs
from mnistlab.config import Runtime, TrainConfig
from mnistlab.settings import recipe as named_recipe


def _runtime(data_dir: str | Path | None = None) -> Runtime:
    """A call's runtime: the data folder it names, then what the environment says."""
    from mnistlab import environment

    environment.use(environment.read())  # the registry file's data sets become known
    return Runtime.from_environment(data_dir=str(data_dir) if data_dir else None)


def load_data(dataset: str = "mnist", data_dir: str | Path | None = None) -> data.Dataset:
    """The data set as uint8 image and int64 label tensors (found on this machine or fetched
    from a mirror, verified by sha256)."""
    runtime = _runtime(data_dir)
    return data.load(dataset, runtime.data_dir, **runtime.data_options())


def build_model(
    model: str = "mlp", impl: str = "module", hidden=(500,), activation="relu", seed: int = 0
):
    """A model by name: `impl` is module (torch.nn), scratch (tensors and autograd) or manual
    (hand-written backward); the same seed gives the same weights in all three."""
    import torch

    config = TrainConfig(model=model, impl=impl, hidden=tuple(hidden), activation=activation)
    return models.build_from_config(config, torch.Generator().manual_seed(seed))


def sample_batch(size: int = 64, seed: int = 0):
    """(images, labels): `size` of the first 1,000 MNIST training images, which ship with
    mnistlab (no data files or network needed), flattened to (N, 784) and scaled to [-1, 1] as
    the course notebook's Normalize((0.5,), (0.5,)); the batch `check` uses at the defaults."""
    from mnistlab import diagnose, sample

    return diagnose.batch(sample.load(), size, seed)


def count_parameters(model) -> int:
    """Trainable parameters: 397,510 for the 784-500-10 MLP, 7,850 for logistic regression."""
    return models.count_parameters(model)


def fit(
    config: TrainConfig | None = None,
    *,
    recipe: str = "default",
    folder: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    pictures: bool = True,
    **settings,
) -> runs.Run:
    """Train a run and return it (finished, its folder released): `config`, or a recipe with
    `settings` over it (fit(recipe="assignment", hidden=(256,))). The run is saved in
    `folder` (default runs/DATASET-MODEL-TIME); `run.history` holds one record per epoch."""
    config = dataclasses.replace(config or named_recipe(recipe), **settings)
    run = runs.Run.create(folder, config) if folder else runs.Run.new(config)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

        bar = tqdm(total=config.epochs, unit="epoch", desc=Path(run.folder).name)
    try:
        runtime = _runtime(data_dir)
        run.fit(runtime, pictures=pictures, on_epoch=(lambda record: bar.update()) if bar else None)
    finally:
        if bar is not None:
            bar.close()
        run.close()
    return run


def evaluate_run(run: runs.Run | str | Path, data_dir: str | Path | None = None):
    """The test-set evaluation of a run (loss, accuracy, per-class accuracy, confusion)."""
    from mnistlab.evaluate import evaluate

    saved = runs.load(getattr(run, "folder", run), _runtime(data_dir))
    tensors = saved.tensors
    return evaluate(saved.model, tensors.x_test, tensors.y_test, len(tensors.classes))


def show(run: runs.Run | str | Path) -> list[Path]:
    """Display the run's pictures inline (in Jupyter) and return their paths."""
    folder = Path(getattr(run, "folder", run))
    paths = [folder / name for name in runfiles.PICTURES if (folder / name).is_file()]
    try:
        from IPython.display import Image, display
    except ImportError:  # outside IPython: the paths are the answer
        return paths
    for path in paths:
        display(Image(filename=str(path)))
    return paths


def check(
    model,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    *,
    only=None,
    seed: int = 0,
    time_limit: float | None = None,
):
    """Diagnose a model you wrote on one batch of real images (see mnistlab.diagnose): the
    model, or its class (made here with torch seeded by `seed`, as `mnistlab check` makes it).
    `only` names the checks to run (diagnose.CHECKS); past `time_limit` seconds the checks stop
    with an ERROR. MNIST's batch comes from the sample that ships with mnistlab: no data files
    or network needed. Returns the report: `report.passed`, `report.findings`, `report.values`
    (the numbers), `report.as_dict()` (the versioned answer), `print(report)`."""
    from mnistlab import diagnose

    runtime = _runtime(data_dir)
    x, y = diagnose.batch(diagnose.batch_source(dataset, runtime.data_dir, runtime.cache_dir))
    return diagnose.check(
        diagnose.made(model, seed), x, y, only=only, seed=seed, time_limit=time_limit
    )


@dataclasses.dataclass(frozen=True)
class Accuracy:
    accuracy: float  # fraction of `images` classified right
    images: int
    source: str  # "test set" (the full one, found on this machine) or "sample" (shipped)


def accuracy(
    model,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    *,
    mean: float = 0.5,
    std: float = 0.5,
) -> Accuracy:
    """The test accuracy of a model you wrote, measured quickly: images scaled as
    (pixel / 255 - mean) / std (the course notebook's Normalize((0.5,), (0.5,)) by default) and
    flattened to (N, 784). The full test set when it is on this machine (nothing is
    downloaded), else, for MNIST, the 1,000 test images that ship with mnistlab."""
    import torch

    from mnistlab import sample
    from mnistlab.agreement import call
    from mnistlab.errors import DataError
    from mnistlab.resident import to_inputs

    try:
        runtime = _runtime(data_dir)
        options = dict(cache_dir=runtime.cache_dir, download_missing=False)
        test, source = data.load(dataset, runtime.data_dir, **options).test, "test set"
    except DataError:
        if dataset != "mnist":
            raise
        test, source = sample.load().test, "sample"
    training = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
    right = 0
    try:
        with torch.no_grad():
            for start in range(0, len(test), 1000):
                x = to_inputs(test.images[start : start + 1000], mean, std)
                predicted = call(model, x).argmax(1)
                right += int((predicted == test.labels[start : start + 1000]).sum())
    finally:
        if isinstance(model, torch.nn.Module) and training is not None:
            model.train(training)
    return Accuracy(right / len(test), len(test), source)
