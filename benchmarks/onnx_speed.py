"""Speed and accuracy of the default model in PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8.

Speed: per-face latency (ms) of the model alone (no detection, no flip-TTA) at batch 1 and batch 32, and
throughput (faces/s) at batch 32, on real validation crops as float (B, 3, S, S) input, with ``--threads``
intra-op threads for both PyTorch and ONNX Runtime. Measurements are interleaved: every round times every
model at both batch sizes for about ``--seconds`` each, so a load spike from another process hits all
models alike; each figure is the median over all calls of all rounds (one warm-up call first).

Accuracy: each model runs over the validation crops (the checkpoint's seeded UTKFace split and FER2013
PublicTest, from ``facemtl.train.data.gather_records``, decoded with ``decode_record`` at the model's
input size, flip-TTA on as ``FaceAnalyzer`` does by default); headline metrics are age MAE and gender,
emotion and ethnicity accuracy, computed by ``facemtl.evaluate.metrics``. The int8 models are compared
with ONNX Runtime fp32 (label agreement, mean |age difference|).

int8 files are made here from the fp32 export: ``static`` (QDQ, calibrated on ``--calibration-size``
crops sampled from the *training* split, so never on the validation crops) and, with
``--methods static,dynamic``, ``dynamic`` (no calibration; slow: ~20 ms/face).

    PYTHONPATH=src python benchmarks/onnx_speed.py [--threads 2] [--limit 500] [--methods static,dynamic]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _common import DATA, median, print_load_end, setup, table, time_calls

from facemtl.data.cache import decode_record
from facemtl.evaluate.metrics import compute_task_metrics
from facemtl.export import OnnxModel, export_onnx, quantize_int8
from facemtl.models import load_checkpoint
from facemtl.train.data import gather_records

try:  # optional: how busy the rest of the machine was while timing
    from _common import OtherLoad
except ImportError:  # pragma: no cover
    OtherLoad = None  # type: ignore[assignment,misc]

HEADLINE = (("age", "mae"), ("gender", "accuracy"), ("emotion", "accuracy"), ("ethnicity", "accuracy"))


def decode_all(records: list, size: int) -> np.ndarray:
    """Records -> float32 (N, 3, size, size) in [0, 1], as FaceAnalyzer.predict_crops feeds the model."""
    with ThreadPoolExecutor(2) as pool:
        crops = list(pool.map(lambda r: decode_record(r, size), records))
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def run_all(predict: Callable, x: np.ndarray, flip_tta: bool, batch: int = 64) -> dict[str, torch.Tensor]:
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(x), batch):
        for k, v in predict(torch.from_numpy(x[i:i + batch]), flip_tta).items():
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint (default: the bundled default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="at most this many validation images per source (default: all)")
    ap.add_argument("--calibration-size", type=int, default=256)
    ap.add_argument("--methods", default="static", help="int8 methods, comma-separated: static,dynamic")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per model, batch size and round")
    ap.add_argument("--no-flip-tta", dest="flip_tta", action="store_false", help="accuracy without flip-TTA")
    ap.add_argument("--keep", help="also write the ONNX files into this folder")
    args = ap.parse_args()
    setup(args.threads)

    if args.model is None:
        from facemtl.weights import default_checkpoint_path

        args.model = str(default_checkpoint_path())
    model, meta = load_checkpoint(args.model)
    size = int(meta["preprocess"]["input_size"])
    tcfg = meta.get("train_config") or {}
    seed, vf = int(tcfg.get("seed", 0)), float(tcfg.get("val_fraction", 0.1))
    records, _, _ = gather_records(str(DATA / "utkface"), str(DATA / "fer2013"), (), None, vf, seed)
    rng = np.random.default_rng(0)
    val: list = []
    for source in ("utkface", "fer2013"):
        recs = [r for r in records if r.split == "val" and r.source == source]
        if args.limit and len(recs) > args.limit:
            recs = [recs[i] for i in sorted(rng.choice(len(recs), args.limit, replace=False))]
        val += recs
    train = [r for r in records if r.split == "train"]
    calib = [train[i] for i in sorted(rng.choice(len(train), args.calibration_size, replace=False))]
    t0 = time.perf_counter()
    x_val, x_cal = decode_all(val, size), decode_all(calib, size)
    print(f"model: {args.model} ({meta['model_config']['backbone']}, {size} px)")
    print(f"validation crops: {len(val)} ({sum(r.source == 'utkface' for r in val)} UTKFace val, "
          f"{sum(r.source == 'fer2013' for r in val)} FER2013 PublicTest); calibration: {len(calib)} training "
          f"crops (UTKFace + FER2013); decoded in {time.perf_counter() - t0:.0f} s")

    out_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="facemtl-onnx-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.model).stem
    fp32 = export_onnx(args.model, out_dir / f"{stem}.onnx")
    files = {"ONNX Runtime fp32": fp32}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        t0 = time.perf_counter()
        q = quantize_int8(fp32, out_dir / f"{stem}.int8-{method}.onnx", calibration=x_cal, method=method)
        files[f"ONNX Runtime int8 {method}"] = q
        print(f"int8 {method}: quantized in {time.perf_counter() - t0:.1f} s")

    sess = {name: OnnxModel(p, threads=args.threads) for name, p in files.items()}

    def torch_predict(x: torch.Tensor, flip_tta: bool = False) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model.predict(x, flip_tta=flip_tta)

    predictors: dict[str, Callable] = {"PyTorch fp32": torch_predict, **{k: m.predict for k, m in sess.items()}}
    sizes_mib = {"PyTorch fp32": os.path.getsize(args.model) / 2**20,
                 **{k: os.path.getsize(p) / 2**20 for k, p in files.items()}}

    # -- speed, interleaved -----------------------------------------------------------------------------------
    xb = {b: torch.from_numpy(x_val[:b].copy()) for b in (1, 32)}
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in predictors for b in xb}
    for fn in predictors.values():
        for x in xb.values():
            fn(x)  # warm-up (allocations, kernel selection)
    other = OtherLoad().start() if OtherLoad else None
    for _ in range(args.rounds):
        for name, fn in predictors.items():
            for b, x in xb.items():
                times[(name, b)] += time_calls(lambda fn=fn, x=x: fn(x), args.seconds, min_runs=3)
    load = other.stop() if other else float("nan")

    # -- accuracy ---------------------------------------------------------------------------------------------
    targets = {t: np.array([r.target_indices()[t] for r in val], dtype=np.float64) for t, _ in HEADLINE}
    metrics: dict[str, dict[str, float]] = {}
    decoded: dict[str, dict[str, np.ndarray]] = {}
    eval_s: dict[str, float] = {}
    specs = {s.name: s for s in model.tasks}
    for name, fn in predictors.items():
        t0 = time.perf_counter()
        raw = run_all(fn, x_val, args.flip_tta)
        eval_s[name] = time.perf_counter() - t0
        metrics[name], decoded[name] = {}, {}
        for task, metric in HEADLINE:
            values, _ = specs[task].decode_raw(raw[task])
            decoded[name][task] = values.numpy()
            m = compute_task_metrics(specs[task], targets[task], values.numpy(), None, bands=None, groups=None)
            metrics[name][task] = m[metric]

    base = "PyTorch fp32"
    rows = []
    for name in predictors:
        b1, b32 = median(times[(name, 1)]) * 1e3, median(times[(name, 32)]) * 1e3 / 32
        rows.append([name, sizes_mib[name], b1, b32, 1e3 / b32,
                     median(times[(base, 32)]) * 1e3 / 32 / b32,
                     metrics[name]["age"], 100 * metrics[name]["gender"], 100 * metrics[name]["emotion"],
                     100 * metrics[name]["ethnicity"]])
    n_utk = sum(r.source == "utkface" for r in val)
    table(["model", "MiB", "ms/face b1", "ms/face b32", "faces/s b32", "x b32 vs torch", "age MAE",
           "gender %", "emotion %", "ethnicity %"], rows,
          title=f"speed ({args.threads} threads, no TTA; median of {args.rounds} interleaved rounds) and accuracy "
                f"({n_utk} UTKFace val + {len(val) - n_utk} FER2013 PublicTest crops, "
                f"flip-TTA {'on' if args.flip_tta else 'off'})")
    ref = "ONNX Runtime fp32"
    agree_rows = []
    for name in predictors:
        if name == ref:
            continue
        r = [name]
        for task, _ in HEADLINE:
            a, b = decoded[name][task], decoded[ref][task]
            mask = ~np.isnan(targets[task]) & (targets[task] >= 0)  # the images that carry this task's label
            r.append(float(np.mean(np.abs(a[mask] - b[mask]))) if task == "age"
                     else 100 * float(np.mean(a[mask] == b[mask])))
        r += [1e3 * eval_s[name] / len(val)]
        agree_rows.append(r)
    table(["vs ONNX Runtime fp32", "age |diff| yrs", "gender agree %", "emotion agree %", "ethnicity agree %",
           "eval ms/img (TTA)"], agree_rows, title="agreement with ONNX Runtime fp32 on the same crops")
    print(f"\nother processes used {load:.2f} cores on average while timing (0 = quiet machine)")
    if args.keep:
        print(f"ONNX files kept in {out_dir}")
    print_load_end()


if __name__ == "__main__":
    main()
