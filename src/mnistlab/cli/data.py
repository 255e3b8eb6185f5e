"""mnistlab data: fetch, check and look at the data sets."""

import tempfile
from pathlib import Path

from mnistlab import text
from mnistlab.cli import flags
from mnistlab.cli.flags import Parser, add_setting_flags, between, command
from mnistlab.config import Runtime
from mnistlab.errors import ConfigError, Setting

PICTURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def add_parsers(commands) -> None:
    parser = command(commands, "data", "fetch, check and look at the datasets")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, summary in (
        ("fetch", "find or download the files, verified"),
        ("info", "where each file is, hashes, counts per class"),
        ("show", "a grid of sample images with their labels"),
    ):
        sub = actions.add_parser(name, help=summary, description=summary)
        sub.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
        add_setting_flags(sub, Runtime, skip=("device", "threads"))
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        sub.set_defaults(handler=cmd_data)
    sub.add_argument("--out", help="picture file to write (default: a new temporary folder)")
    sub.add_argument("--split", choices=("train", "test"), default="train")
    sub.add_argument("--rows", type=between(1, 100), default=8, help="images per class (1-100)")
    sub.add_argument("--seed", type=int, default=0)


def picture_path(out: str | Path, field: str = "out") -> Path:
    """A picture file to write: its suffix one matplotlib writes, its folder there."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError((Setting(field), f": {out} is a folder; give the picture file to write"))
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise ConfigError(
            (Setting(field), f": {out} needs a picture extension: .png, .pdf, .svg or .jpg")
        )
    if not path.parent.is_dir():
        raise ConfigError((Setting(field), f": the folder {path.parent} does not exist"))
    return path


def cmd_data(args) -> int:
    from mnistlab import data, datasets

    runtime = flags.read_runtime(args)  # (no threads to set: nothing here computes with torch)
    options = runtime.data_options()
    if args.action == "fetch":
        for key, path in data.locate(args.dataset, runtime.data_dir, **options).items():
            print(f"{key:13} {path}")
        return 0
    if args.action == "show":
        from mnistlab import plots

        out = picture_path(args.out) if args.out else None  # refused before any work
        dataset = data.load(args.dataset, runtime.data_dir, **options)
        # (a folder of its own only once there is a picture to put in it)
        out = out or Path(tempfile.mkdtemp(prefix="mnistlab-")) / "samples.png"
        split = dataset.train if args.split == "train" else dataset.test
        path = plots.samples(split, dataset.classes, out, per_class=args.rows, seed=args.seed)
        print(f"wrote {path}")
        return 0
    dataset = data.load(args.dataset, runtime.data_dir, **options)
    print(text.data_info(dataset, datasets.get_spec(args.dataset), data.class_counts))
    return 0
