"""Latency of the int8 ONNX model per face at batch 1 for candidate backbones and input sizes.

The "right answers on real photos" work asks for Lite0 at 112 px to be weighed against Lite1 / Lite2 at 128-160 px
while the shipped int8 model stays at or under 2 ms per face at batch 1 on this CPU. This script measures the cost
side of that choice: each candidate (all four heads, ImageNet-initialised trunk: latency does not depend on the
weights' values) is exported to ONNX, statically quantized to int8 on real face crops (as ``facemtl export
--quantize int8`` does) and timed in ONNX Runtime with one face per call, alternating candidates over rounds.

Usage: python benchmarks/int8_backbones.py [--candidates lite0@112,lite1@128,...] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, median, setup, table

DEFAULT = "lite0@112,lite0@128,lite1@112,lite1@128,lite1@160,lite2@128,lite2@160"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", default=DEFAULT, help=f"backbone@size, comma-separated (default: {DEFAULT})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per candidate and round")
    ap.add_argument("--calibration", default=str(DATA / "utkface"), help="face crops for the int8 calibration")
    ap.add_argument("--calibration-size", type=int, default=64)
    a = ap.parse_args()
    setup(a.threads)
    import onnxruntime as ort
    import torch

    from facemtl.export.onnx import export_onnx
    from facemtl.export.quantize import quantize_int8
    from facemtl.models import create_model

    cands = [(c.split("@")[0], int(c.split("@")[1])) for c in a.candidates.split(",")]
    sessions, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, size in cands:
            torch.manual_seed(0)
            model = create_model(backbone, input_size=size, pretrained=True).eval()
            params[(backbone, size)] = sum(p.numel() for p in model.parameters())
            fp32 = export_onnx(model, Path(tmp) / f"{backbone}_{size}.onnx")
            int8 = quantize_int8(fp32, Path(tmp) / f"{backbone}_{size}.int8.onnx", calibration=[a.calibration],
                                 calibration_size=a.calibration_size)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
            sessions[(backbone, size)] = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
        times: dict[tuple[str, int], list[float]] = {c: [] for c in cands}
        for _ in range(a.rounds):  # alternate candidates so a busy moment does not favour one of them
            for c, sess in sessions.items():
                x = np.random.default_rng(0).random((1, 3, c[1], c[1]), dtype=np.float32)
                name = sess.get_inputs()[0].name
                sess.run(None, {name: x})  # warm-up
                end = time.perf_counter() + a.seconds
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    sess.run(None, {name: x})
                    times[c].append((time.perf_counter() - t0) * 1000)
    base = median(times[cands[0]])
    rows = []
    for b, s in cands:
        ms = median(times[(b, s)])
        fits = "yes" if ms <= 2.0 else "no"
        rows.append([b, s, f"{params[(b, s)] / 1e6:.2f} M", f"{ms:.2f}", f"{ms / base:.2f}x", fits])
    table(["backbone", "input px", "params", "int8 ms/face b1 (median)", f"x {cands[0][0]}@{cands[0][1]}",
           "<= 2 ms"], rows, title="static int8, ONNX Runtime, one face per call (no flip TTA)")


if __name__ == "__main__":
    main()
