"""Speed of the original design (ResNet-50 at 224 px) and the default model, PyTorch vs ONNX Runtime fp32 / int8.

One table, one row per model and runtime: the original design, built as
``create_model("resnet50", input_size=224, shared_dim=512, regression_head="scalar")`` with random
weights (no ImageNet ResNet weights are reachable offline; only its cost is measured), in PyTorch fp32
and ONNX Runtime fp32; then the default model (or ``--model``) in PyTorch fp32, ONNX Runtime fp32 and
ONNX Runtime int8. ``--no-original`` leaves the ResNet-50 rows out (speed-ups are then relative to the
default model in PyTorch).

Columns: parameters; file size in MB (1e6 bytes: the checkpoint for the default model in PyTorch, the
serialized fp32 state dict for the original in PyTorch, the ``.onnx`` file otherwise); per-face latency
(ms) of the model alone (no detection, no flip-TTA) at batch 1 and batch 32; throughput (faces/s) at
batch 32; speed-up over the original in PyTorch at batch 1 and 32; and accuracy (default model only).
Inputs are real validation crops as float (B, 3, S, S) at each model's own input size, with
``--threads`` intra-op threads for both PyTorch and ONNX Runtime. Measurements are interleaved: every
round times every row at both batch sizes for about ``--seconds`` each (at least two calls: a ResNet-50
batch of 32 takes 1-2 s on 2 cores), so a load spike from another process hits all rows alike; each
figure is the median over all calls of all rounds (one warm-up call first).

Accuracy: each default-model row runs over the validation crops (the checkpoint's seeded UTKFace split
and FER2013 PublicTest, from ``facemtl.train.data.gather_records``, decoded with ``decode_record`` at the
model's input size, flip-TTA on as ``FaceAnalyzer`` does by default); headline metrics are age MAE and
gender, emotion and ethnicity accuracy, computed by ``facemtl.evaluate.metrics``. The int8 models are
compared with ONNX Runtime fp32 (label agreement, mean |age difference|).

int8 files are made here from the fp32 export: ``static`` (QDQ, calibrated on ``--calibration-size``
crops sampled from the *training* split, so never on the validation crops) and, with
``--methods static,dynamic``, ``dynamic`` (no calibration; slow: ~20 ms/face).

Run time with the defaults on 2 quiet cores: about 4 minutes (ONNX export of both models and int8
calibration ~30 s, timing ~15 s per round x 5 rounds, accuracy over all ~5,500 validation crops ~1.5 min);
``--no-original`` saves about a minute. A smoke test: ``--rounds 1 --seconds 0.3 --limit 50``.

    PYTHONPATH=src python benchmarks/onnx_speed.py [--threads 2] [--limit 500] [--methods static,dynamic]
        [--no-original]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import DATA, OtherLoad, count_params, median, print_load_end, serialized_mb, setup, table, time_calls

from facemtl.data.cache import decode_record
from facemtl.evaluate.metrics import compute_task_metrics
from facemtl.export import OnnxModel, export_onnx, quantize_int8
from facemtl.models import create_model, load_checkpoint
from facemtl.train.data import gather_records

HEADLINE = (("age", "mae"), ("gender", "accuracy"), ("emotion", "accuracy"), ("ethnicity", "accuracy"))
BATCHES = (1, 32)
ORIGINAL = {"backbone": "resnet50", "input_size": 224, "shared_dim": 512, "regression_head": "scalar"}


@dataclass
class Row:
    """One row of the table: a model on one runtime."""

    model: str  # e.g. "original resnet50 @224", "lite0 @112"
    runtime: str  # "PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8 static"
    predict: Callable[..., dict[str, torch.Tensor]]  # (x, flip_tta=False) -> raw outputs
    size: int  # input side in pixels
    params: int
    mb: float  # file size, 1e6 bytes
    trained: bool = True  # False: no accuracy columns (the original has random weights)

    @property
    def name(self) -> str:
        return f"{self.model}, {self.runtime}"


def torch_predictor(model: torch.nn.Module) -> Callable[..., dict[str, torch.Tensor]]:
    def predict(x: torch.Tensor, flip_tta: bool = False) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model.predict(x, flip_tta=flip_tta)

    return predict


def decode_all(records: list, size: int) -> np.ndarray:
    """Records -> float32 (N, 3, size, size) in [0, 1], as FaceAnalyzer.predict_crops feeds the model."""
    with ThreadPoolExecutor(2) as pool:
        crops = list(pool.map(lambda r: decode_record(r, size)[0], records))
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
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per row, batch size and round")
    ap.add_argument("--no-flip-tta", dest="flip_tta", action="store_false", help="accuracy without flip-TTA")
    ap.add_argument("--no-original", dest="original", action="store_false",
                    help="leave out the original design (ResNet-50 @224, PyTorch and ONNX Runtime fp32)")
    ap.add_argument("--keep", help="also write the ONNX files into this folder")
    args = ap.parse_args()
    t_start = time.perf_counter()
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
    backbone = meta["model_config"]["backbone"]
    print(f"model: {args.model} ({backbone}, {size} px)")
    print(f"validation crops: {len(val)} ({sum(r.source == 'utkface' for r in val)} UTKFace val, "
          f"{sum(r.source == 'fer2013' for r in val)} FER2013 PublicTest); calibration: {len(calib)} training "
          f"crops (UTKFace + FER2013); decoded in {time.perf_counter() - t0:.0f} s")

    keep = args.keep is not None
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="facemtl-onnx-")
    out_dir = Path(args.keep) if keep else Path(tmp.name)  # type: ignore[union-attr]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    x_time = {size: x_val[:max(BATCHES)]}  # timing inputs per input size: real crops
    if args.original:
        torch.manual_seed(0)
        orig = create_model(ORIGINAL["backbone"], **{k: v for k, v in ORIGINAL.items() if k != "backbone"}).eval()
        s_orig, n_orig = ORIGINAL["input_size"], count_params(orig)
        label = f"original resnet50 @{ORIGINAL['input_size']}"
        t0 = time.perf_counter()
        orig_onnx = export_onnx(orig, out_dir / "original_resnet50_224.onnx")
        print(f"original: resnet50 @ {s_orig} px, shared_dim 512, scalar age head, random weights; "
              f"exported to ONNX in {time.perf_counter() - t0:.0f} s")
        x_time[s_orig] = decode_all(val[:max(BATCHES)], s_orig)
        rows += [Row(label, "PyTorch fp32", torch_predictor(orig), s_orig, n_orig, serialized_mb(orig), False),
                 Row(label, "ONNX Runtime fp32", OnnxModel(orig_onnx, threads=args.threads).predict, s_orig, n_orig,
                     os.path.getsize(orig_onnx) / 1e6, False)]

    stem, n_def, label = Path(args.model).stem, count_params(model), f"{backbone} @{size}"
    fp32 = export_onnx(args.model, out_dir / f"{stem}.onnx")
    files = {"ONNX Runtime fp32": fp32}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        t0 = time.perf_counter()
        q = quantize_int8(fp32, out_dir / f"{stem}.int8-{method}.onnx", calibration=x_cal, method=method)
        files[f"ONNX Runtime int8 {method}"] = q
        print(f"int8 {method}: quantized in {time.perf_counter() - t0:.1f} s")
    rows.append(Row(label, "PyTorch fp32", torch_predictor(model), size, n_def, os.path.getsize(args.model) / 1e6))
    rows += [Row(label, runtime, OnnxModel(p, threads=args.threads).predict, size, n_def, os.path.getsize(p) / 1e6)
             for runtime, p in files.items()]

    # -- speed, interleaved -----------------------------------------------------------------------------------
    xb = {(s, b): torch.from_numpy(x[:b].copy()) for s, x in x_time.items() for b in BATCHES}
    times: dict[tuple[str, int], list[float]] = {(r.name, b): [] for r in rows for b in BATCHES}
    for r in rows:
        for b in BATCHES:
            r.predict(xb[(r.size, b)])  # warm-up (allocations, kernel selection)
    t0, other = time.perf_counter(), OtherLoad().start()
    for _ in range(args.rounds):
        for r in rows:
            for b in BATCHES:
                x = xb[(r.size, b)]
                times[(r.name, b)] += time_calls(lambda fn=r.predict, x=x: fn(x), args.seconds, min_runs=2)
    load, t_timing = other.stop(), time.perf_counter() - t0

    # -- accuracy (trained rows only) -------------------------------------------------------------------------
    targets = {t: np.array([r.target_indices()[t] for r in val], dtype=np.float64) for t, _ in HEADLINE}
    metrics: dict[str, dict[str, float]] = {}
    decoded: dict[str, dict[str, np.ndarray]] = {}
    eval_s: dict[str, float] = {}
    specs = {s.name: s for s in model.tasks}
    t0 = time.perf_counter()
    for r in rows:
        if not r.trained:
            continue
        t1 = time.perf_counter()
        raw = run_all(r.predict, x_val, args.flip_tta)
        eval_s[r.name] = time.perf_counter() - t1
        metrics[r.name], decoded[r.name] = {}, {}
        for task, metric in HEADLINE:
            values, _ = specs[task].decode_raw(raw[task])
            decoded[r.name][task] = values.numpy()
            m = compute_task_metrics(specs[task], targets[task], values.numpy(), None, bands=None, groups=None)
            metrics[r.name][task] = m[metric]
    t_eval = time.perf_counter() - t0

    base = rows[0]  # the original in PyTorch, or (--no-original) the default model in PyTorch
    vs = "R50 torch" if args.original else "torch"

    def ms_per_face(r: Row, b: int) -> float:
        return median(times[(r.name, b)]) * 1e3 / b

    table_rows = []
    for r in rows:
        b1, b32 = ms_per_face(r, 1), ms_per_face(r, 32)
        acc = ([metrics[r.name]["age"], *(100 * metrics[r.name][t] for t in ("gender", "emotion", "ethnicity"))]
               if r.trained else ["n/a (untrained)", "n/a", "n/a", "n/a"])
        table_rows.append([r.model, r.runtime, f"{r.params / 1e6:.2f} M", r.mb, b1, b32, 1e3 / b32,
                           ms_per_face(base, 1) / b1, ms_per_face(base, 32) / b32, *acc])
    n_utk = sum(r.source == "utkface" for r in val)
    table(["model", "runtime", "params", "MB", "ms/face b1", "ms/face b32", "faces/s b32", f"x vs {vs} b1",
           f"x vs {vs} b32", "age MAE", "gender %", "emotion %", "ethnicity %"], table_rows,
          title=f"speed ({args.threads} threads, no TTA; median of {args.rounds} interleaved rounds) and accuracy "
                f"({n_utk} UTKFace val + {len(val) - n_utk} FER2013 PublicTest crops, "
                f"flip-TTA {'on' if args.flip_tta else 'off'})")
    if args.original:
        print("MB: the original in PyTorch is its fp32 state dict as torch.save writes it; the default model in "
              "PyTorch is its checkpoint file; ONNX rows are the .onnx files")
    ref = f"{label}, ONNX Runtime fp32"
    agree_rows = []
    for name in decoded:
        if name == ref:
            continue
        row = [name]
        for task, _ in HEADLINE:
            a, b = decoded[name][task], decoded[ref][task]
            mask = ~np.isnan(targets[task]) & (targets[task] >= 0)  # the images that carry this task's label
            row.append(float(np.mean(np.abs(a[mask] - b[mask]))) if task == "age"
                       else 100 * float(np.mean(a[mask] == b[mask])))
        row += [1e3 * eval_s[name] / len(val)]
        agree_rows.append(row)
    table(["vs ONNX Runtime fp32", "age |diff| yrs", "gender agree %", "emotion agree %", "ethnicity agree %",
           "eval ms/img (TTA)"], agree_rows, title="agreement with ONNX Runtime fp32 on the same crops")
    print(f"\nother processes used {load:.2f} cores on average while timing (0 = quiet machine)")
    print(f"run time: {time.perf_counter() - t_start:.0f} s in all (timing {t_timing:.0f} s, "
          f"accuracy {t_eval:.0f} s)")
    if keep:
        print(f"ONNX files kept in {out_dir}")
    else:
        tmp.cleanup()  # type: ignore[union-attr]
    print_load_end()


if __name__ == "__main__":
    main()
