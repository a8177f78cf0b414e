"""The analysis step: frames in presentation order -> shots, detections, tracks, crops, expressions.

One :class:`FrameAnalyzer` per stream (a shard of a video, a live source) keeps what the previous
frames knew: the shot detector's last thumbnail, the tracker's live tracks and how long ago the
last full-frame detection ran. Per frame, in order:

1. **Shot cut?** (:class:`ferbatch.vision.shots.ShotDetector`). A cut ends every track.
2. **Full-frame detection** on the stream's first frame, at every cut, on frames the caller forces
   (a shard's hand-off frame, the video's last frame) and every ``detect_every`` analysed frames. On the frames between,
   the tracks find the faces, in one of two ways:

   - **tracked** (the default, DeepStream's ``interval`` + tracker; ``box_source`` = "tracked"):
     each track that made a row at the last full detection, interpolated in time towards the
     next full detection where that found it (a batch caller holds frames back until it has
     run: :meth:`FrameAnalyzer.ready`), else at its constant-velocity box
     (:func:`ferbatch.vision.between.rows_between`; measured in docs/performance.md);
   - **window** (``use_windows``; ``box_source`` = "window"): the detector on a window around each
     live track's predicted box (:mod:`ferbatch.vision.windows`), its own boxes and scores.

   Faces that enter between full detections are found at the next one.
3. **Tracking** (:class:`ferbatch.vision.track.ByteTracker`): detections down to the tracker's low
   score are associated; only those above the row threshold become rows.
4. **Crops and classification**: one batched classifier call for the rows of the batch; with
   ``interpolate_probs`` (``--classify-between changes``) tracked rows whose track's two
   classifications agree take those interpolated instead (``prob_source`` = "interpolated";
   :func:`ferbatch.vision.between.interpolate_probs`), and a second call classifies the rest.

``detect_every=1`` runs exactly the full-frame detection of every frame, so its rows equal the
rows of a frame-by-frame run. Window detection needs a graph whose input size can change
(:class:`ferbatch.vision.tiling.FrameSizedDetector`, the default YuNet); a detector with a fixed
input (UltraFace) runs full-frame detection on every frame whatever ``detect_every`` says.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from ferbatch.faces import SOURCE_FRAME, SOURCE_TRACKED, SOURCE_WINDOW, FaceBatch
from ferbatch.labels import EMOTIONS
from ferbatch.picture import Image
from ferbatch.vision.between import After, BetweenRows, Carried, interpolate_probs, rows_between
from ferbatch.vision.classify import Classifier
from ferbatch.vision.shots import ShotDetector
from ferbatch.vision.tiling import AnyDetector
from ferbatch.vision.track import ByteTracker, TrackerConfig
from ferbatch.vision.windows import detect_windows, window_detector

__all__ = [
    "AnalysisModels",
    "AnalyzedFrames",
    "FrameAnalyzer",
    "analyze_images",
    "SOURCE_FRAME",
    "SOURCE_WINDOW",
    "SOURCE_TRACKED",
    "window_detector",
]


class AnalysisModels(Protocol):
    """What the analysis step needs of a worker's models (:class:`ferbatch.models.load.Models` is one)."""

    detector: AnyDetector
    classifier: Classifier


@dataclass
class AnalyzedFrames:
    """What :meth:`FrameAnalyzer.analyze` found in a batch of F frames (M face rows).

    Attributes:
        cut: (F,) bool, the frame starts a new shot.
        shot: (F,) int32 shot number within the stream (0 for the stream's first shot).
        full: (F,) bool, full-frame detection ran on the frame (else the tracks found its faces).
        faces: the M face rows (detections above the row threshold), sorted by frame then
            descending score: ``frame_pos`` (M,) int32 indexes the batch, ``probs`` (M, 8) float32
            expression probabilities in FER+ order (NaN = class the model lacks), ``track_id`` (M,)
            int64 provisional track id within the stream (-1 = no track; tracking off), ``source``
            (M,) uint8 :data:`SOURCE_FRAME`, :data:`SOURCE_WINDOW` or :data:`SOURCE_TRACKED`.
        handoff: per frame position asked for in ``keep_tracks``, ``[[track_id, x1, y1, x2, y2], ...]``
            of every detection that joined a track there, low-score ones included (how a shard's
            tracks are joined to the next shard's, :mod:`ferbatch.job.tracking`).
    """

    cut: np.ndarray
    shot: np.ndarray
    full: np.ndarray
    faces: FaceBatch
    handoff: dict[int, list[list[float]]] = field(default_factory=dict)

    @property
    def face_count(self) -> np.ndarray:
        """(F,) int16 face rows per frame."""
        return np.bincount(self.faces.frame_pos, minlength=len(self.cut)).astype(np.int16)


class FrameAnalyzer:
    """The analysis step over one stream of frames (module docstring).

    Args:
        models: a worker's loaded detector and classifier.
        detect_every: full-frame detection every this many analysed frames (>= 1); the tracks
            find the faces in between (module docstring).
        tracker: tracker settings (thresholds from the row threshold:
            :meth:`TrackerConfig.for_rows`); None = no tracking (then ``detect_every`` must be 1).
        shots: detect shot cuts (tracks end at a cut; a cut forces a full detection).
        use_windows: between full detections run the detector on windows around the tracks
            instead of taking the tracks' predicted boxes.
        first_rank: the analysed-frame rank of the stream's first frame within its video (a
            shard's first frame): full detections fall on ranks that are multiples of
            ``detect_every`` (plus the stream's first frame and every cut), so shards of one video
            keep the schedule of a single pass.
        interpolate_probs: tracked rows between two full detections of their track whose
            classifications agree take those interpolated (module docstring, step 4).

    Raises:
        ValueError: ``detect_every`` < 1, or > 1 without a tracker.
    """

    def __init__(
        self,
        models: AnalysisModels,
        *,
        detect_every: int = 1,
        tracker: TrackerConfig | None = None,
        shots: bool = True,
        use_windows: bool = False,
        first_rank: int = 0,
        interpolate_probs: bool = False,
    ):
        if detect_every < 1 or (detect_every > 1 and tracker is None):
            raise ValueError(
                f"FrameAnalyzer | received detect_every {detect_every} with tracker {tracker}; expected >= 1, and 1 without tracking"
            )
        self.models = models
        self.detector = models.detector
        self.row_threshold = float(self.detector.score_threshold)
        self.low = min(self.row_threshold, tracker.low_score) if tracker is not None else self.row_threshold
        self.tracker = ByteTracker(tracker) if tracker is not None else None
        self.windows = window_detector(self.detector) if detect_every > 1 and use_windows else None
        self.detect_every = detect_every if self.windows is not None or not use_windows else 1
        # track id -> (score, (4,) box, (5, 2) landmarks or None, time in ms) of the rows of the last full detection
        self._carried: Carried = {}
        # track id -> ((8,) float32 probabilities, (4,) box) of its row at the last full detection (the one in _carried)
        self._carried_probs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.interpolate_probs = bool(interpolate_probs)
        self.shots = ShotDetector() if shots else None
        self.shot = 0
        self.started = False  # the stream's first frame is behind us (it always gets a full detection)
        self.rank = int(first_rank)  # analysed-frame rank of the next frame within the video
        # seconds spent per stage over the stream: shots, detect (full frames and windows), track, crop, classify
        self.stage_seconds = dict.fromkeys(("shots", "detect", "track", "crop", "classify"), 0.0)

    def ready(self, pending: int) -> int:
        """How many of the next ``pending`` frames to analyse now so that the call ends on a
        scheduled full detection (the frames between two are then interpolated, not extrapolated).
        A batch caller holds the rest back for its next call (at most ``detect_every`` - 1 frames)
        and analyses everything at the end of its stream; the frames before a cut are extrapolated.

        Returns:
            A count in [0, pending]: ``pending`` when every frame gets a full detection or windows find
            the faces, 0 when no scheduled full detection falls among them.
        """
        if self.detect_every == 1 or self.windows is not None or self.tracker is None:
            return pending
        full = (self.rank + np.arange(pending)) % self.detect_every == 0
        if not self.started and pending:
            full[0] = True
        last = np.flatnonzero(full)
        return int(last[-1]) + 1 if len(last) else 0

    def analyze(
        self,
        images: Sequence[Image],
        pts_ms: Sequence[float] | np.ndarray,
        force_full: Sequence[int] = (),
        keep_tracks: Sequence[int] = (),
    ) -> AnalyzedFrames:
        """Analyse the next frames of the stream.

        Args:
            images: F arrays (H, W, 3) uint8 RGB or pictures (:data:`ferbatch.picture.Image`), upright,
                in presentation order.
            pts_ms: (F,) presentation times in milliseconds, ascending.
            force_full: positions in the batch that get a full-frame detection whatever the schedule.
            keep_tracks: positions whose tracked detections are returned in ``handoff``.

        Returns:
            :class:`AnalyzedFrames`.
        """
        n = len(images)
        cut = np.zeros(n, bool)
        shot = np.zeros(n, np.int32)
        full = np.zeros(n, bool)
        forced = set(int(i) for i in force_full)
        st = self.stage_seconds
        t0 = time.perf_counter()
        for i in range(n):
            if self.shots is not None and self.shots.is_cut(images[i], float(pts_ms[i])):
                cut[i] = True
                self.shot += 1
            shot[i] = self.shot
            full[i] = not self.started or self.rank % self.detect_every == 0 or cut[i] or i in forced
            self.started = True
            self.rank += 1
        full_pos = np.flatnonzero(full)
        t1 = time.perf_counter()
        st["shots"] += t1 - t0
        dets_full = self.detector.detect([images[int(i)] for i in full_pos], self.low) if len(full_pos) else None
        st["detect"] += time.perf_counter() - t1
        per_frame: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, int]] = []  # boxes, scores, landmarks, source
        by_full = _split(dets_full, len(full_pos)) if dets_full is not None else []
        fi = 0
        i = 0
        ids_all: list[np.ndarray] = []
        handoff: dict[int, list[list[float]]] = {}
        keep = set(int(k) for k in keep_tracks)
        tracked_full: dict[int, np.ndarray] = {}  # full frames already tracked (they close a group)
        # per frame: (D,) interpolation weight of each detection (NaN = not interpolated), the call
        # positions of the full detections before (-1: in an earlier call) and after its group
        interp: list[tuple[np.ndarray, int, int]] = []
        prev_full = -1
        while i < n:
            if full[i]:
                b, s, lm = by_full[fi]
                fi += 1
                per_frame.append((b, s, lm, SOURCE_FRAME))
                interp.append((np.full(len(s), np.nan, np.float32), -1, -1))
                prev_full = i
                ids_all.append(tracked_full.pop(i) if i in tracked_full else self._track_full(float(pts_ms[i]), cut[i], b, s, lm))
                i += 1
                continue
            j = i
            while j < n and not full[j]:
                j += 1
            group = range(i, j)  # frames between full detections
            t1 = time.perf_counter()
            if self.windows is None:  # the tracks stand in for the detector
                after = None
                if j < n and not cut[j]:  # the next full detection is in this call: interpolate towards it
                    b1, s1, lm1 = by_full[fi]
                    tracked_full[j] = self._track_full(float(pts_ms[j]), False, b1, s1, lm1, carry=False)
                    after = (b1, s1, lm1, tracked_full[j], float(pts_ms[j]))
                for k in group:
                    b, s, lm, tk, w = self._between(images[k].shape[:2], float(pts_ms[k]), after)
                    per_frame.append((b, s, lm, SOURCE_TRACKED))
                    ids_all.append(tk)
                    interp.append((w, prev_full, j))
                if after is not None:
                    self._carry(*after)
                st["track"] += time.perf_counter() - t1
                i = j
                continue
            preds = [self.tracker.predict(float(pts_ms[k]))[0] for k in group] if self.tracker is not None else []
            found = detect_windows(self.windows, [images[k] for k in group], preds, self.low)
            st["detect"] += time.perf_counter() - t1
            for k, (b, s, lm) in zip(group, found, strict=True):
                per_frame.append((b, s, lm, SOURCE_WINDOW))
                interp.append((np.full(len(s), np.nan, np.float32), -1, -1))
                ids_all.append(self._track(float(pts_ms[k]), b, s))
            i = j
        for k in keep:
            if 0 <= k < n:
                b, tk = per_frame[k][0], ids_all[k]
                handoff[k] = [[int(t), *(round(float(v), 2) for v in b[q])] for q, t in enumerate(tk) if t >= 0]
        # rows: above the row threshold (detections come sorted by descending score within a frame)
        pos: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        lms: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        src: list[np.ndarray] = []
        wts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        for k, ((b, s, lm, so), t, (w, p0, p1)) in enumerate(zip(per_frame, ids_all, interp, strict=True)):
            r = s > self.row_threshold
            wts.append(w[r])
            ends.append(np.tile(np.array([p0, p1], np.int64), (int(r.sum()), 1)))
            pos.append(np.full(int(r.sum()), k, np.int32))
            boxes.append(b[r])
            scores.append(s[r])
            if lm is not None:
                lms.append(lm[r])
            ids.append(t[r])
            src.append(np.full(int(r.sum()), so, np.uint8))
        has_lm = self.detector.gives_landmarks
        faces = FaceBatch(
            np.concatenate(pos) if pos else np.empty(0, np.int32),
            np.concatenate(boxes).astype(np.float32) if boxes else np.empty((0, 4), np.float32),
            np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32),
            (np.concatenate(lms).astype(np.float32) if lms else np.empty((0, 5, 2), np.float32)) if has_lm else None,
            track_id=np.concatenate(ids) if ids else np.empty(0, np.int64),
            source=np.concatenate(src) if src else np.empty(0, np.uint8),
        )
        weights = np.concatenate(wts) if wts else np.empty(0, np.float32)
        faces = self._classify(images, faces, weights, np.concatenate(ends) if ends else np.empty((0, 2), np.int64))
        last_full = int(full_pos[-1]) if len(full_pos) else -1
        if last_full >= 0 and faces.track_id is not None and faces.probs is not None:
            at = np.flatnonzero((faces.frame_pos == last_full) & (faces.track_id >= 0))
            self._carried_probs = {int(faces.track_id[q]): (faces.probs[q], faces.boxes[q]) for q in at}
        return AnalyzedFrames(cut, shot, full, faces, handoff)

    def _classify(self, images: Sequence[Image], faces: FaceBatch, weights: np.ndarray, ends: np.ndarray) -> FaceBatch:
        """``faces`` with ``probs`` and ``prob_source``: the classifier on every row, except (with
        ``interpolate_probs``) rows interpolated between two full detections of their track
        (``weights`` (M,) float32, NaN elsewhere; ``ends`` (M, 2) int64 call positions of the
        detections before and after, -1 = the one before is in an earlier call) whose
        classifications at both detections agree (:func:`ferbatch.vision.between.probs_agree`): those take
        ``(1 - w) p_before + w p_after``. The classifier runs first on the other rows, then on the
        interpolated rows whose ends disagree or are not rows (a detection below the row
        threshold)."""
        st = self.stage_seconds
        m = len(faces)
        probs = np.full((m, len(EMOTIONS)), np.nan, np.float32)
        source = np.zeros(m, np.uint8)
        cand = ~np.isnan(weights) if self.interpolate_probs and faces.track_id is not None else np.zeros(m, bool)

        def run(rows: np.ndarray) -> None:
            if not len(rows):
                return
            t1 = time.perf_counter()
            probs[rows], crop_s = self.models.classifier.classify_faces(images, faces[rows])
            st["crop"] += crop_s
            st["classify"] += time.perf_counter() - t1 - crop_s

        run(np.flatnonzero(~cand))
        need = interpolate_probs(faces, probs, source, np.flatnonzero(cand), weights, ends, self._carried_probs)
        run(need)
        return replace(faces, probs=probs, prob_source=source)

    def _track(self, t_ms: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.tracker is None:
            return np.full(len(scores), -1, np.int64)
        t = time.perf_counter()
        ids = self.tracker.update(t_ms, boxes, scores)
        self.stage_seconds["track"] += time.perf_counter() - t
        return ids

    def _track_full(
        self, t_ms: float, cut: bool, boxes: np.ndarray, scores: np.ndarray, lm: np.ndarray | None, carry: bool = True
    ) -> np.ndarray:
        """Track a full detection at ``t_ms`` (a cut ends every track first) and, with ``carry``,
        remember its tracked rows for the frames that follow. Returns (D,) int64 provisional ids."""
        if self.tracker is not None and cut:
            self.tracker.reset()
        ids = self._track(t_ms, boxes, scores)
        if carry:
            self._carry(boxes, scores, lm, ids, t_ms)
        return ids

    def _carry(self, boxes: np.ndarray, scores: np.ndarray, lm: np.ndarray | None, ids: np.ndarray, t_ms: float = 0.0) -> None:
        """Remember the tracked rows of a full detection at ``t_ms``: their boxes, scores and
        landmarks stand for the tracks until the next full detection (``between="tracked"``)."""
        self._carried = {}
        for q in np.flatnonzero((ids >= 0) & (scores > self.row_threshold)):
            lm_q = None if lm is None else lm[q].astype(np.float32)
            self._carried[int(ids[q])] = (float(scores[q]), boxes[q].astype(np.float32), lm_q, t_ms)

    def _between(self, hw: tuple[int, ...], t_ms: float, after: After | None) -> BetweenRows:
        """Rows of a frame between full detections (:func:`ferbatch.vision.between.rows_between`)."""
        assert self.tracker is not None
        pred, tids = self.tracker.predict(t_ms)
        return rows_between(self._carried, pred, tids, hw, t_ms, after, self.detector.gives_landmarks)


def analyze_images(models: AnalysisModels, images: Sequence[np.ndarray]) -> FaceBatch:
    """Detect and classify every face of ``images``, independent pictures (``ferbatch.analyze``, the
    HTTP service, a live source's frames): the analysis step with full-frame detection on each, no
    tracking and no shots.

    Args:
        models: a loaded detector and classifier (:class:`ferbatch.models.load.Models`).
        images: F arrays (H, W, 3) uint8 RGB; sizes may differ.

    Returns:
        The faces sorted by frame then score (``frame_pos`` indexes ``images``) with ``probs``
        (M, 8) float32 in FER+ order; ``track_id`` all -1, ``source`` all :data:`SOURCE_FRAME`.
    """
    a = FrameAnalyzer(models, detect_every=1, tracker=None, shots=False).analyze(list(images), [0.0] * len(images))
    return a.faces


def _split(d: FaceBatch, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Detections of n frames -> per frame (boxes, scores, landmarks), each sorted by descending score."""
    out = []
    bounds = np.searchsorted(d.frame_pos, np.arange(n + 1))
    for k in range(n):
        s = slice(bounds[k], bounds[k + 1])
        out.append((d.boxes[s], d.scores[s], None if d.landmarks is None else d.landmarks[s]))
    return out
