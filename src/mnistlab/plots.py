"""Pictures, drawn with matplotlib's object API on the Agg canvas: no display, no pyplot state.

Each function draws one figure and writes it to `path` atomically, returning the path.
"""

import os
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    figure.savefig(partial)
    os.replace(partial, path)
    return path


def image_grid(
    images,
    titles: list[str],
    path,
    columns: int = 10,
    suptitle: str = "",
    colors: list[str] | None = None,
    cmap: str = "gray_r",
) -> Path:
    """A grid of 28x28 images (uint8 or float), each with a title."""
    images = np.asarray(images)
    rows = max(1, -(-len(images) // columns))
    figure = _figure(columns * 1.1, rows * 1.3 + (0.4 if suptitle else 0))
    for index, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image, cmap=cmap, interpolation="nearest")
        axes.set_title(titles[index], fontsize=7, color=(colors or ["black"] * len(images))[index])
        axes.set_axis_off()
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def samples(split, classes, path, per_class: int = 8, seed: int = 0) -> Path:
    """`per_class` training images of each class, one class per column."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    chosen, titles = [], []
    for row in range(per_class):
        for label in range(len(classes)):
            indices = (split.labels == label).nonzero().flatten()
            pick = indices[torch.randint(len(indices), (1,), generator=generator)].item()
            chosen.append(split.images[pick].numpy())
            titles.append(classes[label] if row == 0 else "")
    return image_grid(chosen, titles, path, columns=len(classes))
