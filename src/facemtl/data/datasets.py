"""Dataset adapters for the native layouts: raw dataset codes -> label names -> indices via TaskSpec.

Every adapter returns a :class:`DatasetIndex`: a list of :class:`Record` (one image each, with
whatever labels that dataset has; missing labels are None) plus counts of what was skipped and why.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
import threading
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, unknown_name
from ..image import IMAGE_EXTENSIONS
from ..tasks import get_task, list_tasks

__all__ = ["Record", "DatasetIndex", "target_arrays", "extra_targets", "load_utkface", "load_fer2013", "load_manifest",
           "load_fairface", "load_celeba_gender", "UTKFACE_GENDER", "UTKFACE_RACE", "FER2013_EMOTIONS",
           "FAIRFACE_RACE", "FAIRFACE_AGE", "FERPLUS_TO_EMOTION", "deduplicate"]

log = logging.getLogger(__name__)

# Raw dataset codes -> label names (names are then mapped to indices through the TaskSpec).
UTKFACE_GENDER = {0: "male", 1: "female"}
UTKFACE_RACE = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"}
FER2013_EMOTIONS = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
# FairFace's seven races -> our five classes (the ONE place this mapping lives; the seven stay in
# Record.meta["race7"]). Age bins are intervals [lo, hi) in years, never midpoints.
FAIRFACE_RACE = {"White": "white", "Black": "black", "East Asian": "asian", "Southeast Asian": "asian",
                 "Indian": "indian", "Latino_Hispanic": "others", "Middle Eastern": "others"}
FAIRFACE_AGE = {"0-2": (0.0, 3.0), "3-9": (3.0, 10.0), "10-19": (10.0, 20.0), "20-29": (20.0, 30.0),
                "30-39": (30.0, 40.0), "40-49": (40.0, 50.0), "50-59": (50.0, 60.0), "60-69": (60.0, 70.0),
                "more than 70": (70.0, math.inf)}
# FER+ vote columns -> our emotion labels (contempt, unknown and NF have no class here and are left out).
FERPLUS_TO_EMOTION = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                      "sadness": "sad", "surprise": "surprise", "neutral": "neutral"}
_FER_SPLITS = {"train": "train", "test": "val", "training": "train", "publictest": "val", "privatetest": "test"}
_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{8,})\.jpg\.chip\.jpg$")


@dataclass
class Record:
    """One labelled image: a file ``path``, a ``member`` of the zip file at ``path``, or ``pixels`` (an
    in-memory grayscale/RGB array, for CSV sources).

    ``intervals`` holds labels known only as a range (FairFace's age bins: ``{"age": (20.0, 30.0)}``),
    ``soft`` label distributions (FER+ votes: ``{"emotion": array of 7}``), ``meta`` raw dataset fields.
    """

    source: str
    path: str | None = None
    pixels: np.ndarray | None = None
    labels: dict[str, str | float | None] = field(default_factory=dict)
    split: str | None = None  # fixed by the dataset (FER2013) or assigned by make_split
    digest: str = ""
    member: str | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    soft: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        """The image's own file name (a zip member's or a file's, without folders); the key for in-memory rows."""
        where = self.member or self.path
        return Path(where).name if where else self.key

    @property
    def key(self) -> str:
        if self.member is not None:
            return f"{self.path}!{self.member}"
        return self.path if self.path is not None else f"{self.source}#{self.digest}"

    def read_bytes(self) -> bytes:
        """The image file's bytes (from the folder or from inside its zip)."""
        if self.member is not None:
            return _zip_handle(self.path).read(self.member)  # type: ignore[arg-type]
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            return f.read()

    def image_source(self) -> np.ndarray | bytes | str:
        """What :func:`facemtl.image.load_image` reads for this record."""
        if self.pixels is not None:
            return self.pixels
        return self.read_bytes() if self.member is not None else self.path  # type: ignore[return-value]

    def compute_digest(self) -> str:
        if not self.digest:
            if self.pixels is not None:
                self.digest = hashlib.sha1(np.ascontiguousarray(self.pixels).tobytes()).hexdigest()
            else:
                self.digest = hashlib.sha1(self.read_bytes()).hexdigest()
        return self.digest

    def target_indices(self) -> dict[str, float]:
        """Labels as numbers: class index (-1 missing) or value (NaN missing), for every registered task."""
        out: dict[str, float] = {}
        for name in list_tasks():
            spec = get_task(name)
            v = self.labels.get(name)
            if spec.kind == "classification":
                out[name] = -1 if v is None else spec.label_index(str(v))
            else:
                out[name] = math.nan if v is None else float(v)
        return out


_ZIPS = threading.local()


def _zip_handle(path: str) -> zipfile.ZipFile:
    """One open ZipFile per thread and path (ZipFile objects are not safe to share across threads)."""
    cache = getattr(_ZIPS, "files", None)
    if cache is None:
        cache = _ZIPS.files = {}
    if path not in cache:
        cache[path] = zipfile.ZipFile(path)
    return cache[path]


def extra_targets(records: Iterable[Record]) -> dict[str, np.ndarray]:
    """Interval and soft targets: ``age_lo``/``age_hi`` (NaN: none; hi may be inf) and ``emotion_soft``
    (N, 7) (NaN rows: none), one row per record."""
    recs = list(records)
    lo = np.full(len(recs), np.nan)
    hi = np.full(len(recs), np.nan)
    n_emo = len(get_task("emotion").labels)
    soft = np.full((len(recs), n_emo), np.nan)
    for i, r in enumerate(recs):
        if "age" in r.intervals:
            lo[i], hi[i] = r.intervals["age"]
        if "emotion" in r.soft:
            soft[i] = r.soft["emotion"]
    return {"age_lo": lo, "age_hi": hi, "emotion_soft": soft}


def target_arrays(records: Iterable[Record], tasks: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Per-task float arrays of targets (class index, -1 missing; value, NaN missing), one row per record."""
    rows = [r.target_indices() for r in records]  # once per record, not once per task
    names = list(tasks) if tasks is not None else list_tasks()
    return {t: np.array([row[t] for row in rows], dtype=np.float64) for t in names}


@dataclass
class DatasetIndex:
    records: list[Record]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.records)

    def extend(self, other: DatasetIndex) -> None:
        self.records.extend(other.records)
        self.skipped.update(other.skipped)


def _require_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{what} folder not found: {p}")
    if not p.is_dir():
        raise DatasetError(f"{what} must be a folder, got a file: {p}")
    return p


def load_utkface(root: str | Path, limit: int | None = None) -> DatasetIndex:
    """UTKFace folder: ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` (0 male / 1 female; race 0..4).

    Malformed names are skipped and counted (``skipped["malformed name"]``), never guessed.
    """
    root = _require_dir(root, "UTKFace")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"no images in UTKFace folder {root}")
    idx = DatasetIndex([])
    for p in files:
        m = _UTK_NAME.match(p.name)
        if not m:
            idx.skipped["malformed name"] += 1
            log.warning("UTKFace: skipping malformed file name %r", p.name)
            continue
        age, gender, race = int(m.group(1)), int(m.group(2)), int(m.group(3))
        idx.records.append(Record("utkface", path=str(p), labels={
            "age": float(age), "gender": UTKFACE_GENDER[gender], "ethnicity": UTKFACE_RACE[race]}))
    if limit is not None and len(idx.records) > limit:
        # File names sort by age: an evenly spaced sample keeps every age range in a subset.
        idx.records = [idx.records[i] for i in np.linspace(0, len(idx.records) - 1, limit).astype(int)]
    if idx.skipped:
        log.warning("UTKFace: skipped %s", dict(idx.skipped))
    return idx


def load_ferplus_votes(path: str | Path) -> dict[str, np.ndarray]:
    """``ferplus_votes.csv`` -> {file relative to the FER2013 folder: distribution over our 7 emotions}.

    Votes for contempt, unknown and "not a face" are left out; a file with no vote for our classes gets none.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    labels = get_task("emotion").labels
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("file", *FERPLUS_TO_EMOTION) if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: FER+ votes file lacks column(s) {', '.join(missing)}")
        inv = {v: k for k, v in FERPLUS_TO_EMOTION.items()}
        for row in reader:
            votes = np.array([float(row[inv[lab]] or 0) for lab in labels])
            if votes.sum() > 0:
                out[row["file"].replace("\\", "/")] = votes / votes.sum()
    return out


def load_fer2013(source: str | Path, limit: int | None = None, ferplus: str | Path | None = "auto") -> DatasetIndex:
    """FER2013 as image folders (``train|test/<emotion>/*.jpg``) or the classic ``fer2013.csv``.

    Folder ``test`` is PublicTest and becomes split "val"; CSV ``Usage`` maps Training -> train,
    PublicTest -> val, PrivateTest -> test. ``ferplus``: the FER+ votes CSV (``"auto"``: the folder's own
    ``ferplus_votes.csv`` when present; None: not read); each file with votes gets ``soft["emotion"]``.
    """
    p = Path(source)
    if not p.exists():
        raise DatasetError(f"FER2013 folder or CSV not found: {p}")
    if p.is_file():
        return _load_fer_csv(p, limit)
    idx = DatasetIndex([])
    emotions = set(FER2013_EMOTIONS.values())
    votes: dict[str, np.ndarray] = {}
    if ferplus == "auto":
        ferplus = p / "ferplus_votes.csv" if (p / "ferplus_votes.csv").is_file() else None
    if ferplus is not None:
        votes = load_ferplus_votes(ferplus)
    split_dirs = [d for d in sorted(p.iterdir()) if d.is_dir() and d.name.lower() in _FER_SPLITS]
    if not split_dirs:
        raise DatasetError(f"FER2013 folder {p} has no train/ or test/ subfolder")
    per_split_limit = None if limit is None else max(1, limit // len(split_dirs))
    for sd in split_dirs:
        n = 0
        for ed in sorted(d for d in sd.iterdir() if d.is_dir()):
            if ed.name.lower() not in emotions:
                idx.skipped[f"unknown emotion folder {ed.name}"] += 1
                log.warning("FER2013: unknown emotion folder %s (valid: %s)", ed, ", ".join(sorted(emotions)))
                continue
            for f in sorted(ed.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                soft = votes.get(f"{sd.name}/{ed.name}/{f.name}")
                idx.records.append(Record("fer2013", path=str(f), labels={"emotion": ed.name.lower()},
                                          split=_FER_SPLITS[sd.name.lower()],
                                          soft={"emotion": soft} if soft is not None else {}))
                n += 1
        # Limited: an evenly spaced sample over the sorted class folders (class proportions are kept).
        if per_split_limit is not None and n > per_split_limit:
            recs = idx.records[-n:]
            keep = [recs[i] for i in np.linspace(0, n - 1, per_split_limit).astype(int)]
            del idx.records[-n:]
            idx.records.extend(keep)
    if not idx.records:
        raise DatasetError(f"no images found under FER2013 folder {p}")
    return idx


def _load_fer_csv(path: Path, limit: int | None) -> DatasetIndex:
    idx = DatasetIndex([])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        need = {"emotion", "pixels"}
        if not need <= cols:
            raise DatasetError(f"{path}: FER2013 CSV needs columns emotion, pixels (and optional Usage); "
                               f"found {', '.join(sorted(cols)) or 'none'}")
        for i, row in enumerate(reader, start=2):
            try:
                code = int(row["emotion"])
                label = FER2013_EMOTIONS[code]
                px = np.array((row["pixels"] or "").split(), dtype=np.uint8)  # None: a truncated row
                side = int(round(math.sqrt(px.size)))
                if side * side != px.size or side < 8:
                    raise ValueError(f"{px.size} pixels is not a square image")
            except (ValueError, KeyError, OverflowError) as exc:  # OverflowError: a pixel outside 0..255
                idx.skipped["bad csv row"] += 1
                log.warning("%s line %d: skipped (%s)", path, i, exc)
                continue
            usage = (row.get("Usage") or "Training").strip().lower()
            if usage not in _FER_SPLITS:
                idx.skipped["unknown Usage"] += 1
                log.warning("%s line %d: skipped (Usage %r; valid: Training, PublicTest, PrivateTest)", path, i,
                            row.get("Usage"))
                continue
            idx.records.append(Record("fer2013", pixels=px.reshape(side, side), labels={"emotion": label},
                                      split=_FER_SPLITS[usage]))
            if limit is not None and len(idx.records) >= limit:
                break
    if not idx.records:
        raise DatasetError(f"no usable rows in FER2013 CSV {path}")
    return idx


def load_manifest(path: str | Path, limit: int | None = None) -> DatasetIndex:
    """Generic CSV: ``path`` plus any of the task columns (label names or, for age, years) and ``split``.

    Relative paths are resolved against the CSV's folder. Unknown columns or labels are errors.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest CSV not found: {path}")
    valid_cols = {"path", "split", "source", *list_tasks()}
    idx = DatasetIndex([])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = list(reader.fieldnames or [])
        if "path" not in cols:
            raise DatasetError(f"{path}: manifest needs a 'path' column; found {', '.join(cols) or 'none'}")
        unknown = [c for c in cols if c not in valid_cols]
        if unknown:
            raise DatasetError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
                               f"valid: {', '.join(sorted(valid_cols))}")
        for line, row in enumerate(reader, start=2):
            labels: dict[str, str | float | None] = {}
            for name in list_tasks():
                raw = (row.get(name) or "").strip()
                if not raw:
                    continue
                spec = get_task(name)
                if spec.kind == "regression":
                    try:
                        labels[name] = float(raw)
                    except ValueError:
                        raise DatasetError(f"{path} line {line}: {name} {raw!r} is not a number") from None
                else:
                    if raw.lower() not in spec.labels:
                        err = unknown_name(f"{name} label", raw, spec.labels)
                        raise DatasetError(f"{path} line {line}: {err}") from None
                    labels[name] = raw.lower()
            if not (row.get("path") or "").strip():
                raise DatasetError(f"{path} line {line}: empty 'path'")
            img = Path(row["path"].strip())
            if not img.is_absolute():
                img = path.parent / img
            split = (row.get("split") or "").strip().lower() or None
            if split not in (None, "train", "val", "test"):
                raise DatasetError(f"{path} line {line}: split {split!r}; valid: train, val, test")
            idx.records.append(Record((row.get("source") or "manifest").strip(), path=str(img), labels=labels,
                                      split=split))
            if limit is not None and len(idx.records) >= limit:
                break
    if not idx.records:
        raise DatasetError(f"manifest {path} has no rows")
    return idx


def _zip_with_labels(root: str | Path, what: str, zip_name: str, columns: tuple[str, ...]
                     ) -> tuple[Path, list[dict[str, str]], set[str]]:
    root = _require_dir(root, what)
    zpath, lpath = root / zip_name, root / "labels.csv"
    if not zpath.is_file():
        raise DatasetError(f"{what}: {zpath} not found (expected {zip_name} and labels.csv in {root})")
    if not lpath.is_file():
        raise DatasetError(f"{what}: the zip {zpath} has no labels file: {lpath} not found")
    with open(lpath, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{lpath}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
        rows = list(reader)
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
    return zpath, rows, names


def _limited(idx: DatasetIndex, limit: int | None) -> DatasetIndex:
    if limit is not None and len(idx.records) > limit:
        idx.records = [idx.records[i] for i in np.linspace(0, len(idx.records) - 1, limit).astype(int)]
    return idx


def load_fairface(root: str | Path, limit: int | None = None) -> DatasetIndex:
    """FairFace folder: ``fairface.zip`` (images, read in place) + ``labels.csv`` (``file,age,gender,race``).

    Age is a bin, kept as an interval (``intervals["age"]``); the seven races map to five classes through
    :data:`FAIRFACE_RACE` (the original name stays in ``meta["race7"]``). Rows naming a file missing from the
    zip or an unknown label are skipped and counted.
    """
    zpath, rows, names = _zip_with_labels(root, "FairFace", "fairface.zip", ("file", "age", "gender", "race"))
    idx = DatasetIndex([])
    for row in rows:
        age, gender, race = row["age"].strip(), row["gender"].strip().lower(), row["race"].strip()
        if row["file"] not in names:
            idx.skipped["file missing from zip"] += 1
            continue
        if age not in FAIRFACE_AGE or race not in FAIRFACE_RACE or gender not in ("male", "female"):
            idx.skipped["unknown label"] += 1
            log.warning("FairFace: skipping %s (age %r, gender %r, race %r)", row["file"], age, gender, race)
            continue
        idx.records.append(Record("fairface", path=str(zpath), member=row["file"],
                                  labels={"gender": gender, "ethnicity": FAIRFACE_RACE[race]},
                                  intervals={"age": FAIRFACE_AGE[age]}, meta={"race7": race, "age_bin": age}))
    if not idx.records:
        raise DatasetError(f"no usable rows in {zpath.parent / 'labels.csv'}")
    return _limited(idx, limit)


def load_celeba_gender(root: str | Path, limit: int | None = None) -> DatasetIndex:
    """celeba_gender folder: ``celeba_gender.zip`` (``male/``, ``female/`` crops) + ``labels.csv`` (``file,gender``)."""
    zpath, rows, names = _zip_with_labels(root, "celeba_gender", "celeba_gender.zip", ("file", "gender"))
    idx = DatasetIndex([])
    for row in rows:
        gender = row["gender"].strip().lower()
        if row["file"] not in names:
            idx.skipped["file missing from zip"] += 1
            continue
        if gender not in ("male", "female"):
            idx.skipped["unknown label"] += 1
            continue
        idx.records.append(Record("celeba_gender", path=str(zpath), member=row["file"], labels={"gender": gender}))
    if not idx.records:
        raise DatasetError(f"no usable rows in {zpath.parent / 'labels.csv'}")
    return _limited(idx, limit)


def deduplicate(index: DatasetIndex) -> DatasetIndex:
    """Drop byte-identical duplicates. Copies with conflicting labels are all dropped (the truth is unknown);
    a duplicate in a fixed val/test split wins over its training copy (no leakage)."""
    groups: dict[str, list[Record]] = {}
    for r in index.records:
        try:
            groups.setdefault(r.compute_digest(), []).append(r)
        except OSError:
            index.skipped["unreadable file"] += 1
    out: list[Record] = []
    skipped = Counter(index.skipped)
    rank = {"test": 0, "val": 1, None: 2, "train": 3}
    for recs in groups.values():
        if len(recs) == 1:
            out.append(recs[0])
            continue
        label_sets = {tuple(sorted((k, str(v)) for k, v in r.labels.items())) for r in recs}
        if len(label_sets) > 1:
            skipped["duplicate with conflicting labels"] += len(recs)
            continue
        recs = sorted(recs, key=lambda r: rank.get(r.split, 2))
        out.append(recs[0])
        skipped["duplicate"] += len(recs) - 1
    return DatasetIndex(out, skipped)
