"""A sweep's pictures: accuracy (mean ± std over seeds) against training FLOPs, wall-clock
seconds and parameters, log x, the Pareto frontier drawn."""

from pathlib import Path

import numpy as np

from mnistlab import plots

SWEEP_AXES = {
    "flops": ("train_flops", "training FLOPs", 1e-9, "GFLOP"),
    "seconds": ("seconds_mean", "training wall-clock", 1.0, "s"),
    "parameters": ("parameters", "trainable parameters", 1.0, "count"),
}


def sweep_plot(rows: list[dict], axis: str, path) -> Path:
    """Test accuracy (mean ± std over seeds) against one cost, log x, Pareto frontier marked."""
    key, title, scale, unit = SWEEP_AXES[axis]
    figure = plots.new_figure(8, 5)
    axes = figure.add_subplot(1, 1, 1)
    x = np.array([row[key] * scale for row in rows])
    validation = rows[0].get("val_mean") is not None
    mean, std = ("val_mean", "val_std") if validation else ("accuracy_mean", "accuracy_std")
    y = np.array([100 * row[mean] for row in rows])
    error = np.array([100 * row[std] for row in rows])
    seeds = max(row["n"] for row in rows)
    if seeds > 1:
        axes.errorbar(
            x,
            y,
            yerr=error,
            fmt="o",
            color="tab:blue",
            ecolor="gray",
            capsize=3,
            label="configuration (error bar: std over seeds)",
        )
    else:  # one seed each: no spread to show
        axes.plot(x, y, "o", color="tab:blue", label="configuration (one seed each)")
    # Labels alternate above and below their points, in order of x, so neighbours part.
    for rank, index in enumerate(np.argsort(x, kind="stable")):
        above = rank % 2 == 0
        axes.annotate(
            rows[index]["config"],
            (x[index], y[index]),
            textcoords="offset points",
            xytext=(0, 7 if above else -11),
            ha="center",
            va="bottom" if above else "top",
            fontsize=7,
        )
    frontier = [index for index, row in enumerate(rows) if row[f"pareto_{axis}"]]
    frontier.sort(key=lambda index: x[index])
    axes.plot(x[frontier], y[frontier], "-", color="tab:red", alpha=0.6, label="Pareto frontier")
    axes.set_xscale("log")
    axes.margins(x=0.25)  # room for the labels of the outermost points
    axes.set_xlabel(f"{title} ({unit}, log scale)")
    measure = "validation accuracy" if validation else "test accuracy"
    axes.set_ylabel(f"{measure} (%)")
    n = sorted({row["n"] for row in rows})
    seeds = "seed" if n == [1] else "seeds"
    axes.set_title(f"{measure} against {title} (n = {', '.join(map(str, n))} {seeds})")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return plots.save(figure, path)


SWEEP_PICTURES = tuple(f"accuracy_vs_{axis}.png" for axis in SWEEP_AXES)


def sweep_pictures(rows: list[dict], folder) -> list[Path]:
    folder = Path(folder)
    return [
        sweep_plot(rows, axis, folder / name)
        for axis, name in zip(SWEEP_AXES, SWEEP_PICTURES, strict=True)
    ]
