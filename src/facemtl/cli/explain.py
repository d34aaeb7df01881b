"""facemtl explain IMAGE --out cam.png : Grad-CAM heat maps of every head for one face, side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidInputError
from ._common import add_analyzer_args, build_analyzer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="draw Grad-CAM heat maps of every head for one face",
                       description="Detect and crop faces exactly as `predict` does, then draw, for one face, the "
                       "crop and a Grad-CAM heat map per task (age, gender, emotion, ethnicity) side by side. Red "
                       "marks the regions that most raise the predicted class (or the age estimate).")
    p.add_argument("image", metavar="IMAGE", help="the photo whose face is explained")
    add_analyzer_args(p)
    p.add_argument("--face", type=int, default=0, metavar="N",
                   help="which face, in the order `facemtl predict` lists them (default: 0)")
    p.add_argument("--target", action="append", default=[], metavar="TASK=LABEL",
                   help="explain this class instead of the predicted one, e.g. emotion=sad (repeatable)")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the panel image")
    p.add_argument("--tile", type=int, default=224, help="side of each image in the panel, pixels (default: 224)")
    p.set_defaults(func=run, usage_error=p.error)


def _targets(items: list[str], usage_error) -> dict[str, str]:
    out = {}
    for item in items:
        task, sep, label = item.partition("=")
        if not sep or not task.strip() or not label.strip():
            usage_error(f"--target takes TASK=LABEL (e.g. emotion=sad), got {item!r}")
        out[task.strip()] = label.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from .._optional import require

    require("torch", extra="explain")  # Grad-CAM needs gradients: PyTorch, whatever the model file
    from ..explain import explain_face, render_panel

    targets = _targets(args.target, args.usage_error)
    if args.tile < 32:
        args.usage_error(f"--tile must be at least 32 pixels, got {args.tile}")
    if not Path(args.image).is_file():
        raise InvalidInputError(f"no such file: {args.image}")
    analyzer = build_analyzer(args)
    res = explain_face(analyzer, args.image, face_index=args.face, labels=targets)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_panel(res, tile=args.tile)).save(out)
    print(f"{out}  ({res.source}, face {res.face_index}, box=({', '.join(f'{v:.0f}' for v in res.face.box.xyxy)}))")
    for task, pred in res.predictions.items():
        if pred.probs is not None and res.targets[task] is not None:
            text = f"{pred.label} ({pred.value:.0%})"
            if res.targets[task] != pred.label:
                text += f"; map explains {res.targets[task]}"
        else:
            text = f"{pred.value:.1f}" + (f" ({pred.label})" if pred.label else "")
        print(f"  {task}: {text}")
    return 0
