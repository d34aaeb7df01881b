"""Fit CropGeometry (``scale``, ``shift_y``) so that detect-then-crop reproduces the training framing.

The model is trained on whole UTKFace images (200x200 aligned crops). For each sampled image this
runs the detector, keeps the best face and relates the full frame to the box:
``scale = side / max(w, h)`` and ``shift_y = (side / 2 - box_cy) / h``; the medians are the
constants for ``facemtl.crop.CropGeometry``.

Why the padding: a detector box is clipped to its image, and on a tight crop the face box runs
past the frame (a RetinaFace box includes more forehead than UTKFace keeps). Measured on the bare
crop, the box is cut down to the frame and the fit says "scale ~ 1.0", which is wrong for a face
in a full photo, whose box is not cut. So the primary fit pads each crop with a flat border of its
mean colour (``--pad``, as a fraction of the side) to give the detector room, and maps the box back
to frame coordinates. Two cross-checks are printed: the bare-crop fit, and a landmark transfer
that needs no padding (frame vs. eye-mouth distance on the crops, box vs. eye-mouth distance on
the faces of the ``wild/`` photos). The fit is then checked: IoU of the crop square with the
frame, and the grey-level difference between ``crop_face`` and the resized frame, for the
current defaults and for the fit. FER2013 (48x48) is reported for information.

    PYTHONPATH=src python benchmarks/calibrate_crop.py [--detector retinaface] [--n 500]
"""
from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facemtl.crop import DEFAULT_GEOMETRY, CropGeometry, crop_face
from facemtl.detect import Detection, create_detector, default_detector_name
from facemtl.image import load_image
from facemtl.results import Box

ROOT = Path(__file__).resolve().parents[1]
SIZE = 112  # crop side for the pixel check


@dataclass
class Framing:
    """Per-image figures for the top-scored face, in the coordinates of the un-padded crop."""

    scale: list[float] = field(default_factory=list)
    shift_y: list[float] = field(default_factory=list)
    shift_x: list[float] = field(default_factory=list)
    aspect: list[float] = field(default_factory=list)  # box h / w
    frame_per_d: list[float] = field(default_factory=list)  # frame side / eye-mouth distance
    centre_per_d: list[float] = field(default_factory=list)  # (frame centre y - eye y) / eye-mouth
    misses: int = 0
    pairs: list[tuple[np.ndarray, Detection]] = field(default_factory=list)  # for the pixel check


def eye_mouth(d: Detection) -> tuple[np.ndarray, float]:
    """Mid-eye point and the distance from it to the mid-mouth point (scale- and crop-free)."""
    lm = np.asarray(d.landmarks, dtype=np.float64)
    eye, mouth = lm[:2].mean(0), lm[3:5].mean(0)
    return eye, float(np.linalg.norm(mouth - eye))


def shifted(d: Detection, dx: float, dy: float) -> Detection:
    x1, y1, x2, y2 = d.box.xyxy
    lm = tuple((x + dx, y + dy) for x, y in d.landmarks) if d.landmarks else None
    return Detection(Box(x1 + dx, y1 + dy, x2 + dx, y2 + dy), d.score, lm)


def measure(det, paths: list[Path], pad: float) -> Framing:
    out = Framing()
    for p in paths:
        img = load_image(p)
        h_img, w_img = img.shape[:2]
        side = max(h_img, w_img)
        b = round(pad * side)
        work = img
        if b:
            colour = img.reshape(-1, 3).mean(0).astype(np.uint8)
            work = np.empty((h_img + 2 * b, w_img + 2 * b, 3), np.uint8)
            work[:] = colour
            work[b : b + h_img, b : b + w_img] = img
        found = det.detect(work)
        if not found:
            out.misses += 1
            continue
        d = shifted(found[0], -b, -b)
        x1, y1, x2, y2 = d.box.xyxy
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        out.scale.append(side / max(w, h))
        out.shift_y.append((h_img / 2 - cy) / h)
        out.shift_x.append((w_img / 2 - cx) / w)
        out.aspect.append(h / w)
        if d.landmarks:
            eye, dist = eye_mouth(d)
            out.frame_per_d.append(side / dist)
            out.centre_per_d.append((h_img / 2 - eye[1]) / dist)
        out.pairs.append((img, d))
    return out


def wild_box_vs_landmarks(det, paths: list[Path], min_height: float = 40.0) -> tuple[float, float, int]:
    """Median box side / eye-mouth distance and (box centre y - eye y) / eye-mouth, in real photos."""
    side, centre = [], []
    for p in paths:
        for d in det.detect(load_image(p)):
            if d.landmarks is None or d.box.height < min_height:
                continue
            eye, dist = eye_mouth(d)
            side.append(max(d.box.width, d.box.height) / dist)
            centre.append((d.box.y1 + d.box.y2) / 2 / dist - eye[1] / dist)
    return float(np.median(side)), float(np.median(centre)), len(side)


def check(pairs, geometry: CropGeometry) -> tuple[float, float]:
    """Median IoU of the crop square with the frame and mean |crop - resized frame| in grey levels."""
    ious, diffs = [], []
    for img, d in pairs:
        h_img, w_img = img.shape[:2]
        x1, y1, x2, y2 = d.box.xyxy
        side = max(x2 - x1, y2 - y1) * geometry.scale
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + geometry.shift_y * (y2 - y1)
        ious.append(Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2).iou(Box(0, 0, w_img, h_img)))
        lm = np.asarray(d.landmarks) if d.landmarks else None
        crop = crop_face(img, d.box.xyxy, lm, SIZE, geometry).astype(np.float32)
        ref = crop_face(img, None, None, SIZE).astype(np.float32)
        diffs.append(float(np.abs(crop - ref).mean()))
    return float(np.median(ious)), float(np.mean(diffs))


def summarise(label: str, f: Framing, n: int) -> CropGeometry:
    print(f"  {label}: {n} images, {f.misses} without a face")
    for key in ("scale", "shift_y", "shift_x", "aspect"):
        a = np.asarray(getattr(f, key))
        lo, med, hi = np.percentile(a, [25, 50, 75])
        print(f"    {key:8s} median {med:+.3f}   IQR [{lo:+.3f}, {hi:+.3f}]")
    return CropGeometry(scale=round(float(np.median(f.scale)), 2), shift_y=round(float(np.median(f.shift_y)), 2))


def calibrate(name: str, det, paths: list[Path], pad: float, wild: tuple[float, float, int]) -> CropGeometry:
    print(f"\n{name}")
    bare = summarise("bare crop (boxes clipped to the frame)", measure(det, paths, 0.0), len(paths))
    padded = measure(det, paths, pad)
    fit = summarise(f"padded by {pad:.0%} of the side with the mean colour (primary)", padded, len(paths))
    w_side, w_centre, w_n = wild
    f_side, f_centre = float(np.median(padded.frame_per_d)), float(np.median(padded.centre_per_d))
    print(f"  landmark transfer: frame = {f_side:.3f} d, frame centre {f_centre:+.3f} d below the eyes; "
          f"wild/ boxes ({w_n} faces) = {w_side:.3f} d, centre {w_centre:+.3f} d below the eyes")
    print(f"    -> scale {f_side / w_side:.3f}, shift_y {(f_centre - w_centre) / w_side:+.3f}")
    print(f"  bare-crop fit would be scale={bare.scale:.2f}, shift_y={bare.shift_y:+.2f}")
    for label, g in (("current default", DEFAULT_GEOMETRY), ("bare-crop fit", bare), ("padded fit", fit)):
        iou, diff = check(padded.pairs, g)
        print(f"  {label:16s} scale={g.scale:.2f} shift_y={g.shift_y:+.2f}: median IoU of crop with frame "
              f"{iou:.3f}, mean |crop - frame| {diff:.1f} grey levels")
    return fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--detector", default=default_detector_name())
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--pad", type=float, default=0.5, help="border added around each crop, fraction of its side")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    det = create_detector(args.detector)
    print(f"detector: {det!r}")
    rng = random.Random(args.seed)
    utk = rng.sample(sorted((args.data / "utkface").glob("*.jpg")), args.n)
    fer = rng.sample(sorted((args.data / "fer2013" / "train").glob("*/*.jpg")), args.n)
    wild = wild_box_vs_landmarks(det, sorted((args.data / "wild").glob("*.jpg")))
    fit = calibrate("UTKFace (200x200)", det, utk, args.pad, wild)
    fer_fit = calibrate("FER2013 (48x48, for information)", det, fer, args.pad, wild)
    print(f"\nset in facemtl/crop.py: CropGeometry(scale={fit.scale:.2f}, shift_y={fit.shift_y:.2f})")
    print(f"(FER2013 framing would be scale={fer_fit.scale:.2f}, shift_y={fer_fit.shift_y:.2f})")


if __name__ == "__main__":
    main()
