"""A photo or scan of a page: how much ink each pixel holds whatever the light, and the
digit's strokes told apart from the page's lines and edges, the table, shadows and specks
(preprocess.py's steps 1-3 for a picture that is not a drawing; segment.py finds a number's
digits with the same parts)."""

import numpy as np

from mnistlab.errors import ImageError
from mnistlab.images import resized

WORK, SMALL = 448, 160  # a page is examined with its long side between these, in pixels
STROKE = 0.12  # MNIST's strokes are about this share of the digit's longer side (median)
THIN = 0.08  # and few are thinner than this (the tenth percentile): these are thickened


def working(array: np.ndarray) -> np.ndarray:
    """Scaled so that its long side is between SMALL and WORK pixels: enough resolution for the
    filters below (MNIST's own 28x28 is enlarged), and bounded work for a camera's photo."""
    side = max(array.shape)
    scale = WORK / side if side > WORK else SMALL / side if side < SMALL else 1.0
    if scale == 1.0:
        return array
    size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    method = "BILINEAR" if scale > 1 else "BOX"  # BOX: each pixel the mean of those it covers
    return resized(array, *size, method=method)


def ink_map(array: np.ndarray, name: str) -> np.ndarray:
    """How much ink each pixel holds, 0-1, whatever the paper and the light: the background
    (the page with the ink closed over) divided out, so that a gradient, a shadow or the table
    beyond the page are all background."""
    from scipy import ndimage

    low, middle, high = np.percentile(array[::2, ::2], (1, 50, 99))
    if middle - low < (high - middle) / 3:
        # Most of the picture at its darkest level: light ink on a dark ground (MNIST's own
        # digits, a drawing in white), made dark on light. A lit page is never that even: its
        # typical pixel lies nearer its brightest, or between (a page in a dark frame).
        array = 255 - array
    # A closing (maximum, then minimum) removes dark marks narrower than its window and keeps
    # the edges and slopes of the light itself: the window is wider than any pen stroke.
    window = max(9, max(array.shape) // 4) | 1
    if min(array.shape) >= 64:  # the light varies slowly: found at half size, for a quarter
        half = resized(array, array.shape[1] // 2, array.shape[0] // 2, method="BOX")
        closed = ndimage.grey_closing(half, size=(window // 2,) * 2, mode="nearest")
        background = np.maximum(resized(closed, *array.shape[::-1], method="BILINEAR"), array)
    else:
        background = ndimage.grey_closing(array, size=(window, window), mode="nearest")
    ink = np.clip(1 - (array + 1) / (background + 1), 0, 1)
    if ink.max() < 0.12:
        raise ImageError(f"{name} is blank: no ink stands out from its background")
    return ink


def _otsu(values: np.ndarray) -> float:
    """The level that best splits `values` (0-1) in two (Otsu's method)."""
    counts = np.bincount(np.minimum(values.ravel() * 128, 127).astype(np.intp), minlength=128)
    edges = np.linspace(0, 1, 129)
    weights = np.cumsum(counts).astype(np.float64)
    means = np.cumsum(counts * edges[:-1])
    total, grand = weights[-1], means[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (grand * weights - total * means) ** 2 / (weights * (total - weights))
    return float(edges[int(np.nanargmax(between[:-1])) + 1])


def stroke_mask(ink: np.ndarray, name: str, every: bool = False) -> np.ndarray:
    """The digit's strokes, a boolean mask: ink above a level set by the image itself (and
    above the paper's grain), less the long straight lines of a ruled page, less what touches
    the picture's edge (a page edge, the table) when the rest is the digit, less specks.
    With `every`, the strokes of all the writing (a number's digits), less specks only."""
    from scipy import ndimage

    sample = ink[::2, ::2]  # (a quarter of the pixels tells the paper's grain as well)
    paper = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - paper)))
    strong = float(np.percentile(sample, 99.9))
    grain = min(paper + 6 * spread, 0.6 * strong)  # (on a very grainy page, the ink decides)
    level = max(_otsu(sample), grain, 0.25 * float(ink.max()), 0.08)
    mask = ink > level
    thin = max(3, max(mask.shape) // 40)
    for along, across in ((1, 0), (0, 1)):
        # Thin runs across half the picture are a ruled page's lines and margin, which would
        # join the digit to the picture's edge; where the ink around them is thick across
        # (the table beyond a page, a stroke of a digit that fills the picture, a stroke
        # crossing the line) it stays.
        if mask.sum(along).max() < mask.shape[along] // 2:
            continue  # no row (column) holds that much ink: no line to look for
        line = _opened(mask, mask.shape[along] // 2, along)
        mask &= ~(line & ~_opened(mask, thin, across))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        raise ImageError(f"{name} is blank: no ink stands out from its background")
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inside = np.ones(count, bool)
    inside[edge[edge > 0] - 1] = False
    if areas[inside].max(initial=0) >= mask.size / 2000:
        # Writing clear of the picture's edge: what touches the edge is left out where it is
        # clearly not writing (a page's edge, a frame, the table, a shadow); writing that
        # runs off the picture (a digit cropped tightly) stays. A drawing that runs off its
        # canvas with nothing inside keeps all it has.
        areas = np.where(inside | ~_not_writing(labels, inside), areas, 0)
    largest = int(areas.argmax())
    darkness = ndimage.mean(ink, labels, np.arange(1, count + 1))
    if every:  # all the writing: neither a speck beside its largest piece, nor fainter
        chosen = (areas >= 0.05 * areas[largest]) & (darkness >= 0.6 * darkness[largest])
        return np.concatenate([[False], chosen])[labels]
    # The digit: its largest piece, the pieces nearly as large, and those of some size close
    # by (a 5's bar, a 4's stem lifted off the page) and as dark; specks, distant marks and the
    # faint edge of a shadow are not it.
    boxes = ndimage.find_objects(labels)
    reach = 0.15 * max(s.stop - s.start for s in boxes[largest])
    keep = [
        index + 1
        for index, (area, box) in enumerate(zip(areas, boxes, strict=True))
        if area >= 0.4 * areas[largest]
        or (
            area >= 0.08 * areas[largest]
            and darkness[index] >= 0.6 * darkness[largest]
            and _gap(box, boxes[largest]) <= reach
        )
    ]
    chosen = np.zeros(count + 1, bool)
    chosen[keep] = True
    return chosen[labels]


def _not_writing(labels: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """For each piece that touches the picture's edge, whether it is clearly not writing, by
    shape and extent, against the strokes of the largest piece clear of the edge. Writing that
    runs off the picture (a digit cropped tightly) spans its centre; a piece that does not is
    not writing, nor one far thicker (the table beyond a page, a shadowed region), thinner and
    long (a shadow's edge, a fold), a long straight line (a page's edge seen at an angle), or
    lying along the edge (a page's edge, a frame: most of it within a band at the edge, and as
    long as half that side)."""
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=len(inside) + 1)[1:]
    height, width = labels.shape
    band = max(2, round(0.1 * min(height, width)))

    def thickness(index: int) -> float:  # half the widest stroke: on the piece alone, padded
        own = np.pad(labels[boxes[index]] == index + 1, 1)
        return float(ndimage.distance_transform_edt(own).max())

    stroke = thickness(int(np.argmax(np.where(inside, areas, 0))))
    # Specks at the edge are left out unexamined, as they were always left out.
    result = ~inside & (areas < labels.size / 2000)
    for index in np.flatnonzero(~inside & ~result):
        rows, columns = boxes[index]
        own = labels[rows, columns] == index + 1
        ys, xs = np.nonzero(own)
        ys, xs = ys + rows.start, xs + columns.start
        near = (ys < band) | (ys >= height - band) | (xs < band) | (xs >= width - band)
        along = max((rows.stop - rows.start) / height, (columns.stop - columns.start) / width)
        thick = thickness(index)
        # Straight: the spread of its pixels across their main direction against along it
        # (a line of length L has a variance of L^2 / 12 along itself).
        spreads = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(np.float64)))
        length = np.sqrt(12 * max(spreads[-1], 0.0))
        straight = spreads[0] <= (0.08**2) * spreads[-1] and length >= 0.25 * max(height, width)
        central = rows.start <= height / 2 < rows.stop and columns.start <= width / 2 < columns.stop
        result[index] = (
            not central  # at the side of the picture: a shadow, a page's edge, a neighbour
            or thick > 2.5 * stroke  # the table beyond a page, a shadowed region
            or (thick < 0.75 * stroke and along >= 0.25)  # a shadow's edge, a fold
            or straight  # a page's edge seen at an angle, a shadow's straight edge
            or (near.sum() >= 0.7 * areas[index] and along >= 0.5)  # a page's edge, a frame
        )
    return result


def _gap(box, other) -> float:
    """The distance between two bounding boxes (tuples of slices), 0 where they overlap."""
    gaps = [max(0, a.start - b.stop, b.start - a.stop) for a, b in zip(box, other, strict=True)]
    return float(np.hypot(*gaps))


def _opened(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The pixels of `mask` in a straight run of at least `length` along `axis`."""
    from scipy import ndimage

    shrunk = ndimage.minimum_filter1d(mask.view(np.uint8), length, axis=axis)
    return ndimage.maximum_filter1d(shrunk, length, axis=axis).astype(bool)


def digit_from(ink: np.ndarray, name: str, strokes: np.ndarray | None = None) -> np.ndarray:
    """The digit alone, 0-255: its strokes' own ink, saturated at their core as MNIST's are
    and with their soft edges kept, and thickened where they are thinner than MNIST's.
    (`strokes`: the mask to keep, when not the digit's own: a number's.)"""
    from scipy import ndimage

    strokes = stroke_mask(ink, name) if strokes is None else strokes
    core = float(np.percentile(ink[strokes], 75))
    near = ndimage.maximum_filter(strokes.view(np.uint8), size=max(5, max(ink.shape) // 40))
    digit = np.clip(ink / core, 0, 1) * near
    thick = even_strokes(strokes)
    if thick is not strokes:
        digit = np.maximum(digit, ndimage.gaussian_filter(thick.astype(np.float32), 1.0))
    return digit * 255


def even_strokes(mask: np.ndarray, thin: float = THIN) -> np.ndarray:
    """Strokes thinner than `thin` of the digit's size thickened to MNIST's proportion, so
    that a ballpoint's line is not a faint sub-pixel trace after the digit shrinks to 20
    pixels."""
    from scipy import ndimage

    grow = growth(mask, thin)
    if not grow:  # within MNIST's own range: left as written
        return mask
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * grow + 1).view(bool)


def growth(mask: np.ndarray, thin: float) -> int:
    """The pixels to add on each side of strokes thinner than `thin` of the digit's size to
    bring them to MNIST's proportion; 0 for strokes within MNIST's own range."""
    if not mask.any():
        return 0
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    size = max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1
    # The outline's length, as the steps between ink and paper along rows and columns.
    edge = np.count_nonzero(mask[:, 1:] != mask[:, :-1]) + np.count_nonzero(mask[1:] != mask[:-1])
    width = 2 * np.count_nonzero(mask) / max(edge, 1)  # area over half the outline
    if width >= thin * size:
        return 0
    return max(1, round((STROKE * size - width) / 2))
