"""mnistlab report and plot: a self-contained HTML page, and the pictures, of a run, a sweep
or a study."""

from pathlib import Path

from mnistlab.cli.console import runtime_from_args
from mnistlab.cli.flags import add_setting_flags, command
from mnistlab.config import Runtime, describe
from mnistlab.errors import RunError


def add_parsers(commands) -> None:
    plot = command(commands, "plot", "draw the pictures of a run, a sweep or a study")
    plot.add_argument("folder", help="run folder, sweep folder or study folder")
    add_setting_flags(plot, Runtime, skip=("threads",))
    plot.set_defaults(handler=cmd_plot)

    report = command(
        commands,
        "report",
        "one self-contained HTML page of a run, a sweep or a study, or runs side by side",
    )
    report.add_argument(
        "folder", nargs="+", help="run folder, sweep folder or study folder, or several runs"
    )
    report.add_argument("--out", help="HTML file (default: FOLDER/report.html)")
    report.set_defaults(handler=cmd_report)


def cmd_plot(args) -> int:
    from mnistlab import plots, runs
    from mnistlab.sweep import Sweep, is_sweep
    from mnistlab.tune import Study, is_study

    folder = Path(args.folder)
    if is_study(folder):
        written = Study.open(folder).draw_pictures()
    elif is_sweep(folder):
        written = Sweep(folder).write_summary()
    else:
        saved = runs.load(folder, runtime_from_args(args))
        if not saved.history:
            raise RunError(f"{saved.folder}: the run has no finished epoch to plot")
        written = plots.run_pictures(
            saved.folder, saved.model, saved.tensors, saved.history, title=describe(saved.config)
        )
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def cmd_report(args) -> int:
    from mnistlab import report
    from mnistlab.runfiles import is_run
    from mnistlab.sweep import is_sweep
    from mnistlab.tune import is_study

    folders = [Path(folder) for folder in args.folder]
    for folder in folders:
        single = len(folders) == 1 and (is_sweep(folder) or is_study(folder))
        if not single and not is_run(folder):
            kind = "a run folder" if len(folders) > 1 else "a run, sweep or study folder"
            raise RunError(f"{folder} is not {kind} (config.json, results.jsonl, study.json)")
    print(f"wrote {report.write(folders, args.out)}")
    return 0
