"""facemtl predict IMAGE|DIR|GLOB|VIDEO|URL... [--webcam INDEX] : every face's attributes as a table or JSON;
--save-dir for drawn images. Videos, stream URLs and cameras give a per-frame CSV of tracked faces and an
annotated H.264 video."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from .._rows import safe_name
from ..analyzer import analyze_files
from ..errors import FacemtlError, InvalidInputError
from ..tasks import find_task
from ..video import VideoConfig
from ..video.io import is_stream_url
from ._args import add_config_arg, add_dataclass_args, config_from_args
from ._common import (
    ANALYZER_SKIP,
    VIDEO_EXTENSIONS,
    add_analyzer_args,
    analyzer_classes,
    build_analyzer,
    check_output_dir,
    expand_inputs,
    note,
    quiet,
)

EXIT_CODES = """exit status: 0 no input failed; 1 a setup or output error (bad option value, missing input,
--save-dir not a writable folder; one message on stderr) or every input failed; 2 command-line usage error;
3 some inputs failed (each named on stderr); 130 interrupted."""

VIDEO_HELP = {
    "every_n": "process every n-th frame of the source (default: every frame, or about --target-fps a second)",
    "target_fps": "frames per second of video to process when --every-n is not given (default: all)",
    "max_frames": "stop after processing this many frames",
    "detect_every": "run the face detector on every k-th processed frame; faces are tracked in between",
    "refresh_every": "re-run the attribute model for a face at most every this many frames (a new face at once)",
    "detect_max_side": "shrink frames to this longer side before detection",
    "detect_min_face": "detect on a smaller input still while every tracked face stays this many pixels there "
                       "(0: off)",
    "full_detect_every": "every n-th detection at --detect-max-side anyway, to find new small faces",
    "ema_alpha": "weight of the newest refresh in each track's moving average (1 = no smoothing)",
    "high_score": "detections scoring at least this are matched first and may start tracks",
    "iou_threshold": "box overlap between a track's predicted box and a detection needed to continue it",
    "max_missed": "frames a track that lost its face is kept for re-matching before it ends",
    "stream_timeout": "seconds to wait for a stream URL to open and for each read",
    "video_preset": "x264 preset of the annotated video (ultrafast ... veryslow)",
    "video_crf": "x264 quality of the annotated video (lower is better)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="analyse images (files, folders, globs), videos or a webcam",
                       description="Find every face and predict its attributes. Videos ("
                       + ", ".join(VIDEO_EXTENSIONS) + "), stream URLs and --webcam: every frame is processed, faces "
                       "detected every few frames and tracked in between, each face's answers refreshed every few "
                       "frames and smoothed over time, and a per-frame CSV (and an annotated H.264 video at the "
                       "source frame rate) written.",
                       epilog=EXIT_CODES)
    p.add_argument("inputs", nargs="*", metavar="IMAGE|DIR|GLOB|VIDEO|URL",
                   help="images, folders, globs, video files, or stream URLs (rtsp://, http(s)://...)")
    add_config_arg(p, *analyzer_classes(), VideoConfig, skip=ANALYZER_SKIP)
    add_analyzer_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per image (JSON Lines); "
                   "for a video, its summary")
    p.add_argument("--save-dir", help="write each image with boxes and labels drawn into this folder (as <name>.jpg; "
                   "sub-folders of the inputs are mirrored, so equal names from different folders do not collide)")
    p.add_argument("--overwrite", action="store_true", help="replace drawn images already in --save-dir (default: "
                   "such a file is left alone and reported as an error)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    v = p.add_argument_group("video and webcam")
    v.add_argument("--webcam", type=int, metavar="INDEX", help="analyse this camera (0 = the first) until Ctrl-C "
                   "or --max-frames")
    v.add_argument("--csv", metavar="PATH", help="per-frame CSV (default: <save-dir or current folder>/"
                   "<stem>_frames.csv)")
    v.add_argument("--video-out", metavar="PATH", help="annotated H.264 video, .mp4 (default: "
                   "<save-dir>/<stem>_annotated.mp4 with --save-dir, else none)")
    add_dataclass_args(v, VideoConfig, help_=VIDEO_HELP)
    p.set_defaults(func=run, usage_error=p.error)


def _row(face) -> str:
    parts = [f"box=({', '.join(f'{v:.0f}' for v in face.box.xyxy)})", f"score={face.score:.2f}"]
    for name, pred in face.attributes.items():
        spec = find_task(name)
        if spec is not None and spec.kind == "regression":
            span = f" [{pred.low:.0f}-{pred.high:.0f}]" if pred.low is not None and pred.high is not None else ""
            group = ""
            if spec.label_grouping and pred.label is not None:
                # the label is the most probable group; say so when the expected value sits in another group
                group = pred.label if pred.label == spec.group_of(pred.value) else f"most likely {pred.label}"
                group = f" ({group})"
            parts.append(f"{name}={pred.value:.1f}{span}{group}")
        else:
            parts.append(f"{name}={pred.label} ({pred.value:.0%})")
    if face.quality != "ok":
        parts.append(f"quality={face.quality} ({', '.join(face.quality_reasons)})")
    return "  ".join(parts)


def _url_path(f: str) -> str | None:
    """An image URL as the path it is saved under: ``/<host>/<path>`` (so URLs sort into folders like files)."""
    from urllib.parse import unquote, urlparse

    from ..image import is_url

    if not is_url(f):
        return None
    u = urlparse(f)
    return "/" + "/".join(x for x in (u.netloc, unquote(u.path).strip("/")) if x)


def save_paths(files: list[str], save: Path) -> dict[str, Path]:
    """Where ``--save-dir`` draws each image: ``<name>.jpg`` under ``save``, in the sub-folders the files sit in
    below their common folder; names that still meet (``a.png`` and ``a.jpg``) keep their extension
    (``a_png.jpg``), and any clash left gets ``_2``, ``_3``... Distinct files never share an output."""
    absolute = {f: _url_path(f) or os.path.abspath(f) for f in files}
    parents = {os.path.dirname(a) for a in absolute.values()}
    try:
        common: str | None = os.path.commonpath(sorted(parents)) if parents else None
    except ValueError:  # different drives (Windows): no common folder; names stay flat, suffixed on clashes
        common = None
    by_out: dict[Path, set[str]] = defaultdict(set)
    for a in absolute.values():
        p = Path(a)
        rel = os.path.relpath(p.parent, common) if common is not None else "."
        by_out[save / rel / (p.stem + ".jpg")].add(a)
    where: dict[str, Path] = {}
    for out, group in by_out.items():
        for a in group:
            p = Path(a)
            ext = p.suffix.lstrip(".").lower()
            where[a] = out if len(group) == 1 else out.with_name(f"{p.stem}_{ext}.jpg" if ext else out.name)
    taken: dict[Path, str] = {}
    for a in sorted(where):
        out, k = where[a], 2
        while out in taken and taken[out] != a:
            out = where[a].with_name(f"{where[a].stem}_{k}.jpg")
            k += 1
        taken[out] = a
        where[a] = out
    return {f: Path(os.path.normpath(where[a])) for f, a in absolute.items()}


def _run_videos(args: argparse.Namespace, analyzer, sources: list) -> int:
    from tqdm import tqdm

    from ..video import analyze_video

    if len(sources) > 1 and (args.csv or args.video_out):
        raise InvalidInputError(f"--csv and --video-out name one file each, but {len(sources)} videos were given; "
                                "use --save-dir instead")
    config = config_from_args(VideoConfig, args)
    save = Path(args.save_dir) if args.save_dir else None
    from .._optional import available

    annotate = bool(args.video_out) or available("av")
    if save and not annotate:  # the core install: the CSV is written, the drawn video needs the extra
        note(args, 'note: no annotated video (H.264 needs PyAV: pip install "facemtl[video]"); writing the CSV only')
    failed = 0
    for src in sources:
        stem = _video_stem(src)
        csv_path = Path(args.csv) if args.csv else (save or Path(".")) / f"{stem}_frames.csv"
        video_out = Path(args.video_out) if args.video_out else \
            (save / f"{stem}_annotated.mp4" if save and annotate else None)
        bar = tqdm(unit="frame", file=sys.stderr, disable=True if quiet(args) else None, desc=str(stem),
                   leave=False)

        def progress(done: int, total: int | None, bar=bar) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            summary = analyze_video(analyzer, src, config, csv_path, video_out, progress)
        except FacemtlError as exc:
            failed += 1
            print(f"{safe_name(src)}: error: {exc}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print(f"{src}: interrupted; frames done so far are in {csv_path}"
                  + (f" and {video_out}" if video_out else ""), file=sys.stderr)
            raise
        finally:
            bar.close()
        outs = ", ".join(x for x in (summary["csv"], summary["video"]) if x)
        if args.json:
            print(json.dumps({k: safe_name(v) if isinstance(v, str) else v for k, v in summary.items()}))
        else:
            rate = f", {summary['frames_per_second']:.1f} frames/s" if summary["frames_per_second"] else ""
            print(f"{safe_name(summary['source'])}: {summary['frames_analysed']} of {summary['frames_read']} frame(s) "
                  f"analysed (every {summary['every_n']}; faces detected every {summary['detect_every']}), "
                  f"{summary['faces']} face(s) in {summary['tracks']} track(s), {summary['seconds']:.1f} s{rate}"
                  f" -> {safe_name(outs) or 'no output'}")
        if not summary["complete"]:  # a video that broke mid-way: what was done is kept, and it is an error
            failed += 1
            print(f"{safe_name(summary['source'])}: error: stopped at frame {summary['stopped_at']}: "
                  f"{safe_name(summary['error'])}; the {summary['frames_analysed']} frame(s) before it are in "
                  f"{safe_name(outs) or 'no output'}", file=sys.stderr)
    return failed


def _image_url(text: str) -> bool:
    from urllib.parse import urlparse

    from ..image import IMAGE_EXTENSIONS, is_url

    return is_url(text) and Path(urlparse(text).path).suffix.lower() in IMAGE_EXTENSIONS


def _video_stem(src: int | str) -> str:
    """The output name stem of a video: the file's stem, ``webcam<N>``, or a URL's last path part (or host)."""
    if isinstance(src, int):
        return f"webcam{src}"
    if is_stream_url(src):
        rest = src.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        last = rest.rsplit("/", 1)[-1] if "/" in rest else rest
        return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(last).stem or last) or "stream"
    return Path(src).stem


def run(args: argparse.Namespace) -> int:
    if not args.inputs and args.webcam is None:
        args.usage_error("nothing to analyse: give IMAGE|DIR|GLOB|VIDEO inputs or --webcam INDEX")
    if args.webcam is not None and args.webcam < 0:
        args.usage_error(f"--webcam takes a camera index >= 0, got {args.webcam}")
    # URLs are never globbed: an http(s)/file URL naming an image file is an image; any other URL is a video or stream
    urls = [i for i in args.inputs if is_stream_url(i) and not _image_url(i)]
    found = expand_inputs([i for i in args.inputs if i not in urls], args.recursive) if args.inputs else []
    videos: list = [f for f in found if Path(f).suffix.lower() in VIDEO_EXTENSIONS] + urls
    files = [f for f in found if f not in videos]
    if args.webcam is not None:
        videos.append(args.webcam)
    if args.save_dir:
        check_output_dir(Path(args.save_dir), "--save-dir")  # before the model loads
    analyzer = build_analyzer(args, keep_image=bool(args.save_dir))
    failed_videos = _run_videos(args, analyzer, videos) if videos else 0
    if not files:
        return _exit_code(failed_videos, len(videos))
    save = Path(args.save_dir) if args.save_dir else None
    outputs = save_paths(files, save) if save is not None else {}
    written: set[Path] = set()
    skipped = 0
    failed = 0
    for res in analyze_files(analyzer, files):
        name = safe_name(res.source)  # a file name that is not UTF-8 is printed escaped, never a crash
        if not hasattr(res, "faces"):
            failed += 1
            print(f"{name}: error: {safe_name(res.error)}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({**res.to_dict(), "source": name}))
        else:
            print(f"{name}: {len(res.faces)} face(s)")
            for i, face in enumerate(res.faces):
                print(f"  [{i}] {_row(face)}")
        if save is not None:
            out = outputs[res.source]
            if out.exists() and out not in written and not args.overwrite:
                skipped += 1
                failed += 1
                print(f"{name}: error: {safe_name(out)} already exists; not overwritten (pass --overwrite to "
                      "replace it)", file=sys.stderr)
                continue
            try:
                res.save(out)
            except (OSError, FacemtlError) as exc:  # one file's drawing failing (disk full) does not end the run
                failed += 1
                print(f"{name}: error: cannot write {safe_name(out)}: {getattr(exc, 'strerror', None) or exc}",
                      file=sys.stderr)
                continue
            written.add(out)
    if save is not None and not args.json and not quiet(args):
        print(f"{len(written)} drawn image(s) written to {safe_name(save)}/"
              + (f"; {skipped} left alone: already there (--overwrite replaces them)" if skipped else ""))
    return _exit_code(failed + failed_videos, len(files) + len(videos))


def _exit_code(failed: int, total: int) -> int:
    """0 none failed, 1 every input failed, 3 some failed (see EXIT_CODES)."""
    if not failed:
        return 0
    return 1 if failed >= total else 3
