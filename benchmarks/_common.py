"""Helpers shared by the benchmark scripts: machine header, thread setup, timing and plain tables."""
from __future__ import annotations

import io
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def setup(threads: int) -> None:
    """Set PyTorch's intra-op threads and print the machine header."""
    import torch  # here, not at import: benchmarks of the torch-free paths use the other helpers

    torch.set_num_threads(threads)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical cores ({usable} usable); "
          f"torch {torch.__version__} with {torch.get_num_threads()} thread(s); python {platform.python_version()}")
    print(f"load average at start (1/5/15 min): {load}")


def print_load_end() -> None:
    if hasattr(os, "getloadavg"):
        print("load average at end (1/5/15 min): " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Print a plain fixed-width table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3f}"
    return "-" if v is None else str(v)


def time_calls(fn: Callable[[], object], seconds: float, min_runs: int = 3, max_runs: int = 1000) -> list[float]:
    """Call ``fn`` repeatedly; return each call's wall time in seconds (at least ``min_runs``, stopping
    once ``seconds`` have passed or ``max_runs`` calls were made)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < seconds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def serialized_mb(model: torch.nn.Module, half: bool = False) -> float:
    """Size in MB (1e6 bytes) of ``torch.save(model.state_dict())``, floats cast to fp16 when ``half``."""
    import torch

    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell() / 1e6


class OtherLoad:
    """Average CPU cores used by *other* processes between ``start()`` and ``stop()`` (Linux /proc).

    The machine-wide busy time minus this process's own CPU time (all its threads), divided by the
    wall time: 0 on a quiet machine, about 1 when another process keeps one core busy. A row measured
    with a high value is not trustworthy on a 2-core machine.
    """

    def __init__(self) -> None:
        self._t0 = self._busy0 = self._self0 = 0.0

    @staticmethod
    def _busy() -> float:
        try:
            f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            v = [int(x) for x in f]
            # user nice system idle iowait irq softirq steal ...
            return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def start(self) -> OtherLoad:
        self._t0, self._busy0 = time.perf_counter(), self._busy()
        t = os.times()
        self._self0 = t.user + t.system
        return self

    def stop(self) -> float:
        t = os.times()
        wall = time.perf_counter() - self._t0
        other = (self._busy() - self._busy0) - (t.user + t.system - self._self0)
        return max(0.0, other / wall) if wall > 0 else float("nan")
