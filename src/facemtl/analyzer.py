"""FaceAnalyzer: load image -> detect -> canonical crop -> batched forward pass -> typed results."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import DEFAULT_LEVEL, Calibration, check_level
from .crop import CropGeometry
from .detect import Detection, FaceDetector, create_detector, default_detector_name
from .errors import ConfigError, FacemtlError, without_traceback
from .image import DEFAULT_MAX_PIXELS, ImageInput, check_channels, link_problem, load_image
from .models.base import FaceModel, as_face_model, predict_crops_raw
from .preprocess import DEFAULT_FRAMING, Framing, crop_settings, frame_face_crop, photo_crop
from .quality import DEFAULT_RULES, assess, check_min_quality
from .results import Box, Face, ImageResult, Prediction
from .tasks import TaskSpec

__all__ = ["FaceAnalyzer", "AnalyzerConfig", "AnalyzerOptions", "decode_outputs", "ItemError"]


@dataclass(frozen=True)
class AnalyzerOptions:
    """Per-call behaviour of the analyzer. Frozen: change a copy with ``dataclasses.replace`` (checked again).

    Attributes:
        min_face: ignore faces whose box is smaller than this many pixels (shorter side).
        max_faces: keep at most this many faces per image (highest detection score first).
        largest_only: keep only the largest face.
        batch_size: faces per forward pass.
        keep_image: keep the decoded image on the result, so ``result.plot()`` works.
        flip_tta: average each face's outputs with its mirror image's (one batched pass; measured on the
            validation data: emotion accuracy +1.1 points, see MODEL_CARD.md).
        max_pixels: refuse larger images.
        age_interval: level of the age interval (``Prediction.low``/``high``), in (0, 1); needs a calibrated
            model (the bundled one is).
        min_quality: "low" keeps every face (doubtful ones flagged ``quality="low"``); "ok" drops them.
    """

    min_face: int = 0
    max_faces: int | None = None
    largest_only: bool = False
    batch_size: int = 32
    keep_image: bool = False
    flip_tta: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    age_interval: float = DEFAULT_LEVEL
    min_quality: str = "low"

    def __post_init__(self) -> None:
        object.__setattr__(self, "age_interval", check_level(self.age_interval))
        check_min_quality(self.min_quality)
        if self.min_face < 0:
            raise ConfigError(f"min_face must be >= 0, got {self.min_face}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(f"max_faces must be >= 1 or None, got {self.max_faces}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class AnalyzerConfig:
    """What :meth:`FaceAnalyzer.from_checkpoint` loads, by name (``facemtl``'s ``--model``, ``--detector``,
    ``--tasks``, ``--device``, ``--threads`` and ``--min-score``); the rest is :class:`AnalyzerOptions`. Frozen:
    change a copy with ``dataclasses.replace`` (checked again).

    Attributes:
        model: None (the bundled default), a bundled name, an ``.onnx`` file or a ``.pt`` checkpoint (``path``).
        detector: detector name (``facemtl.detect.list_detectors()``).
        tasks: run only these tasks ("age,gender" or a sequence of names); None: all the model has.
        device: auto, cpu, cuda or cuda:N (spelling checked here; whether it exists, when loading).
        threads: CPU threads of the backend (None: the library's default).
        min_score: the detector's confidence threshold (None: the detector's own).
    """

    model: str | None = None
    detector: str = default_detector_name()
    tasks: str | tuple[str, ...] | None = None
    device: str = "cpu"
    threads: int | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        from ._device import check_device_name
        from .detect import list_detectors
        from .errors import unknown_name

        object.__setattr__(self, "device", check_device_name(self.device))
        if self.detector not in list_detectors():
            raise unknown_name("detector", self.detector, list_detectors())
        if self.tasks is not None and not isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", tuple(self.tasks))


@dataclass(frozen=True)
class ItemError:
    """A per-item failure in batch work: the source and why it failed (the run goes on)."""

    source: str
    error: str


def decode_outputs(tasks: Sequence[TaskSpec], raw: dict[str, Any], calibration: Calibration | None = None,
                   level: float = DEFAULT_LEVEL) -> list[dict[str, Prediction]]:
    """Raw head outputs {task: (B, W)} -> one {task: Prediction} per face, labels from the TaskSpecs.

    With a ``calibration``, class probabilities are temperature-scaled and an interval task's values (age) get
    the conformal interval at ``level``; without one, probabilities are the plain softmax and values have no
    interval. A regression task with a label grouping (age) reports its group probabilities and, as its label,
    the most probable group."""
    n = len(next(iter(raw.values()))) if raw else 0
    per_face: list[dict[str, Prediction]] = [{} for _ in range(n)]
    for spec in tasks:
        if spec.name not in raw:
            continue
        values, probs = spec.decode_raw(raw[spec.name])
        if spec.kind == "classification" and calibration is not None and spec.name in calibration.temperatures:
            probs = calibration.probabilities(spec.name, raw[spec.name])
        lows = highs = None
        groups = spec.group_probabilities(probs) if (probs is not None and spec.label_grouping) else None
        intervals = calibration.intervals_for(spec.name) if spec.interval and calibration is not None else None
        if intervals is not None:
            lows, highs = intervals.intervals(np.asarray(values, dtype=float), level)
        for i in range(n):
            if spec.kind == "classification":
                assert probs is not None
                p = probs[i]
                k = int(values[i])
                per_face[i][spec.name] = Prediction(spec.name, spec.labels[k], float(p[k]),
                                                    {lab: float(p[j]) for j, lab in enumerate(spec.labels)})
            else:
                v = float(values[i])
                group_probs = dict(zip(spec.group_names, map(float, groups[i]))) if groups is not None else None
                # one rule: the most probable group (a scalar head: the estimate's group)
                label = spec.most_probable_group(group_probs) if group_probs is not None else spec.group_of(v)
                lo, hi = (float(lows[i]), float(highs[i])) if lows is not None and highs is not None else (None, None)
                per_face[i][spec.name] = Prediction(spec.name, label, v, group_probs, lo, hi,
                                                    level if lo is not None else None)
    return per_face


class FaceAnalyzer:
    """Finds every face in an image and predicts each task's answer for it.

    ``__init__`` only stores collaborators; :meth:`from_checkpoint` does the loading.

    Example:
        >>> analyzer = FaceAnalyzer.from_checkpoint()            # bundled default model + RetinaFace
        >>> result = analyzer("group.jpg")
        >>> for face in result.faces:
        ...     print(face.box.xyxy, face["age"].value, face["emotion"].label)
    """

    def __init__(self, model: FaceModel | Any, detector: FaceDetector, input_size: int,
                 geometry: CropGeometry | None = None, tasks: Sequence[str] | None = None,
                 device: Any = None, options: AnalyzerOptions | None = None,
                 info: dict[str, Any] | None = None, framing: Framing | None = None) -> None:
        model = as_face_model(model, device)  # a bare MultiTaskNet is wrapped (needs torch); a FaceModel as is
        self.model = model
        self.detector = detector
        self.input_size = int(input_size)
        self.geometry = geometry or CropGeometry()
        self.framing = framing or DEFAULT_FRAMING
        self.device = getattr(model, "device", "cpu")
        self.tasks = tuple(t for t in model.tasks if tasks is None or t.name in tasks)
        self.options = options or AnalyzerOptions()
        self.info = info or {}
        self.calibration = Calibration.from_dict((getattr(model, "metadata", None) or {}).get("calibration"))
        if self.calibration is None or self.calibration.age is None:
            _warn_uncalibrated(self.info.get("checkpoint") or type(model).__name__)
        self._detect_lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, detector: str | FaceDetector | None = None,
                        device: str = "cpu", tasks: str | Sequence[str] | None = None, threads: int | None = None,
                        detector_options: dict[str, Any] | None = None, **options: Any) -> FaceAnalyzer:
        """Load a model (None: the bundled default, on ONNX Runtime) and a detector by name.

        Args:
            path: None (the bundled default model), a bundled name (``facemtl.weights.list_weights()``), a
                ``.onnx`` file (from ``facemtl export``, fp32 or int8; ONNX Runtime) or a PyTorch checkpoint
                (``.pt``; needs the ``torch`` extra). See :func:`facemtl.models.load_model`.
            detector: detector name (see ``facemtl.detect.list_detectors()``) or instance; None: the default.
            tasks: run only these tasks ("age,gender" or a list); None: all tasks in the model.
            threads: CPU threads of the backend (None: the library's default).
            **options: fields of :class:`AnalyzerOptions` (min_face, max_faces, largest_only, batch_size...).
        """
        from .models.load import load_model

        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        model, file = load_model(path, tasks=tasks, device=device, threads=threads)
        meta = getattr(model, "metadata", {})
        geometry, framing = crop_settings(model.preprocess)
        if detector is None or isinstance(detector, str):
            detector = create_detector(detector or default_detector_name(), **(detector_options or {}))
        return cls(model, detector, model.input_size, geometry, tasks, device, AnalyzerOptions(**options),
                   info={"checkpoint": str(file), "backend": model.backend, **(meta.get("model_config") or {})},
                   framing=framing)

    # -- single images -------------------------------------------------------------------------------
    def __call__(self, source: ImageInput | list[ImageInput] | tuple[ImageInput, ...], channels: str = "rgb"
                 ) -> ImageResult | list[ImageResult]:
        """Analyse one image, or a list of images (faces of all images share forward passes).

        **Numpy arrays are taken as RGB**: pass ``channels="bgr"`` for OpenCV images (``cv2.imread``,
        ``cv2.VideoCapture`` frames). See :func:`facemtl.image.load_image`.
        """
        if isinstance(source, (list, tuple)):
            return list(self.analyze_many(source, errors="raise", channels=channels))  # type: ignore[arg-type]
        return self.analyze(source, channels=channels)

    def analyze(self, source: ImageInput, channels: str = "rgb") -> ImageResult:
        """Analyse one image; a numpy array is RGB unless ``channels="bgr"`` (OpenCV images)."""
        return next(iter(self.analyze_many([source], errors="raise", channels=channels)))  # type: ignore[return-value]

    # -- many images ---------------------------------------------------------------------------------
    def _prepare(self, source: ImageInput, channels: str = "rgb") -> tuple[Any, ...]:
        t0 = time.perf_counter()
        name = _source_name(source)
        try:
            image = load_image(source, max_pixels=self.options.max_pixels, channels=channels)
        except FacemtlError as exc:  # kept without its frames (they hold the source): no reference cycle
            return name, None, [], [], {}, without_traceback(exc)
        t1 = time.perf_counter()
        if getattr(self.detector, "name", None) == "none":  # the image is the face: framed as in training
            crop, _ = self.frame_crop(image)
            h, w = image.shape[:2]
            dets = [Detection(Box(0.0, 0.0, float(w), float(h)), 1.0, None)]  # the face is the whole image
            t2 = time.perf_counter()
            crops = [crop]
        else:
            # Most detectors are not thread-safe (OpenCV's cascade segfaults, LiteRT's interpreter refuses
            # concurrent calls): they detect one image at a time while decoding runs ahead in threads. A detector
            # marked thread_safe (RetinaFace: one ONNX Runtime session) detects ahead in the threads too.
            with self._detect_lock if not getattr(self.detector, "thread_safe", False) else nullcontext():
                dets = self.select(self.detector.detect(image))
            t2 = time.perf_counter()
            crops = [photo_crop(image, d, self.input_size, self.geometry, self.framing) for d in dets]
        t3 = time.perf_counter()
        timings = {"load": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3, "crop": (t3 - t2) * 1e3}
        return name, image, dets, crops, timings, None

    def select(self, dets: list[Detection]) -> list[Detection]:
        """Apply the options' selection rules to one image's detections: ``min_face``, then ``largest_only``,
        then ``max_faces`` (highest score first). Used by the image pipeline and by :mod:`facemtl.video`."""
        o = self.options
        if o.min_face:
            dets = [d for d in dets if min(d.box.width, d.box.height) >= o.min_face]
        if o.largest_only and dets:
            dets = [max(dets, key=lambda d: d.box.area)]
        if o.max_faces is not None:
            dets = sorted(dets, key=lambda d: -d.score)[: o.max_faces]
        return dets

    def frame_crop(self, image: ImageInput, channels: str = "rgb") -> tuple[np.ndarray, Detection | None]:
        """The model input for an image that *is* a face crop, exactly as the training cache makes it
        (:func:`facemtl.preprocess.frame_face_crop`): (crop, the face found in it or None). An array is RGB
        unless ``channels="bgr"``."""
        from .data.cache import framing_detector

        img = image if check_channels(channels) == "rgb" and isinstance(image, np.ndarray) \
            and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
            else load_image(image, max_pixels=self.options.max_pixels, channels=channels)
        return frame_face_crop(img, framing_detector(self.framing), self.input_size, self.geometry, self.framing)

    def predict_crops(self, crops: Sequence[np.ndarray | ImageInput], channels: str = "rgb"
                      ) -> list[dict[str, Prediction]]:
        """Predict on images that already are face crops (arrays, paths, bytes), e.g. UTKFace or FER2013 files:
        the same as ``--detector none``. Each is framed exactly as training framed its images. Arrays are RGB
        unless ``channels="bgr"`` (OpenCV images)."""
        return self.predict_canonical([self.frame_crop(c, channels)[0] for c in crops])

    def predict_canonical(self, crops: Sequence[np.ndarray]) -> list[dict[str, Prediction]]:
        """Predict on canonical (input_size, input_size, 3) uint8 crops, as made by :mod:`facemtl.preprocess`."""
        if not len(crops):
            return []
        raw = predict_crops_raw(self.model, np.stack(crops), self.input_size, self.options.batch_size,
                                self.options.flip_tta)
        return decode_outputs(self.tasks, raw, self.calibration, self.options.age_interval)

    def analyze_many(self, sources: Iterable[ImageInput], errors: str = "record", workers: int = 2,
                     channels: str = "rgb") -> Iterator[ImageResult | ItemError]:
        """Yield one ImageResult per source, in order; decoding and detection run ahead in threads.

        Args:
            errors: "record" yields an :class:`ItemError` for a bad item and goes on; "raise" raises it.
            channels: channel order of numpy array sources: "rgb" (default) or "bgr" for OpenCV images
                (``cv2.imread``, ``cv2.VideoCapture`` frames). Paths, bytes and PIL images take the default.

        Raises:
            UnknownNameError: a ``channels`` value other than "rgb" or "bgr" (at once, not per item).
        """
        if errors not in ("record", "raise"):
            raise ConfigError(f"errors must be 'record' or 'raise', got {errors!r}")
        channels = check_channels(channels)
        if isinstance(sources, (list, tuple)) and len(sources) == 1:
            # One image (the per-call API): prepared in this thread. Starting and joining worker threads for it
            # on every call cost time and grew resident memory by ~0.9 KB a call (thread stacks, allocator arenas).
            yield from self._finish([self._prepare(sources[0], channels)], errors)
            return
        chunk = max(1, self.options.batch_size // 2)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending: list = []
            it = iter(sources)
            done = False
            while not done or pending:
                while not done and len(pending) < chunk * 2:
                    try:
                        pending.append(pool.submit(self._prepare, next(it), channels))
                    except StopIteration:
                        done = True
                # Each future is let go as its result is taken: a frame left holding one (and so the error it may
                # carry) would put the traceback of that error in a reference cycle with the images.
                prepared = [pending.pop(0).result() for _ in range(min(chunk, len(pending)))]
                yield from self._finish(prepared, errors)

    def _finish(self, prepared: list[tuple[Any, ...]], errors: str) -> Iterator[ImageResult | ItemError]:
        all_crops = [c for p in prepared for c in p[3]]
        t0 = time.perf_counter()
        preds = self.predict_canonical(all_crops) if all_crops else []
        per_face_ms = (time.perf_counter() - t0) * 1e3 / max(1, len(all_crops))
        k = 0
        for name, image, dets, crops, timings, exc in prepared:
            if exc is not None:
                if errors == "raise":
                    prepared.clear()  # (the caller's list too) no frame of the traceback may refer to the error
                    try:
                        raise exc
                    finally:
                        exc = None
                yield ItemError(name, str(exc))
                continue
            faces = []
            for d, crop in zip(dets, crops):
                lm = tuple((float(x), float(y)) for x, y in d.landmarks) if d.landmarks else None
                quality, reasons = assess(min(d.box.width, d.box.height), float(d.score), lm, crop, preds[k],
                                          DEFAULT_RULES)
                if quality == "ok" or self.options.min_quality == "low":
                    faces.append(Face(Box(*map(float, d.box.xyxy)), float(d.score), preds[k], lm, quality, reasons))
                k += 1
            timings = {**timings, "predict": per_face_ms * len(crops)}
            yield ImageResult(name, (int(image.shape[0]), int(image.shape[1])), faces, timings,
                              image if self.options.keep_image else None)


def analyze_files(analyzer: FaceAnalyzer, files: Sequence[str]) -> Iterator[Any]:
    """``analyzer.analyze_many(files, errors="record")`` in order: one ImageResult or ItemError per file, a
    symbolic link that leads nowhere giving an ItemError with the real reason (:func:`facemtl.image.link_problem`)
    instead of reaching the decoder."""
    problems = {f: link_problem(f) for f in files}
    results = analyzer.analyze_many([f for f in files if not problems[f]], errors="record")
    for f in files:
        problem = problems[f]
        yield ItemError(f, problem) if problem else next(results)


_WARNED: set[str] = set()


def _warn_uncalibrated(name: str) -> None:
    """Once per model: it carries no age calibration, so ages come without intervals."""
    if name not in _WARNED:
        _WARNED.add(name)
        import logging

        logging.getLogger(__name__).warning(
            "%s has no calibration: ages come without intervals and probabilities are uncalibrated "
            "(fit them with `facemtl calibrate`)", name)


def _source_name(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(map(str, source.shape))}>"
    return f"<{type(source).__name__}>"


