"""End to end: ``FaceAnalyzer.analyze_many`` with the default model, per detector, on real photos and UTKFace.

For each detector in ``facemtl.detect.list_detectors()`` except "none" (a detector whose optional
package is missing is skipped with its message), ``FaceAnalyzer.from_checkpoint(detector=name)``
runs over (a) the photos in ``<data>/wild`` and (b) ``--utk-n`` UTKFace images (seeded sample).
Printed per detector and set: images/s and faces/s (wall clock of the whole ``analyze_many`` run,
files read from disk inside it), faces found, images with no face, failed items, and the mean of
each result's ``timings_ms`` (load, detect, crop, predict) per image. Loading and detection run in
``--workers`` threads ahead of the batched forward pass, so the stage times overlap and their sum
can exceed the wall time per image. "predict" includes flip test-time augmentation when
``AnalyzerOptions.flip_tta`` is on (the title says which; ``--flip-tta on|off`` overrides). One
untimed image warms each analyzer up first.

Each detector runs in a child process, so a detector that crashes the interpreter (e.g. one that is
not thread-safe when ``analyze_many`` calls it from two threads) is reported instead of ending the
benchmark; such a detector is then rerun with one worker thread and its row is marked "(1 worker)".

    PYTHONPATH=src python benchmarks/end_to_end.py [--utk-n 2000] [--detectors retinaface,haar]
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import DATA, OtherLoad, print_load_end, setup, table

STAGES = ("load", "detect", "crop", "predict")
RESULT = "@@RESULT "


def image_sets(args: argparse.Namespace) -> list[tuple[str, list[Path]]]:
    sets = []
    wild_dir, utk_dir = args.data / "wild", args.data / "utkface"
    if wild_dir.is_dir():
        wild = sorted(p for p in wild_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        sets.append((f"wild ({len(wild)} photos)", wild))
    if utk_dir.is_dir() and args.utk_n > 0:
        all_utk = sorted(utk_dir.glob("*.jpg"))
        utk = random.Random(args.seed).sample(all_utk, min(args.utk_n, len(all_utk)))
        sets.append((f"utkface ({len(utk)} of {len(all_utk)}, seed {args.seed})", utk))
    return sets


def child(args: argparse.Namespace) -> None:
    """Benchmark one detector with ``args.workers`` threads; print one JSON line for the parent."""
    import torch

    from facemtl import FaceAnalyzer
    from facemtl.analyzer import ItemError
    from facemtl.errors import FacemtlError, MissingDependencyError

    torch.set_num_threads(args.threads)
    name = args.child
    try:
        opts = {"batch_size": args.batch_size}
        if args.flip_tta != "default":
            opts["flip_tta"] = args.flip_tta == "on"
        analyzer = FaceAnalyzer.from_checkpoint(args.checkpoint, detector=name, threads=args.threads, **opts)
    except (MissingDependencyError, FacemtlError, TypeError) as exc:
        kind = "optional package missing" if isinstance(exc, MissingDependencyError) else type(exc).__name__
        print(RESULT + json.dumps({"skipped": f"{kind}: {exc}"}), flush=True)
        return
    sets = image_sets(args)
    list(analyzer.analyze_many([sets[0][1][0]], workers=1))  # warm-up: first calls allocate
    rows = []
    for label, paths in sets:
        t0, other = time.perf_counter(), OtherLoad().start()
        results = list(analyzer.analyze_many(paths, workers=args.workers))
        wall = time.perf_counter() - t0
        others = other.stop()
        ok = [r for r in results if not isinstance(r, ItemError)]
        stage = {s: statistics.mean(r.timings_ms.get(s, 0.0) for r in ok) if ok else float("nan") for s in STAGES}
        rows.append({"set": label, "n": len(paths), "wall": wall, "faces": sum(len(r.faces) for r in ok),
                     "no_face": sum(1 for r in ok if not r.faces), "errors": len(results) - len(ok), "others": others,
                     **stage})
        print(f"  done {name} on {label} in {wall:.1f} s", file=sys.stderr, flush=True)
    model = f"{analyzer.info.get('backbone')} @ {analyzer.input_size} px"
    print(RESULT + json.dumps({"rows": rows, "model": model, "flip_tta": getattr(analyzer.options, "flip_tta", None)}),
          flush=True)


def run_child(args: argparse.Namespace, name: str, workers: int) -> tuple[dict | None, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--workers", str(workers),
           "--data", str(args.data), "--utk-n", str(args.utk_n), "--seed", str(args.seed),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--flip-tta", args.flip_tta]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stderr.splitlines():
        if line.startswith("  done "):
            print(line, flush=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):]), ""
    if proc.returncode < 0:
        why = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        why = f"exit code {proc.returncode}"
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    err = next((ln for ln in reversed(tail) if "Error" in ln or "error" in ln), tail[-1] if tail else "")
    return None, f"{why}: {' '.join(err.split())[:160]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding wild/ and utkface/ (default: %(default)s)")
    ap.add_argument("--utk-n", type=int, default=300, help="UTKFace images to run (the full check uses 2000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the UTKFace sample")
    ap.add_argument("--detectors", default=None, help="comma-separated detector names (default: all but 'none')")
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled default model)")
    ap.add_argument("--batch-size", type=int, default=32, help="AnalyzerOptions.batch_size (faces per forward pass)")
    ap.add_argument("--workers", type=int, default=2, help="analyze_many loading/detection threads")
    ap.add_argument("--flip-tta", choices=("default", "on", "off"), default="default",
                    help="AnalyzerOptions.flip_tta (default: the analyzer's own default)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    setup(args.threads)

    wild_dir, utk_dir = args.data / "wild", args.data / "utkface"
    if not wild_dir.is_dir() and not utk_dir.is_dir():
        print(f"skipped: data folder not found ({args.data}); give --data DIR holding wild/ and utkface/")
        return
    for d in (wild_dir, utk_dir):
        if not d.is_dir():
            print(f"note: {d} not found; skipped")
    from facemtl.detect import list_detectors

    names = args.detectors.split(",") if args.detectors else [d for d in list_detectors() if d != "none"]
    rows, notes, model, tta = [], [], "", None
    for name in names:
        res, why = run_child(args, name, args.workers)
        tag = name
        if res is None and args.workers > 1:
            notes.append(f"{name} with {args.workers} worker threads FAILED ({why}); rerun with 1 worker")
            print("  " + notes[-1], flush=True)
            res, why = run_child(args, name, 1)
            tag = f"{name} (1 worker)"
        if res is None:
            notes.append(f"{name} FAILED ({why})")
            print("  " + notes[-1], flush=True)
            continue
        if "skipped" in res:
            notes.append(f"{name}: skipped, {res['skipped']}")
            print("  " + notes[-1], flush=True)
            continue
        model, tta = res["model"], res.get("flip_tta")
        for r in res["rows"]:
            rows.append((tag, r["set"], r["n"], r["n"] / r["wall"], r["faces"] / r["wall"], r["faces"], r["no_face"],
                         r["errors"], 1e3 * r["wall"] / r["n"], *(r[s] for s in STAGES), f"{r['others']:.2f}"))
    print("others' cores: CPU cores used by other processes during the run (0 = quiet machine)")
    table(["detector", "images", "n", "images/s", "faces/s", "faces", "no face", "errors", "wall ms/img",
           "load ms", "detect ms", "crop ms", "predict ms", "others' cores"], rows,
          title=f"End to end: FaceAnalyzer.analyze_many, model {model}, flip TTA {tta}, batch {args.batch_size}, "
                f"{args.workers} worker thread(s); stage columns = mean timings_ms per image")
    for n in notes:
        print(n)
    print_load_end()


if __name__ == "__main__":
    main()
