"""A person's image, prepared the way the dataset's images were: image in, 28x28 uint8 out.

MNIST's digits are white on black, size-normalised so that the ink fits a 20x20 box (aspect
ratio kept, anti-aliased), then placed in a 28x28 field with the ink's centre of mass at the
centre. Fashion-MNIST's items are light on black, their longer side scaled to 28. A phone's
photo of a digit written on paper is neither: lit unevenly, shadowed, on ruled paper with a
margin, on a table, in ballpoint lines a few pixels wide. So, for any image Pillow reads:
1. EXIF orientation applied; transparency composited on white; the brightest colour channel
   (coloured rules and margins are light in it), at 160-448 pixels on the long side;
2. the background (the page with the ink closed over) divided out: gradients, shadows and the
   table beyond the page become background, the ink a 0-1 map;
3. the strokes: ink above a level the image sets (Otsu's, above the paper's grain), less the
   thin lines that cross the picture, less what touches its edge, less specks and distant
   marks; thickened to MNIST's share of the digit's size when thinner;
4. MNIST: the longer side scaled to 20 px (anti-aliased), placed with the centre of mass at
   (14, 14). Fashion-MNIST (photos of items, not strokes): contrast stretched against the
   border, the longer side scaled to 28, centred.
Steps 2 and 3 are mnistlab.photo's. A drawing (most of it at one exact level) skips them: its
contrast stretched, stray marks dropped, thin strokes thickened. An image at the dataset's
scale, or one enlarged from such a size (a small scan: no edge sharper than enlarging
leaves), is read at that scale, the blur halo of enlarging taken off its strokes.
An image with no ink is an error that says so, never a guess. benchmarks/photos.py measures
this on photo-like pictures, condition by condition.
"""

from pathlib import Path

import numpy as np

from mnistlab import photo
from mnistlab.datasets import SIDE
from mnistlab.errors import ImageError
from mnistlab.images import grey, grey_levels, opaque, open_image, resized, upright

# Images this small are at the dataset's own scale (a 28x28 digit, one drawn like it): no
# photo to read, and thresholds would eat their soft edges; only cropped, fitted, centred.
DATASET_SCALE = 56
# An image enlarged from a small one (a low-resolution scan, a dataset's digit blown up) holds
# no more than its source did: reduced to that size and enlarged again, it differs from itself
# by at most this share of its range (at the 99th percentile); a sharper one differs more.
SOFT = 0.08


def lightness(source) -> np.ndarray:
    """The image as float lightness (H, W) in 0-255, the brightest of its colour channels:
    coloured marks that are light in one channel (a ruled page's blue lines, its red margin)
    stay near the paper's level, while ink of any dark colour stays dark. Pages larger than
    the working size are reduced as they are read."""
    if hasattr(source, "detach") or isinstance(source, np.ndarray):
        return grey(source)

    image = opaque(upright(open_image(source)))
    factor = max(image.size) // (2 * photo.WORK)
    if factor >= 2:  # a 12-megapixel photo: reduced in Pillow before any float copy is made
        if image.mode in ("1", "P", "PA") or image.mode.startswith("I;16"):
            # (modes Image.reduce does not take: a palette's colours, transparency kept;
            # black and white as grey; 16-bit grey as 32-bit, its range read later)
            image = image.convert({"1": "L", "P": "RGBA", "PA": "RGBA"}.get(image.mode, "I"))
        image = image.reduce(factor)
    if image.mode not in ("RGB", "CMYK", "YCbCr", "LAB", "HSV"):
        # grey, 16-bit, or with transparency (composited on white there; a palette's colours
        # are rarely a photo's)
        return grey_levels(image)
    from PIL import ImageChops

    red, green, blue = image.convert("RGB").split()
    brightest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return np.asarray(brightest, dtype=np.float32)


def _drawn(array: np.ndarray) -> bool:
    """A digital drawing (the page's canvas, a paint program's file): most of it at one exact
    level, as no photo or scan is (noise, grain and compression spread every level)."""
    sample = array[::2, ::2].ravel().astype(np.uint8)
    return bool(np.bincount(sample, minlength=256).max() >= 0.5 * sample.size)


def _stray(strokes: np.ndarray, reach: int) -> bool:
    """Whether the strokes of a drawing cropped to its faint ink lie more than `reach` pixels
    inside the crop's edge: faint marks (a rule, a margin) spread past them."""
    rows, columns = np.flatnonzero(strokes.any(1)), np.flatnonzero(strokes.any(0))
    height, width = strokes.shape
    return bool(
        rows[0] > reach or rows[-1] < height - 1 - reach
        or columns[0] > reach or columns[-1] < width - 1 - reach
    )  # fmt: skip


def _drawing(array: np.ndarray, name: str) -> np.ndarray:
    """A digital drawing's digit, 0-255 and cropped: no light, grain or page to read, only
    stray marks to drop and strokes to even out. (Every image drawn on the page comes this
    way: each step below works on the crop, never on the whole canvas.)"""
    from scipy import ndimage

    digit = _crop(_contrast(array, name))
    strokes = digit > 127
    reach = max(2, round(0.06 * max(digit.shape)))  # a soft edge's width, at most
    if _stray(strokes, reach):  # faint marks past the strokes: a rule, a margin
        digit = _crop(digit * ndimage.maximum_filter(strokes, size=2 * reach + 1))
        strokes = digit > 127
    # (a drawing's anti-aliased edge is no grain: only a pen far thinner than any of MNIST's
    # is thickened, and the dataset's own digits drawn large stay theirs)
    grow = photo.growth(strokes, photo.THIN / 2)
    if grow:  # room to grow in, then the strokes thickened (keeping their own edges)
        digit, strokes = np.pad(digit, grow), np.pad(strokes, grow)
        thick = ndimage.maximum_filter(strokes.view(np.uint8), size=2 * grow + 1)
        digit = _crop(np.maximum(digit, thick * 255.0))
    return digit


def _contrast(array: np.ndarray, name: str) -> np.ndarray:
    """Light on dark, the background (the border's median) at 0 and the brightest at 255: a
    fashion item's own shading is kept, where a digit's strokes are traced above."""
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    if np.median(border) > 127:  # dark on light: turn it around
        array, border = 255 - array, 255 - border
    background = float(np.median(border))
    span = float(array.max()) - background
    if span < 32:
        raise ImageError(f"{name} is blank: no ink stands out from its background")
    return np.clip((array - background) / span, 0, 1) * 255


def _crop(array: np.ndarray) -> np.ndarray:
    """The box around the ink."""
    ink = array > 0.2 * array.max()
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return array[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _fit(array: np.ndarray, box: int) -> np.ndarray:
    """Scaled so that its longer side is `box` pixels, the aspect ratio kept."""
    height, width = array.shape
    scale = box / max(height, width)
    fitted = resized(array, max(1, round(width * scale)), max(1, round(height * scale)))
    return np.clip(fitted, 0, 255)


def _place(image: np.ndarray, top: int, left: int) -> np.ndarray:
    field = np.zeros((SIDE, SIDE), np.float32)
    height, width = image.shape
    rows = slice(max(0, top), min(SIDE, top + height))
    columns = slice(max(0, left), min(SIDE, left + width))
    field[rows, columns] = image[
        rows.start - top : rows.stop - top, columns.start - left : columns.stop - left
    ]
    return field


def prepare(source, dataset: str = "mnist") -> np.ndarray:
    """Any image (a path, bytes, a PIL image, a numpy array or a tensor) -> (28, 28) uint8,
    prepared as `dataset`'s own images were."""
    name = str(source) if isinstance(source, str | Path) else "the image"
    if dataset == "fashion-mnist":
        item = _fit(_crop(_contrast(grey(source), name)), SIDE)
        field = _place(item, (SIDE - item.shape[0]) // 2, (SIDE - item.shape[1]) // 2)
        return np.clip(np.rint(field), 0, 255).astype(np.uint8)
    array = lightness(source)
    small = _source_scale(array)
    if small is not None:  # a dataset's own image or one made like it, or one enlarged
        inked = _contrast(small, name)
        return placed(inked if small is array else _sharpened(inked))
    if _drawn(array):  # no light, grain or page to read: only strokes to even out
        return placed(_drawing(array, name))
    return placed(photo.digit_from(photo.ink_map(photo.working(array), name), name))


def placed(ink: np.ndarray) -> np.ndarray:
    """Ink (light on dark, 0-255) placed as MNIST's digits are: cropped to its box, its longer
    side fitted to 20 px, its centre of mass at the centre of the 28x28 field; uint8. (Alone,
    on an image as it is, this is the plain resize that preparation is measured against.)"""
    field = _centred(_fit(_crop(ink), 20))
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


def _source_scale(array: np.ndarray) -> np.ndarray | None:
    """The image at the dataset's scale, when that is all the detail it holds: itself when its
    long side is DATASET_SCALE pixels or fewer; when it was enlarged from such a size (a small
    scan to 96 pixels is 8 pixels of soft grey: thresholds, made for photos and drawings, would
    cut its strokes to fragments), the part that differs from its border, reduced to the
    smallest size that keeps it (see SOFT); None for an image with finer detail (a photo, a
    drawing, a page)."""
    if max(array.shape) <= DATASET_SCALE:
        return array
    # A first look, cheap enough for every drawing the page sends: an edge sharper than any an
    # enlarged image has, on every fourth row and column (a drawing's, a photo's grain).
    span = float(array.max() - array.min())
    across = np.abs(np.diff(array[::4], axis=1)).max(initial=0)
    down = np.abs(np.diff(array[:, ::4], axis=0)).max(initial=0)
    if max(across, down) > 0.6 * span or span < 32:  # (a blank image: said so later)
        return None
    low, high = np.percentile(array[::2, ::2], (1, 99))
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    marked = np.abs(array - np.median(border)) > 0.1 * (high - low)
    rows, columns = np.flatnonzero(marked.any(1)), np.flatnonzero(marked.any(0))
    if not len(rows):
        return None
    part = array[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    height, width = part.shape
    side = max(height, width)
    if not DATASET_SCALE < side <= 8 * DATASET_SCALE:  # small marks on a large image: a photo's
        return None
    step = max(np.abs(np.diff(part, axis=0)).max(), np.abs(np.diff(part, axis=1)).max())
    if step > 0.4 * (high - low):  # a sharp edge anywhere in it: not enlarged
        return None

    def reduced(target: int) -> np.ndarray | None:
        size = (max(1, round(width * target / side)), max(1, round(height * target / side)))
        small = resized(part, *size, method="BOX")
        again = resized(small, width, height, method="BILINEAR")
        return small if np.percentile(np.abs(again - part), 99) <= SOFT * (high - low) else None

    # The smallest size that keeps it, by halving the sizes tried (the loss shrinks as the
    # size grows).
    sizes = list(range(8, DATASET_SCALE + 1, 4))
    found = None
    while sizes:
        middle = len(sizes) // 2
        small = reduced(sizes[middle])
        if small is None:
            sizes = sizes[middle + 1 :]
        else:
            found, sizes = small, sizes[:middle]
    return found


def _sharpened(inked: np.ndarray, halo: float = 0.3) -> np.ndarray:
    """An enlarged image's ink (0-255) with the soft halo that enlarging spread around each
    stroke taken off (the lowest `halo` of the strokes' core level) and the core saturated, as
    MNIST's strokes are: their edges fall within a pixel or two. `halo` chosen on 400 of
    scikit-learn's 8x8 scans enlarged to 96 pixels, read by the default run: 81% right with
    none, 90% at 0.3 and at 0.4; held out, 1,000 more of them: 78% to 88%, and MNIST's test
    digits reduced to 10 pixels and enlarged: 91% to 95%."""
    ink = inked / 255
    core = float(np.percentile(ink[ink > 0.1], 75)) if (ink > 0.1).any() else 1.0
    low = halo * core
    return np.clip((ink - low) / max(core - low, 1e-3), 0, 1) * 255


def _centred(digit: np.ndarray) -> np.ndarray:
    """A digit fitted to MNIST's box, placed with its centre of mass at the field's centre."""
    total = digit.sum()
    rows, columns = np.indices(digit.shape)
    centre = ((rows * digit).sum() / total, (columns * digit).sum() / total)
    return _place(digit, round(SIDE / 2 - centre[0]), round(SIDE / 2 - centre[1]))
