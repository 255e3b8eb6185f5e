"""One self-contained HTML page for a run, a sweep, a study, or several runs side by side:
tables and pictures (embedded as data URIs), readable offline and easy to hand in or send.

The page is a Jinja2 template with autoescaping: every value that reaches it is escaped,
whatever file it came from. Only the folder's own PNG files are embedded (never a link,
never another kind of file).
"""

import base64
import json
from pathlib import Path

from mnistlab import runfiles, shapes, text
from mnistlab.config import TrainConfig, model_name, show
from mnistlab.errors import ConfigError, MnistlabError, Setting
from mnistlab.files import atomic_write, read_small
from mnistlab.settings import applicable, from_saved


def _render(title: str, sections: list[dict]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("mnistlab", "templates"), autoescape=select_autoescape(["html"])
    )
    return environment.get_template("page.html").render(title=title, sections=sections) + "\n"


def _section(heading=None, paragraphs=(), table=None, images=(), lead=False) -> dict:
    """A part of the page. A paragraph is a list of texts and {"bold": text} parts."""
    return {
        "heading": heading,
        "paragraphs": [p if isinstance(p, list) else [p] for p in paragraphs],
        "table": table,
        "images": list(images),
        "lead": lead,
    }


def _table(header: list, rows: list[list]) -> dict:
    return {"header": [str(cell) for cell in header], "rows": [[str(c) for c in r] for r in rows]}


MAX_PICTURE = 20_000_000  # bytes of one picture embedded in a report


def _images(folder: Path, names) -> list[dict]:
    """The pictures that are regular files of the folder itself: a link is never followed
    (`curves.png -> /etc/passwd` would otherwise end up in the page)."""
    images = []
    for name in names:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            content = read_small(path, MAX_PICTURE)
        except OSError:  # replaced since, or larger than any picture mnistlab draws
            continue
        if not content.startswith(b"\x89PNG\r\n\x1a\n"):
            continue
        images.append({"alt": path.stem, "data": base64.b64encode(content).decode()})
    return images


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "n/a"


def _number(value, form: str) -> str:
    return format(value, form) if isinstance(value, int | float) else "n/a"


def _logistic_regression() -> int:
    """The assignment's baseline: 784 x 10 weights + 10 biases."""
    return shapes.count(TrainConfig(model="logreg").layer_sizes)


class _Run:
    """What a report shows of one run folder, read defensively (any file may be crafted)."""

    def __init__(self, folder: Path):
        self.folder = folder
        values = runfiles.read_json(folder / runfiles.CONFIG)
        self.settings = values if isinstance(values, dict) else {}
        try:
            self.config = from_saved(self.settings)
        except MnistlabError:
            self.config = None
        self.history = runfiles.read_metrics(folder)
        evaluation = runfiles.read_json(folder / runfiles.EVALUATION)
        self.evaluation = evaluation if isinstance(evaluation, dict) else {}

    @property
    def model(self) -> str:
        return model_name(self.config) if self.config else "unknown model"

    @property
    def parameters(self) -> int | None:
        return shapes.count(self.config.layer_sizes) if self.config else None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.history if isinstance(r.get("seconds"), int | float))

    def per_class(self) -> list[tuple[str, float]]:
        classes, accuracy = (
            self.evaluation.get("classes"),
            self.evaluation.get("per_class_accuracy"),
        )
        if not isinstance(classes, list) or not isinstance(accuracy, list):
            return []
        return list(zip(classes, accuracy, strict=False))


def _lead(run: _Run) -> list:
    """The model, its trainable parameters beside logistic regression's (the assignment's
    short answer), and the result."""
    parts: list = [{"bold": run.model}]
    if run.parameters is not None:
        baseline = _logistic_regression()
        parts.append(
            f": {run.parameters:,} trainable parameters, against logistic regression's "
            f"{baseline:,} ({run.parameters / baseline:.1f}x as many)"
        )
    if run.history:
        parts += [
            ". Test accuracy ",
            {"bold": _percent(run.final.get("test_accuracy"))},
            f" after {run.final.get('epoch')} epochs, {run.seconds:.1f} s of training.",
        ]
    return parts


def render_run(folder: Path) -> str:
    run = _Run(folder)
    sections = [_section(paragraphs=[_lead(run)], lead=True)]
    if run.history:
        rows = [
            [
                r.get("epoch"),
                _number(r.get("train_loss"), ".4f"),
                _percent(r.get("train_accuracy")),
                _number(r.get("test_loss"), ".4f"),
                _percent(r.get("test_accuracy")),
                _number(r.get("seconds"), ".2f"),
            ]
            for r in run.history
        ]
        header = ["epoch", "train loss", "train acc", "test loss", "test acc", "seconds"]
        sections.append(
            _section(
                "Metrics per epoch",
                [
                    "train: the average over the epoch's batches while the model learned; "
                    "test: the whole test set after the epoch."
                ],
                _table(header, rows),
            )
        )
    if run.per_class():
        rows = [[c, _percent(a)] for c, a in run.per_class()]
        sections.append(
            _section("Accuracy per class", table=_table(["class", "test accuracy"], rows))
        )
    sections.append(_section("Pictures", images=_images(folder, runfiles.PICTURES)))
    settings = [[k, show(v)] for k, v in applicable(run.settings).items()]
    sections.append(_section("Settings", table=_table(["setting", "value"], settings)))
    return _render(f"mnistlab run {folder.name}", sections)


def render_runs(folders: list[Path]) -> str:
    """Several runs side by side: the assignment's MLP against logistic regression, say. Each
    run is a column of its own, named by its folder (the full path where two names agree)."""
    loaded = [_Run(folder) for folder in folders]
    names = [run.folder.name for run in loaded]
    if len(set(names)) < len(names):
        names = [str(run.folder) for run in loaded]
    rows = [
        [
            name,
            run.model,
            f"{run.parameters:,}" if run.parameters is not None else "n/a",
            run.final.get("epoch", "n/a"),
            _percent(run.final.get("test_accuracy")),
            f"{run.seconds:.1f}",
        ]
        for name, run in zip(names, loaded, strict=True)
    ]
    header = ["run", "model", "parameters", "epochs", "test accuracy", "seconds"]
    sections = [_section("Runs", table=_table(header, rows))]
    classes = next((run.per_class() for run in loaded if run.per_class()), [])
    if classes:
        accuracy = [dict(run.per_class()) for run in loaded]
        rows = [[name, *(_percent(a.get(name)) for a in accuracy)] for name, _ in classes]
        sections.append(_section("Accuracy per class", table=_table(["class", *names], rows)))
    settings = [applicable(run.settings) for run in loaded]
    keys = list(dict.fromkeys(key for values in settings for key in values))
    differing = [k for k in keys if len({json.dumps(v.get(k)) for v in settings}) > 1]
    if differing:
        rows = [[k, *(show(v[k]) if k in v else "-" for v in settings)] for k in differing]
        sections.append(_section("Settings that differ", table=_table(["setting", *names], rows)))
    for name, run in zip(names, loaded, strict=True):
        pictures = [runfiles.PICTURES[0], runfiles.PICTURES[-1]]  # curves and weights
        sections.append(_section(name, images=_images(run.folder, pictures)))
    return _render(f"mnistlab: {len(loaded)} runs side by side", sections)


def render_sweep(folder: Path) -> str:
    from mnistlab.sweep.pictures import SWEEP_PICTURES
    from mnistlab.sweep.results import chosen_by, label, read_results, summarize, varied_fields

    records = read_results(folder)
    rows = summarize(records)
    fields = varied_fields(records)
    base = {
        key: value
        for key, value in applicable(records[0]["config"] if records else {}).items()
        if key not in fields and key != "seed"
    }
    validation = bool(rows) and rows[0].get("val_mean") is not None
    measure = "validation" if validation else "test"
    lead = (
        [
            f"{len(records)} runs, {len(rows)} configurations. Best by {measure} accuracy: ",
            {"bold": rows[0]["config"]},
            f" at {100 * chosen_by(rows[0]):.2f}% (n = {rows[0]['n']}).",
        ]
        if rows
        else "No finished runs."
    )
    varied = (
        f"Varied: {', '.join(fields) or 'nothing but the seed'}; every other setting as in the "
        "table of base settings below."
    )
    header = ["configuration", "n", "parameters", "train GFLOP", "seconds"]
    header += ["validation accuracy"] if validation else []
    header += ["test accuracy", "Pareto (FLOPs)"]
    summary = [
        [
            r["config"],
            r["n"],
            f"{r['parameters']:,}",
            f"{r['train_flops'] / 1e9:,.0f}",
            f"{r['seconds_mean']:.1f} ± {r['seconds_std']:.1f}",
            *([f"{100 * r['val_mean']:.2f} ± {100 * r['val_std']:.2f}%"] if validation else []),
            f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}%",
            "yes" if r["pareto_flops"] else "",
        ]
        for r in rows
    ]
    every = [
        [
            label(r["config"], fields),
            r["config"].get("seed"),
            f"{100 * r['test_accuracy']:.2f}%",
            f"{r['seconds']:.1f}",
        ]
        for r in records
    ]
    sections = [
        _section(paragraphs=[lead, varied], lead=True),
        _section("Summary", table=_table(header, summary)),
        _section("Pictures", images=_images(folder, SWEEP_PICTURES)),
        _section(
            "Every run",
            table=_table(["configuration", "seed", "test accuracy", "seconds"], every),
        ),
        _section(
            "Base settings",
            table=_table(["setting", "value"], [[k, show(v)] for k, v in base.items()]),
        ),
    ]
    return _render(f"mnistlab sweep {folder.name}", sections)


def render_study(folder: Path) -> str:
    """A study: counts, the best trials by validation accuracy, the best's test accuracy
    measured once, importances, and its pictures."""
    from mnistlab.tune import Study
    from mnistlab.tune.pictures import STUDY_PICTURES

    study = Study.open(folder)
    summary = study.summary()
    paragraphs: list = [f"{text.trial_counts(summary)}."]
    best = summary.get("best_test")
    if best:
        paragraphs.append(
            [
                f"The best trial ({best['trial']}) was chosen by its validation accuracy, "
                f"{_percent(best['val_accuracy'])}; its test accuracy, measured once after the "
                "search: ",
                {"bold": _percent(best["test_accuracy"])},
                ".",
            ]
        )
    if summary.get("standard_error"):
        sentence = text.standard_error(summary["standard_error"])
        paragraphs.append(sentence[0].upper() + sentence[1:] + ".")
    baseline = summary.get("baseline")
    if baseline and baseline["val_accuracy"] is not None:
        paragraphs.append(
            f"The base settings (trial {baseline['trial']}) scored "
            f"{_percent(baseline['val_accuracy'])} on validation."
        )
    trials = [
        [
            t["trial"],
            _percent(t["val_accuracy"]),
            " ".join(f"{k}={v}" for k, v in t["params"].items()),
        ]
        for t in summary["best"]
    ]
    sections = [
        _section(paragraphs=paragraphs, lead=True),
        _section(
            "Best trials",
            table=_table(["trial", "validation accuracy", "settings"], trials),
        ),
    ]
    if summary["importances"]:
        rows = [[k, f"{v:.2f}"] for k, v in summary["importances"].items()]
        sections.append(
            _section("Parameter importances", table=_table(["setting", "importance"], rows))
        )
    sections.append(_section("Pictures", images=_images(folder, STUDY_PICTURES)))
    return _render(f"mnistlab study {study.engine.study}", sections)


def write(folder: str | Path | list, out: str | Path | None = None) -> Path:
    """The report of a run, sweep or study folder (FOLDER/report.html), or of several runs
    side by side (`out` needed)."""
    from mnistlab.sweep import is_sweep
    from mnistlab.tune import is_study

    folders = [Path(f) for f in folder] if isinstance(folder, list | tuple) else [Path(folder)]
    if len(folders) > 1:
        if out is None:
            raise ConfigError((Setting("out"), ": give the HTML file to write for several runs"))
        page = render_runs(folders)
    elif is_study(folders[0]):
        page = render_study(folders[0])
    else:
        page = render_sweep(folders[0]) if is_sweep(folders[0]) else render_run(folders[0])
    out = Path(out) if out else folders[0] / "report.html"
    if out.is_dir():
        raise ConfigError((Setting("out"), f": {out} is a folder; give the HTML file to write"))
    if not out.parent.is_dir():
        raise ConfigError((Setting("out"), f": the folder {out.parent} does not exist"))
    try:
        # A folder name that is not UTF-8 shows as replacement characters, not an error.
        return atomic_write(out, page.encode("utf-8", errors="replace"))
    except OSError as error:
        raise ConfigError((Setting("out"), f": cannot write {out}: {error.strerror}")) from None
