"""Accuracy on photo-like pictures of handwriting, condition by condition.

    python benchmarks/photos.py [--data-dir DIR] [--run NAME=RUN ...] [--per 40] [--save DIR]

The pictures are made here from MNIST test digits (so that the shapes are ones the model can
read, and what changes is the picture): each digit's strokes are traced at pen widths people
write with, put on paper, lit, photographed and compressed as one of the conditions below.
Each condition gets --per digits (the same digits for every condition), and every run given
(default: the default recipe, trained here) predicts them through `Predictor`, the path that
`predict` and `serve` take. The MNIST test set, enlarged 6x onto white paper and through the
same preparation, is printed beside it, and the test digits as they are (28x28): those are
the figures the preparation must not lose.
Then pictures made neither by this generator's page nor for it: MNIST test digits cropped
tightly (and with a margin); numbers of 2-5 test digits side by side (spaced, close, touching,
and on grainy grey paper as a JPEG), read right only when every digit is; and, where
scikit-learn is installed (`pip install 'mnistlab[bench]'`), other writers' digits scanned at
8x8 in 17 grey levels (its `load_digits`), as given, enlarged to 96 px, and enlarged with a
white margin, beside what a plain resize into MNIST's 20-px box reads. Every picture is read
as `predict` reads it (`Predictor.read`): a digit read as a number is wrong.
--save writes each condition's first pictures, to look at; --errors, for the conditions beyond the
generator's own (crops, numbers, scans), what the first run saw where it read wrong.
"""

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

INKS = {"black": (25, 25, 30), "blue": (25, 40, 130), "green": (20, 90, 50)}
PAPER = (244, 241, 232)
CONDITIONS = (
    "clean",  # a felt pen on white paper, evenly lit
    "ink colours",  # black, blue or green ballpoint: thin strokes
    "pencil",  # grey, grainy, light
    "paper grain",  # textured, off-white paper
    "gradient",  # light falling off across the page to under half
    "shadow",  # a hand's or phone's shadow over a corner
    "ruled",  # ruled lines and a red margin through the digit
    "rotation",  # the page turned up to 15 degrees
    "perspective",  # photographed at an angle
    "blur",  # out of focus
    "jpeg",  # compressed hard (quality 30)
    "phone photo",  # shadow, tilt up to 12 degrees, blur, JPEG 70, together
    "12 MP frame",  # a 4000x3000 photo, lit unevenly: the page on a table, the digit small
)


def strokes(digit: np.ndarray, height: int, width_fraction: float) -> np.ndarray:
    """The digit's strokes traced at `height` pixels with a pen `width_fraction` of that
    wide: the ridge of the enlarged digit (its centre line), thickened to the pen."""
    scale = height / 20  # MNIST's ink fills a 20-pixel box
    big = np.asarray(
        Image.fromarray(digit).resize((round(28 * scale),) * 2, Image.Resampling.BICUBIC),
        np.float32,
    )
    shape = big > 110
    depth = ndimage.distance_transform_edt(shape)
    ridge = (depth >= ndimage.maximum_filter(depth, size=3) - 0.75) & (depth > 1)
    pen = max(1.0, width_fraction * height)
    return (ndimage.distance_transform_edt(~ridge) <= pen / 2).astype(np.float32)


def _grain(shape, rng, strength, smooth=1.0) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(0, strength, shape), smooth)


def _light(shape, rng, low) -> np.ndarray:
    """Light falling off linearly in a random direction, from 1 to `low`."""
    rows, columns = np.indices(shape, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = rows / shape[0] * np.sin(angle) + columns / shape[1] * np.cos(angle)
    t = (t - t.min()) / (t.max() - t.min())
    return 1 - (1 - low) * t


def _shadow(shape, rng) -> np.ndarray:
    """A soft-edged shadow over one corner, darkening it to about half."""
    mask = Image.new("L", (shape[1], shape[0]), 0)
    h, w = shape
    x, y = rng.uniform(0.35, 0.6) * w, rng.uniform(0.35, 0.6) * h
    corner = [(0, 0), (w, 0), (w, h), (0, h)][rng.integers(4)]
    ImageDraw.Draw(mask).polygon([corner, (x, corner[1]), (x, y), (corner[0], y)], fill=255)
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(w / 60)), np.float32) / 255
    return 1 - rng.uniform(0.4, 0.55) * soft


def page(digit, condition, rng, size=(560, 480)) -> Image.Image:
    """One digit written on a page of `size`, under `condition`, as an RGB image."""
    height, width = size[1], size[0]
    tall = int(rng.uniform(0.35, 0.6) * height)
    pen = {"clean": 0.06, "ink colours": 0.025, "pencil": 0.035}.get(condition, 0.04)
    ink_mask = strokes(digit, tall, pen * rng.uniform(0.8, 1.25))
    paper = np.ones((height, width, 3), np.float32) * PAPER
    grain = 6 if condition in ("paper grain", "pencil", "phone photo", "12 MP frame") else 1.5
    paper += _grain((height, width), rng, grain)[..., None]
    if condition == "ruled":
        spacing = int(tall * rng.uniform(0.35, 0.55))
        for y in range(int(rng.integers(5, spacing)), height, spacing):
            paper[y : y + 2] = (165, 195, 230)
        margin = int(rng.uniform(0.1, 0.25) * width)
        paper[:, margin : margin + 3] = (215, 70, 70)
    top = int(rng.integers(0, height - ink_mask.shape[0] + 1))
    left = int(rng.integers(0, width - ink_mask.shape[1] + 1))
    cover = np.zeros((height, width), np.float32)
    cover[top : top + ink_mask.shape[0], left : left + ink_mask.shape[1]] = ink_mask
    cover = ndimage.gaussian_filter(cover, 0.7)  # the pen's edge
    ink = np.array(INKS[list(INKS)[rng.integers(3)]] if condition != "clean" else INKS["black"])
    if condition == "pencil":
        ink = np.array((95, 95, 100))
        cover *= np.clip(0.75 + _grain(cover.shape, rng, 0.25, 0.6), 0.2, 1)
    picture = paper * (1 - cover[..., None]) + ink * cover[..., None]
    if condition == "gradient":
        picture *= _light((height, width), rng, rng.uniform(0.4, 0.55))[..., None]
    if condition in ("shadow", "phone photo"):
        picture *= _shadow((height, width), rng)[..., None]
    image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    if condition == "rotation":
        image = image.rotate(rng.uniform(-15, 15), Image.Resampling.BICUBIC, fillcolor=PAPER)
    if condition == "phone photo":
        image = image.rotate(rng.uniform(-12, 12), Image.Resampling.BICUBIC, fillcolor=PAPER)
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 2)))
    if condition == "perspective":
        image = _perspective(image, rng)
    if condition == "blur":
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(2, 3.5)))
    return image


def _perspective(image: Image.Image, rng) -> Image.Image:
    """The page seen from an angle: its far edge narrower by up to a third."""
    w, h = image.size
    squeeze = rng.uniform(0.15, 0.33) * w / 2
    corners = [(squeeze, 0), (w - squeeze, 0), (w, h), (0, h)]  # where the page's corners go
    target = np.array(corners, float)
    source = np.array([(0, 0), (w, 0), (w, h), (0, h)], float)
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(rows), source.reshape(-1))
    return image.transform(
        image.size,
        Image.Transform.PERSPECTIVE,
        tuple(coefficients),
        Image.Resampling.BICUBIC,
        fillcolor=(70, 60, 50),
    )


def photo(digit, condition, rng) -> bytes:
    """The encoded picture a user would send: PNG for the clean scans, JPEG for photos."""
    if condition == "12 MP frame":
        return _frame(digit, rng)
    image = page(digit, condition, rng)
    buffer = io.BytesIO()
    if condition in ("jpeg", "phone photo"):
        image.save(buffer, format="JPEG", quality=30 if condition == "jpeg" else 70)
    else:  # the fastest zlib level: the same pixels (PNG is lossless) in a fifth of the time
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _frame(digit, rng) -> bytes:
    """A 4000x3000 photo: a wooden table, the page on it slightly turned, lit unevenly."""
    w, h = 4000, 3000
    sheet = page(digit, "12 MP frame", rng, size=(1400, 1200))
    table = np.ones((h // 8, w // 8, 3), np.float32) * (120, 88, 60)
    table += _grain(table.shape[:2], rng, 12, 2)[..., None]
    frame = Image.fromarray(np.clip(table, 0, 255).astype(np.uint8)).resize((w, h))
    sheet = sheet.resize((2800, 2400)).rotate(
        rng.uniform(-6, 6), Image.Resampling.BILINEAR, expand=True, fillcolor=(0, 0, 0)
    )
    alpha = sheet.convert("L").point(lambda v: 255 if v > 0 else 0)
    frame.paste(sheet, (int(rng.integers(0, w - sheet.width)), int(rng.integers(0, 200))), alpha)
    light = _light((h // 8, w // 8), rng, rng.uniform(0.4, 0.55))  # over the table and page
    light = np.asarray(Image.fromarray(light).resize((w, h), Image.Resampling.BILINEAR))
    frame = Image.fromarray((np.asarray(frame) * light[..., None]).astype(np.uint8))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


NON_DIGITS = ("letter", "dot", "smiley", "scribble", "two digits", "hash", "box", "star")
LETTERS = "ABEHKMRWXaehkmnrwxy"


def non_digit(kind, rng, digits) -> np.ndarray:
    """A 28x28 mark, white on black like a digit, that is not one: a letter, a dot, a smiley,
    a scribble, two digits side by side ("42"), a hash, a box, a star. `digits`: MNIST
    images to pair."""
    big = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(big)
    pen = int(rng.integers(8, 12))
    if kind == "letter":
        font = ImageFont.load_default(size=int(rng.integers(80, 100)))
        draw.text((56, 56), LETTERS[rng.integers(len(LETTERS))], fill=255, font=font, anchor="mm")
    elif kind == "dot":
        r = int(rng.integers(6, 14))
        draw.ellipse([56 - r, 56 - r, 56 + r, 56 + r], fill=255)
    elif kind == "smiley":
        draw.ellipse([16, 16, 96, 96], outline=255, width=pen)
        draw.ellipse([38, 38, 46, 46], fill=255)
        draw.ellipse([66, 38, 74, 46], fill=255)
        draw.arc([36, 44, 76, 80], 20, 160, fill=255, width=pen)
    elif kind == "scribble":
        points = [tuple(rng.uniform(16, 96, 2)) for _ in range(int(rng.integers(6, 12)))]
        draw.line(points, fill=255, width=pen, joint="curve")
    elif kind == "two digits":
        pair = np.concatenate([digits[rng.integers(len(digits))] for _ in range(2)], 1)
        big.paste(Image.fromarray(pair).resize((112, 56)), (0, 28))
    elif kind == "hash":
        for k in (40, 72):
            draw.line([(k, 16), (k - 8, 96)], fill=255, width=pen)
            draw.line([(16, k), (96, k)], fill=255, width=pen)
    elif kind == "box":
        draw.rectangle([24, 24, 88, 88], outline=255, width=pen)
    else:  # a five-pointed star, drawn in one line
        angles = np.arange(6) * 4 * np.pi / 5
        draw.line([(56 + 40 * np.sin(a), 56 - 40 * np.cos(a)) for a in angles], fill=255,
                  width=pen, joint="curve")  # fmt: skip
    return np.asarray(big.resize((28, 28), Image.Resampling.LANCZOS))


def enlarged(digit) -> bytes:
    """A test digit as people first try: 6x, black on white, off-centre on a canvas."""
    canvas = Image.new("L", (240, 200), 255)
    canvas.paste(Image.fromarray(255 - digit).resize((168, 168)), (36, 16))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def cropped(digit, margin: int = 0) -> bytes:
    """A test digit as people crop one: to its strokes' box (the strokes touch the edge), with
    `margin` white pixels around, enlarged 4x, dark on white."""
    rows, columns = np.nonzero(digit > 0)
    box = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    box = np.pad(box, margin)
    image = Image.fromarray(255 - box).resize((4 * box.shape[1], 4 * box.shape[0]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def number_picture(images, indices, gap: int, paper: bool = False) -> bytes:
    """Test digits side by side, each cut to its own columns, `gap` pixels apart at MNIST's
    scale, dark on white, enlarged 6x; as a PNG, or on grainy grey paper as a JPEG."""
    parts = []
    for index in indices:
        digit = 255 - images[index]
        columns = np.flatnonzero((digit < 128).any(0))
        parts += [digit[:, columns[0] : columns[-1] + 1], np.full((28, gap), 255, np.uint8)]
    row = np.pad(np.concatenate(parts[:-1], 1), ((6, 6), (10, 10)), constant_values=255)
    image = Image.fromarray(row).resize((row.shape[1] * 6, row.shape[0] * 6))
    buffer = io.BytesIO()
    if paper:
        grey = np.asarray(image, np.float32) * 0.8 + 30
        grain = np.random.default_rng(len(indices)).normal(0, 4, grey.shape)
        Image.fromarray(np.clip(grey + grain, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=80
        )
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def scans(predictors, table, count: int, errors: Path | None = None) -> None:
    """Other writers' 8x8 scans (scikit-learn's load_digits), dark on white."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("(scikit-learn not installed: no low-resolution scans)")
        return
    from mnistlab import preprocess

    scanned = load_digits()
    chosen = np.random.default_rng(0).permutation(len(scanned.target))[:count]
    labels = scanned.target[chosen]
    dark = [(255 - scanned.images[i] * 255 / 16).astype(np.uint8) for i in chosen]

    def png(array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    big = [np.asarray(Image.fromarray(d).resize((96, 96), Image.BILINEAR)) for d in dark]
    margin = [png(np.pad(b, 24, constant_values=255)) for b in big]
    for title, pictures in (
        ("8x8 scans, as given", [png(d) for d in dark]),
        ("8x8 scans, to 96 px", [png(b) for b in big]),
        ("8x8 scans, 96 + margin", margin),
    ):
        wrong = []
        table[title] = _score(predictors, pictures, labels, wrong)
        if errors:
            save_errors(errors, title, wrong)
    # A plain resize into MNIST's box: the ink's box fitted to 20 px, centred by its mass.
    plain = [preprocess.placed(255 - b.astype(np.float32)) for b in big]
    scores = [
        float(np.mean([p.label for p in predictor.predict_prepared(np.stack(plain))] == labels))
        for predictor in predictors.values()
    ]
    table["8x8 scans, plain resize"] = (scores, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where the MNIST files are (default: as mnistlab)")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="a trained run to measure (repeatable; default: train the default)",
    )
    parser.add_argument("--per", type=int, default=40, help="digits per condition")
    parser.add_argument("--enlarged", type=int, default=2000, help="MNIST test digits, enlarged")
    parser.add_argument("--crops", type=int, default=200, help="MNIST test digits, cropped")
    parser.add_argument("--numbers", type=int, default=100, help="numbers of 2-5 digits a row")
    parser.add_argument("--scans", type=int, default=400, help="8x8 scans (scikit-learn)")
    parser.add_argument("--save", type=Path, help="write each condition's first pictures here")
    parser.add_argument(
        "--errors",
        type=Path,
        help="write what the first run saw where it read a new condition wrong",
    )
    args = parser.parse_args()

    from mnistlab import data
    from mnistlab.predict import Predictor

    dataset = data.load("mnist", args.data_dir)
    runs = dict(item.split("=", 1) for item in args.run)
    if not runs:
        import mnistlab

        folder = Path(tempfile.mkdtemp()) / "default"
        mnistlab.fit(folder=folder, data_dir=args.data_dir, pictures=False, progress=False)
        runs = {"default": folder}
    predictors = {name: Predictor.load(path) for name, path in runs.items()}
    images, labels = dataset.test.images.numpy(), dataset.test.labels.numpy()
    chosen = np.random.default_rng(0).permutation(len(labels))[: args.per]
    table = {}
    for condition in CONDITIONS:
        rng = np.random.default_rng(CONDITIONS.index(condition))
        pictures = [photo(images[i], condition, rng) for i in chosen]
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for k, picture in enumerate(pictures[:4]):
                suffix = "png" if picture.startswith(b"\x89PNG") else "jpg"
                (args.save / f"{condition.replace(' ', '-')}-{k}.{suffix}").write_bytes(picture)
        table[condition] = _score(predictors, pictures, labels[chosen])
    crops = min(args.crops, len(labels))
    for title, margin in (("tight crop, 4x", 0), ("2-px margin, 4x", 2)):
        pictures = [cropped(d, margin) for d in images[:crops]]
        wrong = []
        table[title] = _score(predictors, pictures, labels[:crops], wrong)
        if args.errors:
            save_errors(args.errors, title, wrong)
    rng = np.random.default_rng(7)
    drawn = [rng.choice(len(labels), 2 + k % 4, replace=False) for k in range(args.numbers)]
    wanted = ["".join(str(labels[i]) for i in number) for number in drawn]
    for title, gap, paper in (
        ("numbers, spaced", 4, False),
        ("numbers, close", 2, False),
        ("numbers, touching", 0, False),
        ("numbers, on paper", 4, True),
    ):
        pictures = [number_picture(images, number, gap, paper) for number in drawn]
        wrong = []
        table[title] = _score(predictors, pictures, wanted, wrong)
        if args.errors:
            save_errors(args.errors, title, wrong)
    scans(predictors, table, args.scans, args.errors)
    count = min(args.enlarged, len(labels))
    table["MNIST test, enlarged"] = _score(
        predictors, [enlarged(d) for d in images[:count]], labels[:count]
    )
    table["MNIST test, 28x28"] = _score(predictors, list(images[:count]), labels[:count])
    names = list(predictors)
    print(f"{'condition':<22}" + "".join(f"{n:>12}" for n in names) + f"{'ms/image':>10}")
    for condition, (scores, seconds) in table.items():
        row = "".join(f"{100 * s:>11.1f}%" for s in scores)
        print(f"{condition:<22}{row}{seconds:>10.1f}")
    photos = [table[c][0] for c in CONDITIONS]
    print(
        f"{'photo-like, overall':<22}"
        + "".join(f"{100 * np.mean([p[k] for p in photos]):>11.1f}%" for k in range(len(names)))
    )
    flags(predictors, images, labels, chosen)


def flags(predictors, images, labels, chosen) -> None:
    """How often each run calls real digits, photos of digits and non-digits unsure or
    unfamiliar, and the same rates had the energy score or the top logit been used."""
    import torch

    from mnistlab.errors import ImageError
    from mnistlab.resident import to_inputs

    rng = np.random.default_rng(99)
    looks = ["clean", "ink colours", "pencil", "gradient", "phone photo"]
    marks, kinds = [], []
    for k in range(8 * len(NON_DIGITS)):
        kind = NON_DIGITS[k % len(NON_DIGITS)]
        marks.append(photo(non_digit(kind, rng, images[5000:6000]), looks[k % 5], rng))
        kinds.append(kind)
    sets = {
        "MNIST test digits": list(images[:2000]),
        "photos of digits": [photo(images[i], looks[n % 5], rng) for n, i in enumerate(chosen)],
        "non-digits": marks,
    }
    print(f"\n{'flagged':<20}{'run':>9}{'unsure':>9}{'unfamiliar':>12}{'refused':>9}"
          f"{'energy':>8}{'logit':>8}")  # fmt: skip
    for name, predictor in predictors.items():
        thresholds = {}
        for title, sources in sets.items():
            prepared, kept = [], []
            for index, source in enumerate(sources):
                try:
                    prepared.append(predictor.prepare(source))
                    kept.append(index)
                except ImageError:  # "no ink": refused, which a user sees as an error
                    pass
            found = predictor.predict_prepared(np.stack(prepared))
            x = to_inputs(torch.from_numpy(np.stack(prepared)), predictor.mean, predictor.std)
            with torch.no_grad():
                logits = predictor.model(x).float()
            scores = {"energy": torch.logsumexp(logits, 1), "logit": logits.max(1).values}
            unfamiliar = np.array([p.unfamiliar for p in found])
            if not thresholds:  # each other score's level set to flag as many real digits
                share = float(unfamiliar.mean())
                thresholds = {k: float(torch.quantile(v, share)) for k, v in scores.items()}
            other = {k: 100 * float((v < thresholds[k]).float().mean()) for k, v in scores.items()}
            print(
                f"{title:<20}{name:>9}{100 * np.mean([p.unsure for p in found]):>8.1f}%"
                f"{100 * unfamiliar.mean():>11.1f}%"
                f"{100 * (1 - len(kept) / len(sources)):>8.1f}%"
                f"{other['energy']:>7.1f}%{other['logit']:>7.1f}%"
            )
        flagged = np.ones(len(kinds), bool)  # refused counts as flagged
        flagged[kept] = unfamiliar
        shares = [f"{k} {100 * flagged[np.array(kinds) == k].mean():.0f}%" for k in NON_DIGITS]
        print(f"{'':<20}{name:>9} non-digits unfamiliar or refused: " + ", ".join(shares))


def _score(predictors, pictures, labels, errors=None):
    """Each run's share read right, as `predict` reads (a digit read as a number, or a picture
    refused as having no ink, is read wrong), and the milliseconds an image took. `errors`, a
    list, gets the first run's wrong readings: (picture, what was wanted, its digits)."""
    from mnistlab.errors import ImageError

    wanted = [str(label) for label in labels]
    scores, elapsed = [], 0.0
    for index, predictor in enumerate(predictors.values()):
        start = time.perf_counter()
        predicted = []
        for picture, want in zip(pictures, wanted, strict=True):
            try:
                digits = predictor.read(picture)
            except ImageError:
                digits = []
            predicted.append("".join(digit.name for digit in digits))
            if errors is not None and index == 0 and digits and predicted[-1] != want:
                errors.append((picture, want, digits))
        elapsed += time.perf_counter() - start
        scores.append(float(np.mean([p == w for p, w in zip(predicted, wanted, strict=True)])))
    return scores, 1000 * elapsed / (len(pictures) * len(predictors))


def save_errors(folder: Path, title: str, errors, count: int = 20) -> None:
    """What the first run saw where it read wrong: each picture beside the input its first
    digit was read from (`predict --show-input`'s picture), named by what was wanted."""
    from mnistlab.plots import inputs_seen

    if not errors:
        return
    folder.mkdir(parents=True, exist_ok=True)
    chosen = errors[:count]
    inputs_seen(
        [picture for picture, _, _ in chosen],
        [(f"want {want}", digits[0]) for _, want, digits in chosen],
        folder / f"{title.replace(' ', '-').replace(',', '')}.png",
    )


if __name__ == "__main__":
    main()
