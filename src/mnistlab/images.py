"""Reading a person's images: files (regular files only), folders of them, bytes and standard
input, each bounded before it is decoded (bytes read, formats tried, pixels from the header)
and read as grey levels, upright, transparency on white. preprocess.py prepares what is read
here as the dataset's own images."""

import io
import warnings
from pathlib import Path

import numpy as np

from mnistlab.errors import ImageError, ImageTooLarge, UnsupportedImage

MAX_PIXELS = 16_000_000  # refused before decoding: a decompression bomb never unpacks
SMALLER = "send a smaller copy (1,600 pixels on the long side is plenty for a digit)"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The Pillow plugins an image is tried with, and no other: PostScript (EPS, which Pillow hands
# to Ghostscript), PDF, SVG and the rest are refused before any decoder sees them.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # (JPEG opens a camera's MPO too)
MAX_BYTES = 50_000_000  # an image file read whole: a phone's photo is a few MB
# A progressive JPEG is decoded in one pass over every pixel per scan; encoders write about
# ten scans, and a file that repeats its last scan thousands of times (under the byte limit)
# would hold the decoder for minutes. Counted from the bytes before any is decoded.
MAX_SCANS = 100
MAX_SHOWN = 100  # images in one --show-input picture


def open_image(source, max_pixels: int = MAX_PIXELS, decode: bool = True):
    """A PIL image from a path, bytes or a PIL image; its size is checked from the header,
    before any pixel is decoded. With `decode` False, only the header is read: `decoded()`
    finishes (the server decides from the header which images wait for which)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image, name = source, "the image"
    else:
        name = str(source) if isinstance(source, str | Path) else "the image"
        if isinstance(source, str | Path) and not _regular(Path(source)):
            raise UnsupportedImage(f"{name} is not an image file (not a regular file)")
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        try:
            with warnings.catch_warnings():  # our own limit applies, just below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream, formats=FORMATS)
        except Image.DecompressionBombError as error:  # far past Pillow's own limit
            raise ImageTooLarge(
                f"{name} has more pixels than the {max_pixels:,} allowed ({error}); {SMALLER}"
            ) from None
        except UnidentifiedImageError:
            raise UnsupportedImage(
                f"{name} is not an image of a format read here ({', '.join(FORMATS)})"
            ) from None
        except (OSError, ValueError) as error:
            raise UnsupportedImage(f"{name} could not be read ({error})") from None
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        scans = image.info["scans"] = _scans(source)
        if scans > MAX_SCANS:
            raise UnsupportedImage(
                f"{name} is a progressive JPEG of {scans:,} scans, more than the {MAX_SCANS} "
                "read here (encoders write about ten); save it again as an ordinary JPEG or PNG"
            )
    width, height = image.size
    if width * height > max_pixels and image.format in ("JPEG", "MPO"):  # MPO: a camera's JPEG
        # A JPEG decodes at 1/2, 1/4 or 1/8 of its size for less than the full cost: a
        # 48-megapixel photo is read at 12 (the largest that fits), none of it unpacked whole.
        scale = next((k for k in (2, 4, 8) if -(-width // k) * -(-height // k) <= max_pixels), 8)
        image.draft(image.mode, (-(-width // scale), -(-height // scale)))
        width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {width}x{height} pixels, more than the {max_pixels:,} allowed; {SMALLER}"
        )
    return decoded(image, name) if decode else image


def decoded(image, name: str = "the image"):
    """The image with its pixels decoded (open_image's last step)."""
    from PIL import Image

    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name} could not be decoded ({error})") from None
    return image


HEAVY = 1_000_000  # pixel passes past which decoding an image is slow work (about 10 ms)


def heavy(image) -> bool:
    """Whether decoding an opened image is slow work: its pixels times its scans (a
    progressive JPEG passes over every pixel once a scan; ordinary ones ~10) past HEAVY."""
    scans = image.info.get("scans", 10)
    return image.size[0] * image.size[1] * max(1, scans / 10) > HEAVY


def _scans(source) -> int:
    """The scans of a JPEG, counted as start-of-scan markers: entropy-coded data escapes every
    0xFF byte, so the marker appears nowhere else (but in an embedded thumbnail's own, which
    only adds its few)."""
    if isinstance(source, bytes | bytearray):
        return source.count(b"\xff\xda")
    if isinstance(source, str | Path):
        with open(source, "rb") as handle:
            return handle.read(MAX_BYTES).count(b"\xff\xda")
    if hasattr(source, "read") and hasattr(source, "seek"):  # a stream: read, then rewound
        where = source.tell()
        source.seek(0)
        count = source.read(MAX_BYTES).count(b"\xff\xda")
        source.seek(where)
        return count
    return 0  # a PIL image given as such: already the caller's to have decoded


def _regular(path: Path) -> bool:
    """A regular file (a FIFO, socket or device is not), or a path that is not there (whose
    error is the opener's to give)."""
    import stat

    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True


def grey(source) -> np.ndarray:
    """The image as float grey levels (H, W) in 0-255: orientation applied, transparency on
    white. Also takes a numpy array or a tensor, (H, W) or (H, W, C), in 0-255."""
    if hasattr(source, "detach"):  # a torch tensor
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        array = source.astype(np.float32)
        if array.ndim == 3:
            array = array[..., :3].mean(2) if array.shape[2] >= 3 else array[..., 0]
        if array.ndim != 2:
            raise ImageError(f"an image array must be (H, W) or (H, W, C), got {source.shape}")
        return array

    return grey_levels(upright(open_image(source)))


def upright(image):
    """The image turned as its EXIF orientation says; as it is when that block is malformed
    (Pillow's parser raises anything from SyntaxError to struct.error on a damaged one)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: no orientation to apply
        return image


def opaque(image):
    """The image without its alpha band where every pixel is opaque (a browser's canvas is
    saved as RGBA, all of it opaque): nothing to composite, which costs more than the rest of
    reading a drawing."""
    opaque = image.mode in ("RGBA", "LA") and "transparency" not in image.info
    if opaque and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB" if image.mode == "RGBA" else "L")
    return image


def grey_levels(image) -> np.ndarray:
    """An upright PIL image's grey levels, transparency on white, 16-bit by its own range."""
    from PIL import Image

    image = opaque(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit or float grey: Pillow's conversion to 8 bits clips (an anti-aliased digit
        # keeps only its darkest pixels); scaled by the image's own range instead.
        # (in float64, where even float32's extremes subtract without overflow; a value
        # that is not finite, which no scanner writes, is taken as the lightest)
        array = np.asarray(image, dtype=np.float64)
        finite = np.isfinite(array)
        if not finite.any():
            return np.zeros(array.shape, np.float32)
        low, high = float(array[finite].min()), float(array[finite].max())
        array = np.where(finite, array, high)
        scaled = (array - low) * (255 / (high - low)) if high > low else np.zeros_like(array)
        return scaled.astype(np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32)


def image_files(paths) -> list[Path]:
    """The image files named, folders expanded to the images they hold (sorted): regular
    files only (a FIFO or a device named like an image would block or never end)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
        else:
            found.append(path)
    return found


def read_bytes(stream, name: str = "standard input", limit: int = MAX_BYTES) -> bytes:
    """A stream's bytes, at most `limit`: past it an ImageTooLarge, read no further."""
    content = stream.read(limit + 1)
    if len(content) > limit:
        raise ImageTooLarge(f"{name} is over {limit:,} bytes; {SMALLER}")
    return content


def sources(names: list[str], stdin=None) -> list[tuple[str, object]]:
    """(name, source) for each image named: files, the images in folders, and "-" for the bytes
    of `stdin` (a binary stream)."""
    found = [(str(path), path) for path in image_files([n for n in names if n != "-"])]
    if "-" in names and stdin is not None:
        found.append(("-", read_bytes(stdin)))
    if not found:
        raise ImageError(f"no images in {' '.join(names)}")
    return found


def resized(array: np.ndarray, width: int, height: int, method: str = "LANCZOS") -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(array.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling[method]), np.float32)
