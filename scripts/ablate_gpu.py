"""Short ablations on a packed dataset (scripts/pack_data.py) on a CUDA machine: same data, schedule and seed,
one option changed at a time; prints one JSON line per configuration with its final validation metrics.
Usage: python scripts/ablate_gpu.py --pack .gpu --epochs 7
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpu import load_pack  # noqa: E402

from facemtl.train.data import SourceData  # noqa: E402
from facemtl.train.loop import TrainConfig, train  # noqa: E402

CONFIGS = {
    "dldl-static": {},
    "mse-static": {"age_loss": "mse"},
    "dldl-uncertainty": {"loss_weighting": "uncertainty"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", default=".gpu")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    a = ap.parse_args()
    sources = load_pack(Path(a.pack))
    common = dict(backbone="lite0", input_size=112, pretrained=False, batch_size=256, lr=2e-3, weight_decay=0.01,
                  init_backbone=str(Path(a.pack) / "lite0_imagenet_fp16.pt"), device="cuda", label_smoothing=0.05,
                  warmup_epochs=1.0, patience=100, epochs=a.epochs)
    for name in a.configs.split(","):
        t0 = time.time()
        res = train(TrainConfig(out=f"/tmp/ablate/{name}", **{**common, **CONFIGS[name]}),
                    [SourceData(s.name, s.images, s.targets, s.split) for s in sources])
        last = res["history"][-1]
        print(json.dumps({"config": name, "epochs": a.epochs, "wall_s": round(time.time() - t0, 1),
                          **{k: v for k, v in last.items() if k.startswith("val/") and not k.endswith("/n")}}),
              flush=True)


if __name__ == "__main__":
    main()
