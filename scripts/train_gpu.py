"""Train the default model from a packed folder (scripts/pack_data.py) on a CUDA machine, within a time budget.

Picks the epoch count from a measured throughput so the cosine schedule completes inside the budget.
Usage: python scripts/train_gpu.py --pack .gpu --out $OUT --budget-min 6
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from facemtl.models.factory import load_checkpoint, save_checkpoint  # noqa: E402
from facemtl.train.data import SourceData  # noqa: E402
from facemtl.train.loop import TrainConfig, train  # noqa: E402


def _decode(args):
    blob, gray = args
    im = Image.open(io.BytesIO(blob))
    a = np.asarray(im.convert("L") if gray else im.convert("RGB"))
    return np.repeat(a[:, :, None], 3, 2) if gray else a


def load_pack(pack: Path, limit: int | None = None) -> list[SourceData]:
    out = []
    for f in sorted(pack.glob("*.npz")):
        z = np.load(f)
        data, off = z["data"].tobytes(), z["offsets"]
        n = len(off) - 1 if limit is None else min(limit, len(off) - 1)
        gray = f.stem == "fer2013"
        with ProcessPoolExecutor(16) as ex:
            imgs = list(ex.map(_decode, ((data[off[i]:off[i + 1]], gray) for i in range(n)), chunksize=512))
        targets = {k[2:]: torch.from_numpy(z[k][:n]) for k in z.files if k.startswith("t_")}
        out.append(SourceData(f.stem, np.stack(imgs), targets, z["split"][:n]))
        print(f.stem, out[-1].images.shape, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", default=".gpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-min", type=float, default=6.0)
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--epochs", type=int, help="fixed epoch count (skips the throughput probe)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--backbone", default="lite0")
    ap.add_argument("--input-size", type=int, default=112)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    t0 = time.time()
    sources = load_pack(Path(a.pack), a.limit)
    print("decoded in", round(time.time() - t0, 1), "s", flush=True)
    common = dict(backbone=a.backbone, input_size=a.input_size, pretrained=False,
                  init_backbone=str(Path(a.pack) / f"{a.backbone}_imagenet_fp16.pt"), batch_size=a.batch_size,
                  lr=a.lr, weight_decay=0.01, device=a.device, age_loss="dldl", label_smoothing=0.05,
                  warmup_epochs=1.0, patience=100, checkpoint_every_min=2.0)
    run = Path("/tmp/facemtl_run")
    if a.epochs:
        epochs = a.epochs
    else:  # measure throughput with a short probe run, then fit the epoch count to the budget
        probe = train(TrainConfig(out=str(run / "probe"), epochs=1, time_budget_min=0.4, **common),
                      [SourceData(s.name, s.images, s.targets, s.split) for s in sources])
        ips = probe["history"][-1]["images_per_s"]
        n_train = sum(int((s.split == "train").sum()) for s in sources)
        epoch_s = n_train / ips + 3.0
        epochs = int(max(1, min(a.max_epochs, (a.budget_min * 60 - (time.time() - t0)) // epoch_s)))
        print(json.dumps({"probe_images_per_s": ips, "epoch_s": epoch_s, "epochs": epochs}), flush=True)
    left = a.budget_min * 60 - (time.time() - t0)
    out = Path(a.out)

    def export(info: dict) -> None:  # after each epoch: fp16 best checkpoint + metrics into the results folder
        if "epoch_end" in info:
            model, meta = load_checkpoint(run / "main" / "best.pt")
            save_checkpoint(out / "best_fp16.pt", model, half=True,
                            extra={k: meta.get(k) for k in ("train_config", "epoch", "val_metrics")})
            shutil.copy(run / "main" / "metrics.csv", out / "metrics.csv")

    res = train(TrainConfig(out=str(run / "main"), epochs=epochs, time_budget_min=(left - 20) / 60, **common),
                sources, progress=export)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, default=str))
    print("total", round(time.time() - t0, 1), "s")


if __name__ == "__main__":
    main()
