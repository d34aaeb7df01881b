"""Compare the registered face detectors on real photos and on face-crop datasets.

Prints, per detector: faces found in each ``wild/`` photo and the mean time per photo; the miss
rate (no face found) and time per image on UTKFace (200x200 aligned crops) and FER2013 (48x48
grayscale crops), where every image holds exactly one face; "multi" counts images with more than
one face found. Images are loaded before timing, so times are detection only.

    PYTHONPATH=src python benchmarks/detectors.py [--data ../shared/data] [--n 500]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from facemtl.detect import create_detector, default_detector_name, list_detectors
from facemtl.image import load_image

ROOT = Path(__file__).resolve().parents[1]

# Extra variants worth a row of their own (name, label, kwargs); every registered detector
# except "none" also gets a row with its defaults.
VARIANTS = [("blazeface", "blazeface:short", {"model": "short"})]


def sample(paths: list[Path], n: int, seed: int) -> list[Path]:
    paths = sorted(paths)
    return random.Random(seed).sample(paths, min(n, len(paths)))


def timed(det, images):  # -> (counts, ms per image)
    det.detect(images[0])  # warm-up: first call allocates
    counts, times = [], []
    for img in images:
        t = time.perf_counter()
        counts.append(len(det.detect(img)))
        times.append((time.perf_counter() - t) * 1000.0)
    return counts, statistics.mean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=500, help="images drawn from UTKFace and from FER2013")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="num_threads for detectors that take it")
    args = ap.parse_args()

    wild_paths = sorted((args.data / "wild").glob("*.jpg"))
    wild = [load_image(p) for p in wild_paths]
    utk = [load_image(p) for p in sample(list((args.data / "utkface").glob("*.jpg")), args.n, args.seed)]
    fer = [load_image(p) for p in sample(list((args.data / "fer2013" / "train").glob("*/*.jpg")), args.n, args.seed)]

    configs = [(name, name, {}) for name in list_detectors() if name != "none"] + VARIANTS
    rows = []
    for name, label, kwargs in configs:
        if args.threads is not None and name in ("retinaface", "blazeface"):
            kwargs = {**kwargs, "num_threads": args.threads}
        try:
            det = create_detector(name, **kwargs)
        except Exception as exc:  # a missing optional package: report and go on
            print(f"{label}: skipped ({exc})")
            continue
        wc, wms = timed(det, wild)
        uc, ums = timed(det, utk)
        fc, fms = timed(det, fer)
        rows.append((label, repr(det), wc, wms, uc, ums, fc, fms))

    print(f"\nwild/: faces found per photo ({len(wild)} photos)")
    labels = [r[0] for r in rows]
    print(f"{'photo':34s}" + "".join(f"{lab:>17s}" for lab in labels))
    for i, p in enumerate(wild_paths):
        print(f"{p.name:34s}" + "".join(f"{r[2][i]:>17d}" for r in rows))
    print(f"{'total faces':34s}" + "".join(f"{sum(r[2]):>17d}" for r in rows))
    print(f"{'mean ms / photo':34s}" + "".join(f"{r[3]:>17.1f}" for r in rows))

    print(f"\none-face datasets ({len(utk)} UTKFace, {len(fer)} FER2013 train images, seed {args.seed})")
    heads = ("UTK miss", "UTK multi", "UTK ms", "FER miss", "FER multi", "FER ms")
    print(f"{'detector':17s}" + "".join(f"{h:>11s}" for h in heads))
    for label, _, _, _, uc, ums, fc, fms in rows:
        miss_u, multi_u = sum(c == 0 for c in uc) / len(uc), sum(c > 1 for c in uc) / len(uc)
        miss_f, multi_f = sum(c == 0 for c in fc) / len(fc), sum(c > 1 for c in fc) / len(fc)
        print(f"{label:17s}{miss_u:>11.1%}{multi_u:>11.1%}{ums:>11.1f}{miss_f:>11.1%}{multi_f:>11.1%}{fms:>11.1f}")
    print("\nsettings:")
    for r in rows:
        print(f"  {r[1]}")
    print(f"default detector: {default_detector_name()}")


if __name__ == "__main__":
    main()
