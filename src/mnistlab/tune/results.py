"""What a study found: counts, the best trials, importances, the best's test accuracy
(measured once, after the search), and the best settings as a TOML file `train --config`
reads."""

import dataclasses
import warnings

from mnistlab.settings import from_saved
from mnistlab.workqueue.storage import Engine, load_study


def summary(engine: Engine, top: int = 5) -> dict:
    """Trial counts by state, the best trials, parameter importances and the stored test
    accuracy of the best."""
    import optuna

    study = load_study(engine)
    trials = [trial for trial in study.trials if not trial.user_attrs.get("idle")]
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    completed = sorted(
        (t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
        key=lambda t: t.value,
        reverse=True,
    )
    importances = {}
    if len(completed) >= 2 and completed[0].params:
        try:
            with warnings.catch_warnings():  # "importances will be equal": shown as such
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # too few distinct values to say
            importances = {}
    baseline = next((t for t in trials if t.user_attrs.get("baseline")), None)
    return {
        "study": engine.study,
        "counts": counts,
        "best": [
            {
                "trial": t.number,
                "val_accuracy": t.value,
                "params": t.params,
                "run": t.user_attrs.get("run"),
            }
            for t in completed[:top]
        ],
        "importances": importances,
        "standard_error": standard_error(completed[0]) if completed else None,
        "best_test": study.user_attrs.get("best_test"),
        "baseline": None
        if baseline is None
        else {
            "trial": baseline.number,
            "state": baseline.state.name.lower(),
            "val_accuracy": baseline.value,
        },
        "trials": [
            {"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
            for t in trials
        ],
    }


def standard_error(trial) -> float | None:
    """One standard error of the trial's validation accuracy, sqrt(p (1 - p) / n): trials
    closer than this are not told apart by the split."""
    held = trial.user_attrs.get("val_images")
    accuracy = trial.value
    return (accuracy * (1 - accuracy) / held) ** 0.5 if held else None


def where_it_ran(attributes: dict) -> str:
    """Where a trial's run folder is, as HOST:FOLDER."""
    return f"{attributes.get('host')}:{attributes.get('run')}"


def measure_best(engine: Engine, runtime=None) -> dict | None:
    """The best trial's test accuracy, measured once (now) and stored as a study attribute,
    apart from the validation accuracy it was chosen by. A best trial run on another machine
    is measured there: {"trial", "elsewhere": HOST:FOLDER}."""
    import optuna

    from mnistlab import runfiles, runs
    from mnistlab.evaluate import evaluate

    study = load_study(engine)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return None
    best = max(completed, key=lambda trial: trial.value)
    saved = study.user_attrs.get("best_test")
    if saved and saved.get("trial") == best.number:
        return saved  # measured already: the test set is looked at once
    if not runfiles.is_run(best.user_attrs["run"]):
        return {"trial": best.number, "elsewhere": where_it_ran(best.user_attrs)}
    loaded = runs.load(best.user_attrs["run"], runtime)
    tensors = loaded.tensors
    result = evaluate(loaded.model, tensors.x_test, tensors.y_test, len(tensors.classes))
    measured = {"trial": best.number, "val_accuracy": best.value, "test_accuracy": result.accuracy}
    study.set_user_attr("best_test", measured)
    return measured


def best_config_toml(engine: Engine) -> str:
    """The best trial's settings as a TOML file that `mnistlab train --config` reproduces."""
    import tomli_w

    study = load_study(engine)
    best = study.best_trial
    config = from_saved(best.user_attrs["config"])
    heading = f"# study {engine.study}, trial {best.number}: validation accuracy {best.value:.4f}\n"
    return heading + tomli_w.dumps(dataclasses.asdict(config))
