"""Helpers shared by the subcommands: input expansion, the analyzer options and the labelled-data options
of evaluate and audit."""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import Any

from .._device import DEVICE_METAVAR, check_device_name, resolve_device_name
from ..errors import InvalidInputError, OutputError, UnknownNameError
from ..image import IMAGE_EXTENSIONS, link_problem
from ._args import Arg, add_dataclass_args, config_from_args

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def quiet(args: argparse.Namespace) -> bool:
    """Whether ``facemtl -q/--quiet`` was given: results and errors only, no progress bars or notes."""
    return bool(getattr(args, "quiet", False))


def note(args: argparse.Namespace, message: str) -> None:
    """An informational line on stderr (resuming, where a file was written), left out with ``-q``."""
    if not quiet(args):
        print(message, file=sys.stderr)


def device_arg(value: str) -> str:
    """argparse ``type`` of ``--device``: a misspelt name is a usage error listing the choices; whether the
    device exists is checked when the command resolves it (:func:`facemtl._device.resolve_device`)."""
    try:
        return check_device_name(value)
    except UnknownNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The one ``--device`` flag of every command that runs a model (the ``device`` field of its config dataclass).
DEVICE_ARG = Arg("where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N",
                 type=device_arg, metavar=DEVICE_METAVAR)


def analyzer_help() -> dict[str, dict[str, str | Arg]]:
    """The flags of :class:`~facemtl.analyzer.AnalyzerConfig` and :class:`~facemtl.analyzer.AnalyzerOptions`,
    by class name: their help, choices and metavars."""
    from ..detect import list_detectors
    from ..quality import QUALITY_LEVELS

    config: dict[str, str | Arg] = {
        "model": "a bundled model name (default, default-pytorch), an .onnx file (ONNX Runtime) or a .pt checkpoint "
                 "(needs PyTorch) (default: the bundled model, ONNX Runtime)",
        "detector": Arg("face detector (default: %(default)s; 'none' = each image is already a face crop)",
                        choices=list_detectors(), annotate=False),
        "tasks": "comma-separated subset of tasks to run (default: all)",
        "device": DEVICE_ARG,
        "threads": "CPU threads for the model",
        "min_score": "detector confidence threshold",
    }
    options: dict[str, str | Arg] = {
        "min_face": Arg("ignore faces smaller than this many pixels", annotate=False),
        "max_faces": "keep at most this many faces per image",
        "largest_only": Arg("keep only the largest face", action="store_true", annotate=False),
        "batch_size": Arg("faces per forward pass", annotate=False),
        "flip_tta": "average each face with its mirror image (default: on)",
        "max_pixels": "refuse images with more pixels than this",
        "age_interval": Arg("level of the age interval (age_low, age_high), in (0, 1)", metavar="LEVEL"),
        "min_quality": Arg("low: keep every face, doubtful ones flagged quality=low with reasons; ok: drop them",
                           choices=QUALITY_LEVELS),
    }
    return {"AnalyzerConfig": config, "AnalyzerOptions": options}


ANALYZER_SKIP = ("keep_image",)  # an AnalyzerOptions field the command sets (predict --save-dir), not a flag


def analyzer_classes() -> tuple[type, ...]:
    """The config dataclasses of :func:`add_analyzer_args` (for ``--config``)."""
    from ..analyzer import AnalyzerConfig, AnalyzerOptions

    return AnalyzerConfig, AnalyzerOptions


def add_analyzer_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~facemtl.analyzer.AnalyzerConfig` (what is loaded) and
    :class:`~facemtl.analyzer.AnalyzerOptions` (how faces are chosen and answered); defaults in the namespace."""
    helps = analyzer_help()
    for cls in analyzer_classes():
        add_dataclass_args(p, cls, skip=ANALYZER_SKIP, help_=helps[cls.__name__], fill_defaults=True)


def model_device(args: Any) -> str:
    """``device`` resolved for the backend of ``model`` (ONNX Runtime or PyTorch), before anything loads; of
    parsed flags or a config (anything with ``model`` and ``device`` attributes)."""
    from ..models.load import require_torch_for, resolve_weights

    path, backend = resolve_weights(getattr(args, "model", None))
    if backend == "pytorch":
        require_torch_for(path)
    return resolve_device_name(getattr(args, "device", "cpu"), backend)


def analyzer_config(args: argparse.Namespace):
    """The :class:`~facemtl.analyzer.AnalyzerConfig` of parsed :func:`add_analyzer_args` flags and the ``--config``
    file (a flag given overrides the file), checked: bad values raise FacemtlError."""
    from ..analyzer import AnalyzerConfig

    return config_from_args(AnalyzerConfig, args)


def analyzer_options(args: argparse.Namespace, keep_image: bool = False):
    """The :class:`~facemtl.analyzer.AnalyzerOptions` of parsed :func:`add_analyzer_args` flags and the
    ``--config`` file, checked."""
    from ..analyzer import AnalyzerOptions

    return config_from_args(AnalyzerOptions, args, keep_image=keep_image)


def analyzer_kwargs(args: argparse.Namespace, keep_image: bool = False) -> dict[str, Any]:
    """The keyword arguments of :meth:`FaceAnalyzer.from_checkpoint` that :func:`add_analyzer_args` flags (and the
    ``--config`` file) give (``path`` included; the device resolved first: a missing GPU is one clear error before
    any loading)."""
    import dataclasses

    config = analyzer_config(args)
    device = model_device(config)
    options = analyzer_options(args, keep_image)
    det_opts = {"min_score": config.min_score} if config.min_score is not None else {}
    return dict(path=config.model, detector=config.detector, device=device, tasks=config.tasks,
                threads=config.threads, detector_options=det_opts,
                **{f.name: getattr(options, f.name) for f in dataclasses.fields(options)})


def build_analyzer(args: argparse.Namespace, keep_image: bool = False):
    from ..analyzer import FaceAnalyzer

    return FaceAnalyzer.from_checkpoint(**analyzer_kwargs(args, keep_image))


def _is_candidate(f: Path) -> bool:
    """A regular file, or a symbolic link that leads nowhere (reported per file by
    :func:`facemtl.analyzer.analyze_files`)."""
    return f.is_file() or link_problem(f) is not None


def _folder_images(folder: Path, recursive: bool) -> list[str]:
    pattern = "**/*" if recursive else "*"
    return sorted(str(f) for f in folder.glob(pattern) if f.suffix.lower() in IMAGE_EXTENSIONS and _is_candidate(f))


def check_output_file(path: Path, flag: str) -> None:
    """Before any model is loaded: ``path`` (given as ``flag``) must not be a folder, its folder must exist or be
    creatable (it is created) and be writable, and an existing file must be writable; else one OutputError."""
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; name a file in it, e.g. {path / ('results' + path.suffix)}"
                          if path.suffix else f"{flag} {path} is a folder; name a file, e.g. {path / 'results.csv'}")
    _make_folder(path.parent, f"the folder of {flag} {path}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {flag} {path}: folder {path.parent} is read-only")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {flag} {path}: the file is read-only")


def check_output_dir(path: Path, flag: str) -> None:
    """Before any model is loaded: ``path`` (given as ``flag``) must be a folder or creatable as one (it is
    created) and be writable; else one OutputError."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder; name a folder to write into")
    _make_folder(path, f"{flag} {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {flag} {path}: the folder is read-only")


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create {what}: {folder} is a file, not a folder") from None
    except NotADirectoryError:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputError(f"cannot create {what}: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create {what} ({folder}): {exc.strerror or exc}") from None


def _no_images_message(item: str, recursive: bool) -> str:
    """Why a folder gave no images; without --recursive, the images its sub-folders hold, if any."""
    folder = Path(item)
    per_sub = {}
    for sub in [] if recursive else sorted(d for d in folder.iterdir() if d.is_dir()):
        n = len(_folder_images(sub, recursive=True))
        if n:
            per_sub[sub.name] = n
    if not per_sub:
        return f"no images in folder {item} (looked for {', '.join(IMAGE_EXTENSIONS)})"
    shown = ", ".join(f"{name}/ {n}" for name, n in list(per_sub.items())[:5])
    more = f", ... ({len(per_sub) - 5} more)" if len(per_sub) > 5 else ""
    return (f"no images directly in folder {item}, but its {len(per_sub)} sub-folder(s) hold "
            f"{sum(per_sub.values())} image(s) ({shown}{more}); pass --recursive to include them")


def expand_inputs(items: list[str], recursive: bool = False) -> list[str]:
    """Files, folders (their images; with ``recursive`` those of sub-folders too) and glob patterns -> image
    paths as found; missing inputs are errors, and a folder whose images all sit in sub-folders says so."""
    from ..image import is_url

    out: list[str] = []
    for item in items:
        p = Path(item)
        if is_url(item):  # an image URL: downloaded when it is analysed (bounded in size and time)
            out.append(item)
        elif p.is_dir():
            found = _folder_images(p, recursive)
            if not found:
                raise InvalidInputError(_no_images_message(item, recursive))
            out.extend(found)
        elif p.exists():
            out.append(item)
        elif link_problem(item):
            raise InvalidInputError(f"{item}: {link_problem(item)}")
        elif any(c in item for c in "*?["):
            found = sorted(f for f in glob.glob(item, recursive=True) if _is_candidate(Path(f)))
            if not found:
                raise InvalidInputError(f"no files match {item!r}")
            out.extend(found)
        else:
            raise InvalidInputError(f"no such file or folder: {item}")
    return out


EVAL_HELP = {"age_interval": "level of the age intervals whose coverage is measured, in (0, 1)",
             "keep_samples": "keep each image's key, source, true and predicted labels and probabilities in the "
                             "report (the --json file's \"samples\"): what scripts/paired_compare.py pairs two "
                             "models' reports by",
             "split_manifest": "the split.csv a training run wrote (default: the one beside --model, when its "
                               "SHA-256 is the checkpoint's; else the split is re-created from the seed)",
             "model": "bundled name (default, default-pytorch), .onnx or .pt (default: the bundled model)",
             "utkface": "UTKFace folder",
             "fer2013": "FER2013 folder or fer2013.csv", "manifest": "CSV manifest (path + labels)",
             "limit": "at most this many images per source (with --split val: taken from the checkpoint's own "
                      "validation split)",
             "bootstrap": "bootstrap resamples for the fairness confidence intervals (0: none)",
             "fairface": "FairFace folder (fairface.zip + labels.csv; age bins, 7 races mapped to 5)",
             "celeba_gender": "celeba_gender folder (celeba_gender.zip + labels.csv)",
             "detector": "none (default): dataset crops, framed as in training; a detector name (retinaface, haar, "
                         "blazeface): the photo path of `facemtl predict`, largest face per image",
             "cache_dir": "where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)",
             "seed": "seed of the held-out split (default: the checkpoint's split seed: its split_seed, else its seed)",
             "val_fraction": "held-out share per source (default: the checkpoint's training value)",
             "threads": "CPU threads of the model's backend (default: its own choice)"}


def add_eval_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The :class:`~facemtl.evaluate.evaluate.EvaluateConfig` flags (data sources, split, fairness options),
    shared by ``evaluate`` and ``audit``; ``skip`` leaves out fields a command has no use for."""
    from ..evaluate.evaluate import SPLITS, EvaluateConfig
    from ..evaluate.fairness import DEFAULT_GROUP_KEYS

    help_: dict[str, str | Arg] = {
        **EVAL_HELP, "device": DEVICE_ARG,
        "split": Arg("val: the checkpoint's seeded validation split and FER2013 PublicTest; all: every labelled image "
                     "given (a separate test set)", choices=SPLITS),
        "group_keys": Arg(f"comma-separated group attributes of the fairness tables, each alone and crossed: any of "
                          f"{', '.join(DEFAULT_GROUP_KEYS)} (default: all three)", flags=("--by",), metavar="ATTRS",
                          action="append", annotate=False),
        "fairness_min_count": Arg("groups with fewer labelled images are shown as too few and left out of "
                                  "worst/best/gap", flags=("--min-count", "--fairness-min-count"), metavar="N")}
    add_dataclass_args(p, EvaluateConfig, skip=skip, help_=help_)


def eval_config(args: argparse.Namespace):
    """The EvaluateConfig of parsed :func:`add_eval_args` flags (validated: bad values raise FacemtlError)."""
    from ..evaluate.evaluate import EvaluateConfig

    if "device" in args:  # resolved first: a missing GPU is reported before any data is looked at
        args.device = model_device(args)
    return config_from_args(EvaluateConfig, args)


def print_eval_header(report: dict[str, Any]) -> None:
    """The model and data lines that open evaluate's and audit's output."""
    import json

    d = report["data"]
    print(f"model: {report['model']['checkpoint']}")
    print(f"data: split={d['split']} images={d['n_images']} {json.dumps(d['by_source'])}; skipped: "
          f"{json.dumps(d['skipped'])}\n")
