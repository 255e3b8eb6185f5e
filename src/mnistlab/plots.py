"""Pictures, drawn with matplotlib's object API on the Agg canvas: no display, no pyplot state.

Each function draws one figure and writes it to `path` atomically, returning the path.
"""

from pathlib import Path

import numpy as np

from mnistlab.datasets import SIDE
from mnistlab.files import atomic_write


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save(figure, path: str | Path) -> Path:
    from matplotlib.text import Text

    # Titles carry users' text (file names, class names, study names): a `$` in one is a
    # dollar sign, not the start of matplotlib's mathtext (which fails on "cost$^$").
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: figure.savefig(handle, format=path.suffix[1:]))


def mosaic(
    images, columns: int, pad: int = 2, pad_y: int | None = None, fill: float = np.nan
) -> np.ndarray:
    """Tile (N, H, W) images into one (rows*(H+pad_y), columns*(W+pad)) array, each image at
    the top left of its cell.

    One imshow of a mosaic draws in a fraction of the time of one subplot per image.
    """
    images = np.asarray(images, dtype=np.float32)
    pad_y = pad if pad_y is None else pad_y
    count, height, width = images.shape
    rows = max(1, -(-count // columns))
    tiles = np.full((rows * columns, height + pad_y, width + pad), fill, np.float32)
    tiles[:count, :height, :width] = images
    return (
        tiles.reshape(rows, columns, height + pad_y, width + pad)
        .transpose(0, 2, 1, 3)
        .reshape(rows * (height + pad_y), columns * (width + pad))
    )


INCHES_PER_PIXEL = 0.028  # a 28-pixel image is about 0.8 inch across
CHARACTER_PIXELS = 2.0  # width of one character of the 7-point titles, in image pixels
LINE_PIXELS = 4.5  # height of one line of those titles, in image pixels


def image_grid(
    images,
    titles: list[str],
    path,
    columns: int = 10,
    suptitle: str = "",
    color: str = "black",
    cmap: str = "gray_r",
    limits=None,
) -> Path:
    """A grid of 28x28 images (uint8 or float), each with a title (may hold newlines) above.

    Cells grow with the longest title line and the number of lines, so labels never overlap.
    """
    images = np.asarray(images, dtype=np.float32)
    rows = max(1, -(-len(images) // columns))
    lines = [line for title in titles for line in title.split("\n")] or [""]
    pad_x = max(10, round(CHARACTER_PIXELS * max(map(len, lines))) - SIDE + 6)
    pad_y = round(4 + LINE_PIXELS * max(title.count("\n") + 1 for title in titles or [""]))
    cell_w, cell_h = SIDE + pad_x, SIDE + pad_y
    title_space = 0.5 if suptitle else 0.0
    figure = new_figure(
        columns * cell_w * INCHES_PER_PIXEL, rows * cell_h * INCHES_PER_PIXEL + title_space
    )
    axes = figure.add_axes((0, 0, 1, 1 - title_space / figure.get_figheight()))
    vmin, vmax = limits if limits else (images.min(), images.max())
    axes.imshow(
        mosaic(images, columns, pad_x, pad_y),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        aspect="equal",
    )
    for index, title in enumerate(titles):
        row, column = divmod(index, columns)
        axes.text(
            column * cell_w + 14,
            row * cell_h - 1,
            title,
            ha="center",
            va="bottom",
            fontsize=7,
            color=color,
            linespacing=1.1,
        )
    # Centre the tiles: half the horizontal padding either side, the title room on top.
    axes.set_xlim(-pad_x / 2 - 0.5, columns * cell_w - pad_x / 2 - 0.5)
    axes.set_ylim(rows * cell_h - pad_y - 0.5, -pad_y - 0.5)
    axes.set_axis_off()
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    return save(figure, path)


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
    return image_grid(chosen, titles, path, columns=len(classes), limits=(0, 255))


SPLIT_NAMES = {
    "train": "train (average over the epoch, while learning)",
    "val": "validation",
    "test": "test (after the epoch)",
}


def curves(history: list[dict], path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and test (and validation when there is one)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [record["epoch"] for record in history]
    figure = new_figure(10, 4.2)
    for column, (metric, label) in enumerate(
        (("loss", "cross-entropy loss"), ("accuracy", "accuracy (%)"))
    ):
        axes = figure.add_subplot(1, 2, column + 1)
        for split in ("train", "val", "test"):
            key = f"{split}_{metric}"
            if key in history[0]:
                values = [_scaled(record.get(key), metric) for record in history]
                axes.plot(epochs, values, marker="o", label=SPLIT_NAMES[split])
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    # Fixed margins that fit these labels: tight_layout would measure every text first, a
    # sizeable share of the time `train` spends on its pictures.
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.9, wspace=0.22)
    return save(figure, path)


def _scaled(value, metric: str) -> float:
    if value is None:  # a non-finite loss, written as null
        return float("nan")
    return value * (100 if metric == "accuracy" else 1)


def confusion(matrix, classes, path) -> Path:
    """The confusion matrix as a heat map; rows are true classes, columns predictions."""
    matrix = np.asarray(matrix)
    figure = new_figure(7, 6)
    axes = figure.add_subplot(1, 1, 1)
    # Colour the mistakes only, by the share of each true class, on a scale set by the largest
    # mistake: on the full 0-1 scale the diagonal's ~99% would leave every error white.
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    errors = np.where(np.eye(len(matrix), dtype=bool), np.nan, shares)
    top = float(np.nanmax(errors)) if np.any(errors > 0) else 1.0
    image = axes.imshow(errors, cmap="Reds", vmin=0, vmax=top)
    for row in range(len(matrix)):
        for column in range(len(matrix)):
            count = matrix[row, column]
            diagonal = row == column
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                fontweight="bold" if diagonal else "normal",
                color="white" if not diagonal and errors[row, column] > top / 2 else "black",
            )
    accuracy = matrix.trace() / max(matrix.sum(), 1)
    axes.set_title(
        f"test accuracy {100 * accuracy:.2f}% ({matrix.sum() - matrix.trace():,} mistakes of "
        f"{matrix.sum():,})",
        fontsize=10,
    )
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.colorbar(image, ax=axes, label="mistakes: share of the true class")
    # Margins from the longest class name (8-point, the x labels slanted at 45°), in inches.
    label_inches = 0.5 + 0.065 * max(map(len, classes))
    figure.subplots_adjust(
        left=label_inches / 7, bottom=(0.2 + 0.75 * label_inches) / 6, right=0.97, top=0.93
    )
    return save(figure, path)


def confident_mistakes(images, titles, path) -> Path:
    """The test images the model gets wrong with the highest confidence, titled
    "true X\nsaid Y, N%" (chosen by `run_pictures`)."""
    return image_grid(
        images,
        titles,
        path,
        columns=5,
        suptitle="the test images the model gets wrong most confidently",
        color="firebrick",
        limits=(0, 1),
    )


def first_layer(weight, path, count: int = 64, classes=None) -> Path:
    """Rows of the first layer's weight (H, 784) as 28x28 images: what each unit looks for.

    With `classes`, the weight is logistic regression's (10, 784): one template per class,
    labelled, the key picture of a linear classifier."""
    if hasattr(weight, "detach"):  # a torch parameter
        weight = weight.detach().float().cpu().numpy()
    weight = np.asarray(weight, dtype=np.float32)[:count]
    limit = float(np.abs(weight).max()) or 1.0
    if classes is not None:
        # A few border pixels seen by almost no digit get the largest weights: scale the
        # colours by the bulk of the template instead, so that the strokes show.
        limit = float(np.percentile(np.abs(weight), 99)) or limit
        return image_grid(
            weight.reshape(-1, SIDE, SIDE),
            list(classes),
            path,
            columns=len(classes),
            suptitle="logistic regression: each class's weight template (red +, blue -)",
            cmap="RdBu_r",
            limits=(-limit, limit),
        )
    columns = 10 if len(weight) <= 10 else 8
    rows = -(-len(weight) // columns)
    figure = new_figure(columns * 1.0, rows * 1.0 + 0.5)
    axes = figure.add_axes((0, 0, 1, 0.9))
    axes.imshow(
        mosaic(weight.reshape(-1, SIDE, SIDE), columns),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        interpolation="nearest",
    )
    axes.set_axis_off()
    figure.suptitle(
        f"first-layer weights ({len(weight)} units; red positive, blue negative)", fontsize=9
    )
    return save(figure, path)


def run_pictures(folder, model, tensors, history, logits=None, title: str = "") -> list[Path]:
    """Every picture of a finished run (PICTURES), written into its folder. `logits`: the
    model's test-set logits when the caller has them (training's last evaluation);
    otherwise one pass over the test set serves every picture."""
    import torch

    from mnistlab.evaluate import predict, score
    from mnistlab.runfiles import PICTURES

    if logits is None:
        logits = predict(model, tensors.x_test)
    classes = list(tensors.classes)
    result = score(logits, tensors.y_test, len(classes))
    confidence, predicted = torch.softmax(logits.float(), 1).max(1)
    labels = tensors.y_test
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:20]
    mean, std = tensors.normalization
    mistakes = (tensors.x_test[order] * std + mean).reshape(-1, SIDE, SIDE).clamp(0, 1)
    titles = [
        f"true {classes[labels[i]]}\nsaid {classes[predicted[i]]}, {100 * confidence[i]:.0f}%"
        for i in order.tolist()
    ]
    parameters = dict(model.named_parameters())
    linear = "hidden.0.weight" not in parameters  # logistic regression: one layer
    weight = parameters["output.weight" if linear else "hidden.0.weight"]
    paths = dict(zip(("curves", "confusion", "mistakes", "weights"), PICTURES, strict=True))
    folder = Path(folder)
    return [
        curves(list(history), folder / paths["curves"], title),
        confusion(result.confusion.numpy(), classes, folder / paths["confusion"]),
        confident_mistakes(mistakes.float().cpu().numpy(), titles, folder / paths["mistakes"]),
        first_layer(
            weight.detach()[:64].float().cpu().numpy(),
            folder / paths["weights"],
            classes=classes if linear else None,
        ),
    ]


def inputs_seen(sources, predictions, path) -> Path:
    """Each image (grey, fitted to 28x28 as it is) beside the 28x28 input the model saw."""
    from PIL import Image

    from mnistlab.images import grey

    images, titles = [], []
    for source, (name, prediction) in zip(sources, predictions, strict=True):
        array = grey(source)
        scale = SIDE / max(array.shape)
        small = Image.fromarray(array.astype(np.uint8)).resize(
            (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
        )
        thumbnail = np.full((SIDE, SIDE), 255.0, np.float32)
        thumbnail[: small.size[1], : small.size[0]] = np.asarray(small, np.float32)
        images += [255 - thumbnail, prediction.input.astype(np.float32)]
        titles += [
            Path(name).name[:14],
            f"{prediction.name} {100 * max(prediction.probabilities):.0f}%",
        ]
    return image_grid(
        images,
        titles,
        path,
        columns=2 * min(5, len(sources)),
        cmap="gray",
        suptitle="each image (inverted) beside the 28x28 input the model saw",
        limits=(0, 255),
    )
