"""Using a trained model: images prepared as the dataset's own, predict, export."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from mnistlab import calibration, data, errors, export, images, preprocess
from mnistlab.cli import main
from mnistlab.predict import Predictor, number


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, columns = np.indices(image.shape)
    total = image.sum()
    return (rows * image).sum() / total, (columns * image).sum() / total


def handwriting_like(digit: np.ndarray, rng) -> Image.Image:
    """A 28x28 MNIST digit as a person's image arrives: black ink on white, 4-10x larger,
    off-centre on a larger non-square canvas, the strokes thickened in half of them."""
    size = int(28 * rng.uniform(4, 10))
    ink = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        ink = ink.filter(ImageFilter.MinFilter(5))  # dark strokes grow
    width, height = size + int(rng.integers(250, 400)), size + int(rng.integers(200, 350))
    canvas = Image.new("L", (width, height), 255)
    canvas.paste(ink, (int(rng.integers(0, width - size)), int(rng.integers(0, height - size))))
    return canvas


# --- preparing an image -----------------------------------------------------------------------


def test_a_dark_digit_off_centre_on_a_light_canvas_becomes_an_mnist_digit():
    canvas = Image.new("L", (400, 300), 255)
    canvas.paste(Image.new("L", (40, 160), 0), (300, 20))  # a thick stroke near a corner
    prepared = preprocess.prepare(png(canvas))
    assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
    rows, columns = np.nonzero(prepared > 30)
    assert rows.max() - rows.min() + 1 in (20, 21)  # the longer side fits the 20x20 box
    assert columns.max() - columns.min() + 1 < 10  # the aspect ratio is kept
    assert np.allclose(centre_of_mass(prepared.astype(float)), (14, 14), atol=0.6)
    assert prepared.max() == 255 and prepared[0].max() == 0  # white ink on black


def test_transparency_orientation_and_fashion_items():
    drawn = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # transparent, black ink
    drawn.paste((0, 0, 0, 255), (20, 30, 180, 70))
    prepared = preprocess.prepare(png(drawn))
    assert prepared.max() == 255 and prepared[:3].max() == 0  # composited on white, inverted
    rotated = Image.new("L", (100, 200), 255)
    rotated.paste(0, (30, 20, 70, 180))  # tall
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° to display": the picture shown is wide
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif)
    rows, columns = np.nonzero(preprocess.prepare(buffer.getvalue()) > 30)
    assert columns.max() - columns.min() > rows.max() - rows.min()
    item = preprocess.prepare(png(drawn), "fashion-mnist")
    rows, columns = np.nonzero(item > 30)
    assert columns.max() - columns.min() + 1 in (27, 28)  # fitted to 28, not 20


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (png(Image.new("L", (300, 300), 255)), "blank"),
        (png(Image.new("L", (300, 300), 0)), "blank"),
        (b"\x89PNG not really", "not an image"),
        (b"", "not an image"),
        (png(Image.new("1", (10_000, 10_000))), "10000x10000 pixels, more than.*smaller copy"),
        (png(Image.new("1", (20_000, 20_000))), "more pixels than the 16,000,000 allowed.*smaller"),
    ],
)
def test_images_that_cannot_be_read_are_errors_that_say_so(content, message):
    with pytest.raises(errors.ImageError, match=message):
        preprocess.prepare(content)


def test_a_photo_past_the_pixel_limit_is_read_smaller_when_it_is_a_jpeg():
    # A 48-megapixel phone photo of a digit: JPEG decodes it at half size, within the limit,
    # and prepares it as the same photo taken at 12 megapixels; a PNG that large is refused.
    def photo(width, height, kind):
        image = Image.new("L", (width, height), 225)
        ImageDraw.Draw(image).line(
            [(width * 0.45, height * 0.2), (width * 0.55, height * 0.8)], fill=20,
            width=width // 40,
        )  # fmt: skip
        buffer = io.BytesIO()
        options = {"JPEG": {"quality": 90}, "MPO": {"save_all": True, "append_images": [image]}}
        image.save(buffer, format=kind, **options.get(kind, {}))
        return buffer.getvalue()

    large = images.open_image(photo(8000, 6000, "JPEG"))
    assert large.size == (4000, 3000)
    assert images.open_image(photo(8000, 6000, "MPO")).size == (4000, 3000)  # a camera's
    read = preprocess.prepare(photo(8000, 6000, "JPEG")).astype(float)
    taken_smaller = preprocess.prepare(photo(4000, 3000, "JPEG")).astype(float)
    assert np.abs(read - taken_smaller).mean() < 3 and read.max() > 128  # ink, and the same
    with pytest.raises(errors.ImageError, match="8000x6000 pixels, more than"):
        images.open_image(photo(8000, 6000, "PNG"))


def page_with_a_seven(
    lines=False, light=False, shadow=False, pen=3, jpeg=False, noise=True
) -> bytes:
    """A 7 in blue ballpoint on off-white paper, as a phone sees it: ruled blue lines and a red
    margin through it, light falling off across the page, a shadow over a corner, the sensor's
    noise (without it, the picture is a digital drawing: one exact background level)."""
    page = Image.new("RGB", (600, 480), (244, 241, 232))
    draw = ImageDraw.Draw(page)
    if lines:
        for y in range(40, 480, 70):
            draw.line([(0, y), (600, y)], fill=(165, 195, 230), width=2)
        draw.line([(90, 0), (90, 480)], fill=(215, 70, 70), width=3)
    draw.line([(240, 150), (360, 150), (290, 360)], fill=(25, 40, 130), width=pen, joint="curve")
    array = np.asarray(page, np.float32)
    if light:
        array *= np.linspace(1, 0.45, 600, dtype=np.float32)[None, :, None]
    if shadow:
        array[:200, 380:] *= 0.5
    if noise:
        array += np.random.default_rng(0).normal(0, 3, array.shape[:2])[..., None]
    array = np.clip(array, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="JPEG" if jpeg else "PNG")
    return buffer.getvalue()


def test_a_photo_of_a_digit_is_prepared_as_the_same_digit_on_clean_paper():
    # Ruled lines, a margin, a lighting gradient, a shadow and JPEG are all background: the
    # digit comes out as it does from a clean page (before: the dark side of the gradient and
    # the lines counted as ink, and the crop spanned the page).
    clean = preprocess.prepare(page_with_a_seven()).astype(float)
    for conditions in [
        {"lines": True},
        {"light": True},
        {"shadow": True},
        {"lines": True, "light": True, "shadow": True, "jpeg": True},
        {"lines": True, "noise": False},  # a digital drawing on a ruled template
    ]:
        photo = preprocess.prepare(page_with_a_seven(**conditions)).astype(float)
        assert np.abs(photo - clean).mean() < 8, conditions
        assert np.corrcoef(photo.ravel(), clean.ravel())[0, 1] > 0.95, conditions


def test_strokes_are_brought_to_mnist_proportion():
    # A 2-pixel ballpoint line and a 12-pixel felt pen give the same digit; the ballpoint's is
    # not a faint trace after the digit shrinks to 20 pixels.
    thin, thick = (preprocess.prepare(page_with_a_seven(pen=pen)) for pen in (2, 12))
    assert (thin > 128).sum() >= 0.8 * (thick > 128).sum()
    stem = thin[14]  # a row through the 7's stem
    assert 2 <= (stem > 128).sum() <= 5 and stem.max() == 255


@pytest.mark.realdata
def test_mnist_digits_themselves_are_unchanged_by_preparation(mnist):
    # A dataset's own images (white on black, already 20 px in a 28 px field) are prepared
    # into themselves, closely: the preparation's thresholds must not eat MNIST's soft edges.
    images = mnist.test.images[:200].numpy()
    alike = [
        np.corrcoef(preprocess.prepare(image).astype(float).ravel(), image.ravel())[0, 1]
        for image in images
    ]
    assert np.median(alike) > 0.85 and np.mean(np.array(alike) > 0.6) >= 0.95


@pytest.mark.realdata
def test_photo_like_pictures_are_read_as_well_as_clean_ones(trained, mnist, capsys):
    # benchmarks/photos.py's generator, a few conditions, through predict's own path.
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import photos

    predictor = Predictor.load(trained)
    images, labels = mnist.test.images[:30].numpy(), mnist.test.labels[:30].numpy()
    scores = {}
    for condition in ("ruled", "shadow", "gradient", "ink colours", "phone photo"):
        rng = np.random.default_rng(0)
        pictures = [photos.photo(image, condition, rng) for image in images]
        scores[condition] = np.mean([p.label for p in predictor.predict(pictures)] == labels)
    with capsys.disabled():
        print("\nphoto-like, 30 digits each:", {k: f"{100 * v:.0f}%" for k, v in scores.items()})
    assert min(scores.values()) >= 0.8 and np.mean(list(scores.values())) >= 0.9


@pytest.mark.realdata
def test_handwriting_like_images_score_close_to_the_originals(trained, mnist, capsys):
    predictor = Predictor.load(trained)
    rng = np.random.default_rng(0)
    images, labels = mnist.test.images[:1000].numpy(), mnist.test.labels[:1000].numpy()
    original = np.mean([p.label for p in predictor.predict_prepared(images)] == labels)
    drawn = [handwriting_like(image, rng) for image in images]
    prepared = np.mean([p.label for p in predictor.predict(drawn)] == labels)
    plain = np.stack([np.asarray(image.resize((28, 28))) for image in drawn])
    resized = np.mean([p.label for p in predictor.predict_prepared(plain)] == labels)
    with capsys.disabled():
        print(
            f"\n1,000 MNIST test digits: {100 * original:.1f}% as they are; drawn as a person's "
            f"image: {100 * prepared:.1f}% prepared, {100 * resized:.1f}% with a plain resize"
        )
    assert prepared >= original - 0.02
    assert resized < prepared - 0.5  # the gap is the feature


def test_small_soft_scans_enlarged_read_better_than_a_plain_resize(trained, mnist, capsys):
    # A scan at 8 pixels in 17 grey levels (as a low-resolution scanner keeps a digit),
    # enlarged to 96 (soft grey ramps, no sharp edge), dark on white, as given and with a white
    # margin: its ink is found whole, not thresholded to fragments (81% before, on these).
    predictor = Predictor.load(trained)
    images, labels = mnist.test.images[:300].numpy(), mnist.test.labels[:300].numpy()
    scans = []
    for image in images:
        small = Image.fromarray(255 - image.astype(np.float32), mode="F").resize((8, 8), Image.BOX)
        levels = np.rint(np.asarray(small) / 255 * 16) * 255 / 16
        big = Image.fromarray(levels.astype(np.float32), mode="F").resize((96, 96), Image.BILINEAR)
        scans.append(np.clip(np.rint(np.asarray(big)), 0, 255).astype(np.uint8))
    plain = np.stack([preprocess.placed(255.0 - scan) for scan in scans])
    resized = np.mean([p.label for p in predictor.predict_prepared(plain)] == labels)
    margin = [np.pad(scan, 24, constant_values=255) for scan in scans]
    read = {
        "as given": np.mean([p.label for p in predictor.predict(scans)] == labels),
        "with a margin": np.mean([p.label for p in predictor.predict(margin)] == labels),
    }
    with capsys.disabled():
        shown = ", ".join(f"{name} {100 * share:.1f}%" for name, share in read.items())
        print(
            f"\n300 MNIST test digits at 8 px, enlarged to 96: {shown}; plain {100 * resized:.1f}%"
        )
    assert min(read.values()) >= max(resized + 0.1, 0.87), (read, resized)


# --- predict ------------------------------------------------------------------------------------


def test_predict_reads_files_folders_and_stdin(capsys, tiny, tiny_run, tmp_path, monkeypatch):
    dataset = data.load("tiny", tiny[0])
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        handwriting_like(dataset.test.images[index].numpy(), rng).save(folder / f"d{index}.png")
    predictor = Predictor.load(tiny_run)
    expected = predictor.predict([folder / f"d{index}.png" for index in range(3)])
    stdin = io.BytesIO((folder / "d0.png").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    code = main(
        [
            "predict",
            str(tiny_run),
            str(folder),
            "-",
            "--json",
            "--show-input",
            str(tmp_path / "seen.png"),
        ]
    )
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0 and [line["file"] for line in lines][-1] == "-" and len(lines) == 4
    for line, prediction in zip(lines, [*expected, expected[0]], strict=True):
        assert line["class"] == prediction.label
        assert line["probabilities"] == pytest.approx(prediction.probabilities, rel=1e-4, abs=1e-9)
        assert len(line["top"]) == 3 and np.array(line["input"]).shape == (28, 28)
    assert (tmp_path / "seen.png").stat().st_size > 1000 and "wrote" in captured.err
    code = main(["predict", str(tiny_run), str(folder / "d1.png")])
    assert code == 0 and f"d1.png: {expected[1].verdict()}  (top 3: " in capsys.readouterr().out
    (tmp_path / "blank.png").write_bytes(png(Image.new("L", (50, 50), 255)))
    code = main(["predict", str(tiny_run), str(tmp_path / "blank.png")])
    captured = capsys.readouterr()
    assert code == 2 and "blank.png: error: " in captured.out and "blank" in captured.out
    assert captured.err == "mnistlab: 1 of 1 images could not be read\n"


# --- export -------------------------------------------------------------------------------------


def pixels(dataset, count=1000) -> np.ndarray:
    return dataset.test.images[:count].numpy().astype(np.float32)


@pytest.mark.realdata
def test_onnx_runtime_gives_pytorchs_logits(trained, mnist, tmp_path):
    import onnxruntime

    path = export.export(trained, "onnx", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path))
    x = pixels(mnist)
    theirs = session.run(None, {"pixels": x})[0]
    predictor = Predictor.load(trained)
    ours = torch.log_softmax(
        predictor.model(
            torch.from_numpy(x).reshape(-1, 784).div(255).sub(predictor.mean).div(predictor.std)
        ),
        1,
    )
    assert theirs.shape == (1000, 10)
    np.testing.assert_allclose(
        torch.log_softmax(torch.from_numpy(theirs), 1), ours.detach(), atol=1e-5
    )
    assert session.run(None, {"pixels": x[:3]})[0].shape == (3, 10)  # any batch size


@pytest.mark.slow
def test_torchscript_runs_where_mnistlab_cannot_be_imported(tiny, tiny_run, tmp_path):
    path = export.export(tiny_run, "torchscript", tmp_path / "model.pt")
    x = pixels(data.load("tiny", tiny[0]), 50)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; sys.modules['mnistlab'] = None\n"
        "try:\n    import mnistlab\nexcept ImportError:\n    print('no mnistlab')\n"
        "import numpy, torch\n"
        f"model = torch.jit.load({str(path)!r})\n"
        f"x = torch.from_numpy(numpy.load({str(tmp_path / 'x.npy')!r}))\n"
        "print(model(x).argmax(1).tolist()); print(model(x.to(torch.uint8)).argmax(1).tolist())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    expected = [p.label for p in Predictor.load(tiny_run).predict_prepared(x.astype(np.uint8))]
    assert lines == ["no mnistlab", str(expected), str(expected)]


def test_safetensors_load_into_a_plain_sequential(tiny, tiny_run, tmp_path):
    from safetensors.torch import load_file
    from torch import nn

    path = export.export(tiny_run, "safetensors", tmp_path / "model.safetensors")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["layers"] == [784, 32, 10] and sidecar["activation"] == "relu"
    sizes = sidecar["layers"]
    network = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]))
    network.load_state_dict(load_file(path))
    x = pixels(data.load("tiny", tiny[0]), 50)
    norm = sidecar["normalization"]
    logits = network((torch.from_numpy(x).reshape(-1, 784) / 255 - norm["mean"]) / norm["std"])
    predictor = Predictor.load(tiny_run)
    expected = predictor.predict_prepared(x.astype(np.uint8))
    assert logits.argmax(1).tolist() == [p.label for p in expected]
    temperature = sidecar["calibration"]["temperature"]
    np.testing.assert_allclose(
        torch.softmax(logits / temperature, 1).detach(),
        [p.probabilities for p in expected],
        atol=1e-5,
    )


def test_export_without_its_extra_says_what_to_install(capsys, tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    code = main(["export", str(tiny_run), "--format", "safetensors"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'mnistlab[export]'" in err


def test_postscript_and_other_formats_never_reach_a_decoder():
    # Pillow hands EPS to Ghostscript: only the formats a photo or a drawing comes in are tried.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto showpage\n"
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"></svg>'
    for content in (eps, pdf, svg):
        with pytest.raises(errors.UnsupportedImage, match="not an image of a format read here"):
            images.open_image(content)


def test_what_is_read_whole_is_bounded_and_only_regular_files_are_opened(tmp_path):
    import io
    import os

    class Endless(io.RawIOBase):  # /dev/zero as predict's standard input
        taken = 0

        def read(self, size=-1):
            assert size != -1, "read to the end"
            self.taken += size
            return b"\0" * size

    stream = Endless()
    with pytest.raises(errors.ImageTooLarge, match="standard input is over 1,000 bytes"):
        images.read_bytes(stream, limit=1000)
    assert stream.taken == 1001
    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(folder / "a.png")  # would block an open() for ever
    (folder / "b.png").write_bytes(png(Image.new("L", (40, 40), 255)))
    assert images.image_files([folder]) == [folder / "b.png"]
    with pytest.raises(errors.UnsupportedImage, match="not a regular file"):
        images.open_image(folder / "a.png")  # named: refused before it is opened


def test_show_input_is_refused_past_its_limit_before_any_prediction(capsys, tiny_run, tmp_path):
    image = png(Image.new("L", (40, 40), 255))
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(images.MAX_SHOWN + 1):
        (folder / f"{index}.png").write_bytes(image)
    code = main(["predict", str(tiny_run), str(folder), "--show-input", str(tmp_path / "s.png")])
    err = capsys.readouterr().err
    assert code == 2 and "--show-input: one picture shows at most 100 images" in err
    assert not (tmp_path / "s.png").exists()


def test_show_input_never_replaces_an_image_it_reads_nor_writes_into_a_run(
    capsys, tiny_run, tmp_path
):
    photo = tmp_path / "my_digit.png"
    photo.write_bytes(png(Image.new("L", (40, 40), 255)))
    before = photo.read_bytes()
    for target, says in (
        (photo, "is one of the images to read"),
        (tmp_path / "." / "my_digit.png", "is one of the images to read"),
        (tiny_run / "seen.png", "is a run's folder"),
    ):
        code = main(["predict", str(tiny_run), str(photo), "--show-input", str(target)])
        err = capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (target, err)
    assert photo.read_bytes() == before and not (tiny_run / "seen.png").exists()


def test_export_never_replaces_a_file_it_did_not_write(capsys, tiny, tiny_run, tmp_path):
    from mnistlab.config import Runtime, TrainConfig
    from mnistlab.runs import Run

    other = tmp_path / "other-run"
    with Run.create(other, TrainConfig(dataset="tiny", hidden=(8,), epochs=1)) as run:
        run.fit(Runtime(data_dir=str(tiny[0])), pictures=False)
    before = {path.name: path.read_bytes() for path in other.iterdir() if path.is_file()}
    config = (tiny_run / "config.json").read_bytes()
    for out, says in (
        (other / "checkpoint.pt", "is another run's folder"),
        (other / "model.onnx", "is another run's folder"),
        (tiny_run / "config.safetensors", "config.json exists and export did not write it"),
        (tiny_run / "evaluation.safetensors", "exists and export did not write it"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "m.onnx", "does not exist"),
        (tmp_path / "w.json", "is where the weights' description goes"),
    ):
        kind = "safetensors" if out.suffix in (".safetensors", "", ".json") else "torchscript"
        code = main(["export", str(tiny_run), "--format", kind, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (out, err)
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before
    assert (tiny_run / "config.json").read_bytes() == config
    assert not (tiny_run / "config.safetensors").exists() and not (tmp_path / "w.json").exists()
    # The run's own export is written again, as often as asked.
    for _ in range(2):
        assert main(["export", str(tiny_run), "--format", "safetensors"]) == 0


def test_a_16_bit_image_is_read_by_its_own_range():
    # A white square, anti-aliased at its edge, in 16-bit grey: converting to 8 bits the way
    # Pillow does clips everything but the darkest pixels.
    square = np.zeros((60, 60), np.float64)
    square[20:40, 20:40] = 1.0
    square[19, 20:40] = square[40, 20:40] = 0.4
    image = Image.fromarray((square * 65535).astype(np.uint16))
    assert image.mode.startswith("I;16")
    seen = images.grey(image)
    assert seen.max() == pytest.approx(255) and seen[30, 30] == pytest.approx(255)
    assert 90 < seen[19, 30] < 115  # the edge kept as grey, not clipped
    expected = preprocess.prepare(Image.fromarray((square * 255).astype(np.uint8)))
    assert np.abs(preprocess.prepare(image).astype(int) - expected).max() <= 2


def test_predict_prints_its_answers_whatever_becomes_of_the_picture(capsys, tiny_run, tmp_path):
    image = tmp_path / "cost$^$ 1.png"  # a `$` once broke matplotlib's title
    digit = Image.new("L", (40, 40), 255)
    digit.paste(0, (15, 5, 25, 35))
    digit.save(image)
    assert (
        main(["predict", str(tiny_run), str(image), "--show-input", str(tmp_path / "s.png")]) == 0
    )
    assert "cost$^$ 1.png: " in capsys.readouterr().out and (tmp_path / "s.png").is_file()
    for out, says in (
        (tmp_path, "is a folder"),
        (tmp_path / "no-suffix", "needs a picture extension"),
        (tmp_path / "missing" / "s.png", "does not exist"),
    ):
        code = main(["predict", str(tiny_run), str(image), "--show-input", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "--show-input: " in err and says in err and err.count("\n") == 1


def test_predict_answers_every_good_image_when_some_cannot_be_read(capsys, tiny_run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    digit = Image.new("L", (40, 40), 255)
    digit.paste(0, (15, 5, 25, 35))
    digit.save(folder / "a-digit.png")
    Image.new("L", (40, 40), 255).save(folder / "b-blank.png")
    (folder / "c-broken.png").write_bytes(b"\x89PNG not really")
    digit.save(folder / "d-digit.png")
    assert main(["predict", str(tiny_run), str(folder)]) == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in lines] == [
        "a-digit.png", "b-blank.png", "c-broken.png", "d-digit.png"]  # fmt: skip
    assert "error: " in lines[1] and "blank" in lines[1] and "error: " in lines[2]
    assert "error" not in lines[0] + lines[3]
    assert "2 of 4 images could not be read" in captured.err
    assert main(["predict", str(tiny_run), str(folder), "--json"]) == 2
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ["error" in answer for answer in answers] == [False, True, True, False]
    assert all("class" in answer for answer in (answers[0], answers[3]))


def test_onnx_export_says_one_line_and_carries_its_description(capfd, tiny_run):
    import onnx
    import onnxruntime

    assert main(["export", str(tiny_run), "--format", "onnx"]) == 0
    captured = capfd.readouterr()
    assert captured.out == f"wrote {tiny_run / 'model.onnx'}\n" and captured.err == ""
    proto = onnx.load(str(tiny_run / "model.onnx"))
    described = json.loads({p.key: p.value for p in proto.metadata_props}["mnistlab"])
    assert described["classes"] == [str(i) for i in range(10)]
    assert described["normalization"]["formula"] == "x = (pixels / 255 - mean) / std"
    # The formula, applied as written to 0-255 pixels, is what the exported model does.
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tiny_run / "model.onnx"))
    logits = session.run(None, {"pixels": pixels})[0]
    mean, std = described["normalization"]["mean"], described["normalization"]["std"]
    x = (pixels.reshape(3, 784) / 255 - mean) / std
    whole, _ = export.model(tiny_run)
    import torch

    with torch.no_grad():
        expected = whole[1](torch.from_numpy(x).float()).numpy()
    assert np.allclose(logits, expected, atol=1e-4)


@pytest.mark.slow
def test_a_torch_export_program_runs_where_mnistlab_cannot_be_imported(tiny, tiny_run, tmp_path):
    path = export.export(tiny_run, "export")
    assert path == tiny_run / "model.pt2"
    x = pixels(data.load("tiny", tiny[0]), 50)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; sys.modules['mnistlab'] = None\n"
        "import warnings; warnings.simplefilter('error')\n"  # deprecated loaders would say so
        "import numpy, torch\n"
        f"model = torch.export.load({str(path)!r}).module()\n"
        f"x = torch.from_numpy(numpy.load({str(tmp_path / 'x.npy')!r}))\n"
        "print(model(x).argmax(1).tolist())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = [p.label for p in Predictor.load(tiny_run).predict_prepared(x.astype(np.uint8))]
    assert result.stdout.splitlines() == [str(expected)]


# --- calibration: how sure, and unlike the training images -----------------------------------


def test_temperature_scaling_recovers_an_overconfident_models_temperature():
    # Labels drawn from softmax(z): z is calibrated, 4z four times too sure; T finds the 4.
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 10, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=generator).squeeze(1)
    fitted = calibration.fit(4 * z, labels, "validation")
    assert fitted.temperature == pytest.approx(4, rel=0.05) and fitted.fitted_on == "validation"
    confidence = torch.softmax(4 * z / fitted.temperature, 1).max(1).values
    assert float((confidence < fitted.unfamiliar_below).float().mean()) == pytest.approx(
        calibration.UNFAMILIAR_RATE, abs=0.002
    )
    # it never changes the winner
    assert torch.equal((4 * z / fitted.temperature).argmax(1), z.argmax(1))


def test_a_run_saves_its_calibration_and_a_damaged_one_is_not_used(tiny, tiny_run, tmp_path):
    saved = json.loads((tiny_run / "evaluation.json").read_text())["calibration"]
    assert saved["fitted_on"] == "test" and saved["temperature"] > 0
    assert 0 < saved["unfamiliar_below"] <= 1
    predictor = Predictor.load(tiny_run)
    assert predictor.calibration.temperature == saved["temperature"]
    # held out: fitted on the validation split
    from mnistlab.config import Runtime, TrainConfig
    from mnistlab.runs import Run

    config = TrainConfig(dataset="tiny", hidden=(16,), epochs=1, val_split=0.2)
    with Run.create(tmp_path / "held-out", config) as run:
        run.fit(Runtime(data_dir=str(tiny[0])), pictures=False)
    held_out = calibration.read(tmp_path / "held-out")
    assert held_out.fitted_on == "validation" and held_out.unfamiliar_below is not None
    for damage in ['{"calibration": {"temperature": -1}}', "[1, 2]", "{", '{"calibration": 5}']:
        (tiny_run / "evaluation.json").write_text(damage)
        assert calibration.read(tiny_run) == calibration.Calibration()
    image = np.zeros((28, 28), np.uint8)
    image[10:18, 2:26] = 255  # wider than tall
    [prediction] = Predictor.load(tiny_run).predict_prepared(image[None])
    assert prediction.probabilities == pytest.approx(
        torch.softmax(torch.tensor(prediction.probabilities).log(), 0).tolist()
    )
    assert calibration.wide(image) and not prediction.unfamiliar  # 'tiny' is not digits
    answer = prediction.as_dict()
    assert {"confidence", "unsure", "unfamiliar", "verdict"} <= answer.keys()


@pytest.mark.realdata
def test_unsure_and_unfamiliar_on_digits_and_on_marks_that_are_not_digits(trained, mnist):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import photos

    predictor = Predictor.load(trained)
    assert predictor.calibration.fitted_on == "test"
    digits = predictor.predict_prepared(mnist.test.images[:1000].numpy())
    assert np.mean([p.unfamiliar for p in digits]) < 0.05
    assert np.mean([p.unsure for p in digits]) < 0.1
    rng = np.random.default_rng(0)
    marks = [photos.non_digit(kind, rng, mnist.test.images[:100].numpy()) for kind in
             photos.NON_DIGITS for _ in range(5)]  # fmt: skip
    flagged = [p.unfamiliar for p in predictor.predict(marks)]
    assert np.mean(flagged) >= 0.5
    [two] = predictor.predict([photos.non_digit("two digits", rng, mnist.test.images[:9].numpy())])
    assert two.unfamiliar and "does not look like" in two.verdict()
    assert json.loads(json.dumps(two.as_dict()))["unfamiliar"] is True  # plain JSON types


def test_a_progressive_jpeg_that_repeats_its_scans_is_refused_before_it_is_decoded(tiny_run):
    # A small JPEG whose last scan is repeated 3,000 times: each scan is another pass over
    # every pixel, so decoding it whole takes the server's turn for far longer than any photo.
    import time

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((200, 200)).save(buffer, "JPEG", progressive=True)
    jpeg = buffer.getvalue()
    assert images.open_image(jpeg).size == (200, 200)  # an ordinary progressive JPEG is read
    last, end = jpeg.rindex(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")
    bomb = jpeg[:end] + jpeg[last:end] * 3000 + jpeg[end:]
    assert len(bomb) < 2_000_000  # under serve's byte limit
    for source in (bomb, io.BytesIO(bomb)):
        started = time.monotonic()
        with pytest.raises(errors.UnsupportedImage, match="progressive JPEG of 3,0.. scans"):
            images.open_image(source)
        assert time.monotonic() - started < 1.0
    path = Path(tiny_run).parent / "scans.jpg"  # a file, as predict is given one
    path.write_bytes(bomb)
    with pytest.raises(errors.UnsupportedImage, match="scans"):
        Predictor.load(tiny_run).predict([path])


def odd_images() -> dict[str, bytes]:
    """Files people and programs write that once raised from deep inside preparation: modes
    Image.reduce does not take at a photo's size, a damaged EXIF block, float TIFFs holding
    values no scanner writes."""

    def saved(image, kind="PNG", **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, kind, **options)
        return buffer.getvalue()

    page = Image.new("L", (2000, 1800), 255)
    page.paste(0, (900, 500, 1000, 1300))
    found = {
        "palette": saved(page.convert("P")),
        "black and white": saved(page.convert("1")),
        "16-bit": saved(Image.fromarray(np.asarray(page).astype(np.uint16) * 257)),
    }
    small = Image.new("L", (100, 100), 255)
    small.paste(0, (40, 20, 60, 80))
    for kind in ("PNG", "WEBP"):
        found[f"{kind} with damaged EXIF"] = saved(small, kind, exif=b"Exif\x00\x00garbage")
    for value in (np.inf, -np.inf, np.nan, 3e38, -3e38):
        array = np.full((60, 60), 1.0, np.float32)
        array[20:40, 25:35] = 0
        array[0, 0] = value
        found[f"float TIFF holding {value}"] = saved(Image.fromarray(array, "F"), "TIFF")
    return found


def test_odd_modes_exif_and_float_tiffs_are_read_or_refused_never_a_traceback(tiny_run):
    from mnistlab.serve import app_for_run
    from test_serve import multipart, request, served

    odd = odd_images()
    import contextlib

    for name, content in odd.items():
        with contextlib.suppress(errors.ImageError):  # a one-line refusal is an answer too
            assert preprocess.prepare(content).shape == (28, 28), name
    # In a batch, each is its own answer: never a 500 for the request.
    with served(app_for_run(tiny_run)) as url:
        body, kind = multipart(*[("file", content) for content in odd.values()][:16])
        code, answer = request(url + "/api/predict", body, kind)
        assert code == 200 and len(answer["predictions"]) == len(odd), answer
        for name, content in odd.items():
            assert request(url + "/api/predict", content)[0] in (200, 413, 415, 422), name


def test_a_digit_cropped_tightly_is_prepared_as_with_a_margin():
    # People crop a photo to the digit: its strokes then touch every edge. Only what is
    # clearly not writing (a page's edge, a frame, a table) may be taken off at the edge.
    from PIL import ImageDraw

    def drawn(shape: str) -> np.ndarray:
        big = Image.new("L", (800, 800), 255)
        pen = ImageDraw.Draw(big)
        if shape == "0":
            pen.ellipse((200, 80, 600, 720), outline=0, width=90)
        elif shape == "7":
            pen.line([(180, 120), (620, 120), (330, 720)], fill=0, width=90, joint="curve")
        else:  # a 4: its stem and arm
            pen.line([(520, 80), (520, 720)], fill=0, width=90)
            pen.line([(520, 80), (200, 500), (640, 500)], fill=0, width=90)
        return np.asarray(big.resize((200, 200), Image.Resampling.LANCZOS))

    for shape in ("0", "7", "4"):
        page = drawn(shape)
        rows, columns = np.nonzero(page < 200)
        tight = page[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        padded = np.pad(tight, 8, constant_values=255)
        seen = [preprocess.prepare(png(Image.fromarray(a))).astype(float) for a in (tight, padded)]
        agreement = np.corrcoef(seen[0].ravel(), seen[1].ravel())[0, 1]
        assert agreement > 0.98, (shape, agreement)


def _number_picture(mnist, indices, gap: int, photo: bool = False) -> bytes:
    """Test digits side by side, as benchmarks/photos.py draws numbers."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import photos

    return photos.number_picture(mnist.test.images.numpy(), indices, gap, paper=photo)


def test_a_number_is_read_digit_by_digit_and_one_digit_as_before(trained, mnist):
    predictor = Predictor.load(trained)
    rng = np.random.default_rng(5)
    right = total = 0
    for count in (2, 3, 4, 5):
        for _ in range(6):
            chosen = rng.choice(len(mnist.test), count, replace=False)
            want = "".join(str(int(mnist.test.labels[i])) for i in chosen)
            for photo in (False, True):
                digits = predictor.read(_number_picture(mnist, chosen, gap=4, photo=photo))
                right += "".join(d.name for d in digits) == want
                total += 1
    assert right >= 0.8 * total, f"{right} of {total} numbers read right"
    # one digit: the reading predict gives, a list of one
    single = _number_picture(mnist, [0], gap=4)
    (alone,) = predictor.read(single)
    assert alone.label == predictor.predict([single])[0].label == int(mnist.test.labels[0])
    # a number's answer, as the API and --json give it
    digits = predictor.read(_number_picture(mnist, [0, 1, 2], gap=4))
    answer = json.loads(json.dumps(number(digits)))
    assert answer["number"] == "".join(d["name"] for d in answer["digits"])
    assert len(answer["digits"]) == 3 and all(len(d["input"]) == 28 for d in answer["digits"])


def test_predict_prints_a_number_and_its_digits(capsys, trained, mnist, tmp_path):
    picture = tmp_path / "number.png"
    picture.write_bytes(_number_picture(mnist, [0, 1, 2], gap=4))
    want = "".join(str(int(mnist.test.labels[i])) for i in (0, 1, 2))
    assert main(["predict", str(trained), str(picture)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{picture}: {want}  (3 digits: ")
    assert main(["predict", str(trained), str(picture), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["number"] == want and [d["name"] for d in answer["digits"]] == list(want)
