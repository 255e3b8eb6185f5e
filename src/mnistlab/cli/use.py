"""The commands that use a trained model or search for one: check, predict, export, serve,
tune."""

import json
import sys
from pathlib import Path

from mnistlab import text
from mnistlab.cli.console import runtime_from_args, stopping_on_signals
from mnistlab.cli.flags import config_from_args
from mnistlab.errors import ConfigError
from mnistlab.files import atomic_write


def cmd_check(args) -> int:
    import torch

    from mnistlab import data, diagnose
    from mnistlab.runs import plain

    # The user's model draws its weights from torch's global generator: seeded here (this
    # process is the command's), so that a report, and an autograder's verdict, is the same
    # every time.
    torch.manual_seed(0)
    model = diagnose.load_target(args.target)
    runtime = runtime_from_args(args)
    dataset = data.load(
        args.dataset, runtime.data_dir, mirrors=runtime.mirrors, progress=runtime.progress
    )
    report = diagnose.check(model, *diagnose.batch(dataset))
    print(json.dumps(plain(report.as_dict())) if args.json else text.check_report(report))
    return 0 if report.passed else 1


def cmd_tune(args) -> int:
    import importlib.util
    import signal

    from mnistlab import tune
    from mnistlab.runs import StopFlag

    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("tune needs optuna: pip install 'mnistlab[tune]'")
    out = Path(args.out or Path("studies") / args.study)
    storage = args.storage or tune.default_storage(out)
    engine = tune.Engine(
        storage,
        args.study,
        args.sampler,
        args.pruner,
        heartbeat=args.heartbeat,
        baseline=args.baseline,
    )
    if args.summary:
        return _summary(engine, out if args.out else None)
    specs = (tune.read_space(args.space_file) if args.space_file else []) + args.space
    space = tune.parse_space(specs)
    if not space:
        raise ConfigError("--space: give at least one dimension, e.g. --space lr=log:1e-4:3e-2")
    base = tune.search_config(config_from_args(args))
    tune.check_budget(engine, args.trials, args.timeout)  # refused before anything is written
    tune.queued_baseline(engine, space, base)
    out.mkdir(parents=True, exist_ok=True)
    with stopping_on_signals(StopFlag()) as stop:
        if args.workers > 1:
            # Made (and a grid or baseline queued) once, before the workers.
            tune.open_study(engine, space, base=base)
            tune.spawn_workers(args.argv, args.workers, out, should_stop=stop)
        else:
            runtime = runtime_from_args(args)
            tune.optimize(
                engine,
                space,
                base,
                out,
                runtime,
                trials=args.trials,
                timeout=args.timeout,
                on_trial=_print_trial,
                should_stop=stop,
            )
    if stop:
        if not args.worker:  # (the workers' parent says it once)
            print("stopped: the trials in progress are queued again; run the same command to go on")
        return 128 + signal.Signals[stop.reason].value
    if args.worker:
        return 0
    measured = tune.measure_best(engine, runtime_from_args(args))
    if measured and "elsewhere" in measured:
        print(
            f"the best trial ({measured['trial']}) ran on {measured['elsewhere']}: its test "
            "accuracy is measured there, when that machine's search ends"
        )
    return _summary(engine, out)


def _print_trial(study, trial) -> None:
    if trial.user_attrs.get("idle"):  # a worker that found nothing left to run
        return
    print(text.trial(trial.number, trial.state.name.lower(), trial.value, trial.params), flush=True)


def _summary(engine, out: Path | None) -> int:
    from mnistlab import tune

    summary = tune.summary(engine)
    print(text.study(summary))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # a machine that has not run the study yet
        _study_files(engine, summary, out)
        if summary["best"]:
            best = out / "best.toml"
            print(f"the best trial's settings in {best}: mnistlab train --config {best} trains it")
    return 0


def _study_files(engine, summary, out: Path) -> None:
    """best.toml, the study's pictures, and study.json (where it lives, for `report`)."""
    from mnistlab import plots, tune

    if summary["best"]:
        atomic_write(out / "best.toml", tune.best_config_toml(engine))
    plots.study_pictures(summary, out)
    atomic_write(out / "study.json", json.dumps(tune.describe_study(engine), indent=2) + "\n")


def cmd_predict(args) -> int:
    from mnistlab import preprocess
    from mnistlab.predict import Predictor

    predictor = Predictor.load(args.run)
    sources = preprocess.sources(args.images, sys.stdin.buffer)
    predictions = [(name, predictor.predict([source])[0]) for name, source in sources]
    if args.show_input:
        from mnistlab import plots

        path = plots.inputs_seen([source for _, source in sources], predictions, args.show_input)
        print(f"wrote {path}", file=sys.stderr)
    for name, prediction in predictions:
        if args.json:
            print(json.dumps({"file": name, **prediction.as_dict()}))
        else:
            top = ", ".join(f"{label} {100 * p:.1f}%" for label, p in prediction.top(3))
            print(f"{name}: {prediction.name}  (top 3: {top})")
    return 0


def cmd_export(args) -> int:
    from mnistlab import export

    try:
        path = export.export(args.run, args.format, args.out)
    except ImportError as error:
        raise ConfigError(
            f"export --format {args.format} needs {error.name}: pip install 'mnistlab[export]'"
        ) from None
    print(
        f"wrote {path}"
        + (f" and {path.with_suffix('.json')}" if args.format == "safetensors" else "")
    )
    return 0


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from mnistlab.serve import app_for_run
    except ImportError as error:
        raise ConfigError(f"serve needs {error.name}: pip install 'mnistlab[serve]'") from None
    runtime = runtime_from_args(args)
    from mnistlab.train import resolve_device

    app = app_for_run(args.run, str(resolve_device(runtime.device)))
    print(f"serving {args.run} at http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
