"""A ByteTrack-style multi-face tracker: Kalman prediction between detections, two-stage association.

Each track carries a constant-velocity Kalman filter on its box centre and size (state ``cx, cy, w, h`` and
their per-frame velocities). :meth:`ByteTracker.step` advances every track by one frame; on frames with
detections the tracks are matched to them in stages (after ByteTrack, Zhang et al. 2022):

1. detections scoring at least ``high_score`` against the tracked (visible) tracks, IoU of the predicted box
   with the detection, optimal assignment (Hungarian);
2. the remaining *low*-score detections against the tracked tracks still unmatched (a face half hidden
   scores low but is still the same face), at a stricter IoU;
3. the remaining high-score detections against the *lost* tracks (and the tracked ones still unmatched), by
   centre distance (to the predicted centre or to where the face was last seen, whichever is nearer: a face
   being hidden drags its box and its filter sideways) in units of the face's usual size (the median longer side
   of its last matches), within a gate that widens the longer the track has been lost, for boxes of a similar
   size: a face that reappears after an occlusion takes its old id back although it has moved meanwhile. Only
   detections that no visible track explains by overlap reach this stage.

A tracked track without a match keeps being reported on its prediction through ``coast`` detection frames (a
detector missing a face once does not make it flicker), then becomes lost; a lost track is kept (predicted, its
velocity fading, not reported) for ``max_lost`` frames, then ends. High-score detections left over start new
tracks. Ids start at 1 and are never reused. numpy only.

:class:`IouTracker` is the simpler greedy IoU tracker (no prediction): each detection joins the track whose last
box overlaps it most.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..detect.base import Detection
from ..errors import ConfigError
from ..results import Box

__all__ = ["BoxKalman", "ByteTracker", "IouTracker", "Track", "box_iou_matrix", "linear_assignment"]

_STD_POS = 1.0 / 20  # process/measurement noise of position and size, relative to the box size (ByteTrack)
_STD_VEL = 1.0 / 160  # process noise of the velocities, relative to the box size
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame)
_H = np.eye(4, 8)
_SEEN = 10  # matched boxes remembered per track (for re-matching a lost one)


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h); noise scales with the box's own width and height.

    Args:
        box: the first measurement, (x1, y1, x2, y2).
    """

    def __init__(self, box: Sequence[float]) -> None:
        z = _xyxy_to_cxcywh(box)
        self.mean = np.concatenate([z, np.zeros(4)])
        w, h = z[2], z[3]
        std = np.array([2 * _STD_POS * w, 2 * _STD_POS * h, 2 * _STD_POS * w, 2 * _STD_POS * h,
                        10 * _STD_VEL * w, 10 * _STD_VEL * h, 10 * _STD_VEL * w, 10 * _STD_VEL * h])
        self.cov = np.diag(std ** 2)

    def predict(self, coasting: bool = False) -> None:
        """Advance one frame; ``coasting`` (a track not seen lately) freezes the size and slows the motion by
        15 % a frame, so that the prediction of a hidden face stays near where it was last seen."""
        w, h = self.mean[2], self.mean[3]
        if coasting:
            self.mean[6:] = 0.0
            self.mean[4:6] *= 0.85
        q = np.array([_STD_POS * w, _STD_POS * h, _STD_POS * w, _STD_POS * h,
                      _STD_VEL * w, _STD_VEL * h, _STD_VEL * w, _STD_VEL * h]) ** 2
        self.mean = _F @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 2.0)
        self.cov = _F @ self.cov @ _F.T + np.diag(q)

    def update(self, box: Sequence[float]) -> None:
        """Fold in one measured box."""
        z = _xyxy_to_cxcywh(box)
        w, h = self.mean[2], self.mean[3]
        r = np.diag(np.array([_STD_POS * w, _STD_POS * h, _STD_POS * w, _STD_POS * h]) ** 2)
        s = _H @ self.cov @ _H.T + r
        gain = np.linalg.solve(s, _H @ self.cov).T  # P H^T S^-1 (S symmetric)
        self.mean = self.mean + gain @ (z - _H @ self.mean)
        self.cov = self.cov - gain @ s @ gain.T
        self.mean[2:4] = np.maximum(self.mean[2:4], 2.0)

    @property
    def xyxy(self) -> np.ndarray:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _xyxy_to_cxcywh(box: Sequence[float]) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy; (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def linear_assignment(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one assignment of rows to columns (Hungarian method, shortest augmenting paths);
    pairs costing more than ``max_cost`` are left unassigned. Returns (row, column) pairs sorted by row."""
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    transposed = n > m
    c = cost.T if transposed else cost  # rows <= columns
    rows, cols = c.shape
    big = max_cost + 1.0 + float(np.abs(c).max())  # forbidden pairs cost more than any allowed set of pairs
    c = np.where(c > max_cost, big, c)
    u, v = np.zeros(rows + 1), np.zeros(cols + 1)
    p = np.zeros(cols + 1, dtype=np.int64)  # p[j]: row (1-based) assigned to column j; column 0 is a sentinel
    way = np.zeros(cols + 1, dtype=np.int64)
    for i in range(1, rows + 1):
        p[0] = i
        j0 = 0
        minv = np.full(cols + 1, np.inf)
        used = np.zeros(cols + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = c[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, cols + 1) if p[j] and c[p[j] - 1, j - 1] <= max_cost]
    if transposed:
        pairs = [(j, i) for i, j in pairs]
    return sorted(pairs)


@dataclass
class Track:
    """One person followed over frames.

    Attributes:
        track_id: the id (1, 2, ...), never reused.
        kalman: the box filter.
        score: the last matched detection's score.
        detection: the detection matched on the current frame; None on a frame without one.
        state: "tracked" (seen lately, reported) or "lost" (kept for re-matching, not reported).
        frames_lost: frames since the last match.
        misses: detection frames in a row without a match.
        hits: detections matched so far.
        age: frames since the track started.
        data: free slot for the caller (e.g. the track's last attribute refresh).
    """

    track_id: int
    kalman: BoxKalman
    score: float
    detection: Detection | None = None
    state: str = "tracked"
    frames_lost: int = 0
    misses: int = 0
    hits: int = 1
    age: int = 0
    _landmarks: np.ndarray | None = None  # last landmarks relative to the box: ((x - x1) / w, (y - y1) / h)
    _seen: list = field(default_factory=list)  # (cx, cy, longer side) of the last matched detections
    data: dict = field(default_factory=dict)

    @property
    def box(self) -> Box:
        """The box to report: the matched detection's on a detection frame, else the filter's prediction."""
        if self.detection is not None:
            return self.detection.box
        return Box(*(float(v) for v in self.kalman.xyxy))

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...] | None:
        """The matched detection's landmarks, or the last ones moved with the predicted box."""
        if self.detection is not None:
            return self.detection.landmarks
        if self._landmarks is None:
            return None
        x1, y1, x2, y2 = self.kalman.xyxy
        pts = self._landmarks * np.array([x2 - x1, y2 - y1]) + np.array([x1, y1])
        return tuple((float(x), float(y)) for x, y in pts)

    def _observe(self, det: Detection) -> None:
        b = det.box
        self._seen = [*self._seen[-(_SEEN - 1):], ((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, max(b.width, b.height))]
        self._remember_landmarks(det)

    @property
    def usual_side(self) -> float:
        """The median longer side of the track's last matched boxes (robust to a partly hidden face)."""
        return float(np.median([s for _, _, s in self._seen])) if self._seen else float(self.kalman.mean[2:4].max())

    @property
    def last_seen(self) -> tuple[float, float]:
        """Centre of the last matched box."""
        return self._seen[-1][:2] if self._seen else (float(self.kalman.mean[0]), float(self.kalman.mean[1]))

    def _matched(self, det: Detection) -> None:
        self.kalman.update(det.box.xyxy)
        self.detection, self.score, self.state, self.frames_lost, self.misses = det, float(det.score), "tracked", 0, 0
        self.hits += 1
        self._observe(det)

    def _remember_landmarks(self, det: Detection) -> None:
        if det.landmarks:
            b = det.box
            self._landmarks = (np.asarray(det.landmarks, dtype=np.float64) - np.array([b.x1, b.y1])) \
                / np.array([max(b.width, 1.0), max(b.height, 1.0)])
        else:
            self._landmarks = None


class ByteTracker:
    """Two-stage (high/low score) IoU tracker with Kalman prediction and re-matching of lost tracks.

    Args:
        high_score: detections scoring at least this are matched first and may start tracks.
        match_iou: smallest IoU of a predicted track box and a high-score detection for them to match.
        low_match_iou: the same for low-score detections (stage 2; stricter, they are often false alarms).
        lost_gate: stage 3 matches a lost track with a detection whose centre is within this many face sizes
            (the track's usual longer side) of the track's prediction or last seen centre...
        lost_gate_growth: ...plus this many per frame lost (a hidden face may have moved on)...
        lost_gate_max: ...up to this many box sizes.
        lost_size_ratio: ...and whose size is within this factor of the track's.
        coast: detection frames in a row an unmatched track stays reported on its predicted box before it becomes
            lost (1: one missed detection does not hide a face).
        max_lost: frames a lost track is kept for re-matching before it ends (0: it ends at once).
        frame_size: (height, width); a track whose predicted box leaves it entirely becomes lost.

    Raises:
        ValueError: a score or IoU threshold outside [0, 1], a negative gate or frame count, a size ratio < 1.
    """

    def __init__(self, high_score: float = 0.5, match_iou: float = 0.2, low_match_iou: float = 0.5,
                 lost_gate: float = 0.5, lost_gate_growth: float = 0.04, lost_gate_max: float = 2.0,
                 lost_size_ratio: float = 1.6, coast: int = 0, max_lost: int = 30,
                 frame_size: tuple[int, int] | None = None) -> None:
        for name, value in (("high_score", high_score), ("match_iou", match_iou), ("low_match_iou", low_match_iou)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        for name, value in (("lost_gate", lost_gate), ("lost_gate_growth", lost_gate_growth),
                            ("lost_gate_max", lost_gate_max), ("coast", coast), ("max_lost", max_lost)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if lost_size_ratio < 1.0:
            raise ConfigError(f"lost_size_ratio must be >= 1, got {lost_size_ratio}")
        self.high_score, self.match_iou, self.low_match_iou = float(high_score), float(match_iou), float(low_match_iou)
        self.lost_gate, self.lost_gate_growth, self.lost_gate_max = float(lost_gate), float(lost_gate_growth), \
            float(lost_gate_max)
        self.lost_size_ratio, self.coast, self.max_lost = float(lost_size_ratio), int(coast), int(max_lost)
        self.frame_size = frame_size
        self.tracked: list[Track] = []  # reported tracks, in the order of the last detections that matched them
        self.lost: list[Track] = []
        self.ended: list[int] = []  # ids ended by the last step
        self.started: list[int] = []  # ids started by the last step
        self.num_tracks = 0  # tracks started so far (the last id given)
        self.frame = -1

    def step(self, detections: Sequence[Detection] | None = None) -> list[Track]:
        """Advance one frame and match this frame's detections, if any.

        Args:
            detections: the faces found on this frame, or None on a frame where the detector did not run
                (the tracks are only predicted). An empty list means the detector ran and found nothing.

        Returns:
            The tracked (reported) tracks: on a detection frame in the order of their detections, then the
            coasting ones, then new tracks; between detections in the same order as before.
        """
        self.frame += 1
        self.ended, self.started = [], []
        for t in self.tracked + self.lost:
            t.kalman.predict(coasting=t.state == "lost")
            t.detection = None
            t.age += 1
            t.frames_lost += 1
        if detections is not None:
            self._match(list(detections))
        self._retire()
        return list(self.tracked)

    def _match(self, dets: list[Detection]) -> None:
        scores = np.array([float(d.score) for d in dets])
        high = [i for i in range(len(dets)) if scores[i] >= self.high_score]
        low = [i for i in range(len(dets)) if scores[i] < self.high_score]
        # 1: high-score detections <-> tracked tracks
        m1, rest_tracks, rest_high = self._by_iou(self.tracked, dets, high, self.match_iou)
        # 2: low-score detections <-> tracked tracks still free
        m2, rest_tracks, _ = self._by_iou(rest_tracks, dets, low, self.low_match_iou)
        # 3: high-score detections still free <-> lost tracks and the tracked ones still free (a face whose visible
        # part jumped while it was being hidden), by gated centre distance
        m3, unmatched, new = self._by_distance(rest_tracks + self.lost, dets, rest_high)
        matched = sorted(m1 + m2 + m3, key=lambda tj: tj[1])
        for t, j in matched:
            t._matched(dets[j])
        for t in unmatched:
            t.misses += 1
        coasting = [t for t in unmatched if t.state == "tracked" and t.misses <= self.coast]
        self.tracked = [t for t, _ in matched] + coasting
        self.lost = [t for t in unmatched if t not in coasting]
        for t in self.lost:
            t.state = "lost"
        for j in new:
            self.num_tracks += 1
            t = Track(self.num_tracks, BoxKalman(dets[j].box.xyxy), float(dets[j].score), dets[j])
            t._observe(dets[j])
            self.tracked.append(t)
            self.started.append(t.track_id)

    def _by_iou(self, tracks: list[Track], dets: list[Detection], cand: list[int], min_iou: float
                ) -> tuple[list[tuple[Track, int]], list[Track], list[int]]:
        """Optimal IoU matching of ``tracks`` with the detections ``cand``: (matches, free tracks, free dets)."""
        if not tracks or not cand:
            return [], list(tracks), list(cand)
        iou = box_iou_matrix(np.array([t.kalman.xyxy for t in tracks]), np.array([dets[j].box.xyxy for j in cand]))
        pairs = [(i, j) for i, j in linear_assignment(1.0 - iou, 1.0 - min_iou)
                 if iou[i, j] > 0]  # boxes that do not touch never match, whatever ``min_iou``
        return self._split(tracks, cand, pairs)

    def _by_distance(self, tracks: list[Track], dets: list[Detection], cand: list[int]
                     ) -> tuple[list[tuple[Track, int]], list[Track], list[int]]:
        """Matching of lost ``tracks`` with detections ``cand`` by centre distance / gate (<= 1 matches)."""
        if not tracks or not cand:
            return [], list(tracks), list(cand)
        predicted = np.array([t.kalman.mean[:2] for t in tracks])
        seen = np.array([t.last_seen for t in tracks])
        t_size = np.array([t.usual_side for t in tracks])
        d_state = np.array([_xyxy_to_cxcywh(dets[j].box.xyxy) for j in cand])
        d_size = d_state[:, 2:].max(axis=1)
        gate = np.minimum(self.lost_gate + self.lost_gate_growth * np.array([t.frames_lost for t in tracks]),
                          self.lost_gate_max) * t_size
        dist = np.minimum(np.linalg.norm(predicted[:, None] - d_state[None, :, :2], axis=2),
                          np.linalg.norm(seen[:, None] - d_state[None, :, :2], axis=2)) / gate[:, None]
        ratio = np.maximum(t_size[:, None] / d_size[None, :], d_size[None, :] / t_size[:, None])
        cost = np.where(ratio <= self.lost_size_ratio, dist, np.inf)
        cost = np.where(np.isfinite(cost), cost, 1e6)
        return self._split(tracks, cand, linear_assignment(cost, 1.0))

    @staticmethod
    def _split(tracks: list[Track], cand: list[int], pairs: list[tuple[int, int]]
               ) -> tuple[list[tuple[Track, int]], list[Track], list[int]]:
        used_t, used_d = {i for i, _ in pairs}, {j for _, j in pairs}
        return ([(tracks[i], cand[j]) for i, j in pairs], [t for i, t in enumerate(tracks) if i not in used_t],
                [d for k, d in enumerate(cand) if k not in used_d])

    def _offscreen(self, t: Track) -> bool:
        if self.frame_size is None:
            return False
        h, w = self.frame_size
        x1, y1, x2, y2 = t.kalman.xyxy
        return x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h

    def _retire(self) -> None:
        """Tracked -> lost when the predicted box has left the frame; lost -> ended past ``max_lost`` frames."""
        keep = []
        for t in self.tracked:
            if t.frames_lost and self._offscreen(t):
                t.state = "lost"
                self.lost.append(t)
            else:
                keep.append(t)
        self.tracked = keep
        alive = []
        for t in self.lost:
            if t.frames_lost > self.max_lost:
                self.ended.append(t.track_id)
            else:
                alive.append(t)
        self.lost = alive


# -- the greedy IoU tracker ----------------------------------------------------------------------------
@dataclass
class _IouTrack:
    track_id: int
    box: Box
    missed: int = 0


class IouTracker:
    """Greedy IoU tracker: each detection joins the free track whose last box overlaps it most.

    Pairs are taken in decreasing IoU order while the IoU is at least ``iou_threshold``; a detection left
    over starts a new track; a track unmatched for more than ``max_missed`` consecutive updates ends.
    Track ids start at 1 and are never reused.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.tracks: dict[int, _IouTrack] = {}
        self.ended: list[int] = []  # ids ended by the last update
        self.num_tracks = 0  # tracks started so far

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Match one frame's boxes to tracks; returns the track id of each box, in order."""
        pairs = sorted(((t.box.iou(b), tid, j) for tid, t in self.tracks.items() for j, b in enumerate(boxes)),
                       key=lambda p: (-p[0], p[1], p[2]))
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, tid, j in pairs:
            if iou < self.iou_threshold:
                break
            if tid in used or ids[j] is not None:
                continue
            ids[j] = tid
            used.add(tid)
            self.tracks[tid].box, self.tracks[tid].missed = boxes[j], 0
        self.ended = []
        for tid, track in list(self.tracks.items()):
            if tid not in used:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self.tracks[tid]
                    self.ended.append(tid)
        for j, b in enumerate(boxes):
            if ids[j] is None:
                self.num_tracks += 1
                ids[j] = self.num_tracks
                self.tracks[self.num_tracks] = _IouTrack(self.num_tracks, b)
        return [int(i) for i in ids]  # type: ignore[arg-type]
