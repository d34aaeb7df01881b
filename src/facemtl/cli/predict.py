"""facemtl predict IMAGE|DIR|GLOB... : every face's attributes as a table or JSON; --save-dir for drawn images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import VIDEO_EXTENSIONS, add_analyzer_args, build_analyzer, expand_inputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="analyse images (files, folders, globs)",
                       description="Find every face and predict its attributes.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR|GLOB")
    add_analyzer_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per image (JSON Lines)")
    p.add_argument("--save-dir", help="write each image with boxes and labels drawn into this folder")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.set_defaults(func=run)


def _row(face) -> str:
    parts = [f"box=({', '.join(f'{v:.0f}' for v in face.box.xyxy)})", f"score={face.score:.2f}"]
    for name, pred in face.attributes.items():
        if name == "age":
            parts.append(f"age={pred.value:.1f} ({pred.label})")
        else:
            parts.append(f"{name}={pred.label} ({pred.value:.0%})")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    files = expand_inputs(args.inputs, args.recursive)
    videos = [f for f in files if Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"video input is not supported yet: {videos[0]}")
    analyzer = build_analyzer(args, keep_image=bool(args.save_dir))
    save = Path(args.save_dir) if args.save_dir else None
    failed = 0
    for res in analyzer.analyze_many(files, errors="record"):
        if not hasattr(res, "faces"):
            failed += 1
            print(f"{res.source}: error: {res.error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(res.to_dict()))
        else:
            print(f"{res.source}: {len(res.faces)} face(s)")
            for i, face in enumerate(res.faces):
                print(f"  [{i}] {_row(face)}")
        if save is not None:
            out = save / (Path(res.source).stem + ".jpg")
            res.save(out)
    if save is not None and not args.json:
        print(f"drawn images written to {save}/")
    return 1 if failed and failed == len(files) else 0
