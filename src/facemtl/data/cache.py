"""Decode each image once into a uint8 array of canonical crops, cached on disk (memory-mapped).

Two CPU cores should train the model, not decode JPEGs: an epoch reads crops from the cache.
Each source keeps its native resolution up to the model's input size (FER2013 stays 48 px); the
batch transform resamples to the input size.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..crop import crop_face
from ..errors import InvalidInputError
from ..image import load_image
from .datasets import Record

__all__ = ["default_cache_dir", "build_cache", "decode_record"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACEMTL_CACHE", Path.home() / ".cache" / "facemtl"))


def decode_record(r: Record, size: int) -> np.ndarray:
    """The canonical crop (size, size, 3) uint8 of a record (whole image = face crop)."""
    img = load_image(r.pixels if r.pixels is not None else r.path)  # type: ignore[arg-type]
    return crop_face(img, None, size=size)


def build_cache(records: list[Record], size: int, cache_dir: Path | None = None,
                workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (N, size, size, 3) uint8, ok (N,) bool); unreadable images are marked not ok.

    The array is stored under ``cache_dir`` keyed by the records' digests and size, and reused.
    """
    cache_dir = cache_dir or default_cache_dir()
    key = hashlib.sha1((f"{size}|" + "|".join(r.compute_digest() for r in records)).encode()).hexdigest()[:16]
    path, ok_path = cache_dir / f"crops-{size}-{key}.npy", cache_dir / f"crops-{size}-{key}.ok.npy"
    if path.exists() and ok_path.exists():
        return np.load(path, mmap_mode="r"), np.load(ok_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(records), size, size, 3))
    ok = np.ones(len(records), dtype=bool)

    def work(i: int, out: np.ndarray = arr) -> None:
        try:
            out[i] = decode_record(records[i], size)
        except InvalidInputError as exc:
            ok[i] = False
            log.warning("skipping unreadable image: %s", exc)

    with ThreadPoolExecutor(max(1, workers)) as ex:
        list(ex.map(work, range(len(records))))
    arr.flush()
    del arr
    np.save(ok_path, ok)
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r"), ok
