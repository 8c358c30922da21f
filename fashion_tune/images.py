"""Turn a product photo (PNG, JPEG, ... of any size and colour) into a Fashion-MNIST image.

Fashion-MNIST was made from clean pack-shots: trimmed to the object, the longest edge resized to
28 pixels, sharpened, centred on a 28x28 canvas, negated (object light on dark) and converted to
8-bit grayscale. We follow it, except the sharpening, which measurably cost accuracy here.
Ordinary photos need more first: the background is modelled as a smooth surface (uneven light,
vignetting, off-white or coloured), the object is what differs from it by more than noise, thin
frames and specks are dropped, a tilt of up to 20 degrees is undone, and the object's contrast
is measured against the local background, so a garment in a dim corner looks as it would in even
light. This is the one implementation: `predict`, the web service and the
robustness tiers of `evaluate` all call to_model_input_from_bytes.
"""

from __future__ import annotations

import base64
import functools
import io
import warnings
from pathlib import Path

import numpy as np

from fashion_tune.errors import UserError

SIZE = 28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Pillow's own bomb guard warns above ~89 Mpx; we refuse earlier, before decoding a pixel.
MAX_PIXELS = 40_000_000
# The object is found at this resolution (longest edge): ample for a 28-pixel result, fast, and
# the area-averaging on the way down already removes most sensor noise.
WORK_SIZE = 160
SHRINK_ABOVE = 4  # an 8-bit image over this many times WORK_SIZE is first box-averaged in 8 bits (_shrunk)
# Fashion-MNIST trimmed what was within 5% of the corner colour; we take at least that, more on noisy photos.
MIN_CONTRAST = 0.05
NOISE_MARGIN = 5.0  # object pixels differ from the background by more than this many noise deviations
TILTS = np.arange(-20, 20.5, 1.0)  # degrees tried when undoing a tilt; pack-shots stand upright
TILT_GAIN = 0.97  # undo a tilt only when it makes the bounding box at least 3% smaller
MIN_OBJECT_SHARE = 0.04  # an object whose longest edge is under 4% of the photo's is too small to classify
TRIM_SHARE = 0.1  # trim to what stands out by 10% of the object's contrast (as Fashion-MNIST's 28px did)
BAND = 0.08  # the border band the background is first fitted to, as a share of the shorter side
FIT_SIZE = 40  # the background surface is fitted on a copy this small: smooth, so nothing is lost
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, what Pillow's convert("L") uses
# An object stands out at a coarser scale too: over at least CORE_PIXELS pixels (at WORK_SIZE) once
# smoothed with a Gaussian of CORE_SIGMA pixels (images._has_core).
CORE_SIGMA, CORE_PIXELS = 2.0, 4

# What fashion_mnist_style does, step by step: the model card lists these for a model's users.
PREPROCESSING_STEPS = (
    "decode the image (PNG, JPEG, BMP, GIF, WebP, TIFF; 8- or 16-bit, palette); apply its EXIF orientation",
    "composite transparent pixels onto white (onto black when the opaque object is light)",
    f"area-average down to at most {WORK_SIZE} pixels on the longest edge; strip thin uniform frames",
    "fit the background as a smooth quadratic surface per colour channel to the border, robustly, then to "
    "every pixel that matches it (uneven light, vignetting, off-white and coloured backgrounds)",
    f"the object: pixels whose colour differs from the background surface by more than {MIN_CONTRAST:.0%} and "
    f"{NOISE_MARGIN:g} noise deviations; specks removed, parts closed; frames and components under 5% of the "
    "largest dropped; no object, one that does not stand out at a coarser scale too (noise), or one under 4% "
    "of the photo's size is 'no garment found'",
    "intensity: darkness relative to the local background luminance (lightness, when the object is lighter "
    "than its background), zero outside the object",
    "undo a tilt of up to 20 degrees (the rotation giving the tightest bounding box)",
    "trim to the object; resize the longest edge to 28 pixels (Lanczos), keeping the aspect ratio (no sharpening: "
    "it cost accuracy on rendered photos)",
    "centre on a 28x28 black canvas; stretch so the brightest pixel is 255 (as in Fashion-MNIST); 8-bit levels; "
    "divide by 255 -> float32 in [0, 1], shape (28, 28, 1)",
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


def to_data_url(x: np.ndarray) -> str:
    """A model input as a PNG data URL, for JSON answers and web pages."""
    return "data:image/png;base64," + base64.b64encode(to_png(x)).decode("ascii")


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
            image.draft(None, (WORK_SIZE, WORK_SIZE))  # JPEG: decode at a reduced scale, much faster
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no full-size copy
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP, TIFF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's own guard, for images far over our limit: the limit the user can look up is ours.
            raise ImageError(f"{name}: more pixels than the limit of {MAX_PIXELS:,} (a decompression bomb, or "
                             "a photo far larger than needed)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"{name}: broken or truncated image ({e})") from None
    return fashion_mnist_style(image, name)


def load(path: Path) -> np.ndarray:
    """Read an image file -> float32 (28, 28, 1)."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read it ({e.strerror})") from None
    return to_model_input_from_bytes(raw, str(path))


def fashion_mnist_style(image, name: str = "the image") -> np.ndarray:
    """A decoded PIL image -> float32 (28, 28, 1), following Fashion-MNIST's own conversion after
    the object has been separated from an ordinary photo's background. NoGarmentFound when there
    is no object to classify."""
    from PIL import Image

    rgb = _strip_frame(_working_rgb(image))
    background = _background_surface(rgb)
    mask, trim = _object_mask(rgb, background, name)
    intensity = _intensity(rgb, background, mask)
    intensity, trim = _upright(intensity, trim)
    rows, cols = np.nonzero(trim)
    intensity = intensity[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]  # trim to the object
    height, width = intensity.shape
    scale = SIZE / max(height, width)  # longest edge to 28, aspect ratio kept
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # No sharpening after it, unlike the paper: on 1,500 training images rendered as pack-shots, an
    # unsharp mask of 50% cost 1.2 points of accuracy and 100% cost 2.3 (Lanczos keeps edges crisp).
    small = Image.fromarray(np.round(intensity * 255).astype(np.uint8)).resize(new_size, Image.Resampling.LANCZOS)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - new_size[1]) // 2, (SIZE - new_size[0]) // 2
    canvas[top: top + new_size[1], left: left + new_size[0]] = np.asarray(small, np.float32)
    if canvas.max() <= 0:
        raise NoGarmentFound(f"{name}: no garment found (the object vanished at 28x28 pixels)")
    canvas = np.round(canvas / canvas.max() * 255.0)  # Fashion-MNIST's images reach 255 (99% of them)
    return (canvas / 255.0).astype(np.float32).reshape(SIZE, SIZE, 1)


def _working_rgb(image) -> np.ndarray:
    """Any PIL image -> float32 (H, W, 3) in [0, 1], WORK_SIZE on its longest edge (area averaging
    on the way down), tiny images enlarged so the shorter edge has 2*SIZE pixels to work on."""
    from PIL import Image

    image = _shrunk(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float grayscale: Pillow's convert("L") clips at 255, so scale by the depth here.
        gray = np.asarray(image, np.float32)
        depth = 65535.0 if image.mode.startswith("I;16") or gray.max() > 255 else 255.0
        channels = [Image.fromarray(gray, mode="F")] * 3
    else:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = _flatten_transparency(image.convert("RGBA"))
        depth = 255.0
        channels = [c.convert("F") for c in image.convert("RGB").split()]
    width, height = image.size
    scale = WORK_SIZE / max(width, height)
    if min(width, height) * scale < 2 * SIZE:  # a thin strip or a thumbnail; capped for extreme strips
        scale = min(2 * SIZE / min(width, height), 4 * WORK_SIZE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    rgb = np.stack([np.asarray(c.resize(size, resample), np.float32) for c in channels], axis=-1)
    return np.clip(rgb / depth, 0.0, 1.0)


def _shrunk(image):
    """An 8-bit image far larger than the working size, box-averaged down to twice it while still 8-bit:
    the float channels below would otherwise take 12 bytes a pixel at full size (a 40-megapixel PNG,
    the most we accept, cost 580 MiB above its decoded pixels; a highly compressible one can be a
    130 KB upload). Pillow premultiplies alpha when it resizes, so a cut-out's edges keep their colour."""
    from PIL import Image

    width, height = image.size
    if max(width, height) <= SHRINK_ABOVE * WORK_SIZE or image.mode not in ("L", "RGB", "RGBA", "LA", "P"):
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    scale = 2 * WORK_SIZE / max(width, height)
    if min(width, height) * scale < 4 * SIZE:  # a thin strip keeps what _working_rgb enlarges it from
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def _flatten_transparency(rgba):
    """A cut-out on white, as catalogue photos were; a light object goes on black instead, so it
    stays visible."""
    from PIL import Image

    pixels = np.asarray(rgba, np.float32)
    opaque = pixels[..., 3] > 127
    light = opaque.any() and pixels[opaque][:, :3].mean() > 170
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light else (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _strip_frame(rgb: np.ndarray) -> np.ndarray:
    """Peel a drawn frame or a scanner's border: thin uniform lines (at most 6% of the size) that
    differ from what lies just inside them, on at least three sides (one uniform edge alone is
    more likely an object touching it, such as a shoe's sole)."""
    limit = max(1, round(0.06 * min(rgb.shape[:2])))
    depths = []
    for side in range(4):  # each side turned to the top in turn
        view = np.rot90(rgb, side)
        inner = np.median(view[limit: limit + 2, limit:-limit].reshape(-1, 3), axis=0)
        depth = 0
        while depth < limit:
            line = view[depth, limit:-limit]  # its ends cross the frame's other sides
            if line.std(axis=0).max() > 0.06 or np.abs(line.mean(axis=0) - inner).max() < 0.12:
                break
            depth += 1
        depths.append(depth)
    if sum(d > 0 for d in depths) < 3:
        return rgb
    top, right, bottom, left = depths  # np.rot90 turns anticlockwise: the right side comes to the top first
    return rgb[top: rgb.shape[0] - bottom, left: rgb.shape[1] - right]


def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres scaled to [-1, 1]: the same surface fits any resolution of the photo."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    return np.meshgrid(y, x, indexing="ij")


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


@functools.lru_cache(maxsize=64)
def _surface_terms(height: int, width: int) -> np.ndarray:
    """The quadratic terms at every pixel of an image this size (read-only): photos of one size,
    a service's usual case, share them (0.3 ms a photo to build)."""
    terms = _quadratic_terms(*_coordinates(height, width))
    terms.flags.writeable = False
    return terms


def _border_band(height: int, width: int) -> np.ndarray:
    depth = max(1, round(BAND * min(height, width)))
    band = np.zeros((height, width), bool)
    band[:depth], band[-depth:], band[:, :depth], band[:, -depth:] = True, True, True, True
    return band


def _background_surface(rgb: np.ndarray) -> np.ndarray:
    """The background as a smooth quadratic surface per channel. Fitted on a coarse copy: first
    a plane through the four corners (pack-shots leave them empty), then, step by step, to the
    pixels of the border band that match the fit (dropping the object and shadows where they
    reach the border), and last to every matching pixel, so it follows the light under the object."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = min(1.0, FIT_SIZE / max(height, width))
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    coarse = np.stack([np.asarray(Image.fromarray(rgb[..., c]).resize(size, Image.Resampling.BOX))
                       for c in range(3)], axis=-1)
    terms = _surface_terms(*coarse.shape[:2])
    band = _border_band(*coarse.shape[:2])
    # The seed: the commonest colour along the border (an object may fill some corners, even most).
    levels = np.clip(coarse[band] * 8, 0, 7).astype(int) @ np.array([64, 8, 1])
    seed = np.median(coarse[band][levels == np.bincount(levels).argmax()], axis=0)
    k = max(1, round(0.1 * min(coarse.shape[:2])))
    corners = np.array([np.median(patch.reshape(-1, 3), axis=0) for patch in
                        (coarse[:k, :k], coarse[:k, -k:], coarse[-k:, :k], coarse[-k:, -k:])])
    empty = np.abs(corners - seed).max(axis=1) < 0.2
    coefficients = np.zeros((6, 3), np.float32)  # the surface's: constant, x, y, x*x, x*y, y*y per channel
    if empty.sum() >= 3:  # a plane through the empty corners: the light's first-order fall-off
        at_corner = _quadratic_terms(np.array([-1, -1, 1, 1.0]), np.array([-1, 1, -1, 1.0]))[empty, :3]
        coefficients[:3] = np.linalg.lstsq(at_corner, corners[empty], rcond=None)[0]
    else:
        coefficients[0] = seed
    surface = terms @ coefficients
    for step in range(4):
        residual = _channel_max(np.abs(coarse - surface))
        region = band if step < 3 else np.ones_like(band)
        near = residual[band & (residual < 0.12)] if (band & (residual < 0.12)).any() else residual[band]
        spread = 1.4826 * np.median(np.abs(near - np.median(near)))
        samples = region & (residual < max(3 * spread, 0.04 if step else 0.12))
        if samples.sum() < 12:  # too little looks like background: keep what we have
            break
        coefficients = np.linalg.lstsq(terms[samples], coarse[samples], rcond=None)[0]
        surface = terms @ coefficients
    return np.clip(_surface_terms(height, width) @ coefficients, 0.0, 1.0)


def _object_mask(rgb: np.ndarray, background: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that differ from the background by more than noise (specks removed, parts closed,
    frames and scraps dropped), and the bounding box to trim to: the part of it that stands out
    by at least TRIM_SHARE of the object's contrast, so a blur halo or faint shadow is not trimmed
    into the picture. NoGarmentFound when nothing (big enough) is left."""
    from scipy import ndimage

    distance = ndimage.gaussian_filter(_channel_max(np.abs(rgb - background)), 1.0)
    height, width = distance.shape
    # The smoothing above cuts the noise in `distance` to about a quarter of the pixels'.
    threshold = max(MIN_CONTRAST, NOISE_MARGIN * 0.28 * _noise_level(rgb))
    mask = distance > threshold
    mask = _dilated(_eroded(mask))  # an opening: specks go
    mask = _eroded(_eroded(_dilated(_dilated(mask)))) | mask  # a closing: gaps between parts close
    labels, count = ndimage.label(mask)
    boxes = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    parts = [i for i in range(count) if not _is_frame(boxes[i], areas[i], height, width)]
    if not _has_core(rgb - background, labels, boxes, parts, threshold):
        raise NoGarmentFound(f"{name}: no garment found (the image is blank, uniform or noise)")
    largest = max((areas[i] for i in parts), default=0)
    keep = np.isin(labels, [i + 1 for i in parts if areas[i] >= 0.05 * largest])
    if not keep.any():
        raise NoGarmentFound(f"{name}: no garment found (the image is blank, uniform or noise)")
    strong = keep & (distance >= TRIM_SHARE * np.percentile(distance[keep], 95))
    rows, cols = np.nonzero(strong if strong.any() else keep)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    if extent < MIN_OBJECT_SHARE * max(height, width):
        raise NoGarmentFound(f"{name}: no garment found (the only object is {extent / max(height, width):.0%} "
                             f"of the photo's size, under {MIN_OBJECT_SHARE:.0%})")
    return keep, strong if strong.any() else keep


def _has_core(residual: np.ndarray, labels: np.ndarray, boxes: list, parts: list[int], threshold: float) -> bool:
    """Whether any of the parts stands out at a coarser scale too, each colour channel's difference
    from the background smoothed with its sign: a garment, darker or lighter than its background
    throughout, does; fine noise, lighter and darker by turns (colour noise, a white page sprinkled
    with black specks), averages out, however many blobs it leaves at the finer scale."""
    from scipy import ndimage

    if not parts:
        return False
    # Only the parts' pixels count: smoothed within their bounding box and the Gaussian's reach
    # around it (scipy's radius), each of them gets exactly the value it would in the whole photo.
    reach = int(4.0 * CORE_SIGMA + 0.5)
    top, left = (max(0, min(boxes[i][axis].start for i in parts) - reach) for axis in (0, 1))
    bottom, right = (min(labels.shape[axis], max(boxes[i][axis].stop for i in parts) + reach) for axis in (0, 1))
    # Channels first: numpy reduces a leading axis of 3 several times faster than a trailing one.
    smoothed = ndimage.gaussian_filter(np.moveaxis(residual[top:bottom, left:right], -1, 0),
                                       (0.0, CORE_SIGMA, CORE_SIGMA))
    labels = labels[top:bottom, left:right]
    core_pixels = np.bincount(labels[(np.abs(smoothed) > threshold).any(axis=0)], minlength=labels.max() + 1)
    return bool(np.any(core_pixels[[i + 1 for i in parts]] >= CORE_PIXELS))


def _dilated(mask: np.ndarray) -> np.ndarray:
    """A mask dilated by one pixel up, down, left and right (scipy.ndimage.binary_dilation's default
    cross, nothing outside the image), in numpy: scipy's took 0.1 ms for these 160x160 masks, nearly
    all of it its own checks and set-up, and a request makes eight such passes."""
    dilated = mask.copy()
    dilated[1:] |= mask[:-1]
    dilated[:-1] |= mask[1:]
    dilated[:, 1:] |= mask[:, :-1]
    dilated[:, :-1] |= mask[:, 1:]
    return dilated


def _eroded(mask: np.ndarray) -> np.ndarray:
    """A mask eroded by the same cross (scipy.ndimage.binary_erosion's default: what lies outside the
    image counts as empty, so the edge pixels go)."""
    kept = mask.copy()
    kept[1:] &= mask[:-1]
    kept[:-1] &= mask[1:]
    kept[:, 1:] &= mask[:, :-1]
    kept[:, :-1] &= mask[:, 1:]
    kept[0], kept[-1], kept[:, 0], kept[:, -1] = False, False, False, False
    return kept


def _channel_max(pixels: np.ndarray) -> np.ndarray:
    """The largest of each pixel's three channels: numpy's max over a trailing axis of 3 took 0.8 ms
    at the working size, 1.3 ms of a service request in all; this, 0.02 ms."""
    return np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])


def _noise_level(rgb: np.ndarray) -> float:
    """Sensor noise (a standard deviation) from neighbouring pixels' differences: edges are too
    few to move the median."""
    return float(1.4826 * np.median(np.abs(np.diff(rgb @ LUMA, axis=1))) / np.sqrt(2))


def _is_frame(box, area: float, height: int, width: int) -> bool:
    """A thin line or ring hugging the edges: spans nearly the whole photo but fills little of it."""
    rows, cols = box
    spans = (rows.stop - rows.start >= 0.9 * height) + (cols.stop - cols.start >= 0.9 * width)
    touches = rows.start <= 1 or cols.start <= 1 or rows.stop >= height - 1 or cols.stop >= width - 1
    return spans >= 1 and touches and area < 0.25 * (rows.stop - rows.start) * (cols.stop - cols.start)


def _intensity(rgb: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """How dark the object is against its local background (flat-field: the background's own
    light divides out), or how light, when it is lighter than the background on the whole;
    zero outside the (slightly widened) object."""
    luminance = rgb @ LUMA
    background_luminance = background @ LUMA
    darker = background_luminance - luminance
    if darker[mask].mean() >= 0:
        intensity = darker / np.maximum(background_luminance, 0.05)
    else:
        intensity = -darker / np.maximum(1.0 - background_luminance, 0.05)
    return np.clip(intensity, 0, 1) * _dilated(mask)



def _upright(intensity: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo a small tilt: rotate by the angle (within TILTS) whose bounding box of the object is
    tightest, when it is clearly tighter than upright's (pack-shots stand upright; shoes too have
    an upright box though their long axis slopes)."""
    from PIL import Image

    rows, cols = np.nonzero(mask & ~_eroded(mask))  # the outline decides the box
    radians = np.radians(TILTS)[:, None]
    x = cols * np.cos(radians) - rows * np.sin(radians)
    y = cols * np.sin(radians) + rows * np.cos(radians)
    areas = np.ptp(x, axis=1) * np.ptp(y, axis=1)
    best = int(np.argmin(areas))
    if areas[best] > TILT_GAIN * areas[np.flatnonzero(TILTS == 0)[0]]:
        return intensity, mask

    def turn(a: np.ndarray) -> np.ndarray:
        image = Image.fromarray(a.astype(np.float32), mode="F")
        return np.asarray(image.rotate(-TILTS[best], resample=Image.Resampling.BILINEAR, expand=True))

    return turn(intensity), turn(mask) > 0.5


def expand_inputs(paths) -> list[Path]:
    """Files as given; folders replaced by the image files inside them (sorted, recursively)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found
