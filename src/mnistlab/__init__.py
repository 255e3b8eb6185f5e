"""mnistlab: multi-layer perceptrons and logistic regression on MNIST, with PyTorch.

The entry points for a notebook (mnistlab.api), each returning values and changing no global
state:

    load_data(dataset="mnist", data_dir=None)      the data set, found or fetched, verified
    build_model(model="mlp", impl="module", ...)   a model: module, scratch or manual
    count_parameters(model)                        397,510 for the MLP, 7,850 for logreg
    fit(config=None, recipe="default", folder=None, **settings) -> Run   train and save a run
    evaluate_run(run)                              test loss, accuracy, per class, confusion
    show(run)                                      the run's pictures, inline
    check(model)                                   what is wrong with a model you wrote
    accuracy(model)                                its test accuracy, measured quickly
    sample_batch(size=64, seed=0)                  shipped MNIST images, no data files needed

Underneath: mnistlab.runs.Run (create, open, fit), mnistlab.config.TrainConfig and Runtime,
mnistlab.train.train, mnistlab.sweep. Importing the package does nothing but define names:
no download, no device choice, no torch import until a function is called.
"""

API = (
    "load_data", "build_model", "count_parameters", "fit", "evaluate_run", "show", "check",
    "accuracy", "sample_batch",
)  # fmt: skip
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    # The API is imported on first use, so that `import mnistlab` (and the CLI's --help and
    # --version) stays free of torch's import.
    if name in API:
        from mnistlab import api

        return getattr(api, name)
    if name == "__version__":
        from mnistlab import meta

        return meta.version()
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
