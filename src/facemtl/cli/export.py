"""facemtl export [--model CKPT] [--format onnx] [--quantize int8 --calibration DIR] [--out PATH] [--opset N]:
write a self-describing ONNX file (optionally int8) and print its size and parity check."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..export.config import FORMATS, QUANTIZE, ExportConfig
from ..export.quantize import QUANT_METHODS
from ._args import Arg, add_config_arg, add_dataclass_args, config_from_args

EXPORT_HELP: dict[str, str | Arg] = {
    "model": "checkpoint (default: the model shipped with facemtl)",
    "format": Arg("output format", choices=FORMATS),
    "quantize": Arg("also quantize; the output is then the int8 file", choices=QUANTIZE),
    "method": Arg("int8 method: static (calibrated, fast; needs --calibration) or dynamic (no calibration, slow on "
                  "convolutions)", choices=QUANT_METHODS),
    "calibration": Arg("face crops for static int8 calibration, e.g. a UTKFace folder", metavar="DIR_OR_IMAGE"),
    "calibration_size": "calibration images used",
    "out": "output file (default: <checkpoint stem>.onnx, or .int8.onnx, in this folder)",
    "opset": "ONNX opset",
    "fixed_batch": Arg("batch size 1 only (default: dynamic batch axis)", action="store_true", annotate=False),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (optionally int8) for fast CPU inference",
                       description="Export a checkpoint to ONNX with its task specs and preprocessing in the "
                                   "metadata, check ONNX Runtime against PyTorch, optionally quantize to int8. "
                                   "Use the file with `facemtl predict --model FILE.onnx`.")
    add_config_arg(p, ExportConfig)
    add_dataclass_args(p, ExportConfig, help_=EXPORT_HELP, fill_defaults=True)
    p.set_defaults(func=run)


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


def _check_line(check: dict) -> str:
    parts = [f"{k.split('/')[0]} mean |diff| {v:.2f}" if k.endswith("mean_abs_diff") else f"{k.split('/')[0]} {v:.1%}"
             for k, v in check.items() if "/" in k]
    return f"int8 vs fp32 on {check['n']} {check['on']}: " + "; ".join(parts) + " (labels agreeing / value diff)"


def run(args: argparse.Namespace) -> int:
    from .._optional import require
    from ..errors import InvalidInputError

    cfg = config_from_args(ExportConfig, args)  # the flags, over the --config file
    require("torch", extra="export")  # export reads a PyTorch checkpoint
    require("onnx", extra="export")
    from ..export import ParityReport, export_onnx, quantize_int8, read_metadata

    if cfg.model is None:
        from ..weights import default_checkpoint_path

        ckpt = default_checkpoint_path()
    else:
        ckpt = Path(cfg.model)
    if cfg.quantize and cfg.method == "static" and not cfg.calibration:
        raise InvalidInputError("--quantize int8 (static) calibrates on real face crops: add --calibration DIR (a "
                                "folder of face crops, e.g. UTKFace), or use --method dynamic (no calibration; "
                                "slow on this network)")
    suffix = ".int8.onnx" if cfg.quantize else ".onnx"
    out = Path(cfg.out) if cfg.out else Path.cwd() / (ckpt.stem + suffix)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(ckpt, Path(tmp) / "fp32.onnx" if cfg.quantize else out, opset=cfg.opset,
                           dynamic_batch=not cfg.fixed_batch)
        parity = read_metadata(fp32)["parity"]
        report = ParityReport(parity["max_abs_diff"], parity["atol"], tuple(parity["batch_sizes"]))
        if not cfg.quantize:
            print(f"wrote {out} ({_mib(out)}, fp32, opset {cfg.opset}) from {ckpt}")
            print(f"parity: {report}")
            return 0
        fp32_size = fp32.stat().st_size
        quantize_int8(fp32, out, calibration=list(cfg.calibration or ()) or None, method=cfg.method,
                      calibration_size=cfg.calibration_size)
    q = read_metadata(out)["quantization"]
    print(f"wrote {out} ({_mib(out)}, int8 {q['method']}, {fp32_size / out.stat().st_size:.1f}x smaller than fp32, "
          f"opset {cfg.opset}) from {ckpt}")
    print(f"fp32 export parity: {report}")
    if "check" in q:
        print(_check_line(q["check"]))
    print("accuracy and speed of int8 vs fp32 on the validation data: python benchmarks/onnx_speed.py")
    return 0
