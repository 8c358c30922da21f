"""Writers that never leave half a file: write beside the target, then rename over it.

A reader (another command, a person, a crashed run resumed) sees the old file or the new one,
never a torn one. Every report, record and model fashion_tune writes goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator


def partial_path(path: Path) -> Path:
    """Where a file is written before it is renamed to `path`: hidden beside it, named for this
    process and thread (two writers of one file never share it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    # open() rather than a temporary file: the file gets the usual permissions (umask), not 0600.
    partial = partial_path(path)
    try:
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_model(model, path: Path) -> None:
    """Save a Keras model; Keras wants a .keras name, so the partial file keeps that suffix."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial.keras")
    model.save(partial)
    os.replace(partial, path)


@contextlib.contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """Build a folder's contents in a staging folder beside `dest`; on success it replaces `dest`
    (and whatever was there), on failure it is removed and `dest` is left as it was."""
    dest = Path(dest)
    staging, replaced = dest.with_name(f".{dest.name}.partial"), dest.with_name(f".{dest.name}.replaced")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if not dest.exists():
            os.replace(staging, dest)
            return
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(dest, replaced)  # moved aside, not deleted, until the new one is in place
        try:
            os.replace(staging, dest)
        except BaseException:
            os.replace(replaced, dest)
            raise
        shutil.rmtree(replaced)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
