"""Reading, verifying, locating and downloading Fashion-MNIST; the stratified subset and split."""

import functools
import gzip
import http.server
import shutil
import struct
import threading

import numpy as np
import pytest

from fashion_tune import data
from fashion_tune.config import DataSettings
from fashion_tune.data import DataError


def write_idx(path, array, labels=False):
    """Write an IDX file (gzipped when path ends in .gz), as the official files are made."""
    header = struct.pack(">II", 0x801, len(array)) if labels else struct.pack(">IIII", 0x803, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if str(path).endswith(".gz") else open)(path, "wb").write(payload)


def synthetic(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def test_read_idx_images_and_labels(tmp_path):
    images, labels = synthetic()
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "l", labels, labels=True)  # uncompressed works too
    assert np.array_equal(data.read_idx(tmp_path / "i.gz"), images)
    assert np.array_equal(data.read_idx(tmp_path / "l"), labels)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    images, _ = synthetic()
    write_idx(tmp_path / "i", images)
    (tmp_path / "short").write_bytes((tmp_path / "i").read_bytes()[:-10])
    with pytest.raises(DataError, match=r"short: holds \d+ bytes, its header promises \d+"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"x\.gz: cannot read it as gzip"):
        data.read_idx(tmp_path / "x.gz")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError, match="not an IDX image or label file"):
        data.read_idx(tmp_path / "png")


def write_kaggle(folder, n=30):
    for part, name in data.KAGGLE_FILES.items():
        images, labels = synthetic(n, seed=len(part))
        rows = np.column_stack([labels, images.reshape(n, -1)])
        header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
        np.savetxt(folder / name, rows, fmt="%d", delimiter=",", header=header, comments="")
    return synthetic(n, seed=len("train"))


def test_kaggle_csv_layout(tmp_path):
    images, labels = write_kaggle(tmp_path)
    dataset = data.load(str(tmp_path))
    assert np.array_equal(dataset.train_images, images) and np.array_equal(dataset.train_labels, labels)
    assert dataset.test_images.shape == (30, 28, 28)


def test_kaggle_csv_bad_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"bad\.csv: expected a header 'label,pixel1,...,pixel784'"):
        data.read_kaggle_csv(path)


def copy_official(fashion_dir, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for name, _ in data.IDX_FILES.values():
        shutil.copy(fashion_dir / name, dest / name)
    return dest


def test_real_files_load_with_verified_checksums(fashion_dir):
    dataset = data.load(str(fashion_dir))
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.test_images.shape == (10000, 28, 28)
    assert np.bincount(dataset.train_labels).tolist() == [6000] * 10
    assert dataset.checksums == {name: sha for name, sha in data.IDX_FILES.values()}


def test_corrupted_file_gives_checksum_error(fashion_dir, tmp_path):
    folder = copy_official(fashion_dir, tmp_path / "copy")
    target = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError,
                       match=r"train-labels-idx1-ubyte\.gz: checksum mismatch .*delete it and download it again"):
        data.load(str(folder))


def test_locate_order(fashion_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError, match=r"--data-dir .*empty: expected train-images-idx3-ubyte\.gz"):
        data.locate(str(tmp_path / "empty"))
    monkeypatch.setenv(data.ENV_VAR, str(fashion_dir))
    assert data.locate() == fashion_dir  # the environment variable
    assert data.locate(str(fashion_dir)) == fashion_dir  # the option
    monkeypatch.delenv(data.ENV_VAR)
    cache = copy_official(fashion_dir, tmp_path / "keras" / "datasets" / "fashion-mnist")
    assert data.locate(download=False) == cache  # Keras's own cache


@pytest.fixture
def mirror(fashion_dir, tmp_path):
    """A real HTTP server on loopback serving a folder: the download code's mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_and_fills_the_keras_cache(fashion_dir, mirror, tmp_path, monkeypatch):
    root, url = mirror
    copy_official(fashion_dir, root)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    dead = "http://127.0.0.1:9/"  # nothing listens there: the next mirror is tried
    folder = data.locate(mirrors=[dead, url])
    assert folder == tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, _ in data.IDX_FILES.values())


def test_download_rejects_a_corrupt_mirror_and_leaves_nothing(fashion_dir, mirror, tmp_path, monkeypatch):
    root, url = mirror
    copy_official(fashion_dir, root)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError,
                       match=r"train-labels-idx1-ubyte\.gz .*checksum mismatch.*--data-dir or set FASHION_TUNE_DATA"):
        data.locate(mirrors=[url])
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert not list(cache.glob("*.part")) and not (cache / "train-labels-idx1-ubyte.gz").exists()


def test_no_network_no_files_names_files_and_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(DataError) as err:
        data.locate(mirrors=["http://127.0.0.1:9/"])
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "--data-dir" in message and "FASHION_TUNE_DATA" in message
    assert "\n" not in message


def fake_dataset(n=1000):
    images, labels = synthetic(n)
    return data.FashionMNIST(images, labels, images[:10], labels[:10], source="synthetic", checksums={})


def test_split_is_stratified_seeded_and_disjoint():
    dataset = fake_dataset(1000)
    splits = data.prepare(DataSettings(val_fraction=0.1, seed=0), dataset=dataset)
    assert (len(splits.y_train), len(splits.y_val)) == (900, 100)
    assert np.bincount(splits.y_val).tolist() == [10] * 10
    assert splits.x_train.dtype == np.float32 and splits.x_train.shape[1:] == (28, 28, 1)
    assert 0.0 <= splits.x_train.min() and splits.x_train.max() <= 1.0
    train_rows = {row.tobytes() for row in splits.x_train}
    assert not any(row.tobytes() in train_rows for row in splits.x_val)
    again = data.prepare(DataSettings(val_fraction=0.1, seed=0), dataset=dataset)
    assert np.array_equal(again.x_val, splits.x_val)
    other = data.prepare(DataSettings(val_fraction=0.1, seed=1), dataset=dataset)
    assert not np.array_equal(other.x_val, splits.x_val)


def test_subset_keeps_class_balance():
    splits = data.prepare(DataSettings(subset=500, val_fraction=0.2, seed=0), dataset=fake_dataset(1000))
    assert len(splits.y_train) + len(splits.y_val) == 500
    assert np.bincount(splits.y_train).tolist() == [40] * 10
