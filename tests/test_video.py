"""Video: every frame processed, detection every k frames, ByteTrack-style tracking through occlusions, attribute
refresh and EMA smoothing, per-frame CSV, H.264 output at the source rate, broken and unreachable sources, CLI."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import socket
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import WILD, draw_face

from facemtl.analyzer import FaceAnalyzer
from facemtl.cli.batch import csv_columns
from facemtl.detect.base import Detection
from facemtl.errors import InvalidInputError, MissingDependencyError
from facemtl.results import Box, Prediction
from facemtl.tasks import age_group, get_task, list_tasks
from facemtl.video import (
    AttributeSmoother,
    IouTracker,
    VideoConfig,
    VideoStoppedError,
    analyze_video,
    iter_video,
    video_csv_columns,
)
from facemtl.video.track import ByteTracker, linear_assignment

cv2 = pytest.importorskip("cv2")
av = pytest.importorskip("av")

OBAMA_BIDEN = WILD / "facerec_obama_and_biden.jpg"


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MPEG-4 Part 2 clip through OpenCV (inputs need not be H.264)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_h264(path: Path, frames: list[np.ndarray], rate: Fraction | int = 10) -> Path:
    """An H.264 clip through PyAV; .mp4 files get their index first (+faststart), as cameras' files often do."""
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if path.suffix == ".mp4" else {})
    stream = container.add_stream("libx264", rate=Fraction(rate))
    stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    stream.options = {"preset": "ultrafast"}
    for f in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    container.mux(stream.encode(None))
    container.close()
    return path


def probe(path: Path) -> dict:
    """Codec, pixel format, profile, announced and decoded frame counts, frame rate and size of a video file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        out = {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "frames": s.frames,
               "rate": s.average_rate, "size": (s.codec_context.width, s.codec_context.height),
               "profile": s.codec_context.profile}
        out["decoded"] = sum(1 for _ in c.decode(s))
    return out


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


def occluded_people_frames(n: int = 60) -> tuple[list[np.ndarray], int]:
    """320x240 black frames with 3 drawn faces moving smoothly, and a black bar (60 px, wider than a face) sweeping
    left to right that hides each face completely for a few frames. Returns the frames and the number of people."""
    faces = [draw_face(44, seed=10 + k, tone=140 + 30 * k) for k in range(3)]
    homes = [(30, 30), (130, 150), (230, 50)]
    frames = []
    for i in range(n):
        img = np.zeros((240, 320, 3), np.uint8)
        for k, (face, (hx, hy)) in enumerate(zip(faces, homes)):
            x = int(hx + 20 * np.sin(i / 9 + k))
            y = int(hy + 12 * np.cos(i / 11 + 2 * k))
            img[y:y + 44, x:x + 44] = face
        bar = -60 + 8 * i  # 8 px a frame: fully over a 44 px face for 2-3 frames, mostly over it for ~8
        img[:, max(0, bar):max(0, bar + 60)] = 0
        frames.append(img)
    return frames, len(faces)


class BlobDetector:
    """Finds the bright blobs on a black frame: a detector driven by the video's content, with no weights."""

    name = "blob"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.shapes.append(image.shape)
        mask = (image.max(axis=2) > 30).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        dets = [Detection(Box(float(x), float(y), float(x + w), float(y + h)), 0.9)
                for x, y, w, h, area in stats[1:n] if area >= 400]
        return sorted(dets, key=lambda d: d.box.x1)


@pytest.fixture
def two_face_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "two faces.mp4", two_face_frames())


# -- units ---------------------------------------------------------------------------------------------
def test_iou_tracker_keeps_ids_starts_new_ones_and_ends_stale_tracks():
    tr = IouTracker(iou_threshold=0.3, max_missed=1)
    assert tr.update([Box(0, 0, 40, 40)]) == [1]
    assert tr.update([Box(100, 100, 140, 140), Box(6, 0, 46, 40)]) == [2, 1]  # order of detections kept
    assert tr.update([Box(12, 0, 52, 40)]) == [1]  # track 2 missed once: still alive
    assert tr.update([Box(18, 0, 58, 40)]) == [1] and tr.ended == [2]
    assert tr.update([Box(100, 100, 140, 140)]) == [3]  # ids are never reused
    assert tr.num_tracks == 3


def test_iou_tracker_greedy_prefers_the_best_overlap():
    tr = IouTracker(0.1, 5)
    tr.update([Box(0, 0, 40, 40), Box(30, 0, 70, 40)])
    # the box at x=28 overlaps track 2 best, the one at x=2 track 1: both keep their ids despite the order
    assert tr.update([Box(28, 0, 68, 40), Box(2, 0, 42, 40)]) == [2, 1]


def test_linear_assignment_is_optimal_and_respects_the_gate():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n, m = (int(v) for v in rng.integers(1, 5, 2))
        cost = rng.random((n, m))
        got = linear_assignment(cost, 0.7)
        assert len({i for i, _ in got}) == len({j for _, j in got}) == len(got)
        assert all(cost[i, j] <= 0.7 for i, j in got)
        best = (0, 0.0)  # brute force: most pairs within the gate, then the lowest total cost
        for cols in itertools.product(range(-1, m), repeat=n):
            used = [c for c in cols if c >= 0]
            if len(used) != len(set(used)) or any(c >= 0 and cost[i, c] > 0.7 for i, c in enumerate(cols)):
                continue
            key = (len(used), -sum(cost[i, c] for i, c in enumerate(cols) if c >= 0))
            best = max(best, key)
        assert len(got) == best[0] and -sum(cost[i, j] for i, j in got) == pytest.approx(best[1])
    # the textbook case greedy gets wrong: the cheapest pair (0, 0) would leave row 1 with cost 0.9
    assert linear_assignment(np.array([[0.1, 0.2], [0.15, 0.9]]), 1.0) == [(0, 1), (1, 0)]


def _det(x: float, y: float, side: float = 40, score: float = 0.9) -> Detection:
    return Detection(Box(x, y, x + side, y + side), score)


def test_bytetracker_keeps_ids_through_a_brief_occlusion():
    tr = ByteTracker(max_lost=30, coast=1)
    ids_over_time = []
    for i in range(40):
        a, b, c = _det(10 + 3 * i, 20), _det(200 - 2 * i, 120), _det(60, 200 + (i % 2))
        dets = [a, b, c]
        if 12 <= i < 24:
            dets = [a, c]  # person b hidden for 12 frames, moving on meanwhile
        if i == 30:
            dets.append(_det(300, 10))  # a newcomer
        tracks = tr.step(dets)
        ids_over_time.append({(round(t.box.x1), round(t.box.y1)): t.track_id for t in tracks})
        if 13 <= i < 24:
            assert 2 not in {t.track_id for t in tracks}  # hidden: not reported (after one coasting frame)
            assert [t.track_id for t in tr.lost] == [2]
    assert ids_over_time[0] == {(10, 20): 1, (200, 120): 2, (60, 200): 3}
    assert ids_over_time[24][(200 - 48, 120)] == 2  # back, 24 px from where it was hidden: its old id
    assert ids_over_time[30][(300, 10)] == 4 and tr.num_tracks == 4  # only the newcomer got a new id
    assert ids_over_time[12][(200 - 24, 120)] == 2  # the first missed detection: coasting on its prediction


def test_bytetracker_predicts_between_detections_and_uses_low_scores_only_to_continue():
    tr = ByteTracker(high_score=0.5)
    errors = []
    for i in range(20):  # a face moving 3 px a frame, detected every 3rd frame
        x = 4 + 3 * i
        tracks = tr.step([_det(x, 10)] if i % 3 == 0 else None)
        assert [t.track_id for t in tracks] == [1]
        if i % 3:
            errors.append(abs(tracks[0].box.x1 - x))
    assert max(errors[-6:]) < 1.0 < max(errors[:2])  # the filter learnt the motion (a static guess errs 3-6 px)
    assert tr.step([_det(4 + 3 * 20, 10, score=0.3), _det(150, 150, score=0.3)])[0].track_id == 1  # stage 2
    assert tr.num_tracks == 1  # a low-score detection alone never starts a track
    with pytest.raises(ValueError, match="high_score"):
        ByteTracker(high_score=1.5)


def test_detection_runs_on_a_reduced_input_and_boxes_map_back():
    from facemtl.video.detection import _detect, _detect_side

    config = VideoConfig()

    class _T:  # a track of a 200 px face in a 1280x720 frame
        kalman = type("K", (), {"mean": np.array([0, 0, 200.0, 200.0])})()

    big = [_T()]
    assert _detect_side((720, 1280), [], config, 1) == 640  # no tracks: the full detector input
    assert _detect_side((720, 1280), big, config, 1) == 416  # 200 px -> 65 px at 416: still >= 64 px
    assert _detect_side((720, 1280), big, config, 4) == 640  # every 4th detection at full size
    assert _detect_side((720, 1280), big, VideoConfig(detect_min_face=0), 1) == 640

    det = BlobDetector()
    analyzer = type("A", (), {"detector": det, "select": staticmethod(lambda d: d)})()
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:300, 200:400] = 200
    (found,) = _detect(analyzer, frame, 320)
    assert det.shapes == [(240, 320, 3)]  # the detector saw half the size...
    assert found.box.xyxy == pytest.approx((200, 100, 400, 300), abs=2)  # ...the box is in frame pixels


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


def test_config_validates_and_processes_every_frame_by_default():
    assert VideoConfig().resolve_every_n(30.0) == 1  # every frame
    assert VideoConfig().resolve_every_n(None) == 1
    assert VideoConfig(target_fps=5).resolve_every_n(30.0) == 6  # thinned on request
    assert VideoConfig(every_n=4).resolve_every_n(30.0) == 4
    for bad in ({"every_n": 0}, {"max_frames": 0}, {"ema_alpha": 0.0}, {"ema_alpha": 1.5}, {"iou_threshold": 0},
                {"max_missed": -1}, {"target_fps": 0}, {"detect_every": 0}, {"refresh_every": 0},
                {"detect_min_face": -1}, {"stream_timeout": 0}, {"video_preset": "warp"}, {"video_crf": 60},
                {"detect_max_side": 8}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            VideoConfig(**bad)


# -- whole videos with the tiny model ---------------------------------------------------------------------
def test_every_frame_is_tracked_and_written_as_h264_at_the_source_rate(tiny_model, two_face_video, tmp_path):
    det = BlobDetector()
    analyzer = FaceAnalyzer(tiny_model, det, 64)
    out_csv, out_mp4 = tmp_path / "out" / "frames.csv", tmp_path / "out" / "annotated.mp4"
    calls = []
    summary = analyze_video(analyzer, str(two_face_video), VideoConfig(), out_csv, out_mp4,
                            progress=lambda done, total: calls.append((done, total)))
    assert summary["every_n"] == 1 and summary["frames_read"] == 20 and summary["frames_analysed"] == 20
    assert summary["detect_every"] == 3 and summary["detections"] == 7 == len(det.shapes)  # frames 0, 3 ... 18
    assert summary["refreshes"] == 8  # 2 new tracks at frame 0, then both every 6 frames (6, 12, 18)
    assert summary["tracks"] == 2 and summary["faces"] == 40 and summary["complete"] and summary["error"] is None
    assert summary["csv"] == str(out_csv) and summary["video"] == str(out_mp4)
    assert summary["frames_per_second"] > 0 and calls[-1] == (20, 20)

    cols, rows = read_csv(out_csv)
    assert cols == ["frame", "time_s", "track_id"] + csv_columns() == video_csv_columns()
    assert len(rows) == 40  # one row per face per frame
    assert [int(r["frame"]) for r in rows[::2]] == list(range(20))
    assert float(rows[2]["time_s"]) == pytest.approx(0.1)
    moving = [r for r in rows if float(r["y1"]) < 60]
    static = [r for r in rows if float(r["y1"]) >= 60]
    assert len(moving) == len(static) == 20
    assert {r["track_id"] for r in moving} == {"1"} and {r["track_id"] for r in static} == {"2"}
    # between detections the box follows the face (Kalman prediction), not where it was last detected
    err = [abs(float(r["x1"]) - (4 + 3 * int(r["frame"]))) for r in moving if int(r["frame"]) >= 9]
    assert max(err) < 1.5
    assert all(r["file"] == str(two_face_video) and r["emotion"] in get_task("emotion").labels for r in rows)

    info = probe(out_mp4)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"  # browser-playable
    assert info["frames"] == info["decoded"] == 20 and info["rate"] == 10 and info["size"] == (160, 120)


def test_output_keeps_a_fractional_source_rate_and_every_n_divides_it(tiny_model, tmp_path):
    frames = two_face_frames(12)
    src = write_h264(tmp_path / "ntsc.mp4", frames, Fraction(30000, 1001))
    analyzer = FaceAnalyzer(tiny_model, BlobDetector(), 64)
    analyze_video(analyzer, src, VideoConfig(), video_out=tmp_path / "all.mp4")
    info = probe(tmp_path / "all.mp4")
    assert info["rate"] == Fraction(30000, 1001) and info["decoded"] == probe(src)["decoded"] == 12
    summary = analyze_video(analyzer, src, VideoConfig(every_n=2), video_out=tmp_path / "half.mp4")
    assert summary["frames_analysed"] == 6
    info = probe(tmp_path / "half.mp4")
    assert info["rate"] == Fraction(15000, 1001) and info["decoded"] == 6


def test_synthetic_clip_with_occlusions_keeps_one_id_per_person(tiny_model, tmp_path):
    frames, people = occluded_people_frames()
    video = write_h264(tmp_path / "people.mp4", frames, 25)
    out_csv = tmp_path / "people.csv"
    summary = analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), video, VideoConfig(), out_csv)
    _, rows = read_csv(out_csv)
    ids = {r["track_id"] for r in rows if r["track_id"]}
    assert summary["tracks"] == len(ids)
    assert len(ids) / people <= 1.5
    assert len(ids) == people  # here, in fact, exactly one each
    # the bar did hide faces: some frames report fewer than 3
    per_frame = [sum(1 for r in rows if r["frame"] == str(i) and r["track_id"]) for i in range(len(frames))]
    assert min(per_frame) < people == max(per_frame)


def test_fixed_fake_detector_smoothing_against_raw(tiny_model, fake_detector, tmp_path):
    # frames that change every step: the tiny model's raw answers jitter, the smoothed ones less
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(12)]
    video = write_video(tmp_path / "noise.mp4", frames)
    analyzer = FaceAnalyzer(tiny_model, fake_detector, 64)
    got = list(iter_video(analyzer, video, VideoConfig(every_n=1, max_frames=10, ema_alpha=0.3, detect_every=1,
                                                       refresh_every=1)))
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


def test_attributes_refresh_every_few_frames_between_detections(tiny_model, fake_detector, tmp_path):
    rng = np.random.default_rng(2)
    video = write_video(tmp_path / "noise.mp4", [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                                                 for _ in range(13)])
    got = list(iter_video(FaceAnalyzer(tiny_model, fake_detector, 64), video,
                          VideoConfig(detect_every=2, refresh_every=4)))
    assert fake_detector.calls == 7  # frames 0, 2, ... 12
    raw = [f.faces[0].raw["age"].value for f in got]
    changed = [i for i in range(1, len(raw)) if raw[i] != raw[i - 1]]
    assert changed == [4, 8, 12]  # refreshed on detection frames, every 4th frame; held in between


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
                            VideoConfig(detect_every=1, max_missed=2), csv_path=out_csv)
    assert summary["frames_analysed"] == 14 and summary["tracks"] == 2 and summary["faces"] == 11
    assert summary["video"] is None
    _, rows = read_csv(out_csv)
    assert len(rows) == 14  # 11 faces + one row for each of the 3 frames without a face
    # one missed detection: the face is kept one frame on its prediction (no flicker), then it is gone
    assert [r["track_id"] for r in rows] == ["1"] * 6 + [""] * 3 + ["2"] * 5
    assert rows[5]["x1"] == rows[4]["x1"]  # a face that stood still is predicted where it stood
    assert all(r["n_faces"] == "0" and r["face"] == "" for r in rows[6:9])


def test_interrupted_run_leaves_valid_outputs(tiny_model, two_face_video, tmp_path):
    out_csv, out_mp4 = tmp_path / "part.csv", tmp_path / "part.mp4"

    def stop_after_three(done: int, total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), two_face_video, VideoConfig(every_n=1),
                      out_csv, out_mp4, progress=stop_after_three)
    assert len(read_csv(out_csv)[1]) == 6 and probe(out_mp4)["decoded"] == 3


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_video_keeps_the_frames_done_and_says_where_it_stopped(tiny_model, tmp_path, suffix):
    rng = np.random.default_rng(3)
    frames = []
    for f in two_face_frames(40, step=2):
        noisy = f.astype(np.int16) + rng.integers(-20, 21, f.shape)  # noise: every frame costs similar bytes
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    full = write_h264(tmp_path / f"full{suffix}", frames)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out_csv, out_mp4 = tmp_path / "cut.csv", tmp_path / "cut_annotated.mp4"
    analyzer = FaceAnalyzer(tiny_model, BlobDetector(), 64)
    summary = analyze_video(analyzer, cut, VideoConfig(), out_csv, out_mp4)
    done = summary["frames_analysed"]
    assert 5 < done < 40 and not summary["complete"] and summary["stopped_at"] == done
    assert "ended after" in summary["error"] or "cannot be decoded" in summary["error"]
    _, rows = read_csv(out_csv)
    assert sorted({int(r["frame"]) for r in rows}) == list(range(done))  # every frame before the break is there
    assert probe(out_mp4)["decoded"] == done  # and the annotated video is finalised, playable

    with pytest.raises(VideoStoppedError, match=f"stopped at frame {done}") as exc:  # the iterator API raises
        for _ in iter_video(analyzer, cut):  # ...after yielding every good frame
            pass
    assert exc.value.frame == done and isinstance(exc.value, InvalidInputError)


def test_truncated_video_in_the_cli_is_an_error_that_names_the_frame(tmp_path, capsys):
    from facemtl.cli.__main__ import main

    full = write_h264(tmp_path / "full.mp4", two_face_frames(30, step=2))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    rc = main(["predict", str(cut), "--detector", "none", "--save-dir", str(tmp_path / "out"), "--no-flip-tta"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err
    done = int(out.split(": ", 1)[1].split(" of ")[0])
    assert 0 < done < 30 and f"stopped at frame {done}:" in err and "cut_frames.csv" in err
    assert len(read_csv(tmp_path / "out" / "cut_frames.csv")[1]) == done


def test_sources_that_cannot_be_opened_name_the_source(tiny_model, fake_detector, tmp_path):
    analyzer = FaceAnalyzer(tiny_model, fake_detector, 64)
    bad = tmp_path / "not a video.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    out = tmp_path / "never.csv"
    with pytest.raises(InvalidInputError, match="not a video.mp4"):
        analyze_video(analyzer, str(bad), csv_path=out)
    assert not out.exists()  # nothing is written for a source that does not open
    with pytest.raises(InvalidInputError, match="no such video file: .*missing.mp4"):
        analyze_video(analyzer, tmp_path / "missing.mp4")
    with pytest.raises(InvalidInputError, match="camera index 97"):
        analyze_video(analyzer, 97)


def test_stream_urls_that_do_not_answer_fail_fast_with_one_error(tiny_model, fake_detector, tmp_path):
    analyzer = FaceAnalyzer(tiny_model, fake_detector, 64)
    t0 = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"rtsp://127\.0\.0\.1:9/x.*refused"):
        analyze_video(analyzer, "rtsp://127.0.0.1:9/x", csv_path=tmp_path / "never.csv")
    assert time.perf_counter() - t0 < 5
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live.mp4"
        t0 = time.perf_counter()
        with pytest.raises(InvalidInputError, match=r"no answer from http://127\.0\.0\.1:\d+/live\.mp4 within 1 s"):
            analyze_video(analyzer, url, VideoConfig(stream_timeout=1.0))
        assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "never.csv").exists()


def test_without_pyav_files_still_read_and_writing_says_what_to_install(tiny_model, two_face_video, tmp_path,
                                                                        monkeypatch):
    import facemtl.video.io as vio

    monkeypatch.setattr(vio, "_import_av", lambda: None)
    analyzer = FaceAnalyzer(tiny_model, BlobDetector(), 64)
    summary = analyze_video(analyzer, two_face_video, VideoConfig(), csv_path=tmp_path / "f.csv")  # OpenCV reads
    assert summary["frames_analysed"] == 20 and summary["tracks"] == 2
    with pytest.raises(MissingDependencyError, match=r"pip install \"facemtl\[video\]\""):
        analyze_video(analyzer, two_face_video, VideoConfig(), tmp_path / "never.csv", video_out=tmp_path / "a.mp4")
    assert not (tmp_path / "never.csv").exists()  # refused before any output was started


def test_annotated_video_needs_an_h264_container(tiny_model, two_face_video, tmp_path):
    from facemtl.errors import OutputError

    with pytest.raises(OutputError, match=r"a\.webm: H\.264 goes into \.mp4"):
        analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), two_face_video, video_out=tmp_path / "a.webm")


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_parses_webcam_without_inputs_and_refuses_nothing():
    from facemtl.cli.__main__ import build_parser, main

    args = build_parser().parse_args(["predict", "--webcam", "0", "--every-n", "3", "--max-frames", "5",
                                      "--detect-every", "2", "--refresh-every", "4", "--stream-timeout", "3"])
    assert args.inputs == [] and args.webcam == 0 and args.every_n == 3 and args.max_frames == 5
    assert args.detect_every == 2 and args.refresh_every == 4 and args.stream_timeout == 3.0
    with pytest.raises(SystemExit) as exc:
        main(["predict"])
    assert exc.value.code == 2


def test_cli_video_flags(two_face_video, tmp_path, capsys):
    from facemtl.cli.__main__ import main

    out_csv, out_mp4 = tmp_path / "f.csv", tmp_path / "a.mp4"
    rc = main(["predict", str(two_face_video), "--detector", "none", "--every-n", "1", "--max-frames", "3",
               "--csv", str(out_csv), "--video-out", str(out_mp4), "--no-flip-tta", "--detect-every", "2"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(two_face_video)) and "3 of 3 frame(s) analysed" in line and str(out_csv) in line
    assert "faces detected every 2" in line
    _, rows = read_csv(out_csv)
    assert len(rows) == 3 and {r["track_id"] for r in rows} == {"1"}  # detector "none": the whole frame
    assert probe(out_mp4)["decoded"] == 3


def test_cli_stream_url_that_refuses_is_one_error_line(capsys):
    from facemtl.cli.__main__ import main

    assert main(["predict", "rtsp://127.0.0.1:9/cam", "--detector", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtsp://127.0.0.1:9/cam: error: cannot open the stream")


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
    assert "20 of 20 frame(s) analysed" in capsys.readouterr().out
    _, rows = read_csv(save / "walk_frames.csv")
    found = [r for r in rows if r["track_id"]]
    assert len(found) >= 16 and {r["track_id"] for r in found} == {"1"}
    assert all(r["age_group"] and r["gender"] in get_task("gender").labels for r in found)
    info = probe(save / "walk_annotated.mp4")
    assert info["codec"] == "h264" and info["decoded"] == 20 and info["rate"] == 10


def test_http_url_goes_through_the_same_pipeline(tiny_model, tmp_path):
    from conftest import local_http_server

    write_h264(tmp_path / "clip.mp4", two_face_frames(15))
    with local_http_server(tmp_path) as base:
        url = f"{base}/clip.mp4"
        summary = analyze_video(FaceAnalyzer(tiny_model, BlobDetector(), 64), url, VideoConfig(stream_timeout=5),
                                csv_path=tmp_path / "url.csv", video_out=tmp_path / "url.mp4")
    assert summary["source"] == url and summary["complete"]
    assert summary["frames_analysed"] == 15 and summary["tracks"] == 2
    assert probe(tmp_path / "url.mp4")["decoded"] == 15
