"""One self-contained HTML page for a run or a sweep: tables and pictures (embedded as data
URIs), readable offline and easy to send to someone."""

import base64
import html
import json
from pathlib import Path

from mnistlab import runs, sweep
from mnistlab.errors import ConfigError
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


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _esc(value) -> str:
    return html.escape(str(value))


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
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "n/a"


def _number(value, form: str) -> str:
    return format(value, form) if isinstance(value, int | float) else "n/a"


def render_run(folder: Path) -> str:
    config = json.loads((folder / runs.CONFIG).read_text())
    if not isinstance(config, dict):
        config = {}
    history = [r for r in runs.read_metrics(folder) if isinstance(r, dict)]
    parts = []
    if history:
        final = history[-1]
        seconds = sum(r["seconds"] for r in history if isinstance(r.get("seconds"), int | float))
        parts.append(
            f"<p class='summary'>Test accuracy <b>{_esc(_percent(final.get('test_accuracy')))}"
            f"</b> after {_esc(final.get('epoch'))} epochs, {seconds:.1f} s of training.</p>"
        )
        parts.append("<h2>Metrics per epoch</h2>")
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
                    for r in history
                ],
            )
        )
    parts.append("<h2>Pictures</h2>")
    parts += _images(folder, RUN_PICTURES)
    parts.append("<h2>Configuration</h2>")
    parts.append(
        _table(["setting", "value"], [[key, json.dumps(value)] for key, value in config.items()])
    )
    return _page(f"mnistlab run {folder.name}", parts)


def render_sweep(folder: Path) -> str:
    records = sweep.read_results(folder)
    rows = sweep.summarize(records)
    parts = [
        f"<p class='summary'>{len(records)} runs, {len(rows)} configurations. Best: "
        f"<b>{_esc(rows[0]['config'])}</b> at {100 * rows[0]['accuracy_mean']:.2f}% "
        f"(n = {rows[0]['n']}).</p>"
        if rows
        else "<p>No finished runs.</p>",
        "<h2>Summary</h2>",
        _table(
            [
                "configuration",
                "n",
                "parameters",
                "train GFLOP",
                "seconds",
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
                    f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}%",
                    "yes" if r["pareto_flops"] else "",
                ]
                for r in rows
            ],
        ),
        "<h2>Pictures</h2>",
    ]
    parts += _images(folder, SWEEP_PICTURES)
    fields = sweep.varied_fields(records)
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
    return _page(f"mnistlab sweep {folder.name}", parts)


def is_sweep(folder: Path) -> bool:
    return (folder / sweep.RESULTS).is_file()


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    folder = Path(folder)
    text = render_sweep(folder) if is_sweep(folder) else render_run(folder)
    out = Path(out) if out else folder / "report.html"
    if out.is_dir():
        raise ConfigError(f"out: {out} is a folder; give the HTML file to write", "out")
    if not out.parent.is_dir():
        raise ConfigError(f"out: the folder {out.parent} does not exist", "out")
    try:
        # A folder name that is not UTF-8 shows as replacement characters, not an error.
        return atomic_write(out, text.encode("utf-8", errors="replace"))
    except OSError as error:
        raise ConfigError(f"out: cannot write {out}: {error.strerror}", "out") from None
