"""One self-contained HTML page for a run, a sweep, or several runs side by side: tables and
pictures (embedded as data URIs), readable offline and easy to hand in or send.

Every value that reaches the page is escaped, whatever file it came from, and only the run's
own PNG files are embedded (never a link, never another kind of file).
"""

import base64
import html
import json
from pathlib import Path

from mnistlab import runs, sweep
from mnistlab.config import applicable, from_saved, model_name, show
from mnistlab.errors import ConfigError, MnistlabError
from mnistlab.files import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.summary { font-size: 18px; }
"""

RUN_PICTURES = ("curves.png", "confusion.png", "mistakes.png", "weights.png")
SWEEP_PICTURES = ("accuracy_vs_flops.png", "accuracy_vs_seconds.png", "accuracy_vs_parameters.png")
STUDY_PICTURES = ("study_history.png", "study_importances.png", "study_parameters.png")
LOGISTIC_REGRESSION = 7_850  # 784 x 10 weights + 10 biases: the assignment's baseline


def _esc(value) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _images(folder: Path, names) -> list[str]:
    """The pictures that are regular files of the folder itself: a link is never followed
    (`curves.png -> /etc/passwd` would otherwise end up in the page)."""
    parts = []
    for name in names:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            continue
        content = path.read_bytes()
        if not content.startswith(b"\x89PNG\r\n\x1a\n"):
            continue
        encoded = base64.b64encode(content).decode()
        parts.append(f'<img alt="{_esc(path.stem)}" src="data:image/png;base64,{encoded}">')
    return parts


def _page(title: str, parts: list[str]) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "n/a"


def _number(value, form: str) -> str:
    return format(value, form) if isinstance(value, int | float) else "n/a"


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Run:
    """What a report shows of one run folder, read defensively (any file may be crafted)."""

    def __init__(self, folder: Path):
        self.folder = folder
        values = _json(folder / runs.CONFIG)
        self.settings = values if isinstance(values, dict) else {}
        try:
            self.config = from_saved(self.settings)
        except MnistlabError:
            self.config = None
        self.history = runs.read_metrics(folder)
        evaluation = _json(folder / runs.EVALUATION)
        self.evaluation = evaluation if isinstance(evaluation, dict) else {}

    @property
    def model(self) -> str:
        return model_name(self.config) if self.config else "unknown model"

    @property
    def parameters(self) -> int | None:
        from mnistlab.models import count_parameters

        return count_parameters(self.config.layer_sizes) if self.config else None

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


def _lead(run: _Run) -> str:
    """The model, its trainable parameters beside logistic regression's (the assignment's
    short answer), and the result."""
    parts = [f"<p class='summary'><b>{_esc(run.model)}</b>"]
    if run.parameters is not None:
        ratio = run.parameters / LOGISTIC_REGRESSION
        parts.append(
            f": {run.parameters:,} trainable parameters, against logistic regression's "
            f"{LOGISTIC_REGRESSION:,} ({ratio:.1f}x as many)"
        )
    if run.history:
        parts.append(
            f". Test accuracy <b>{_esc(_percent(run.final.get('test_accuracy')))}</b> after "
            f"{_esc(run.final.get('epoch'))} epochs, {run.seconds:.1f} s of training."
        )
    return "".join(parts) + "</p>"


def render_run(folder: Path) -> str:
    run = _Run(folder)
    parts = [_lead(run)]
    if run.history:
        parts.append("<h2>Metrics per epoch</h2>")
        parts.append(
            "<p>train: the average over the epoch's batches while the model learned; "
            "test: the whole test set after the epoch.</p>"
        )
        parts.append(
            _table(
                ["epoch", "train loss", "train acc", "test loss", "test acc", "seconds"],
                [
                    [
                        r.get("epoch"),
                        _number(r.get("train_loss"), ".4f"),
                        _percent(r.get("train_accuracy")),
                        _number(r.get("test_loss"), ".4f"),
                        _percent(r.get("test_accuracy")),
                        _number(r.get("seconds"), ".2f"),
                    ]
                    for r in run.history
                ],
            )
        )
    if run.per_class():
        parts.append("<h2>Accuracy per class</h2>")
        parts.append(
            _table(["class", "test accuracy"], [[c, _percent(a)] for c, a in run.per_class()])
        )
    parts.append("<h2>Pictures</h2>")
    parts += _images(folder, RUN_PICTURES)
    parts.append("<h2>Settings</h2>")
    parts.append(
        _table(["setting", "value"], [[k, show(v)] for k, v in applicable(run.settings).items()])
    )
    return _page(f"mnistlab run {folder.name}", parts)


def render_runs(folders: list[Path]) -> str:
    """Several runs side by side: the assignment's MLP against logistic regression, say."""
    loaded = [_Run(folder) for folder in folders]
    parts = [
        "<h2>Runs</h2>",
        _table(
            ["run", "model", "parameters", "epochs", "test accuracy", "seconds"],
            [
                [
                    run.folder.name,
                    run.model,
                    f"{run.parameters:,}" if run.parameters is not None else "n/a",
                    run.final.get("epoch", "n/a"),
                    _percent(run.final.get("test_accuracy")),
                    f"{run.seconds:.1f}",
                ]
                for run in loaded
            ],
        ),
    ]
    classes = next((run.per_class() for run in loaded if run.per_class()), [])
    if classes:
        parts.append("<h2>Accuracy per class</h2>")
        table = {run.folder.name: dict(run.per_class()) for run in loaded}
        parts.append(
            _table(
                ["class", *table],
                [[name, *(_percent(t.get(name)) for t in table.values())] for name, _ in classes],
            )
        )
    settings = [applicable(run.settings) for run in loaded]
    keys = list(dict.fromkeys(key for values in settings for key in values))
    differing = [k for k in keys if len({json.dumps(v.get(k)) for v in settings}) > 1]
    if differing:
        parts.append("<h2>Settings that differ</h2>")
        parts.append(
            _table(
                ["setting", *(run.folder.name for run in loaded)],
                [[k, *(show(v[k]) if k in v else "-" for v in settings)] for k in differing],
            )
        )
    for run in loaded:
        parts.append(f"<h2>{_esc(run.folder.name)}</h2>")
        parts += _images(run.folder, ("curves.png", "weights.png"))
    return _page(f"mnistlab: {len(loaded)} runs side by side", parts)


def render_sweep(folder: Path) -> str:
    records = sweep.read_results(folder)
    rows = sweep.summarize(records)
    fields = sweep.varied_fields(records)
    base = {
        key: value
        for key, value in applicable(records[0]["config"] if records else {}).items()
        if key not in fields and key != "seed"
    }
    validation = bool(rows) and rows[0].get("val_mean") is not None
    measure = "validation" if validation else "test"
    parts = [
        f"<p class='summary'>{len(records)} runs, {len(rows)} configurations. Best by {measure} "
        f"accuracy: <b>{_esc(rows[0]['config'])}</b> at "
        f"{100 * sweep.chosen_by(rows[0]):.2f}% (n = {rows[0]['n']}).</p>"
        if rows
        else "<p>No finished runs.</p>",
        f"<p>Varied: {_esc(', '.join(fields) or 'nothing but the seed')}; every other setting "
        "as in the table of base settings below.</p>",
        "<h2>Summary</h2>",
        _table(
            [
                "configuration",
                "n",
                "parameters",
                "train GFLOP",
                "seconds",
                *(["validation accuracy"] if validation else []),
                "test accuracy",
                "Pareto (FLOPs)",
            ],
            [
                [
                    r["config"],
                    r["n"],
                    f"{r['parameters']:,}",
                    f"{r['train_flops'] / 1e9:,.0f}",
                    f"{r['seconds_mean']:.1f} ± {r['seconds_std']:.1f}",
                    *(
                        [f"{100 * r['val_mean']:.2f} ± {100 * r['val_std']:.2f}%"]
                        if validation
                        else []
                    ),
                    f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}%",
                    "yes" if r["pareto_flops"] else "",
                ]
                for r in rows
            ],
        ),
        "<h2>Pictures</h2>",
    ]
    parts += _images(folder, SWEEP_PICTURES)
    parts.append("<h2>Every run</h2>")
    parts.append(
        _table(
            ["configuration", "seed", "test accuracy", "seconds"],
            [
                [
                    sweep.label(r["config"], fields),
                    r["config"].get("seed"),
                    f"{100 * r['test_accuracy']:.2f}%",
                    f"{r['seconds']:.1f}",
                ]
                for r in records
            ],
        )
    )
    parts.append("<h2>Base settings</h2>")
    parts.append(_table(["setting", "value"], [[k, show(v)] for k, v in base.items()]))
    return _page(f"mnistlab sweep {folder.name}", parts)


def render_study(folder: Path) -> str:
    """A study: counts, the best trials by validation accuracy, the best's test accuracy
    measured once, importances, and its pictures."""
    from mnistlab import tune

    where = _json(folder / "study.json") or {}
    engine = tune.Engine(str(where.get("storage", "")), str(where.get("study", "")))
    summary = tune.summary(engine)
    counts = ", ".join(f"{count} {state}" for state, count in sorted(summary["counts"].items()))
    parts = [f"<p class='summary'>{_esc(counts or 'no trials')}.</p>"]
    best = summary.get("best_test")
    if best:
        parts.append(
            f"<p>The best trial ({_esc(best['trial'])}) was chosen by its validation accuracy, "
            f"{_esc(_percent(best['val_accuracy']))}; its test accuracy, measured once after the "
            f"search: <b>{_esc(_percent(best['test_accuracy']))}</b>.</p>"
        )
    notes = []
    if summary.get("standard_error"):
        notes.append(
            f"One standard error of the best's validation accuracy is "
            f"{100 * summary['standard_error']:.2f} points: trials closer than that are not "
            "told apart."
        )
    baseline = summary.get("baseline")
    if baseline and baseline["val_accuracy"] is not None:
        notes.append(
            f"The base settings (trial {baseline['trial']}) scored "
            f"{_percent(baseline['val_accuracy'])} on validation."
        )
    parts += [f"<p>{_esc(note)}</p>" for note in notes]
    parts.append("<h2>Best trials</h2>")
    parts.append(
        _table(
            ["trial", "validation accuracy", "settings"],
            [
                [
                    t["trial"],
                    _percent(t["val_accuracy"]),
                    " ".join(f"{k}={v}" for k, v in t["params"].items()),
                ]
                for t in summary["best"]
            ],
        )
    )
    if summary["importances"]:
        parts.append("<h2>Parameter importances</h2>")
        parts.append(
            _table(
                ["setting", "importance"],
                [[k, f"{v:.2f}"] for k, v in summary["importances"].items()],
            )
        )
    parts.append("<h2>Pictures</h2>")
    parts += _images(folder, STUDY_PICTURES)
    return _page(f"mnistlab study {engine.study}", parts)


def is_study(folder: Path) -> bool:
    return (folder / "study.json").is_file()


def is_sweep(folder: Path) -> bool:
    return (folder / sweep.RESULTS).is_file()


def write(folder: str | Path | list, out: str | Path | None = None) -> Path:
    """The report of a run or sweep folder (FOLDER/report.html), or of several runs side by
    side (`out` needed)."""
    folders = [Path(f) for f in folder] if isinstance(folder, list | tuple) else [Path(folder)]
    if len(folders) > 1:
        if out is None:
            raise ConfigError("out: give the HTML file to write for several runs", "out")
        text = render_runs(folders)
    elif is_study(folders[0]):
        text = render_study(folders[0])
    else:
        text = render_sweep(folders[0]) if is_sweep(folders[0]) else render_run(folders[0])
    out = Path(out) if out else folders[0] / "report.html"
    if out.is_dir():
        raise ConfigError(f"out: {out} is a folder; give the HTML file to write", "out")
    if not out.parent.is_dir():
        raise ConfigError(f"out: the folder {out.parent} does not exist", "out")
    try:
        # A folder name that is not UTF-8 shows as replacement characters, not an error.
        return atomic_write(out, text.encode("utf-8", errors="replace"))
    except OSError as error:
        raise ConfigError(f"out: cannot write {out}: {error.strerror}", "out") from None
