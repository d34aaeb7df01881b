"""The original design (ResNet-50 at 224 px, shared Dense(512), four heads) against the bundled default model.

Both models are built in the same process: the original as
``create_model("resnet50", input_size=224, shared_dim=512, regression_head="scalar")`` (random
weights: only its cost is measured), the default from ``facemtl.weights.default_checkpoint_path()``
through ``load_checkpoint``. Printed: parameter counts, per-face inference latency at batch 1 and
batch N (median of the timed runs after warm-up, eval mode, ``torch.inference_mode``, float input
at each model's own input size), the speed ratio original/default (bare forward passes), the
default model's cost with flip test-time augmentation as ``FaceAnalyzer`` runs it when
``AnalyzerOptions.flip_tta`` is on (each face also mirrored), and the on-disk size of the default weights file
next to the serialized size of
the original's weights. The runs alternate between the two models (original, default, original,
...) so that CPU frequency drift and background load affect both alike.

    PYTHONPATH=src python benchmarks/original_vs_default.py [--runs 30] [--runs-batch 7] [--batch 32]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _common import OtherLoad, count_params, median, print_load_end, serialized_mb, setup, table

from facemtl.models import create_model, load_checkpoint
from facemtl.weights import default_checkpoint_path


def interleaved(calls: list[Callable[[], object]], warmup: int, runs: int) -> list[list[float]]:
    """Alternate one call of each in turn per round; return each one's call times in seconds."""
    times: list[list[float]] = [[] for _ in calls]
    with torch.inference_mode():
        for _ in range(warmup):
            for f in calls:
                f()
        for _ in range(runs):
            for k, f in enumerate(calls):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed batch-1 runs per model")
    ap.add_argument("--runs-batch", type=int, default=7, help="timed large-batch runs per model")
    ap.add_argument("--batch", type=int, default=32, help="the larger batch size")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per model before each measurement")
    ap.add_argument("--no-flip-tta", action="store_true",
                    help="leave out the default model with flip TTA (what FaceAnalyzer runs by default)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--onnx-int8", metavar="CALIB_DIR",
                    help="also export the default model to ONNX, quantize it to int8 (calibrated on face crops from "
                         "this folder, e.g. ../shared/data/utkface) and time it on ONNX Runtime in the same rounds")
    args = ap.parse_args()
    setup(args.threads)
    torch.manual_seed(0)

    orig = create_model("resnet50", input_size=224, shared_dim=512, regression_head="scalar").eval()
    path = default_checkpoint_path()
    default, meta = load_checkpoint(path)
    s_orig = orig.config.input_size
    s_def = (meta.get("preprocess") or {}).get("input_size") or default.config.input_size
    mc = meta.get("model_config", {})
    print(f"original: resnet50 @ {s_orig} px, shared_dim 512, scalar age head, random weights")
    print(f"default:  {path.name}: {mc.get('backbone')} @ {s_def} px, shared_dim {mc.get('shared_dim')}, "
          f"{mc.get('regression_head')} age head, tasks {', '.join(t.name for t in default.tasks)}")

    rows = []
    for label, m in (("original", orig), ("default", default)):
        total, bb = count_params(m), count_params(m.backbone)
        rows.append((label, f"{total / 1e6:.2f} M", f"{bb / 1e6:.2f} M", f"{(total - bb) / 1e6:.2f} M"))
    table(["model", "params", "backbone", "shared + heads"], rows, title="Parameters")

    # FaceAnalyzer runs model.predict(x, flip_tta=AnalyzerOptions.flip_tta): with flip TTA on, each face is also
    # run mirrored, so the analyzer's per-face cost is that third column, not the bare forward pass.
    tta = hasattr(default, "predict") and not args.no_flip_tta
    ort_model = None
    if args.onnx_int8:
        import tempfile
        from pathlib import Path

        from facemtl.export.onnx import export_onnx
        from facemtl.export.quantize import quantize_int8
        from facemtl.models.onnx import OnnxModel

        tmp = Path(tempfile.mkdtemp())
        export_onnx(path, tmp / "default.onnx")
        quantize_int8(tmp / "default.onnx", tmp / "default.int8.onnx", calibration=args.onnx_int8)
        ort_model = OnnxModel(tmp / "default.int8.onnx", threads=args.threads)
    lat = {}
    for batch, runs in ((1, args.runs), (args.batch, args.runs_batch)):
        xo, xd = torch.rand(batch, 3, s_orig, s_orig), torch.rand(batch, 3, s_def, s_def)
        calls = [lambda xo=xo: orig(xo), lambda xd=xd: default(xd)]
        if tta:
            calls.append(lambda xd=xd: default.predict(xd, flip_tta=True))
        if ort_model is not None:
            calls.append(lambda xd=xd: ort_model.predict(xd))
        t0, other = time.perf_counter(), OtherLoad().start()
        times = interleaved(calls, args.warmup, runs)
        print(f"  batch {batch}: {runs} interleaved runs per model in {time.perf_counter() - t0:.0f} s", flush=True)
        lat[batch] = ([median(t) * 1e3 / batch for t in times], [min(t) * 1e3 / batch for t in times], other.stop())
    rows = []
    for batch, (med, mins, oth) in lat.items():
        o, d = med[0], med[1]
        row = [f"batch {batch}", o, d, f"{o / d:.1f}x", mins[0], mins[1], f"{mins[0] / mins[1]:.1f}x"]
        if tta:
            row += [med[2], f"{o / med[2]:.1f}x"]
        if ort_model is not None:
            row += [med[-1], f"{o / med[-1]:.1f}x"]
        rows.append((*row, f"{oth:.2f}"))
    head = ["per-face latency", "original ms", "default ms", "original/default", "original min ms",
            "default min ms", "ratio of mins"]
    if tta:
        head += ["default+flip TTA ms", "original/(default+TTA)"]
    if ort_model is not None:
        head += ["default ORT int8 ms", "original/ORT int8"]
    table(head + ["others' cores"], rows,
          title=f"Inference latency per face (median of interleaved runs; {args.threads} thread(s))")

    disk = path.stat().st_size / 1e6
    half = any(v.dtype == torch.float16 for v in torch.load(path, map_location="cpu", weights_only=False)
               ["state_dict"].values())
    rows = [("default weights file (on disk)", f"{disk:.2f} MB", "float16" if half else "float32"),
            ("default weights, serialized fp32", f"{serialized_mb(default, False):.2f} MB", "float32"),
            ("original weights, serialized fp32", f"{serialized_mb(orig, False):.2f} MB", "float32"),
            ("original weights, serialized fp16", f"{serialized_mb(orig, True):.2f} MB", "float16")]
    table(["size", "MB", "dtype"], rows, title=f"Weights ({path})")
    print_load_end()


if __name__ == "__main__":
    main()
