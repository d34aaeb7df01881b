"""Images/s of `facemtl batch` on this machine: the local engine, and Ray Data with 1 and with 2 actors.

    python benchmarks/ray_batch.py [--n 1000] [--data ../shared/data/utkface] [--model default]

The default model (ONNX Runtime) on UTKFace crops with --detector none (each file is a face crop). Each run
writes a fresh CSV; the Ray figures include starting a local Ray and its actors (one model each, 1 thread) as a
user sees them. The local
engine runs with --threads 1 (like one actor) and with the backend's default threads."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, out: Path, extra: list[str], model: str | None) -> float:
    cmd = [sys.executable, "-m", "facemtl", "-q", "batch", "--out", str(out),
           "--detector", "none", "--no-progress", "--overwrite", *extra]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    subprocess.run(cmd + [str(folder)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "utkface"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    files = sorted(Path(a.data).glob("*.jpg"))[: a.n]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:  # one folder argument: the same file list for every engine
            os.symlink(f.resolve(), folder / f.name)
        cases = [("local, --threads 1", ["--threads", "1"]),
                 ("local, default threads", []),
                 ("ray, 1 actor", ["--engine", "ray", "--ray-cpus", str(os.cpu_count()), "--ray-concurrency", "1"]),
                 ("ray, 2 actors", ["--engine", "ray", "--ray-cpus", str(os.cpu_count()), "--ray-concurrency", "2"])]
        print(f"{len(files)} UTKFace crops, --detector none, model {a.model or 'default (ONNX Runtime)'}, "
              f"{os.cpu_count()} CPU(s)\n")
        print("| engine | seconds | images/s |\n|---|---:|---:|")
        for name, extra in cases:
            s = run(folder, Path(tmp) / "out.csv", extra, a.model)
            print(f"| {name} | {s:.1f} | {len(files) / s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
