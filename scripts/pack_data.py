"""Pack the deduplicated, split training data into a compact folder (WebP crops + labels) so a training run
can be moved to another machine (e.g. a lent GPU) under a size limit. Also writes the backbone's ImageNet
weights as fp16. Usage: python scripts/pack_data.py --utkface ../shared/data/utkface --fer2013 ../shared/data/fer2013 --out .gpu
"""
from __future__ import annotations

import argparse
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facemtl.data.cache import decode_record
from facemtl.data.datasets import target_arrays
from facemtl.models import create_backbone
from facemtl.train.data import gather_records, native_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--utkface")
    ap.add_argument("--fer2013")
    ap.add_argument("--out", default=".gpu")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--quality", type=int, default=80)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--backbone", default="lite0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records, counts, sha = gather_records(a.utkface, a.fer2013, (), a.limit, a.val_fraction, a.seed,
                                          out / "split.csv")
    print(json.dumps({k: dict(v) for k, v in counts.items()}), "manifest sha256", sha)
    by_src: dict[str, list] = {}
    for r in records:
        by_src.setdefault(r.source, []).append(r)
    for name, recs in by_src.items():
        size = native_size(name, a.size)

        def enc(r):
            try:
                crop = decode_record(r, size)
            except Exception as exc:  # noqa: BLE001
                print("skip", r.key, exc)
                return None
            im = Image.fromarray(crop)
            if name == "fer2013":
                im = im.convert("L")
            b = io.BytesIO()
            im.save(b, "WEBP", quality=a.quality, method=4)
            return b.getvalue()

        with ThreadPoolExecutor(2) as ex:
            blobs = list(ex.map(enc, recs))
        keep = [i for i, b in enumerate(blobs) if b is not None]
        data = b"".join(blobs[i] for i in keep)
        offsets = np.cumsum([0] + [len(blobs[i]) for i in keep]).astype(np.int64)
        targets = {t: v.astype(np.float32) for t, v in target_arrays([recs[i] for i in keep]).items()}
        np.savez(out / f"{name}.npz", data=np.frombuffer(data, dtype=np.uint8), offsets=offsets, size=size,
                 split=np.array([recs[i].split for i in keep]), **{f"t_{k}": v for k, v in targets.items()})
        print(name, len(keep), "images", round(len(data) / 1e6, 1), "MB")
    bb = create_backbone(a.backbone, pretrained=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in bb.module.state_dict().items()},
               out / f"{a.backbone}_imagenet_fp16.pt")


if __name__ == "__main__":
    main()
