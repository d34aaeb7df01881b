"""Video: sampling, IoU tracking, EMA smoothing, per-frame CSV, annotated video, errors and the CLI."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import WILD, draw_face

from facemtl.analyzer import FaceAnalyzer
from facemtl.cli.batch import csv_columns
from facemtl.detect.base import Detection
from facemtl.errors import InvalidInputError
from facemtl.results import Box, Prediction
from facemtl.tasks import age_group, get_task, list_tasks
from facemtl.video import AttributeSmoother, IouTracker, VideoConfig, analyze_video, iter_video, video_csv_columns

cv2 = pytest.importorskip("cv2")

OBAMA_BIDEN = WILD / "facerec_obama_and_biden.jpg"


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def two_face_frames(n: int = 20, step: int = 3) -> list[np.ndarray]:
    """160x120 black frames: face A (40 px) moves right by ``step`` px a frame; face B stays bottom right."""
    a, b = draw_face(40, seed=1), draw_face(40, seed=2, tone=150)
    frames = []
    for i in range(n):
        img = np.zeros((120, 160, 3), np.uint8)
        x = 4 + step * i
        img[10:50, x:x + 40] = a
        img[72:112, 112:152] = b
        frames.append(img)
    return frames


class BlobDetector:
    """Finds the bright blobs on a black frame: a detector driven by the video's content, with no weights."""

    name = "blob"

    def detect(self, image: np.ndarray) -> list[Detection]:
        mask = (image.max(axis=2) > 30).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        dets = [Detection(Box(float(x), float(y), float(x + w), float(y + h)), 0.9)
                for x, y, w, h, area in stats[1:n] if area >= 400]
        return sorted(dets, key=lambda d: d.box.x1)


@pytest.fixture
def two_face_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "two faces.mp4", two_face_frames())


# -- units ---------------------------------------------------------------------------------------------
def test_tracker_keeps_ids_starts_new_ones_and_ends_stale_tracks():
    tr = IouTracker(iou_threshold=0.3, max_missed=1)
    assert tr.update([Box(0, 0, 40, 40)]) == [1]
    assert tr.update([Box(100, 100, 140, 140), Box(6, 0, 46, 40)]) == [2, 1]  # order of detections kept
    assert tr.update([Box(12, 0, 52, 40)]) == [1]  # track 2 missed once: still alive
    assert tr.update([Box(18, 0, 58, 40)]) == [1] and tr.ended == [2]
    assert tr.update([Box(100, 100, 140, 140)]) == [3]  # ids are never reused
    assert tr.num_tracks == 3


def test_tracker_greedy_prefers_the_best_overlap():
    tr = IouTracker(0.1, 5)
    tr.update([Box(0, 0, 40, 40), Box(30, 0, 70, 40)])
    # the box at x=28 overlaps track 2 best, the one at x=2 track 1: both keep their ids despite the order
    assert tr.update([Box(28, 0, 68, 40), Box(2, 0, 42, 40)]) == [2, 1]


def _noisy_preds(rng: np.random.Generator) -> dict[str, Prediction]:
    emo = get_task("emotion")
    logits = rng.normal(0, 1.5, len(emo.labels))
    p = np.exp(logits) / np.exp(logits).sum()
    age = float(np.clip(35 + rng.normal(0, 8), 0, 100))
    return {"age": Prediction("age", age_group(age), age, None),
            "emotion": Prediction("emotion", emo.labels[int(p.argmax())], float(p.max()),
                                  {lab: float(v) for lab, v in zip(emo.labels, p)})}


def test_smoother_reduces_variance_and_returns_frozen_predictions():
    rng = np.random.default_rng(0)
    sm = AttributeSmoother([get_task(t) for t in list_tasks()], alpha=0.3)
    raw_age, smooth_age, raw_happy, smooth_happy = [], [], [], []
    for _ in range(60):
        raw = _noisy_preds(rng)
        out = sm.update(7, raw)
        raw_age.append(raw["age"].value)
        smooth_age.append(out["age"].value)
        raw_happy.append(raw["emotion"].probs["happy"])
        smooth_happy.append(out["emotion"].probs["happy"])
        emo = out["emotion"]
        assert isinstance(emo, Prediction) and emo.label == max(emo.probs, key=emo.probs.get)
        assert emo.value == emo.probs[emo.label] and sum(emo.probs.values()) == pytest.approx(1.0)
        assert out["age"].label == age_group(out["age"].value)
    assert np.var(smooth_age[10:]) < 0.5 * np.var(raw_age[10:])
    assert np.var(smooth_happy[10:]) < 0.5 * np.var(raw_happy[10:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        out["age"].value = 1.0  # type: ignore[misc]
    # the first observation is taken as is; a dropped track starts over
    sm.drop(7)
    first = _noisy_preds(rng)
    assert sm.update(7, first)["age"].value == pytest.approx(first["age"].value)


def test_config_validates_and_picks_every_n_from_fps():
    assert VideoConfig().resolve_every_n(30.0) == 6
    assert VideoConfig().resolve_every_n(None) == 1
    assert VideoConfig(every_n=4).resolve_every_n(30.0) == 4
    for bad in ({"every_n": 0}, {"max_frames": 0}, {"ema_alpha": 0.0}, {"ema_alpha": 1.5}, {"iou_threshold": 0},
                {"max_missed": -1}, {"target_fps": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            VideoConfig(**bad)


# -- whole videos with the tiny model ---------------------------------------------------------------------
def test_moving_face_keeps_its_track_and_outputs_are_written(tiny_model, two_face_video, tmp_path):
    analyzer = FaceAnalyzer(tiny_model, BlobDetector(), 64)
    out_csv, out_mp4 = tmp_path / "out" / "frames.csv", tmp_path / "out" / "annotated.mp4"
    calls = []
    summary = analyze_video(analyzer, str(two_face_video), VideoConfig(), out_csv, out_mp4,
                            progress=lambda done, total: calls.append((done, total)))
    # 10 fps, ~5 analysed per second -> every 2nd frame of 20
    assert summary["every_n"] == 2 and summary["frames_read"] == 20 and summary["frames_analysed"] == 10
    assert summary["tracks"] == 2 and summary["faces"] == 20
    assert summary["csv"] == str(out_csv) and summary["video"] == str(out_mp4)
    assert calls[-1] == (10, 10)

    cols, rows = read_csv(out_csv)
    assert cols == ["frame", "time_s", "track_id"] + csv_columns() == video_csv_columns()
    assert len(rows) == 20  # one row per face per analysed frame
    assert [int(r["frame"]) for r in rows[::2]] == list(range(0, 20, 2))
    assert float(rows[2]["time_s"]) == pytest.approx(0.2)
    moving = [r for r in rows if float(r["y1"]) < 60]
    static = [r for r in rows if float(r["y1"]) >= 60]
    assert len(moving) == len(static) == 10
    assert {r["track_id"] for r in moving} == {"1"} and {r["track_id"] for r in static} == {"2"}
    assert float(moving[-1]["x1"]) - float(moving[0]["x1"]) > 40  # it did move
    assert all(r["file"] == str(two_face_video) and r["emotion"] in get_task("emotion").labels for r in rows)

    assert count_frames(out_mp4) == 10
    cap = cv2.VideoCapture(str(out_mp4))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (120, 160, 3)


def test_fixed_fake_detector_smoothing_against_raw(tiny_model, fake_detector, tmp_path):
    # frames that change every step: the tiny model's raw answers jitter, the smoothed ones less
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(12)]
    video = write_video(tmp_path / "noise.mp4", frames)
    analyzer = FaceAnalyzer(tiny_model, fake_detector, 64)
    got = list(iter_video(analyzer, video, VideoConfig(every_n=1, max_frames=10, ema_alpha=0.3)))
    assert len(got) == 10 and fake_detector.calls == 10
    assert all([t.track_id for t in f.faces] == [1, 2] for f in got)  # fixed boxes: fixed ids, score order
    assert got[0].image.shape == (64, 64, 3) and got[0].image.dtype == np.uint8
    first = got[0].faces[0]
    assert first.face["age"].value == pytest.approx(first.raw["age"].value)  # first frame: raw as is
    raw = [f.faces[0].raw["age"].value for f in got]
    smooth = [f.faces[0].face["age"].value for f in got]
    assert np.std(raw) > 0 and np.std(np.diff(smooth)) < np.std(np.diff(raw))
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[-1].faces[0].face["gender"].label = "x"  # type: ignore[misc]
    assert got[-1].plot().shape == (64, 64, 3)


def test_face_that_leaves_ends_its_track_and_empty_frames_get_a_row(tiny_model, tmp_path):
    face = draw_face(40, seed=3)
    frames = []
    for i in range(14):
        img = np.zeros((80, 120, 3), np.uint8)
        if i < 5:
            img[20:60, 5:45] = face  # first person, left
        elif i >= 9:
            img[20:60, 70:110] = face  # someone else, right, after 4 empty frames
        frames.append(img)
    video = write_video(tmp_path / "leave.mp4", frames)
    out_csv = tmp_path / "leave.csv"
    summary = analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), video,
                            VideoConfig(every_n=1, max_missed=2), csv_path=out_csv)
    assert summary["frames_analysed"] == 14 and summary["tracks"] == 2 and summary["faces"] == 10
    assert summary["video"] is None
    _, rows = read_csv(out_csv)
    assert len(rows) == 14  # 10 faces + one row for each of the 4 frames without a face
    assert [r["track_id"] for r in rows] == ["1"] * 5 + [""] * 4 + ["2"] * 5
    assert all(r["n_faces"] == "0" and r["face"] == "" for r in rows[5:9])


def test_interrupted_run_leaves_valid_outputs(tiny_model, two_face_video, tmp_path):
    out_csv, out_mp4 = tmp_path / "part.csv", tmp_path / "part.mp4"

    def stop_after_three(done: int, total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), two_face_video, VideoConfig(every_n=1),
                      out_csv, out_mp4, progress=stop_after_three)
    assert len(read_csv(out_csv)[1]) == 6 and count_frames(out_mp4) == 3


def test_sources_that_cannot_be_opened_name_the_source(tiny_model, fake_detector, tmp_path):
    analyzer = FaceAnalyzer(tiny_model, fake_detector, 64)
    bad = tmp_path / "not a video.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    out = tmp_path / "never.csv"
    with pytest.raises(InvalidInputError, match="not a video.mp4"):
        analyze_video(analyzer, str(bad), csv_path=out)
    assert not out.exists()  # nothing is written for a source that does not open
    with pytest.raises(InvalidInputError, match="missing.mp4"):
        analyze_video(analyzer, tmp_path / "missing.mp4")
    with pytest.raises(InvalidInputError, match="camera index 97"):
        analyze_video(analyzer, 97)


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_parses_webcam_without_inputs_and_refuses_nothing():
    from facemtl.cli.__main__ import build_parser, main

    args = build_parser().parse_args(["predict", "--webcam", "0", "--every-n", "3", "--max-frames", "5"])
    assert args.inputs == [] and args.webcam == 0 and args.every_n == 3 and args.max_frames == 5
    with pytest.raises(SystemExit) as exc:
        main(["predict"])
    assert exc.value.code == 2


def test_cli_video_flags(two_face_video, tmp_path, capsys):
    from facemtl.cli.__main__ import main

    out_csv, out_mp4 = tmp_path / "f.csv", tmp_path / "a.mp4"
    rc = main(["predict", str(two_face_video), "--detector", "none", "--every-n", "1", "--max-frames", "3",
               "--csv", str(out_csv), "--video-out", str(out_mp4), "--no-flip-tta"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(two_face_video)) and "3 of 3 frame(s) analysed" in line and str(out_csv) in line
    _, rows = read_csv(out_csv)
    assert len(rows) == 3 and {r["track_id"] for r in rows} == {"1"}  # detector "none": the whole frame
    assert count_frames(out_mp4) == 3


@pytest.mark.skipif(not OBAMA_BIDEN.is_file(), reason=f"shared data not found at {WILD}")
def test_cli_real_face_video_with_save_dir(tmp_path, capsys):
    from facemtl.cli.__main__ import main
    from facemtl.image import load_image

    # a real face (crop around one of the two faces of the photo) moving across a grey background
    face = cv2.resize(load_image(OBAMA_BIDEN)[330:700, 690:1000], (96, 114), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(20):
        img = np.full((240, 320, 3), 110, np.uint8)
        x = 10 + 8 * i
        img[60:174, x:x + 96] = face
        frames.append(img)
    video = write_video(tmp_path / "walk.mp4", frames)
    save = tmp_path / "out"
    assert main(["predict", str(video), "--save-dir", str(save)]) == 0
    assert "10 of 20 frame(s) analysed" in capsys.readouterr().out
    _, rows = read_csv(save / "walk_frames.csv")
    found = [r for r in rows if r["track_id"]]
    assert len(found) >= 8 and {r["track_id"] for r in found} == {"1"}
    assert all(r["age_group"] and r["gender"] in get_task("gender").labels for r in found)
    assert count_frames(save / "walk_annotated.mp4") == 10
