"""Face tracks: an online ByteTrack-style tracker over the detector's boxes, run per video after
all of its shards are done, plus per-track temporal smoothing of the emotion probabilities.

Why a small NumPy tracker and not a library: supervision's ByteTrack would fit but brings
scipy, matplotlib, pyyaml and more for ~200 lines of logic; faces per frame are few, so greedy
IoU assignment (sorted by IoU) matches what Hungarian assignment would give in practice.

Why per video, after the shards: the tracker only needs boxes and scores, which are all in the
``faces`` rows. Running it over the whole video's rows in frame order makes tracks continuous
across shard boundaries by construction, and a 1-shard and an N-shard run get the same track ids
(the detections are the same), without warm-up overlaps or stitching heuristics.

Association (Zhang et al. 2022, ByteTrack, arXiv 2110.06864, Algorithm 1): each frame, tracks
are moved by a constant-velocity prediction; then
1. high-score detections (``score >= high_score``, the detector's row threshold) are matched to all
   live tracks by IoU (``>= match_iou``);
2. the tracks left over are matched to low-score detections (``low_score <= score < high_score``)
   at a stricter IoU (``>= low_match_iou``): a face that blurs, turns or is partly hidden for a few
   frames keeps its track instead of ending it; a low-score detection never starts a track;
3. high-score detections left over start tracks (birth threshold = ``high_score``, so every face
   that becomes a row can start a track), which count once they have ``min_hits`` detections, or
   when they cover every frame the tracker saw (a clip shorter than ``min_hits`` frames);
4. a track unseen for more than ``max_lost_s`` seconds ends (short misses do not end it).
A face detected in every frame at ``high_score`` or more therefore always has one track. Low-score
detections are returned with the track they joined, or -1: the caller keeps them as face rows only
when they joined a track (:func:`ferbatch.job.tracking.track_video` documents what a job stores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ferbatch.vision.boxes import iou_matrix

__all__ = ["ByteTracker", "TrackerConfig", "confirm_tracks", "track_boxes", "smooth_probs"]


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings.

    Attributes:
        high_score: detections at or above are matched first and may start tracks; the detector's
            row threshold (0.7 for every registry detector), so every face row can start a track.
        low_score: detections from here up to ``high_score`` only keep existing tracks alive
            (ByteTrack's second stage; 0.3: below it UltraFace and YuNet mostly fire on background,
            measured on the Intel clips); lower ones are ignored.
        match_iou: least IoU (predicted track box vs detection) for a high-score match.
        low_match_iou: least IoU for the second, low-score stage.
        min_hits: frames a new track needs before it counts (shorter ones get no track id).
        max_lost_s: seconds a track may go unseen before it ends (face hidden, turned away).
        velocity_smoothing: weight of the newest motion in the velocity estimate (0..1).
        smooth_half_life_s: half-life of the exponential moving average of per-track probabilities.
    """

    high_score: float = 0.7
    low_score: float = 0.3
    match_iou: float = 0.3
    low_match_iou: float = 0.5
    min_hits: int = 3
    max_lost_s: float = 1.0
    velocity_smoothing: float = 0.5
    smooth_half_life_s: float = 0.5

    @classmethod
    def for_rows(cls, row_threshold: float) -> TrackerConfig:
        """The settings for a job whose rows keep detections scored above ``row_threshold``
        (``--score-threshold``): births at the row threshold, ByteTrack's low stage from
        ``row_threshold - LOW_STAGE_SPAN`` (at least ``MIN_LOW_SCORE``): 0.7 -> 0.3, the values
        measured on the Intel clips (tests/test_tracks.py)."""
        return cls(high_score=row_threshold, low_score=min(row_threshold, max(MIN_LOW_SCORE, row_threshold - LOW_STAGE_SPAN)))


# ByteTrack's low stage spans this far below the row threshold (0.7 -> 0.3; Zhang et al. use 0.6 -> 0.1)
LOW_STAGE_SPAN = 0.4
MIN_LOW_SCORE = 0.1


@dataclass
class _Track:
    tid: int
    box: np.ndarray  # (4,) last matched box
    vel: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # per ms
    last_ms: float = 0.0
    hits: int = 1

    def predict(self, t_ms: float) -> np.ndarray:
        return self.box + self.vel * (t_ms - self.last_ms)


def _greedy_match(iou: np.ndarray, thr: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by descending IoU, each row and column at most once, IoU >= thr."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= thr)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r, used_c = set(), set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


class ByteTracker:
    """Online ByteTrack association (module docstring), one frame at a time.

    The shard's frame loop (:mod:`ferbatch.pipeline`) runs one per shard, so tracks exist while
    the frames are analysed and can steer detection (:meth:`predict` gives the windows of
    ``--detect-every``); :meth:`reset` ends every track at a shot cut. Ids are provisional
    (0, 1, 2, ... in order of birth, never reused); which tracks count (``min_hits``) is decided
    once the whole video is known (:func:`confirm_tracks`).

    Args:
        cfg: tracker settings.
    """

    def __init__(self, cfg: TrackerConfig = TrackerConfig()):
        self.cfg = cfg
        self.tracks: list[_Track] = []
        self.next_tid = 0

    def reset(self) -> None:
        """End every live track (a shot cut: no identity crosses it)."""
        self.tracks = []

    def live(self, t_ms: float) -> list[_Track]:
        """The tracks not yet lost at ``t_ms`` (unseen for at most ``max_lost_s``)."""
        max_lost = self.cfg.max_lost_s * 1000.0
        return [tr for tr in self.tracks if t_ms - tr.last_ms <= max_lost]

    def predict(self, t_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """Constant-velocity boxes of the live tracks at ``t_ms``.

        Returns:
            (T, 4) float32 x1 y1 x2 y2 in pixels and (T,) int64 provisional track ids.
        """
        live = self.live(t_ms)
        boxes = np.array([tr.predict(t_ms) for tr in live], np.float32).reshape(-1, 4)
        return boxes, np.array([tr.tid for tr in live], np.int64)

    def update(self, t_ms: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Associate one frame's detections (ByteTrack Algorithm 1; module docstring).

        Args:
            t_ms: the frame's presentation time in ms (later than the previous call's).
            boxes: (D, 4) float32 x1 y1 x2 y2 in pixels.
            scores: (D,) float32; detections below ``cfg.low_score`` are ignored.

        Returns:
            (D,) int64 provisional track id of each detection; -1 for a detection that joined no
            track (a low-score detection left over, or one below ``low_score``).
        """
        cfg = self.cfg
        ids = np.full(len(scores), -1, np.int64)
        self.tracks = self.live(t_ms)
        tracks = self.tracks
        det = np.arange(len(scores))
        high = det[scores >= cfg.high_score]
        low = det[(scores >= cfg.low_score) & (scores < cfg.high_score)]
        pred = np.array([tr.predict(t_ms) for tr in tracks], np.float32).reshape(-1, 4)
        unmatched_tr = list(range(len(tracks)))
        matched: list[tuple[int, int]] = []
        for pool, thr in ((high, cfg.match_iou), (low, cfg.low_match_iou)):
            if not len(pool) or not unmatched_tr:
                continue
            iou = iou_matrix(pred[unmatched_tr], boxes[pool])
            for r, c in _greedy_match(iou, thr):
                matched.append((unmatched_tr[r], int(pool[c])))
            done = {tr for tr, _ in matched}
            unmatched_tr = [i for i in range(len(tracks)) if i not in done]
        used = {d for _, d in matched}
        for ti, d in matched:
            tr = tracks[ti]
            dt = max(t_ms - tr.last_ms, 1e-3)
            v = (boxes[d] - tr.box) / dt
            tr.vel = cfg.velocity_smoothing * v + (1 - cfg.velocity_smoothing) * tr.vel
            tr.box, tr.last_ms = boxes[d].astype(np.float32), t_ms
            tr.hits += 1
            ids[d] = tr.tid
        for d in high:
            if int(d) not in used:
                tracks.append(_Track(self.next_tid, boxes[d].astype(np.float32), last_ms=t_ms))
                ids[d] = self.next_tid
                self.next_tid += 1
        return ids


def confirm_tracks(provisional: np.ndarray, n_frames: int, min_hits: int) -> np.ndarray:
    """Keep the tracks with at least ``min_hits`` detections (or covering all ``n_frames`` frames
    seen, for a clip shorter than ``min_hits``) and renumber them by first appearance.

    Args:
        provisional: (M,) int64 provisional ids in row order (frame order), -1 = no track.
        n_frames: frames the tracker saw.
        min_hits: least detections of a track that counts.

    Returns:
        (M,) int64 ids 0, 1, 2, ... in order of first appearance; -1 for the rest.
    """
    ids = np.full(len(provisional), -1, np.int64)
    if not len(provisional):
        return ids
    tids, counts = np.unique(provisional[provisional >= 0], return_counts=True)
    good = set(tids[counts >= min(min_hits, max(n_frames, 1))].tolist())
    remap: dict[int, int] = {}
    for i, p in enumerate(provisional.tolist()):
        if p in good:
            if p not in remap:
                remap[p] = len(remap)
            ids[i] = remap[p]
    return ids


def track_boxes(
    frame_idx: np.ndarray,
    pts_ms: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    cfg: TrackerConfig = TrackerConfig(),
    cuts: np.ndarray | None = None,
) -> np.ndarray:
    """Assign track ids to the detections of a whole video at once (:class:`ByteTracker` frame by
    frame, then :func:`confirm_tracks`).

    Args:
        frame_idx: (M,) int64 frame of each detection, sorted ascending.
        pts_ms: (M,) float64 timestamps in ms (variable frame rate is fine).
        boxes: (M, 4) float32 x1 y1 x2 y2 in pixels.
        scores: (M,) float32 detector scores.
        cfg: tracker settings.
        cuts: frame indices where a new shot starts (every track ends there); None = no cuts.

    Returns:
        (M,) int64 track ids, 0, 1, 2, ... in order of first appearance; -1 for detections whose
        track never reached ``min_hits`` frames (nor covered every frame seen), and for low-score
        detections that joined no track.

    Raises:
        ValueError: ``frame_idx`` is not sorted ascending.
    """
    m = len(frame_idx)
    if m == 0:
        return np.full(0, -1, np.int64)
    if np.any(np.diff(frame_idx) < 0):
        raise ValueError("track_boxes | frame_idx must be sorted ascending")
    provisional = np.full(m, -1, np.int64)
    tracker = ByteTracker(cfg)
    cut_set = set() if cuts is None else {int(c) for c in cuts}
    starts = np.flatnonzero(np.r_[True, frame_idx[1:] != frame_idx[:-1]])
    ends = np.r_[starts[1:], m]
    for s, e in zip(starts, ends, strict=True):
        if int(frame_idx[s]) in cut_set:
            tracker.reset()
        provisional[s:e] = tracker.update(float(pts_ms[s]), boxes[s:e], scores[s:e])
    # hits are counted over the rows that joined a track (low-score ones included, as before)
    return confirm_tracks(provisional, len(starts), cfg.min_hits)


def smooth_probs(track_id: np.ndarray, pts_ms: np.ndarray, probs: np.ndarray, half_life_s: float) -> np.ndarray:
    """Exponential moving average of each track's probabilities over time (time-aware: the weight
    of a new frame is ``1 - 0.5 ** (dt / half_life)``, so variable frame rate is handled).

    Args:
        track_id: (M,) int64, -1 = no track (copied through unsmoothed).
        pts_ms: (M,) float64, ascending within each track.
        probs: (M, C) float32 (NaN columns stay NaN).

    Returns:
        (M, C) float32 smoothed probabilities.
    """
    out = probs.astype(np.float32).copy()
    last: dict[int, tuple[float, np.ndarray]] = {}
    for i in range(len(track_id)):
        tid = int(track_id[i])
        if tid < 0:
            continue
        if tid in last:
            t0, prev = last[tid]
            w = 1.0 - 0.5 ** (max(pts_ms[i] - t0, 0.0) / 1000.0 / half_life_s)
            out[i] = w * probs[i] + (1 - w) * prev
        last[tid] = (float(pts_ms[i]), out[i])
    return out
