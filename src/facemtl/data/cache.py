"""Decode and frame each image once into a uint8 array of context crops, cached on disk (memory-mapped).

Two CPU cores should train the model, not decode JPEGs and run detectors: an epoch reads crops from the
cache. Every record's crop is made by :func:`facemtl.preprocess.frame_face_crop` (pad, detect, align,
canonical crop with a context margin), the very code the ``none`` detector runs at inference, so the
model trains on the framing it will see. Whether a face was found is stored beside the crops.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..crop import DEFAULT_GEOMETRY, CropGeometry
from ..errors import InvalidInputError
from ..image import load_image
from ..preprocess import DEFAULT_FRAMING, FRAMING_VERSION, Framing, context_size, frame_face_crop
from .datasets import Record

__all__ = ["default_cache_dir", "build_cache", "decode_record", "framing_detector", "CachedCrops"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACEMTL_CACHE", Path.home() / ".cache" / "facemtl"))


_DETECTORS = threading.local()


def framing_detector(framing: Framing = DEFAULT_FRAMING):
    """The detector that frames face crops, one per thread and setting (sessions are built once per thread);
    None for a framing without detection (legacy)."""
    if not framing.uses_detector:
        return None
    cache = getattr(_DETECTORS, "by_name", None)
    if cache is None:
        cache = _DETECTORS.by_name = {}
    key = (framing.detector, framing.min_score)
    if key not in cache:
        from ..detect import create_detector

        # One session per thread (this cache is thread-local), each single-threaded: the callers frame crops in
        # parallel threads, and one multi-threaded session per thread would oversubscribe the cores.
        threads = {"num_threads": 1} if framing.detector in ("retinaface", "blazeface") else {}
        cache[key] = create_detector(framing.detector, min_score=framing.min_score, **threads)
    return cache[key]


def decode_record(r: Record, size: int, geometry: CropGeometry = DEFAULT_GEOMETRY,
                  framing: Framing = DEFAULT_FRAMING, with_context: bool = False) -> tuple[np.ndarray, bool]:
    """(crop, face found) of a record: the canonical (size, size, 3) uint8 crop, or with ``with_context``
    the context crop the training cache stores."""
    img = load_image(r.image_source())
    crop, det = frame_face_crop(img, framing_detector(framing), size, geometry, framing, with_context)
    return crop, det is not None


class CachedCrops:
    """Context crops (N, S, S, 3) uint8 (memory-mapped), ``ok`` (readable) and ``found`` (a face was
    detected in the image) flags, for records in a fixed order."""

    def __init__(self, images: np.ndarray, ok: np.ndarray, found: np.ndarray) -> None:
        self.images, self.ok, self.found = images, ok, found


def _key(records: list[Record], size: int, geometry: CropGeometry, framing: Framing) -> str:
    desc = json.dumps({"v": FRAMING_VERSION, "size": size, "geometry": geometry.to_dict(),
                       "framing": framing.to_dict()}, sort_keys=True)
    return hashlib.sha1((desc + "|" + "|".join(r.compute_digest() for r in records)).encode()).hexdigest()[:16]


def build_cache(records: list[Record], size: int, cache_dir: Path | None = None, workers: int = 2,
                geometry: CropGeometry = DEFAULT_GEOMETRY, framing: Framing = DEFAULT_FRAMING,
                progress: bool = False) -> CachedCrops:
    """Context crops of every record, built once and reused (keyed by the records' digests, the input size,
    the geometry and the framing). Unreadable images are marked not ok (their rows are blank)."""
    cache_dir = cache_dir or default_cache_dir()
    key = _key(records, size, geometry, framing)
    side = context_size(size, framing.context)
    stem = cache_dir / f"crops-{size}-{key}"
    path, flags_path = stem.with_suffix(".npy"), stem.with_suffix(".flags.npy")
    if path.exists() and flags_path.exists():
        flags = np.load(flags_path)
        return CachedCrops(np.load(path, mmap_mode="r"), flags[0], flags[1])
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_suffix(".tmp.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(records), side, side, 3))
    ok = np.ones(len(records), dtype=bool)
    found = np.zeros(len(records), dtype=bool)

    def work(i: int, out: np.ndarray = arr) -> None:
        try:
            out[i], found[i] = decode_record(records[i], size, geometry, framing, with_context=True)
        except (InvalidInputError, OSError, KeyError) as exc:
            ok[i] = False
            log.warning("skipping unreadable image %s: %s", records[i].key, exc)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc=f"framing {records[0].source if records else ''} crops", unit="img")
    with ThreadPoolExecutor(max(1, workers)) as ex:
        for _ in ex.map(work, range(len(records))):
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    arr.flush()
    del arr
    np.save(flags_path, np.stack([ok, found]))
    os.replace(tmp, path)
    return CachedCrops(np.load(path, mmap_mode="r"), ok, found)
