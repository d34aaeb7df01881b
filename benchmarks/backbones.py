"""Training throughput, inference latency and size of every registered backbone, plus the data loader alone.

For each backbone in ``facemtl.models.list_backbones()`` (at its default input size, or at each of
``--sizes``) a four-task model is built with ``create_model(name)`` and measured:

- params: parameter count of the whole model (backbone + four heads);
- ms/face b1, ms/face b32: inference latency per face in eval mode under ``torch.inference_mode`` with
  float (B, 3, S, S) input, batch 1 and batch 32 (median over runs after one warm-up call), memory
  format as ``FaceAnalyzer.predict_crops`` feeds it (contiguous; ``--infer-channels-last`` to change);
- train img/s: images per second of a full training step as in ``facemtl.train.loop``: random uint8
  crops (S x S, as the crop cache stores UTKFace) -> ``augment_batch`` -> channels_last -> forward ->
  masked multi-task loss (DLDL age, static weights; half the batch UTKFace-style labels, half
  FER-style) -> backward -> grad clipping -> AdamW step; batch 32, a few warm-up steps, then timed
  steps for about ``--train-seconds``.

Then the data loader alone: images/s of ``facemtl.train.loop._make_batch`` (index the in-memory
uint8 arrays + ``augment_batch`` to ``--loader-size`` px) over random ``SourceData`` of UTKFace size
(112 px) and FER2013 size (48 px), without any model.

    PYTHONPATH=src python benchmarks/backbones.py [--backbones lite0,resnet50] [--sizes 112 224]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import OtherLoad, count_params, median, print_load_end, setup, table, time_calls

from facemtl.data.transforms import AugmentConfig, augment_batch
from facemtl.models import create_backbone, create_model, list_backbones
from facemtl.tasks import get_task, list_tasks
from facemtl.train.data import SourceData
from facemtl.train.loop import _make_batch, _Sampler
from facemtl.train.losses import MultiTaskLoss


def random_targets(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Half the batch labelled like UTKFace (age, gender, ethnicity), half like FER2013 (emotion)."""
    half = n // 2
    out = {}
    for name in list_tasks():
        spec = get_task(name)
        if spec.kind == "classification":
            t = torch.randint(0, len(spec.labels), (n,), generator=g).float()
            missing = -1.0
        else:
            lo, hi = spec.value_range or (0.0, 100.0)
            t = torch.rand(n, generator=g) * (hi - lo) + lo
            missing = float("nan")
        if name == "emotion":
            t[:half] = missing
        else:
            t[half:] = missing
        out[name] = t
    return out


def measure_inference(model: torch.nn.Module, size: int, batch: int, seconds: float, channels_last: bool
                      ) -> float:
    """Median ms per face."""
    x = torch.rand(batch, 3, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up
        times = time_calls(lambda: model(x), seconds, min_runs=3 if batch == 1 else 2)
    return median(times) * 1e3 / batch


def measure_training(model: torch.nn.Module, size: int, batch: int, warmup: int, seconds: float
                     ) -> tuple[float, int]:
    """Images per second of a full training step; returns (images/s, timed steps)."""
    g = torch.Generator().manual_seed(0)
    pool = [torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g) for _ in range(4)]
    targets = [random_targets(batch, g) for _ in range(4)]
    model.train()
    model.to(memory_format=torch.channels_last)
    criterion = MultiTaskLoss(model.tasks, "static", "dldl", label_smoothing=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    aug = AugmentConfig()

    def step(i: int) -> None:
        x = augment_batch(pool[i % 4], size, aug, g).contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss, _ = criterion({k: v.float() for k, v in out.items()}, targets[i % 4])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    t0 = time.perf_counter()
    for i in range(warmup):  # stop warming up early for the slow ones (at least one step)
        step(i)
        if time.perf_counter() - t0 > seconds / 2:
            break
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        step(n)
        n += 1
    return n * batch / (time.perf_counter() - t0), n


def random_source(name: str, n: int, side: int, rng: np.random.Generator) -> SourceData:
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    imgs = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    return SourceData(name, imgs, random_targets(n, g), np.array(["train"] * n))


def measure_loader(sources: list[SourceData], size: int, batch: int, seconds: float) -> tuple[float, int]:
    sampler = _Sampler(sources, batch, None, seed=0)
    batches = sampler.epoch(0)
    gen = torch.Generator().manual_seed(0)
    dev = torch.device("cpu")
    aug = AugmentConfig()
    _make_batch(sources, batches[0], size, aug, dev, gen)  # warm-up
    n_img, k, t0 = 0, 0, time.perf_counter()
    while k == 0 or time.perf_counter() - t0 < seconds:
        x, _ = _make_batch(sources, batches[k % len(batches)], size, aug, dev, gen)
        n_img += len(x)
        k += 1
    return n_img / (time.perf_counter() - t0), k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default=",".join(list_backbones()),
                    help="comma-separated backbone names (default: all registered)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="input sizes to measure every backbone at (default: each backbone's own input_size)")
    ap.add_argument("--batch", type=int, default=32, help="training batch and the larger inference batch")
    ap.add_argument("--warmup", type=int, default=3, help="training warm-up steps (fewer when a step is slow)")
    ap.add_argument("--train-seconds", type=float, default=15.0, help="timed training per backbone")
    ap.add_argument("--infer-seconds", type=float, default=4.0, help="timed inference per backbone and batch size")
    ap.add_argument("--infer-channels-last", action="store_true", help="channels_last input for inference")
    ap.add_argument("--loader-size", type=int, default=112, help="output side of the data-loader benchmark")
    ap.add_argument("--loader-seconds", type=float, default=5.0, help="timed data loading per row")
    ap.add_argument("--loader-n", type=int, default=2000, help="random images per source for the loader")
    ap.add_argument("--skip-loader", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = ap.parse_args()
    setup(args.threads)
    torch.manual_seed(0)

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    print(f"tasks: {', '.join(list_tasks())}; batch {args.batch}; train ~{args.train_seconds:.0f} s and "
          f"inference ~{args.infer_seconds:.0f} s per backbone and size; inference input "
          f"{'channels_last' if args.infer_channels_last else 'contiguous (as FaceAnalyzer)'}", flush=True)
    rows, failures = [], []
    for name in names:
        try:
            sizes = args.sizes or [create_backbone(name).input_size]
        except Exception as exc:  # noqa: BLE001 - e.g. an unknown name or a missing timm
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            rows.append((name, "-", "FAILED", "see below", None, None, None, None, None, None))
            continue
        for size in sizes:
            t_start, model = time.perf_counter(), None
            other = OtherLoad().start()
            try:
                model = create_model(name, input_size=size).eval()
                params = count_params(model)
                bb = count_params(model.backbone)
                b1 = measure_inference(model, size, 1, args.infer_seconds, args.infer_channels_last)
                bN = measure_inference(model, size, args.batch, args.infer_seconds, args.infer_channels_last)
                if args.skip_train:
                    ips, steps = float("nan"), 0
                else:
                    ips, steps = measure_training(model, size, args.batch, args.warmup, args.train_seconds)
                rows.append((name, size, f"{params / 1e6:.2f} M", f"{bb / 1e6:.2f} M", b1, bN, 1e3 / bN, ips, steps,
                             f"{other.stop():.2f}"))
            except Exception as exc:  # noqa: BLE001 - report the failure as a row and go on
                failures.append(f"{name} @ {size} px: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                rows.append((name, size, "FAILED", "see below", None, None, None, None, None, None))
            print(f"  done {name} @ {size} px in {time.perf_counter() - t_start:.0f} s", flush=True)
            del model
    print("others' cores: CPU cores used by other processes during the row (0 = quiet machine)")
    table(["backbone", "size", "params", "backbone params", "ms/face b1", f"ms/face b{args.batch}",
           f"faces/s b{args.batch}", "train img/s", "train steps", "others' cores"], rows,
          title=f"Backbones: four-task model (create_model(name)), batch {args.batch}")
    for f in failures:
        print("FAILED " + f)
    ok = [r for r in rows if r[2] != "FAILED" and r[0] == "lite0"]
    if ok:
        ref = ok[0]
        rel = [(r[0], r[1], r[4] / ref[4], r[5] / ref[5],
                (ref[7] / r[7]) if r[7] == r[7] and ref[7] == ref[7] else None)
               for r in rows if r[2] != "FAILED"]
        table(["backbone", "size", "b1 latency x lite0", f"b{args.batch} latency x lite0", "train time x lite0"],
              [(a, b, f"{c:.2f}", f"{d:.2f}", None if e is None else f"{e:.2f}") for a, b, c, d, e in rel],
              title=f"Relative to lite0 @ {ref[1]} px (>1 = slower)")

    if not args.skip_loader:
        rng = np.random.default_rng(0)
        utk = random_source("utkface", args.loader_n, 112, rng)
        fer = random_source("fer2013", args.loader_n, 48, rng)
        lrows = []
        for label, srcs in (("utkface 112 px", [utk]), ("fer2013 48 px", [fer]), ("mixed 1:1", [utk, fer])):
            other = OtherLoad().start()
            ips, k = measure_loader(srcs, args.loader_size, args.batch, args.loader_seconds)
            lrows.append((label, f"{args.loader_size} px", ips, 1e3 * args.batch / ips, k, f"{other.stop():.2f}"))
        table(["source", "output", "images/s", f"ms/batch of {args.batch}", "batches", "others' cores"], lrows,
              title="Data loader alone: _make_batch (index in-memory uint8 + augment_batch), no model")
    print_load_end()


if __name__ == "__main__":
    main()
