"""Soak test: run FaceAnalyzer.analyze_many over many images and print resident memory as it goes, so a leak
(memory growing with the number of images) shows as a rising column.

    python benchmarks/soak.py [--n 5000] [--every 500] [--model CKPT_OR_ONNX] [--data ../shared/data/utkface]
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from _common import setup, table

import facemtl


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="images to analyse (files are cycled)")
    ap.add_argument("--every", type=int, default=500, help="print memory every this many images")
    ap.add_argument("--model", help="checkpoint or .onnx (default: the bundled model)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    setup(args.threads)
    files = sorted(str(p) for p in Path(args.data).glob("*.jpg"))[:1000]
    if not files:
        print(f"skipped: no images in {args.data}")
        return
    analyzer = facemtl.FaceAnalyzer.from_checkpoint(args.model, threads=args.threads)
    rows, t0, faces = [], time.perf_counter(), 0
    start = rss_mb()
    for i, res in enumerate(analyzer.analyze_many(itertools.islice(itertools.cycle(files), args.n)), 1):
        faces += len(getattr(res, "faces", []))
        if i % args.every == 0:
            rows.append((i, faces, f"{rss_mb():.1f}", f"{rss_mb() - start:+.1f}", f"{i / (time.perf_counter() - t0):.1f}"))
            print(*rows[-1], flush=True)
    table(["images", "faces", "RSS MB", "vs start MB", "images/s"], rows,
          title=f"Soak: {args.n} images ({len(files)} distinct files cycled), start RSS {start:.1f} MB")


if __name__ == "__main__":
    main()
