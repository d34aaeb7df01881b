"""Cold start, install size and the end-to-end ratio of the core (torch-free) install.

1. **Core install**: a fresh virtual environment with ``pip install <repo>`` (no extras: numpy, Pillow, OpenCV
   headless, ONNX Runtime, PyAV, tqdm); its size on disk, and whether torch is in it (it must not be).
2. **Cold start**: whole new processes, as a user types them: ``python -c "import facemtl"``,
   ``facemtl --help``, ``facemtl predict PHOTO`` (3 faces), in the core venv and in this (dev) environment.
3. **End to end**: ``facemtl batch DIR --detector none`` over ``--crops`` face crops (a seeded UTKFace sample),
   whole process, start-up included, against the original design's script in the same run: a process that
   imports torch, builds ResNet-50 @ 224 with a shared Dense(512) and four heads, reads each crop, resizes it to
   224 px and writes one CSV row per crop (random weights: only its cost is measured). Runs alternate
   (original, facemtl, original, facemtl...) and the medians are compared.

    python benchmarks/cold_start.py [--venv /tmp/facemtl-core] [--runs 5] [--crops 1024] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import DATA, ROOT, cpu_model, table

PHOTO = DATA / "wild" / "facerec_obama_and_biden.jpg"  # three faces

ORIGINAL_SCRIPT = textwrap.dedent("""
    import csv, sys
    from pathlib import Path
    import numpy as np
    import torch
    from PIL import Image
    from facemtl.models import create_model
    torch.set_num_threads(int(sys.argv[3]))
    model = create_model("resnet50", input_size=224, shared_dim=512, regression_head="scalar").eval()
    files = sorted(Path(sys.argv[1]).iterdir())
    with open(sys.argv[2], "w", newline="") as f, torch.no_grad():
        out = csv.writer(f)
        for i in range(0, len(files), 32):
            chunk = files[i:i + 32]
            x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224))) for p in chunk])
            raw = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
            for j, p in enumerate(chunk):
                out.writerow([p.name] + [float(raw[k][j].argmax()) for k in raw])
""")


def du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            fp = os.path.join(root, name)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total / 1e6


def make_core_venv(venv: Path) -> tuple[float, float]:
    """Build (or reuse) the core venv; returns (install seconds or nan if reused, size MB)."""
    py = venv / "bin" / "python"
    seconds = float("nan")
    if not py.exists():
        print(f"creating the core venv in {venv} (pip install {ROOT}, no extras)...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True)
        seconds = time.perf_counter() - t0
    has_torch = subprocess.run([str(py), "-c", "import torch"], check=False, capture_output=True).returncode == 0
    if has_torch:
        raise SystemExit(f"{venv} has torch installed: the core install must not bring it")
    return seconds, du_mb(venv)


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-400:]}")
    return wall


def cold_rows(label: str, bindir: Path, runs: int, threads: int) -> list[tuple]:
    py, cli = str(bindir / "python"), str(bindir / "facemtl")
    cmds = {
        'python -c "import facemtl"': [py, "-c", "import facemtl"],
        "facemtl --help": [cli, "--help"],
        f"facemtl predict {PHOTO.name} (3 faces)": [cli, "predict", str(PHOTO), "--threads", str(threads)],
    }
    rows = []
    for name, cmd in cmds.items():
        timed(cmd)  # the first run warms the OS file cache, as a user's second command finds it
        walls = [timed(cmd) for _ in range(runs)]
        rows.append((label, name, statistics.median(walls), min(walls), max(walls)))
    return rows


def end_to_end(bindir: Path, n: int, threads: int, rounds: int) -> list[tuple]:
    utk = sorted((DATA / "utkface").glob("*.jpg"))
    if not utk:
        print(f"end to end skipped: no UTKFace folder in {DATA}")
        return []
    pick = random.Random(0).sample(utk, min(n, len(utk)))
    tmp = Path(tempfile.mkdtemp(prefix="facemtl-e2e-"))
    try:
        crops = tmp / "crops"
        crops.mkdir()
        for p in pick:
            shutil.copyfile(p, crops / p.name)
        script = tmp / "original.py"
        script.write_text(ORIGINAL_SCRIPT)
        ours = [str(bindir / "facemtl"), "-q", "batch", str(crops), "--detector", "none", "--threads", str(threads),
                "--overwrite"]
        orig = [sys.executable, str(script), str(crops), str(tmp / "orig.csv"), str(threads)]
        t_orig, t_ours = [], []
        for r in range(rounds):
            t_orig.append(timed(orig))
            t_ours.append(timed(ours + ["--out", str(tmp / f"ours{r}.csv")]))
            print(f"  round {r + 1}: original {t_orig[-1]:.1f} s, facemtl {t_ours[-1]:.1f} s", flush=True)
        mo, mf = statistics.median(t_orig), statistics.median(t_ours)
        return [("original design script (torch, ResNet-50 @ 224, no detector)", len(pick), mo, len(pick) / mo, 1.0),
                (f"facemtl batch --detector none ({bindir.parent.name})", len(pick), mf, len(pick) / mf, mo / mf)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "facemtl-core",
                    help="core virtual environment (built if missing; default: %(default)s)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per cold-start command (median shown)")
    ap.add_argument("--crops", type=int, default=1024, help="face crops of the end-to-end run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating end-to-end rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores; Python {sys.version.split()[0]}")
    if not PHOTO.is_file():
        raise SystemExit(f"{PHOTO} not found: the benchmark needs ../shared/data/wild")
    seconds, size = make_core_venv(args.venv)
    table(["environment", "size on disk (MB)", "install s", "torch"],
          [(f"core venv ({args.venv})", size, seconds, "absent")], title="Core install (pip install facemtl)")
    rows = cold_rows("core venv", args.venv / "bin", args.runs, args.threads)
    rows += cold_rows("this environment (dev: torch installed)", Path(sys.executable).parent, args.runs, args.threads)
    table(["environment", "command", "median s", "min s", "max s"], rows,
          title=f"Cold start: new process each run, {args.runs} runs after one warm-up")
    if not args.skip_e2e:
        e2e = end_to_end(args.venv / "bin", args.crops, args.threads, args.rounds)
        if e2e:
            table(["program", "crops", "wall s (median)", "crops/s", "speed-up"], e2e,
                  title=f"End to end, whole process, {args.threads} threads, {args.rounds} alternating rounds")


if __name__ == "__main__":
    main()
