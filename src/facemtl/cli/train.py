"""facemtl train [--config FILE] [--utkface DIR] [--fer2013 DIR_OR_CSV] [--manifest CSV ...] [--backbone NAME]
[--input-size N] [--epochs N] [--out RUN_DIR] [--resume] ... : flags are TrainConfig's fields."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .._device import resolve_device
from ..errors import ConfigError
from ..train.config import TrainConfig
from ._args import Arg, add_dataclass_args, config_from_args, load_yaml_config, positive_int
from ._common import DEVICE_ARG

HELP: dict[str, str | Arg] = {
    "utkface": "UTKFace folder", "fer2013": "FER2013 folder (train/, test/) or fer2013.csv",
    "manifest": "CSV with path plus any of age, gender, emotion, ethnicity (and split)",
    "out": "run folder (checkpoints, metrics.csv, split.csv)", "backbone": "backbone name",
    "resume": "continue from RUN_DIR/last.pt", "limit": "at most this many images per source",
    "age_loss": "dldl | l1 | mse", "loss_weighting": "static | uncertainty",
    "split_seed": "seed of the train/validation split (default: --seed); keep the init_checkpoint's when "
                  "fine-tuning with another --seed, so its held-out images stay held out",
    "time_budget_min": "stop after this many minutes (checkpoint kept)",
    "ema_decay": "keep an exponential moving average of the weights with this decay per step (e.g. 0.999) and "
                 "validate, select and save it instead of the raw weights; 0 = off",
    "balance": "bias mitigation: none | sample (group-balanced sampling) | reweight (loss reweighting)",
    "balance_by": "attributes whose groups are balanced, comma-separated: ethnicity, gender, age_band",
    "balance_power": "weight = (1/group count)^power; 1 balances fully, 0.5 halfway",
    "balance_max_ratio": "cap on the largest/smallest group weight",
    "fairface": "FairFace folder (fairface.zip + labels.csv)", "celeba_gender": "celeba_gender folder",
    "ferplus_weight": "weight of the FER+ vote distribution in the emotion target (0: folder labels only)",
    "no_face": "keep | skip: images in which the detector finds no face",
    "init_checkpoint": "fine-tune: start from every weight of this checkpoint (same backbone and tasks)",
    "epoch_size": "images drawn per epoch (default: every training image once)",
    "val_flip_tta": "validate with flip test-time augmentation, as `facemtl evaluate` does",
    "input_size": "square input side in pixels (default: the backbone's own)",
    "init_backbone": "a .pt state dict of backbone weights to start from (e.g. ImageNet weights copied from elsewhere)",
    "threads": "CPU threads for PyTorch (default: its own choice)",
    "cache_dir": "where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)",
    "device": DEVICE_ARG,
    "tasks": Arg("comma-separated tasks (default: all)", action="store", annotate=False),
    "sample_ratio": Arg("mix of sources per epoch, e.g. utkface=1,fer2013=1 (default: proportional to size)",
                        action="store", annotate=False),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a multi-task model", description="Train a multi-task model; "
                       "every option can also come from a YAML --config file (flags override it).")
    p.add_argument("--config", help="YAML file with TrainConfig options")
    add_dataclass_args(p, TrainConfig, skip=("augment", "geometry", "framing", "source_val_fraction"), help_=HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also with -q)")
    p.add_argument("--nproc-per-node", type=positive_int, default=None, metavar="N",
                   help="train data-parallel on N processes of this machine: relaunches this command through "
                   "torchrun (the same as `torchrun --standalone --nproc-per-node N -m facemtl train ...`); "
                   "--batch-size is per process")
    p.set_defaults(func=run)


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` minus ``--nproc-per-node N`` / ``--nproc-per-node=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--nproc-per-node", "--nproc_per_node"):
            skip = True
        elif not a.startswith(("--nproc-per-node=", "--nproc_per_node=")):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str], out: str | None = None) -> int:
    """Run ``facemtl <argv>`` on ``nproc`` local processes through torchrun (in this process: torchrun's own
    ``run``); returns the exit code. A training process that dies stops the others (torchrun does) and the run
    with one line naming the rank and the checkpoint ``out``/last.pt to ``--resume`` from."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    targs = parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "facemtl", *_without_nproc(argv)])
    try:
        torchrun(targs)
    except ChildFailedError as exc:
        print(f"facemtl train: error: {_failure_message(exc.failures, out)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # torchrun stops its workers first
        return 130
    except SignalException as exc:  # SIGTERM / SIGHUP to this process: torchrun stopped its workers
        return 128 + int(exc.sigval)
    return 0


def _failure_message(failures: dict[int, Any], out: str | None) -> str:
    """One line: the rank that failed first (and any other that did), and where the run can resume."""
    import signal

    def why(code: int) -> str:
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    # the first failure. In one poll torchrun also counts the ranks it stopped itself (SIGTERM) and a rank that
    # exits 1 is more likely the consequence (a lost peer): both come after a rank that died of its own accord
    def key(r: int) -> tuple:
        code = failures[r].exitcode
        return failures[r].timestamp, code == -signal.SIGTERM, code == 1, r

    order = sorted(failures, key=key)
    first = order[0]
    msg = f"training process rank {first} failed ({why(failures[first].exitcode)})"
    also = [r for r in order[1:] if failures[r].exitcode != -signal.SIGTERM]
    if also:
        msg += " (then " + ", ".join(f"rank {r}: {why(failures[r].exitcode)}" for r in also) + ")"
    return f"{msg}; {_resume_hint(out)}"


def _resume_hint(out: str | None) -> str:
    if not out:
        return "rerun with --resume to continue from the run's last.pt"
    last = Path(out) / "last.pt"
    if not last.exists():
        return f"no checkpoint was written yet ({last} does not exist)"
    try:
        import torch

        ck = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
        epoch, step = int(ck.get("epoch", 0)), int(ck.get("step", 0))
    except Exception as exc:  # noqa: BLE001 - the hint only
        return f"the run's last checkpoint {last} cannot be read ({type(exc).__name__})"
    where = f"epoch {epoch + 1}, step {step}" if step else f"epoch {epoch}"
    return f"the run's last checkpoint is {last} ({where}): rerun with --resume"


def run(args: argparse.Namespace) -> int:
    from .._optional import require

    require("torch", extra="train")  # training is PyTorch: name the extra instead of an ImportError
    from ..train.distributed import dist_info, under_torchrun
    from ..train.loop import train

    rank = dist_info().rank
    if rank:  # one progress bar, one result and one set of notes: rank 0's
        args.no_progress = True
        if not getattr(args, "verbose", False):  # -v: every rank's debug log
            logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    base = load_yaml_config(args.config, TrainConfig) if args.config else {}
    if "tasks" in args:
        args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if "balance_by" in args:
        args.balance_by = [k.strip() for v in args.balance_by for k in v.split(",") if k.strip()]
    if "sample_ratio" in args:
        try:
            args.sample_ratio = {k.strip(): float(v) for k, v in (x.split("=") for x in args.sample_ratio.split(","))}
        except ValueError:
            raise ConfigError(f"--sample-ratio {args.sample_ratio!r}: expected name=weight,name=weight") from None
    cfg = config_from_args(TrainConfig, args, base)
    resolve_device(cfg.device)  # the flag's or the --config file's: a missing GPU fails now, not mid-setup
    if args.nproc_per_node is not None and not under_torchrun():  # under torchrun already: the flag is spent
        return launch(args.nproc_per_node, getattr(args, "_argv", None) or sys.argv[1:], cfg.out)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

    def progress(info: dict) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if "epoch_end" in info:
            row = info["epoch_end"]
            if bar is not None:
                bar.close()
                bar = None
            vals = {k[4:]: v for k, v in row.items() if k.startswith("val/") and not k.endswith("/n")}
            print(f"epoch {row['epoch']}: " + "  ".join(f"{k}={v}" for k, v in vals.items()), file=sys.stderr)
            return
        if bar is None:
            bar = tqdm(total=info["steps"], desc=f"epoch {info['epoch'] + 1}/{info['epochs']}", unit="batch",
                       file=sys.stderr, initial=info["step"] - 1)
        bar.update(1)
        if info.get("loss") is not None:
            bar.set_postfix(loss=f"{info['loss']:.3f}", img_s=f"{info['images_per_s']:.0f}")

    res = train(cfg, progress=progress)
    if bar is not None:
        bar.close()
    if not rank:
        print(json.dumps({k: v for k, v in res.items() if k != "history"}, default=str, indent=1))
    return 0
