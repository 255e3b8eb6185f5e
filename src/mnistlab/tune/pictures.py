"""A study's pictures: each trial's validation accuracy with the best so far, parameter
importances, and validation accuracy against each parameter."""

from pathlib import Path

import numpy as np

from mnistlab import plots

STUDY_PICTURES = ("study_history.png", "study_importances.png", "study_parameters.png")


def study_pictures(summary: dict, folder) -> list[Path]:
    """A study's pictures: validation accuracy of each trial with the best so far, parameter
    importances, and validation accuracy against each parameter."""
    folder = Path(folder)
    done = [t for t in summary["trials"] if t["state"] == "complete" and t["value"] is not None]
    if not done:
        return []
    figure = plots.new_figure(8, 4)
    axes = figure.add_subplot(1, 1, 1)
    numbers = [t["trial"] for t in done]
    values = [100 * t["value"] for t in done]
    axes.plot(numbers, values, "o", color="tab:blue", label="complete trial")
    axes.plot(numbers, np.maximum.accumulate(values), "-", color="tab:red", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(f"study {summary['study']}: optimisation history")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    history, importances, parameters = (folder / name for name in STUDY_PICTURES)
    written = [plots.save(figure, history)]
    if summary["importances"]:
        names = list(summary["importances"])
        figure = plots.new_figure(6, 0.6 + 0.4 * len(names))
        axes = figure.add_subplot(1, 1, 1)
        axes.barh(names[::-1], [summary["importances"][n] for n in names[::-1]], color="tab:blue")
        axes.set_xlabel("importance (share of the variance in validation accuracy)")
        figure.tight_layout()
        written.append(plots.save(figure, importances))
    names = sorted({name for t in done for name in t["params"]})
    figure = plots.new_figure(4 * len(names), 3.5)
    for index, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), index + 1)
        points = [(t["params"][name], 100 * t["value"]) for t in done if name in t["params"]]
        x = [p[0] for p in points]
        if all(isinstance(v, int | float) for v in x):
            axes.plot(x, [p[1] for p in points], "o", alpha=0.7)
            if min(x) > 0 and max(x) / min(x) > 20:
                axes.set_xscale("log")
        else:  # categories, in the order first seen
            order = list(dict.fromkeys(map(str, x)))
            axes.plot([order.index(str(v)) for v in x], [p[1] for p in points], "o", alpha=0.7)
            axes.set_xticks(range(len(order)), order, fontsize=8)
        axes.set_xlabel(name)
        axes.set_ylabel("validation accuracy (%)" if index == 0 else "")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    written.append(plots.save(figure, parameters))
    return written
