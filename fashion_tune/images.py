"""Turn a product photo (PNG, JPEG, ... of any size and colour) into a Fashion-MNIST image.

Fashion-MNIST was made from product photos on light backgrounds: trimmed to the object, the
longest edge resized to 28 pixels, centred on a 28x28 canvas, intensities negated (object light
on dark) and converted to 8-bit grayscale. We do the same, and invert only when the photo's
corners are light, so an image that already looks like Fashion-MNIST is left the right way round.
This is the one implementation: `predict` and the web service both call to_model_input_from_bytes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from fashion_tune.errors import UserError

SIZE = 28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Pillow's own bomb guard warns above ~89 Mpx; we refuse earlier, before decoding a pixel.
MAX_PIXELS = 40_000_000

# What fashion_mnist_style does, step by step: the model card lists these for a model's users.
PREPROCESSING_STEPS = (
    "decode the image (PNG, JPEG, BMP, GIF, WebP, TIFF); apply its EXIF orientation",
    "composite transparent pixels onto white",
    "convert to 8-bit grayscale",
    "if the corners are light (median > 127), negate intensities so the object is light on dark",
    "subtract the corners' median (the background), scale so the brightest pixel is 255",
    "trim to the object (pixels above 10% of the maximum)",
    "resize the longest edge to 28 pixels (Lanczos), keeping the aspect ratio",
    "centre on a 28x28 black canvas; divide by 255 -> float32 in [0, 1], shape (28, 28, 1)",
)


class ImageError(UserError):
    """An input that is not a usable image; the message names it."""


class NoGarmentFound(ImageError):
    """A readable image with nothing in it to classify (blank, uniform, noise, an object too small)."""


def to_png(x: np.ndarray) -> bytes:
    """A model input (28, 28, 1) in [0, 1] as an 8-bit grayscale PNG: what the model saw."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(x[..., 0], 0, 1) * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def to_model_input_from_bytes(raw: bytes, name: str) -> np.ndarray:
    """Encoded image bytes -> float32 (28, 28, 1) in [0, 1], object light on dark."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not raw:
        raise ImageError(f"{name}: empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: {width}x{height} pixels is over the limit of {MAX_PIXELS:,} "
                                 "(a decompression bomb, or a photo far larger than needed)")
            image.load()
            image = ImageOps.exif_transpose(image)
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP, TIFF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"{name}: broken or truncated image ({e})") from None
    return fashion_mnist_style(image)


def load(path: Path) -> np.ndarray:
    """Read an image file -> float32 (28, 28, 1)."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read it ({e.strerror})") from None
    return to_model_input_from_bytes(raw, str(path))


def fashion_mnist_style(image) -> np.ndarray:
    """A decoded PIL image -> float32 (28, 28, 1), following Fashion-MNIST's own conversion."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent product cut-outs: put them on white, as the catalogue photos were.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    background = _background(gray)
    if background > 127:  # light background: negate, so the object is light on dark
        gray, background = 255.0 - gray, 255.0 - background
    gray = np.clip(gray - background, 0, None)
    if gray.max() <= 0:
        return np.zeros((SIZE, SIZE, 1), np.float32)  # a blank image: nothing to find
    gray = gray / gray.max() * 255.0
    rows, cols = np.nonzero(gray > 0.1 * 255)  # trim to the object
    gray = gray[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    height, width = gray.shape
    scale = SIZE / max(height, width)  # longest edge to 28, aspect ratio kept
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(gray.astype(np.uint8)).resize(new_size, Image.Resampling.LANCZOS)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - new_size[1]) // 2, (SIZE - new_size[0]) // 2
    canvas[top: top + new_size[1], left: left + new_size[0]] = np.asarray(resized, np.float32)
    return (canvas / 255.0).reshape(SIZE, SIZE, 1)


def _background(gray: np.ndarray) -> float:
    """The background level: the median of the four corner patches (Fashion-MNIST trimmed by
    the corners' colour too; the whole border fails when the object touches an edge)."""
    k = max(1, min(gray.shape) // 20)
    corners = [gray[:k, :k], gray[:k, -k:], gray[-k:, :k], gray[-k:, -k:]]
    return float(np.median(np.concatenate([c.ravel() for c in corners])))


def expand_inputs(paths) -> list[Path]:
    """Files as given; folders replaced by the image files inside them (sorted, recursively)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found
