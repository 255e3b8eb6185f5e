"""mnistlab sweep: a grid of configurations x seeds, each an ordinary run; a summary with
mean ± std over seeds, and pictures of accuracy against cost."""

import dataclasses
from pathlib import Path

from mnistlab import text
from mnistlab.cli.console import runtime_from_args, stopping_on_signals
from mnistlab.cli.flags import config_from_args, training_parser
from mnistlab.sweep.grids import PRESETS
from mnistlab.workqueue.storage import HEARTBEAT


def add_parsers(commands) -> None:
    sweep = training_parser(
        commands, "sweep", "train a grid of configurations x seeds", skip=("seed",)
    )
    sweep.add_argument("--preset", choices=list(PRESETS), help="a ready-made grid")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="vary a setting (tuples join items with x: hidden=64,128x128); "
        "repeatable, combined as a product",
    )
    sweep.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds for each config")
    sweep.add_argument("--out", help="sweep folder (default: sweeps/PRESET)")
    sweep.add_argument("--no-plots", action="store_true", help="skip the sweep's pictures")
    sweep.add_argument(
        "--storage",
        help="share the sweep through an Optuna storage (sqlite:///FILE, postgresql://...): "
        "every process given it takes runs from one queue, each run once",
    )
    sweep.add_argument("--study", help="the sweep's name in the storage (default sweep-OUT)")
    sweep.add_argument(
        "--heartbeat", type=int, default=HEARTBEAT, help="seconds between heartbeats"
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes on this machine, each training runs from the sweep's queue (--threads: "
        "each one's; default: a share of the free cores)",
    )
    sweep.set_defaults(handler=cmd_sweep)


def print_run(record: dict, skipped: bool) -> None:
    """A run one of a sweep's worker processes trained, as it ends."""
    if not skipped:
        config = record["config"]
        print(
            f"run {record['key']} (seed {config['seed']}): "
            f"{100 * record['test_accuracy']:.2f}% ({record['seconds']:.1f} s)",
            flush=True,
        )


def cmd_sweep(args) -> int:
    from mnistlab.runs import StopFlag
    from mnistlab.sweep import Sweep, plan, variants
    from mnistlab.sweep.results import label, markdown, varied_fields
    from mnistlab.workqueue.workers import check_count

    check_count(args.workers)  # refused before anything starts
    base, runtime = config_from_args(args), runtime_from_args(args, processes=args.workers)
    chosen = variants(base, args.preset, args.grid)
    configs = plan(base, chosen, args.seeds)
    out = Path(args.out or Path("sweeps") / (args.preset or ("grid" if args.grid else "seeds")))
    fields = varied_fields([{"config": dataclasses.asdict(c)} for c in configs])
    seeds = len(dict.fromkeys(args.seeds))
    print(
        f"sweep of {text.plural(len(chosen), 'configuration')} x {text.plural(seeds, 'seed')}"
        f" = {text.plural(len(configs), 'run')} in {out}"
    )
    count = iter(range(1, len(configs) + 1))

    def on_record(record, skipped):
        status = "done before" if skipped else f"{record['seconds']:.1f} s"
        print(
            f"[{next(count)}/{len(configs)}] {label(record['config'], fields)} "
            f"seed={record['config']['seed']}: {100 * record['test_accuracy']:.2f}% ({status})",
            flush=True,
        )

    engine = None
    if args.storage:  # shared: every process with this storage takes runs from one queue
        from mnistlab.sweep import study_name
        from mnistlab.workqueue import Engine

        engine = Engine(args.storage, args.study or study_name(out), heartbeat=args.heartbeat)
    with stopping_on_signals(StopFlag()) as stop:
        result = Sweep(out, engine).run(
            configs,
            runtime,
            pictures=not args.no_plots,
            # with workers, this process is one of them, and prints its runs as they do
            on_record=on_record if args.workers == 1 else print_run,
            should_stop=stop,
            workers=args.workers,
        )
    if result.others:
        print(
            f"note: {out} also holds {text.plural(result.others, 'run')} of other settings; "
            "this summary shows this sweep's only (mnistlab report shows them all)"
        )
    if result.rows:
        print(markdown(result.rows), end="")
    if not result.complete:
        print(
            f"stopped after {len(result.records)} of {len(configs)} runs; run the same command "
            "again to finish the sweep"
        )
        return stop.exit_status
    print(f"summary in {out / 'summary.md'} and {out / 'summary.csv'}; runs in {out / 'runs'}")
    return 0
