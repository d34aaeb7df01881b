"""Soak test: resident memory over many calls of the per-call API, of failing calls and of analyze_many, so a
leak (memory growing with the number of calls) or reference cycles (memory held until the cyclic garbage
collector runs) show.

    python benchmarks/soak.py [--n 10000] [--fail 2000] [--many 2000] [--warmup 200] [--detector retinaface]
                              [--model CKPT_OR_ONNX] [--data ../shared/data/utkface] [--fail-side 1000]

Phases, one analyzer for all:
  * ``analyze``: ``analyzer.analyze(path)`` once per call, ``--n`` calls cycling up to 1,000 UTKFace files;
  * ``failing``: ``--fail`` calls that raise InvalidInputError, cycling a float image outside [0, 1]
    (``--fail-side`` px square, float64: 24 MB at 1000), undecodable bytes and a missing file;
  * ``analyze_many``: ``--many`` images through one ``analyze_many`` generator.
Each phase reports RSS at its start, after its warm-up (``--warmup`` calls) and at its end, the growth per call
after the warm-up, the objects the cyclic garbage collector freed while it ran, and what ``gc.collect()`` still
found at its end (0: nothing was left in reference cycles).
"""
from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import cpu_model, table

import facemtl
from facemtl.errors import InvalidInputError


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def gc_freed() -> int:
    return sum(s["collected"] for s in gc.get_stats())


def run_phase(name: str, n: int, warmup: int, every: int, call: Callable[[int], None]) -> tuple:
    gc.collect()
    freed0, start, t0 = gc_freed(), rss_mb(), time.perf_counter()
    warm = start
    for i in range(n):
        call(i)
        if i + 1 == warmup:
            warm = rss_mb()
        if (i + 1) % every == 0:
            print(f"  {name}: {i + 1} calls, RSS {rss_mb():.1f} MB", flush=True)
    secs = time.perf_counter() - t0
    end, freed = rss_mb(), gc_freed() - freed0
    left = gc.collect()
    per_call_kb = (end - warm) * 1024 / max(1, n - warmup)
    return (name, n, f"{start:.1f}", f"{warm:.1f}", f"{end:.1f}", f"{per_call_kb:+.3f}", freed, left,
            f"{n / secs:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="per-call analyze() calls (files are cycled)")
    ap.add_argument("--fail", type=int, default=2000, help="failing calls")
    ap.add_argument("--many", type=int, default=2000, help="images through one analyze_many (0: skip)")
    ap.add_argument("--warmup", type=int, default=200, help="calls of each phase before its growth is measured")
    ap.add_argument("--every", type=int, default=1000, help="print memory every this many calls")
    ap.add_argument("--fail-side", type=int, default=1000, help="side of the bad float image of the failing calls")
    ap.add_argument("--model", help="checkpoint or .onnx (default: the bundled model)")
    ap.add_argument("--detector", default=None, help="detector name (default: the library's default)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    files = sorted(str(p) for p in Path(args.data).glob("*.jpg"))[:1000]
    if not files:
        print(f"skipped: no images in {args.data}")
        return
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical cores; python {platform.python_version()}; "
          f"facemtl {facemtl.__version__}; numpy {np.__version__}")
    analyzer = facemtl.FaceAnalyzer.from_checkpoint(args.model, detector=args.detector, threads=args.threads)
    print(f"model: {analyzer.info.get('checkpoint')} ({analyzer.info.get('backend')}), detector "
          f"{analyzer.detector.name}; {len(files)} distinct files of {args.data}")
    s = args.fail_side
    bad_inputs: list[Callable[[], object]] = [
        lambda: np.full((s, s, 3), 3.0),  # float outside [0, 1], allocated per call (so a cycle would hold it)
        lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(2048),  # a PNG signature, then junk
        lambda: "/nonexistent/soak/missing.jpg",
    ]

    def good(i: int) -> None:
        analyzer.analyze(files[i % len(files)])

    def failing(i: int) -> None:
        try:
            analyzer.analyze(bad_inputs[i % len(bad_inputs)]())
        except InvalidInputError:
            return
        raise AssertionError("a bad input was accepted")

    rows = [run_phase("analyze (per call)", args.n, args.warmup, args.every, good),
            run_phase("failing calls", args.fail, args.warmup, args.every, failing)]
    if args.many:
        results = analyzer.analyze_many(itertools.islice(itertools.cycle(files), args.many))
        rows.append(run_phase("analyze_many", args.many, args.warmup, args.every, lambda i: next(results)))
    table(["phase", "calls", "RSS start MB", "after warm-up MB", "end MB", "KB/call after warm-up",
           "freed by cyclic gc", "gc.collect() at end", "calls/s"], rows,
          title=f"Soak: one analyzer; warm-up {args.warmup} calls per phase; growth = (end - after warm-up) / "
                f"(calls - warm-up)")


if __name__ == "__main__":
    main()
