"""mnistlab check, predict, export and serve: a model you wrote diagnosed, and a trained one
used on your own images, taken to other runtimes, served to a browser."""

import json
import sys

from mnistlab import text
from mnistlab.cli.console import runtime_from_args
from mnistlab.cli.flags import add_setting_flags, command
from mnistlab.config import EXPORT_FORMATS, Runtime
from mnistlab.errors import ConfigError


def add_parsers(commands) -> None:
    check = command(
        commands, "check", "diagnose a model you wrote: leaves, gradients, logits, scale, agreement"
    )
    check.add_argument("target", metavar="FILE.py:NAME", help="a model class or object in a file")
    check.add_argument("--dataset", default="mnist", help="the batch's data set (default mnist)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
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

    export = command(commands, "export", "the model for ONNX, TorchScript or safetensors")
    export.add_argument("run", help="run folder or checkpoint.pt")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", help="file to write (default: RUN/model.EXT)")
    export.set_defaults(handler=cmd_export)

    serve = command(commands, "serve", "a web page to draw digits on, and a JSON API")
    serve.add_argument("run", help="run folder or checkpoint.pt")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    add_setting_flags(serve, Runtime, skip=("data_dir", "mirrors"))
    serve.set_defaults(handler=cmd_serve)


def cmd_check(args) -> int:
    import torch

    from mnistlab import data, diagnose
    from mnistlab.runfiles import plain

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


def cmd_predict(args) -> int:
    from mnistlab import preprocess
    from mnistlab.predict import Predictor

    predictor = Predictor.load(args.run)
    sources = preprocess.sources(args.images, sys.stdin.buffer)
    if args.show_input and len(sources) > preprocess.MAX_SHOWN:
        raise ConfigError(
            f"show_input: one picture shows at most {preprocess.MAX_SHOWN} images, and "
            f"{len(sources):,} were named; name fewer",
            "show_input",
        )
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
    from mnistlab import devices

    runtime = runtime_from_args(args)
    app = app_for_run(args.run, str(devices.resolve(runtime.device)))
    print(f"serving {args.run} at http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
