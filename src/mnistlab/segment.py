"""A picture of a number: its digits found, side by side, each prepared as one digit is.

People write numbers (a house number, a year, a code). The writing is found as preparation
finds one digit's strokes (preprocess: a drawing's contrast, a photo's ink with the page's
lines and edges left out), then split into digits:
1. its connected strokes, specks left out, gathered into columns: pieces that overlap along
   the row are one digit (a 5's bar lifted off the page, a 4's stem);
2. a column much wider than tall (calibration.WIDE, the mark the model calls "not one digit")
   holds touching digits: cut where the ink is thinnest, near the cuts that would make
   digits of a digit's usual width;
3. read left to right.
It is a number when there are two or more such columns of comparable height side by side.
What is not handled: digits written one above the other (read as one mark, flagged as
unlike a digit when it is wider than tall), and cursive runs whose digits join along their
whole height (cut where the ink is thinnest, which may fall inside a digit: each digit's own
confidence and flags say so).
"""

from pathlib import Path

import numpy as np

from mnistlab import photo, preprocess
from mnistlab.calibration import WIDE

MAX_DIGITS = 12  # more columns than a number has: marks, a row of text
TALL = 0.45  # a column shorter than this share of the tallest is a mark (a dot, a dash)
DIGIT_WIDTH = 0.7  # a handwritten digit's usual width, as a share of its height
# A piece narrower than this share of its height is one digit (an MNIST 0 is as wide as tall):
# never cut, and alone in a picture, no number.
CUT_WIDTH = 1.25


def pieces(source) -> tuple[np.ndarray, list[np.ndarray], list[int]] | None:
    """The writing of a picture (ink 0-255) and its pieces left to right (masks), cut finer
    than its digits where it is in doubt (a touching pair cut where the ink is thinnest, and
    maybe once more): the reader puts neighbouring pieces back together where they read better
    as one (Predictor.read); with each piece, the column it was cut from. None where the
    picture is not a row of digits. (`source` as prepare takes it, or its lightness already
    read, a float array.)"""
    name = str(source) if isinstance(source, str | Path) else "the image"
    array = preprocess.lightness(source)
    if max(array.shape) <= preprocess.DATASET_SCALE:  # a dataset's own image: one digit
        return None
    image, strokes = _writing(array, name)
    found = _columns(strokes)
    if not 2 <= len(found) <= MAX_DIGITS:
        return None
    return image, [piece for piece, _ in found], [origin for _, origin in found]


def field(image: np.ndarray, columns: list[np.ndarray], chosen: range) -> np.ndarray:
    """The digit made of the pieces `chosen` (consecutive), (28, 28) uint8 as prepare() gives:
    cut out with its soft edges (its strokes widened a little), none of the other pieces'."""
    from scipy import ndimage

    own = np.any([columns[i] for i in chosen], axis=0)
    others = [c for i, c in enumerate(columns) if i not in chosen]
    reach = max(1, round(0.01 * max(own.shape)))
    members = ndimage.binary_dilation(own, iterations=reach)
    if others:
        members &= ~np.any(others, axis=0)
    rows, cols = np.flatnonzero(members.any(1)), np.flatnonzero(members.any(0))
    piece = np.where(members, image, 0)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return preprocess.placed(piece)


def joinable(columns: list[np.ndarray], origins: list[int], chosen: range) -> bool:
    """Whether the pieces `chosen` may be one digit: cut from one column (which may be a wide
    digit, a 0 written broad), or together not too wide to be one."""
    if len({origins[i] for i in chosen}) == 1:
        return True
    own = np.any([columns[i] for i in chosen], axis=0)
    rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
    return bool(cols[-1] - cols[0] + 1 < WIDE * (rows[-1] - rows[0] + 1))


def alone(field: np.ndarray, aspect: float = 0.9) -> bool:
    """Whether a prepared (28, 28) digit is clearly one: its ink one piece (a mark beside it
    no more than a tenth of it), narrower than `aspect` of its height, as two digits side
    by side never are."""
    from scipy import ndimage

    ink = field > 64
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    if count == 0:
        return True
    areas = np.bincount(labels.ravel())[1:]
    if np.count_nonzero(areas > 0.1 * areas.max()) > 1:
        return False
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return bool(columns[-1] - columns[0] + 1 < aspect * (rows[-1] - rows[0] + 1))


def _writing(array: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The writing as ink 0-255, and a mask of its strokes."""
    if preprocess._drawn(array):
        image = preprocess._contrast(array, name)
        strokes = image > 127
    else:
        from scipy import ndimage

        ink = photo.ink_map(photo.working(array), name)
        strokes = photo.stroke_mask(ink, name, every=True)
        # In a photo, a mark within the outer twelfth of its width, clear of the rest, is more
        # often a page's edge or a shadow's than a digit (a number is photographed framed).
        labels, count = ndimage.label(strokes, structure=np.ones((3, 3)))
        band = strokes.shape[1] / 12
        for index, (_, columns) in enumerate(ndimage.find_objects(labels), start=1):
            if columns.stop <= band or columns.start >= strokes.shape[1] - band:
                strokes[labels == index] = False
        image = photo.digit_from(ink, name, strokes)
    return image, strokes


def _columns(mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The pieces' masks, left to right, each with the column it was cut from: pieces gathered
    into columns, touching digits cut apart; [] when the writing is not digits side by
    side."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return []
    boxes = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    if np.count_nonzero(areas >= 0.2 * areas.max()) == 1:  # one piece and marks: one column
        rows, columns = boxes[int(areas.argmax())]
        if columns.stop - columns.start < CUT_WIDTH * (rows.stop - rows.start):
            return []  # not wider than a digit: one digit, as most pictures are
    # Columns: pieces whose spans along the row overlap by half the narrower one.
    order = sorted(range(count), key=lambda i: boxes[i][1].start)
    groups: list[list[int]] = []
    small = []  # pieces too small to be a digit (a 5's bar, a 7's cross-stroke): placed after
    for index in order:
        if areas[index] < 0.02 * areas.max():
            continue  # a speck
        if areas[index] < 0.2 * areas.max():
            small.append(index)
            continue
        span = boxes[index][1]
        for group in groups:
            start = min(boxes[i][1].start for i in group)
            stop = max(boxes[i][1].stop for i in group)
            overlap = min(stop, span.stop) - max(start, span.start)
            if overlap >= 0.5 * min(stop - start, span.stop - span.start):
                group.append(index)
                break
        else:
            groups.append([index])
    if not groups:
        return []

    def distance(group, centre: float) -> float:
        start = min(boxes[i][1].start for i in group)
        stop = max(boxes[i][1].stop for i in group)
        return max(0.0, start - centre, centre - stop)

    for index in small:  # with the column nearest along the row
        centre = (boxes[index][1].start + boxes[index][1].stop) / 2
        min(groups, key=lambda group: distance(group, centre)).append(index)
    members = [np.isin(labels, [i + 1 for i in group]) for group in groups]
    heights = [np.ptp(np.flatnonzero(m.any(1))) + 1 for m in members]
    tallest = max(heights)
    rows = np.flatnonzero(members[int(np.argmax(heights))].any(1))
    top, bottom = rows[0], rows[-1]
    found = []
    for index, (column, height) in enumerate(zip(members, heights, strict=True)):
        own = np.flatnonzero(column.any(1))
        beside = min(own[-1], bottom) - max(own[0], top) + 1  # rows shared with the tallest
        if height < TALL * tallest or beside < 0.5 * height:
            return []  # a mark, or writing above or below the rest: not a row of digits
        found += [(piece, index) for piece in _cut(column)]
    found.sort(key=lambda pair: np.flatnonzero(pair[0].any(0))[0])
    return found if len(found) >= 2 else []


def _cut(column: np.ndarray) -> list[np.ndarray]:
    """A column wider than a digit cut where its ink is thinnest: at each clear dip of the ink
    across it, or, with none, where digits of a digit's usual width would meet. It may be cut
    once too often; the reader joins what reads better joined."""
    rows, cols = np.flatnonzero(column.any(1)), np.flatnonzero(column.any(0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if width < CUT_WIDTH * height:
        return [column]
    profile = column[:, cols[0] : cols[-1] + 1].sum(0).astype(np.float64)
    spacing = max(2, round(0.3 * height))  # no two cuts closer than a narrow digit
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    inside = column[:, cols[0] : cols[-1] + 1]
    # where the ink crosses the column once (two touching digits join in one place; the middle
    # of a 0 or an 8 is crossed twice)
    runs = np.count_nonzero(np.diff(inside.astype(np.int8), axis=0) == 1, axis=0)
    dips = [
        x for x in range(spacing, width - spacing)
        if smooth[x] <= smooth[x - 1] and smooth[x] <= smooth[x + 1]
        and smooth[x] <= 0.4 * np.median(smooth[smooth > 0]) and runs[x] <= 1
    ]  # fmt: skip
    cuts: list[int] = []
    for x in sorted(dips, key=lambda x: smooth[x]):
        if all(abs(x - c) >= spacing for c in cuts):
            cuts.append(x)
    if not cuts:
        count = max(2, round(width / (DIGIT_WIDTH * height)))
        window = max(1, round(0.35 * width / count))
        for k in range(1, count):
            centre = round(k * width / count)
            lo, hi = max(1, centre - window), min(width - 1, centre + window)
            cuts.append(lo + int(np.argmin(profile[lo:hi])))
    pieces, start = [], cols[0]
    for cut in [*sorted(cols[0] + c for c in cuts), cols[-1] + 1]:
        piece = np.zeros_like(column)
        piece[:, start:cut] = column[:, start:cut]
        if piece.any():
            pieces.append(piece)
        start = cut
    return pieces
