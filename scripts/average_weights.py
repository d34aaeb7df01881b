"""Average the weights of checkpoints of one architecture (a "model soup"), keeping the first one's framing.

    python scripts/average_weights.py A.pt B.pt --out SOUP.pt [--weight 0.5]

``--weight`` is B's share (A gets 1 - weight). Both files must be the same backbone with the same tasks, input
size and crop geometry; the result carries A's training record, so a run that starts from it (``init_checkpoint``)
keeps A's split. This made ``recipes/init/facemtl-0.3-average-lite0-112.pt`` from the 0.2.0 weights and the best
weights of ``recipes/finetune-0.3.yaml`` (half each).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facemtl.crop import CropGeometry
from facemtl.errors import FacemtlError
from facemtl.models.factory import load_checkpoint, save_checkpoint
from facemtl.preprocess import Framing

KEPT = ("train_config", "data_counts", "data_manifest_sha256")  # A's training record, carried over


def average(a: Path, b: Path, out: Path, weight: float = 0.5) -> Path:
    if not 0.0 <= weight <= 1.0:
        raise FacemtlError(f"--weight must be in [0, 1], got {weight}")
    model_a, meta_a = load_checkpoint(a)
    model_b, meta_b = load_checkpoint(b)
    arch_a, arch_b = ({k: v for k, v in m["model_config"].items() if k != "pretrained"} for m in (meta_a, meta_b))
    for key, va, vb in (("model_config", arch_a, arch_b), ("preprocess", meta_a["preprocess"], meta_b["preprocess"])):
        if va != vb:  # whether the backbone started from ImageNet weights does not matter here
            raise FacemtlError(f"{a} and {b} differ in {key}: {va} vs {vb}")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    mixed = {k: (sa[k].float() * (1 - weight) + sb[k].float() * weight).to(sa[k].dtype)
             if sa[k].dtype.is_floating_point else sa[k] for k in sa}
    model_a.load_state_dict(mixed)
    pre = meta_a["preprocess"]
    save_checkpoint(out, model_a, geometry=CropGeometry(**pre["crop"]), framing=Framing.from_dict(pre["framing"]),
                    extra={k: meta_a[k] for k in KEPT if k in meta_a})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weight", type=float, default=0.5, help="B's share of every weight (default: 0.5)")
    args = p.parse_args(argv)
    try:
        print("wrote", average(args.a, args.b, args.out, args.weight))
    except FacemtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
