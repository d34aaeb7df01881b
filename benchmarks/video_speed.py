"""Video speed and tracking: frames of video processed per wall second, and track ids per person.

No video data ships with the repository, so the clips are synthesised (seeded): ``--faces`` UTKFace face crops
(real photos, ``<data>/utkface``) pasted on a textured background, each moving smoothly on its own path, while a
dark vertical bar wider than a face sweeps across the frame once (in the first 40 % of the clip) and hides every
face in turn for a few frames (a brief occlusion: about half a second more than half hidden). Clips are written
as H.264 at ``--fps`` (30) and are not timed.

Each clip then goes through ``facemtl.video.analyze_video`` with the default model (or ``--model``) on
``--threads`` (2) CPU threads, all four attributes, the per-frame CSV and the annotated H.264 video written,
exactly as ``facemtl predict VIDEO --save-dir`` does (``--cli`` runs that command in a child process instead
and times the whole process, start-up and model loading included). Printed per clip: resolution, faces, frames,
wall seconds, frames/s (processed frames per wall second), track ids per person (distinct ids / people) and
coverage (share of the frames where a person is visible, at most half hidden, that have a reported box on that
person: IoU >= 0.3), with the other processes' CPU load during the run (a row measured with a high value is not
trustworthy on a 2-core machine).

    PYTHONPATH=src python benchmarks/video_speed.py [--frames 300] [--faces 1,3,5] [--sizes 640x480,1280x720]
        [--detect-every 3] [--refresh-every 6] [--model CKPT] [--cli] [--keep DIR]

Targets (issue 12): >= 25 frames/s at 640x480 with up to 5 faces, >= 15 at 1280x720, <= 1.5 ids per person.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any OpenMP runtime loads (torch, if it is used)

import numpy as np
from _common import DATA, OtherLoad, cpu_model, print_load_end, table


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A textured, face-free background: a colour gradient, soft blobs and fine noise."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([90 + 60 * xx / w, 110 + 40 * yy / h, 130 - 50 * xx / w], axis=2)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * w
        colour = rng.uniform(40, 200, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - 0.6 * blob) + colour * 0.6 * blob
    img += rng.normal(0, 6, img.shape)
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)


def make_clip(path: Path, size: tuple[int, int], n_faces: int, frames: int, fps: int, seed: int
              ) -> list[list[tuple[float, float, float, float, bool]]]:
    """Write the synthetic clip; returns per frame, per person: (x1, y1, x2, y2, visible)."""
    import av
    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    files = sorted((DATA / "utkface").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no UTKFace images in {DATA / 'utkface'}")
    picks = random.Random(seed).sample(files, n_faces)
    side = round(h * 0.24)
    faces = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (side, side),
                        interpolation=cv2.INTER_AREA) for p in picks]
    bg = _background(w, h, rng)
    cols = min(n_faces, 3)
    rows = -(-n_faces // cols)
    homes = [((i % cols + 0.5) * w / cols, (i // cols + 0.5) * h / rows) for i in range(n_faces)]
    amp = (0.12 * w / cols, 0.1 * h / rows)
    periods = rng.uniform(90, 180, (n_faces, 2))
    phases = rng.uniform(0, 2 * np.pi, (n_faces, 2))
    bar_w = int(side * 1.35)
    # the bar crosses once, during the first 40 % of the clip (4 s of a 300-frame clip at 30 fps)
    sweep = int(frames * 0.4)
    truth = []
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "18"}
    for t in range(frames):
        img = bg.copy()
        boxes = []
        for i, (face, (hx, hy)) in enumerate(zip(faces, homes)):
            cx = hx + amp[0] * np.sin(2 * np.pi * t / periods[i, 0] + phases[i, 0])
            cy = hy + amp[1] * np.sin(2 * np.pi * t / periods[i, 1] + phases[i, 1])
            x1 = int(np.clip(round(cx - side / 2), 0, w - side))
            y1 = int(np.clip(round(cy - side / 2), 0, h - side))
            img[y1:y1 + side, x1:x1 + side] = face
            boxes.append((x1, y1, x1 + side, y1 + side))
        bx = int(-bar_w + (w + bar_w) * t / sweep) if t <= sweep else w + 1
        if bx < w:
            img[:, max(0, bx):max(0, bx + bar_w)] = (35, 35, 40)
        frame_truth = []
        for x1, y1, x2, y2 in boxes:
            hidden = max(0, min(x2, bx + bar_w) - max(x1, bx)) / (x2 - x1)
            frame_truth.append((float(x1), float(y1), float(x2), float(y2), hidden <= 0.5))
        truth.append(frame_truth)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    container.mux(stream.encode(None))
    container.close()
    return truth


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_tracks(csv_path: Path, truth: list[list[tuple[float, float, float, float, bool]]]
                 ) -> tuple[int, float]:
    """(distinct track ids, coverage of the visible people) from the per-frame CSV."""
    by_frame: dict[int, list[tuple[float, float, float, float]]] = {}
    ids = set()
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            if r["track_id"]:
                ids.add(r["track_id"])
                by_frame.setdefault(int(r["frame"]), []).append(
                    tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
    seen = covered = 0
    for i, people in enumerate(truth):
        for *box, visible in people:
            if visible:
                seen += 1
                covered += any(_iou(tuple(box), b) >= 0.3 for b in by_frame.get(i, []))
    return len(ids), covered / max(seen, 1)


def run_api(analyzer, clip: Path, out: Path, config) -> float:
    from facemtl.video import analyze_video

    t0 = time.perf_counter()
    summary = analyze_video(analyzer, clip, config, out / f"{clip.stem}_frames.csv",
                            out / f"{clip.stem}_annotated.mp4")
    wall = time.perf_counter() - t0
    assert summary["complete"], summary
    return wall


def run_cli(args: argparse.Namespace, clip: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "facemtl", "-q", "predict", str(clip), "--save-dir", str(out), "--threads",
           str(args.threads), "--detect-every", str(args.detect_every), "--refresh-every", str(args.refresh_every)]
    if args.model:
        cmd += ["--model", args.model]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--faces", default="1,3,5", help="comma-separated face counts")
    ap.add_argument("--sizes", default="640x480,1280x720", help="comma-separated WxH")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--detect-every", type=int, default=None, help="default: VideoConfig's")
    ap.add_argument("--refresh-every", type=int, default=None, help="default: VideoConfig's")
    ap.add_argument("--model", help="checkpoint or .onnx (default: the bundled model)")
    ap.add_argument("--cli", action="store_true", help="time `facemtl predict VIDEO --save-dir` in a child process")
    ap.add_argument("--keep", type=Path, help="keep the clips and outputs in this folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from facemtl.video import VideoConfig

    defaults = VideoConfig()
    args.detect_every = args.detect_every or defaults.detect_every
    args.refresh_every = args.refresh_every or defaults.refresh_every
    config = VideoConfig(detect_every=args.detect_every, refresh_every=args.refresh_every)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical cores ({usable} usable); python "
          f"{sys.version.split()[0]}; {args.threads} thread(s)")
    print(f"load average at start (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    analyzer = None
    if not args.cli:
        from facemtl import FaceAnalyzer

        analyzer = FaceAnalyzer.from_checkpoint(args.model, threads=args.threads)
        print(f"model: {analyzer.info.get('checkpoint')} ({type(analyzer.model).__name__}); detector: "
              f"{analyzer.detector!r}; flip TTA {'on' if analyzer.options.flip_tta else 'off'}; "
              f"torch imported: {'torch' in sys.modules}")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    counts = [int(v) for v in args.faces.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if analyzer is not None:  # warm-up, untimed: first-call allocations of both networks
            warm = work / "warmup.mp4"
            make_clip(warm, (320, 240), 1, 10, args.fps, args.seed)
            run_api(analyzer, warm, work, config)
        for w, h in sizes:
            for n in counts:
                clip = work / f"clip_{w}x{h}_{n}faces.mp4"
                truth = make_clip(clip, (w, h), n, args.frames, args.fps, args.seed + n)
                out = work / f"out_{w}x{h}_{n}"
                load, kids = OtherLoad().start(), os.times()
                wall = run_cli(args, clip, out) if args.cli else run_api(analyzer, clip, out, config)
                done = os.times()
                child_cpu = (done.children_user + done.children_system) - (kids.children_user + kids.children_system)
                other = max(0.0, load.stop() - child_cpu / wall)  # the child's CPU is ours, not "other"
                ids, coverage = score_tracks(out / f"{clip.stem}_frames.csv", truth)
                rows.append((f"{w}x{h}", n, args.frames, wall, args.frames / wall, ids / n, f"{coverage:.1%}",
                             other))
    mode = "facemtl predict VIDEO --save-dir (whole process)" if args.cli else "analyze_video (CSV + H.264 video)"
    table(["resolution", "faces", "frames", "wall s", "frames/s", "ids/person", "coverage", "other load"], rows,
          title=f"video: {mode}; detect every {args.detect_every}, refresh every {args.refresh_every} frames, "
                f"{args.fps} fps clips with one occluding sweep")
    print_load_end()


if __name__ == "__main__":
    main()
