"""mnistlab check, predict, export and serve: a model you wrote diagnosed, and a trained one
used on your own images, taken to other runtimes, served to a browser."""

import json
import sys
from pathlib import Path

from mnistlab import errors, text
from mnistlab.cli.console import runtime_from_args
from mnistlab.cli.data import picture_path
from mnistlab.cli.flags import add_setting_flags, between, command
from mnistlab.config import CHECK_TIME_LIMIT as TIME_LIMIT
from mnistlab.config import CHECKS, EXPORT_FORMATS, Runtime
from mnistlab.errors import ConfigError, Setting


def add_parsers(commands) -> None:
    check = command(
        commands, "check", "diagnose a model you wrote: leaves, gradients, logits, scale, agreement"
    )
    check.add_argument(
        "targets",
        nargs="+",
        metavar="FILE.py:NAME",
        help="a model class or object in a file; several: a report each (a class's files)",
    )
    check.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT,
        metavar="SECONDS",
        help=f"seconds each file gets to run and be checked (default {TIME_LIMIT:g})",
    )
    check.add_argument(
        "--only",
        metavar="CHECK,...",
        help="run only these checks (comma-separated; the slow ones not named are skipped): "
        + ", ".join(CHECKS),
    )
    check.add_argument(
        "--dataset",
        default="mnist",
        help="the batch's data set (default mnist, whose batch ships with mnistlab)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object per file")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(check, Runtime, skip=("device", "threads"))
    check.set_defaults(handler=cmd_check)

    predict = command(commands, "predict", "read your own images: class and top-3 probabilities")
    predict.add_argument("run", help="run folder or checkpoint.pt")
    predict.add_argument("images", nargs="+", help="image files, folders of them, or - for stdin")
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.add_argument(
        "--show-input",
        metavar="FILE.png",
        help="a picture of each image and the 28x28 input (at most 100 images)",
    )
    predict.set_defaults(handler=cmd_predict)

    export = command(
        commands, "export", "the model for ONNX, torch.export (.pt2), TorchScript or safetensors"
    )
    export.add_argument("run", help="run folder or checkpoint.pt")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", help="file to write (default: RUN/model.EXT)")
    export.set_defaults(handler=cmd_export)

    serve = command(commands, "serve", "a web page to draw digits on, and a JSON API")
    serve.add_argument("run", help="run folder or checkpoint.pt")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=between(1, 65535), default=8000, help="port to listen on")
    serve.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page's origin that may call the API from a browser (https://example.org); "
        "repeatable; none by default",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name requests may give besides localhost and --host (the machine's name "
        "when serving on 0.0.0.0; * for any); repeatable",
    )
    add_setting_flags(serve, Runtime, skip=("data_dir", "mirrors", "cache_dir"))
    serve.set_defaults(handler=cmd_serve)


def cmd_check(args) -> int:
    """Each file checked in a process of its own, with a time limit: one that raises, exits,
    hangs or prints never stops the others, nor mixes into the report (with --json, one JSON
    object per file on stdout, the file's own output on stderr)."""
    import math

    from mnistlab import data, usercode
    from mnistlab.errors import MnistlabError
    from mnistlab.runfiles import plain

    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ConfigError(
            (Setting("time_limit"), f" must be a positive number, got {args.time_limit}")
        )
    only = None
    if args.only is not None:
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in only if name not in CHECKS]
        if unknown or not only:
            raise errors.unknown("only", unknown[0] if unknown else args.only, CHECKS, "check")
    runtime = runtime_from_args(args)
    if args.dataset != "mnist":  # MNIST's batch ships with mnistlab
        # Found or fetched here, with progress: each file's process then reads it from disk.
        data.locate(args.dataset, runtime.data_dir, **runtime.data_options())
    status = 0
    for target in args.targets:
        try:
            report, output = usercode.check_file(
                target, args.dataset, runtime.data_dir, args.time_limit, only, runtime.cache_dir
            )
        except MnistlabError as error:
            if len(args.targets) == 1:
                raise
            print(f"mnistlab: error: {target}: {error}", file=sys.stderr)
            status = max(status, error.exit_code)
            continue
        heading = f"== {target}" if len(args.targets) > 1 else ""
        if args.json:
            if output:
                print(output, end="" if output.endswith("\n") else "\n", file=sys.stderr)
            print(json.dumps({"target": target, **plain(report.as_dict())}), flush=True)
        else:
            shown = f"{heading}\n" if heading else ""
            if output:
                shown += "".join(f"  | {line}\n" for line in output.splitlines())
            print(shown + text.check_report(report), flush=True)
        status = max(status, 0 if report.passed else 1)
    return status


def _show_input_target(path: Path, sources) -> None:
    """The --show-input picture never replaces an image being read, nor lands in a run's
    folder (whose files other commands read)."""
    from mnistlab.runfiles import is_run

    target = path.resolve()
    if any(isinstance(source, Path) and source.resolve() == target for _, source in sources):
        raise ConfigError(
            (Setting("show_input"), f": {path} is one of the images to read; name another file")
        )
    if is_run(path.parent):
        raise ConfigError(
            (
                Setting("show_input"),
                f": {path.parent} is a run's folder; write the picture to a folder of your own",
            ),
        )


def cmd_predict(args) -> int:
    from mnistlab import images
    from mnistlab.predict import Predictor, number

    if args.show_input:
        picture_path(args.show_input, "show_input")  # refused before any work
    predictor = Predictor.load(args.run)
    sources = images.sources(args.images, sys.stdin.buffer)
    if args.show_input:
        _show_input_target(Path(args.show_input), sources)
    if args.show_input and len(sources) > images.MAX_SHOWN:
        raise ConfigError(
            (
                Setting("show_input"),
                f": one picture shows at most {images.MAX_SHOWN} images, and "
                f"{len(sources):,} were named; name fewer",
            ),
        )
    from mnistlab.errors import ImageError
    from mnistlab.text import escaped

    predictions, read, failed = [], [], 0
    for name, source in sources:  # each answer printed as it comes, before any picture
        try:
            digits = predictor.read(source)
        except ImageError as error:  # this image alone: the others are still answered
            failed += 1
            if args.json:
                print(json.dumps({"file": name, "error": str(error)}), flush=True)
            else:
                print(f"{escaped(name)}: error: {escaped(str(error))}", flush=True)
            continue
        # (a number's picture shows its first digit as the model saw it)
        predictions.append((name, digits[0]))
        read.append(source)
        if args.json:
            print(json.dumps({"file": name, **number(digits)}), flush=True)
        elif len(digits) == 1:
            top = ", ".join(f"{label} {100 * p:.1f}%" for label, p in digits[0].top(3))
            print(f"{escaped(name)}: {digits[0].verdict()}  (top 3: {top})", flush=True)
        else:
            print(f"{escaped(name)}: {text.number_line(number(digits))}", flush=True)
    if args.show_input and predictions:
        from mnistlab import plots

        try:
            path = plots.inputs_seen(read, predictions, args.show_input)
        except OSError as error:
            raise ConfigError(
                (
                    Setting("show_input"),
                    f": cannot write {args.show_input}: {error.strerror or error}",
                ),
            ) from None
        print(f"wrote {path}", file=sys.stderr)
    if failed:
        print(f"mnistlab: {failed} of {len(sources)} images could not be read", file=sys.stderr)
    return ImageError.exit_code if failed else 0


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

        from mnistlab.serve import (
            LOCAL_HOSTS,
            app_for_run,
            return_freed_memory,
            server_options,
        )
    except ImportError as error:
        raise ConfigError(f"serve needs {error.name}: pip install 'mnistlab[serve]'") from None
    from mnistlab import devices

    runtime = runtime_from_args(args)
    _check_port(args.host, args.port)
    hosts = (*LOCAL_HOSTS, args.host, *args.allow_host)
    device = str(devices.resolve(runtime.device))
    app = app_for_run(args.run, device, hosts=hosts, cors=tuple(args.cors))
    print(f"serving {args.run} at http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    return_freed_memory()
    uvicorn.run(app, host=args.host, port=args.port, **server_options())
    return 0


def _check_port(host: str, port: int) -> None:
    """Say now, in one line, that the address cannot be listened on (in use, or not this
    machine's), rather than after 'serving at'."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise ConfigError(
            (
                Setting("port"),
                f": cannot listen on {host}:{port} ({error.strerror or error}); give another "
                "port, or stop what holds it",
            ),
        ) from None
