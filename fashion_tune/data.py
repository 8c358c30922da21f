"""Fashion-MNIST: find it, download it, verify it, read it, and prepare it (data.prepare).

Where the files are, in order: `data_dir` (the --data-dir option), the FASHION_TUNE_DATA
environment variable, Keras's own cache (~/.keras/datasets/fashion-mnist, where
keras.datasets.fashion_mnist keeps them), and last a download into that cache from the
official mirrors, each file checked against its published SHA-256.

A folder may hold the four official IDX files (.gz, as published) or the Kaggle CSV layout
(fashion-mnist_train.csv / fashion-mnist_test.csv: a `label` column, then 784 pixel columns).

prepare() is the one way every step (search, retrain, lr-find, baselines) turns DataSettings into
model-ready training and validation arrays. No TensorFlow and no Ray here: arrays in, arrays out.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fashion_tune.config import DataSettings
from fashion_tune.errors import UserError

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SHAPE = (28, 28, 1)
TEST_IMAGES = 10_000  # the official test set, scored once, at the end

# The official files and their SHA-256 (the MD5s Zalando publishes match these same bytes).
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
}
KAGGLE_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}
MIRRORS = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras's mirror
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own
)
ENV_VAR = "FASHION_TUNE_DATA"
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801


class DataError(UserError):
    """Missing, corrupt or malformed data files."""


@dataclass(frozen=True)
class FashionMNIST:
    """The raw dataset: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # the folder it was read from
    checksums: dict  # file name -> SHA-256 of the files read


@dataclass(frozen=True)
class Splits:
    """Model-ready training arrays, and the validation slice held out from them. Never the test set."""

    x_train: np.ndarray  # float32 (N, 28, 28, 1) in [0, 1]
    y_train: np.ndarray  # int32 (N,)
    x_val: Optional[np.ndarray]  # None when nothing was held out
    y_val: Optional[np.ndarray]
    source: str  # the folder the images were read from
    checksums: dict  # file name -> SHA-256 of the files read
    x_train_photos: Optional[np.ndarray] = None  # x_train's photo views, when added (photo_views.with_views)

    @property
    def validation(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        return None if self.x_val is None else (self.x_val, self.y_val)

    def describe(self) -> str:
        held_out = f" and {len(self.y_val)} validation" if self.y_val is not None else ""
        return f"{len(self.y_train)} training{held_out} images"

    def photo_views_for(self, photo_share: float) -> Optional[np.ndarray]:
        """The photo views a fit with this photo_share shows (None when it shows none)."""
        if not photo_share:
            return None
        if self.x_train_photos is None:
            raise ValueError(f"photo_share is {photo_share}, but these splits were prepared without photo views")
        return self.x_train_photos


# ----------------------------------------------------------------------------- locating


def keras_cache_dir() -> Path:
    """Where keras.datasets.fashion_mnist keeps the files (KERAS_HOME respected)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "fashion-mnist"


def _format_of(folder: Path) -> Optional[str]:
    """'idx', 'csv' or None, by which complete set of files the folder holds."""
    if all((folder / name).is_file() for name, _ in IDX_FILES.values()):
        return "idx"
    if all((folder / name).is_file() for name in KAGGLE_FILES.values()):
        return "csv"
    return None


def _expected_files() -> str:
    idx = ", ".join(name for name, _ in IDX_FILES.values())
    return f"{idx} (or the Kaggle CSVs {' and '.join(KAGGLE_FILES.values())})"


def locate(data_dir: Optional[str] = None, download: bool = True, mirrors: Sequence[str] = MIRRORS) -> Path:
    """Return the folder to read Fashion-MNIST from; download into Keras's cache as a last resort."""
    if data_dir:
        folder = Path(data_dir).expanduser()
        if _format_of(folder) is None:
            raise DataError(f"--data-dir {folder}: expected {_expected_files()} there")
        return folder
    env = os.environ.get(ENV_VAR)
    if env:
        folder = Path(env).expanduser()
        if _format_of(folder) is None:
            raise DataError(f"{ENV_VAR}={env}: expected {_expected_files()} there")
        return folder
    cache = keras_cache_dir()
    if _format_of(cache) is not None:
        return cache
    if not download:
        raise DataError(f"no Fashion-MNIST files found; point --data-dir or {ENV_VAR} at a folder with "
                        f"{_expected_files()}")
    try:
        fetch(cache, mirrors)
    except DataError as e:
        raise DataError(
            f"{e}; with no network, put {_expected_files()} in a folder and pass --data-dir or set {ENV_VAR}"
        ) from None
    return cache


def recorded_folder(folder: Optional[str], recorded_by: str) -> Optional[str]:
    """A data folder an earlier step recorded (a study, a retrain), if it is on this machine;
    else None, so the usual places are searched (a study run elsewhere, or a folder since moved)."""
    if folder and not Path(folder).is_dir():
        log.info("the data folder %s that %s read is not here; looking in the usual places", folder, recorded_by)
        return None
    return folder


def fetch(dest: Path, mirrors: Sequence[str] = MIRRORS, timeout: float = 60.0) -> None:
    """Download the official files into dest, verifying each; a file already there and valid is kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, sha256 in IDX_FILES.values():
        target = dest / name
        if target.is_file() and file_sha256(target) == sha256:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _download_verified(url, target, sha256, timeout)
                break
            except (OSError, urllib.error.URLError, DataError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
        else:
            raise DataError(f"could not download {name} ({'; '.join(errors)})")


def _download_verified(url: str, target: Path, sha256: str, timeout: float) -> None:
    log.info("downloading %s", url)
    # Write beside the target and rename only once verified: no half-written file is ever read.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name, suffix=".part", delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, tmp)
            tmp.close()
            got = file_sha256(Path(tmp.name))
            if got != sha256:
                raise DataError(f"checksum mismatch (sha256 {got}, expected {sha256})")
            os.replace(tmp.name, target)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): images (N, 28, 28) or labels (N,), uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it as {'gzip' if opener is gzip.open else 'IDX'} ({e})") from None
    if len(data) < 8:
        raise DataError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if magic == _IDX_IMAGES:
        rows, cols = struct.unpack(">II", data[8:16])
        header, shape = 16, (count, rows, cols)
    elif magic == _IDX_LABELS:
        header, shape = 8, (count,)
    else:
        raise DataError(f"{path}: not an IDX image or label file (magic number {magic:#010x})")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path}: holds {len(data)} bytes, its header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_kaggle_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the Kaggle layout: a header line, then `label,pixel1..pixel784` per image."""
    with open(path, "r", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
        if len(header) != 785 or header[0] != "label":
            raise DataError(f"{path}: expected a header 'label,pixel1,...,pixel784' (785 columns), "
                            f"got {len(header)} columns")
        try:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
        except ValueError as e:
            raise DataError(f"{path}: not a table of integers ({e})") from None
    if table.shape[1] != 785:
        raise DataError(f"{path}: rows have {table.shape[1]} columns, expected 785")
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: labels must be 0 to 9")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{path}: pixel values must be 0 to 255")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def load(data_dir: Optional[str] = None, **locate_kwargs) -> FashionMNIST:
    """Find, verify and read the whole dataset."""
    folder = locate(data_dir, **locate_kwargs)
    if _format_of(folder) == "idx":
        arrays, checksums = {}, {}
        for key, (name, sha256) in IDX_FILES.items():
            path = folder / name
            checksums[name] = file_sha256(path)
            if checksums[name] != sha256:
                raise DataError(
                    f"{path}: checksum mismatch (sha256 {checksums[name]}, expected {sha256}); "
                    f"the file is corrupt or not the official one: delete it and download it again"
                )
            arrays[key] = read_idx(path)
    else:
        (train_x, train_y), (test_x, test_y) = (read_kaggle_csv(folder / KAGGLE_FILES[k]) for k in ("train", "test"))
        arrays = dict(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y)
        checksums = {name: file_sha256(folder / name) for name in KAGGLE_FILES.values()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"{folder}: {part} images {images.shape} do not match labels {labels.shape}")
    return FashionMNIST(**arrays, source=str(folder), checksums=checksums)


# ----------------------------------------------------------------------------- preparing


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) scaled to [0, 1]."""
    return (images.astype(np.float32) / 255.0).reshape((-1,) + IMAGE_SHAPE)


def prepare(settings: DataSettings, validation: bool = True, dataset: Optional[FashionMNIST] = None) -> Splits:
    """The training images `settings` name (all 60,000, or a stratified subset), with a stratified
    share of settings.val_fraction held out for validation when `validation`; seeded by settings.seed.

    The one data preparation of search, retrain, lr-find and baselines. The 10,000 test images are
    not touched: they are kept for the final evaluation. `dataset`: already loaded (else loaded here).
    """
    from sklearn.model_selection import train_test_split

    dataset = dataset or load(settings.data_dir)
    images, labels = dataset.train_images, dataset.train_labels
    if settings.subset is not None and settings.subset < len(labels):
        images, _, labels, _ = train_test_split(images, labels, train_size=settings.subset, stratify=labels,
                                                random_state=settings.seed)
    x_val = y_val = None
    if validation:
        images, x_val, labels, y_val = train_test_split(images, labels, test_size=settings.val_fraction,
                                                        stratify=labels, random_state=settings.seed)
        x_val, y_val = to_model_input(x_val), y_val.astype(np.int32)
    return Splits(x_train=to_model_input(images), y_train=labels.astype(np.int32), x_val=x_val, y_val=y_val,
                  source=dataset.source, checksums=dataset.checksums)
