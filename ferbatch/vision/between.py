"""What stands for the detector and the classifier between two full detections (``--detect-every``
N > 1, ``--between tracked``; :class:`ferbatch.vision.analysis.FrameAnalyzer` calls these).

- :func:`rows_between`: each track that made a row at the last full detection gives a row on a frame
  between: interpolated in time towards the next full detection where that detection is known and
  found the track (offline tracklet interpolation), else at the track's constant-velocity box.
- :func:`interpolate_probs`: such a row takes the probabilities interpolated between its track's
  two classified detections when they agree (:func:`probs_agree`), instead of a classifier call.
"""

from __future__ import annotations

import numpy as np

from ferbatch.faces import PROB_INTERPOLATED, SOURCE_FRAME, FaceBatch
from ferbatch.labels import argmax_known

__all__ = ["INTERPOLATE_MAX_MOTION", "After", "BetweenRows", "Carried", "interpolate_probs", "probs_agree", "rows_between"]

# largest centre motion between a track's two full detections, in units of the first box's size
# (sqrt of its area), for which the rows between take interpolated probabilities: the 90th
# percentile of that motion at N = 3 on the shared clips (0.047; scripts/bench_interval.py, docs/performance.md)
INTERPOLATE_MAX_MOTION = 0.05

# track id -> (score, (4,) box, (5, 2) landmarks or None, time in ms) of its row at the last full detection
Carried = dict[int, tuple[float, np.ndarray, np.ndarray | None, float]]
# the next full detection: boxes (D, 4), scores (D,), landmarks (D, 5, 2) or None, track ids (D,), time in ms
After = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, float]
# boxes (T, 4) float32, scores (T,) float32, landmarks (T, 5, 2) float32 or None, track ids (T,) int64, weights (T,) float32
BetweenRows = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]


def rows_between(
    carried: Carried,
    pred: np.ndarray,
    pred_ids: np.ndarray,
    hw: tuple[int, ...],
    t_ms: float,
    after: After | None,
    landmarks: bool,
) -> BetweenRows:
    """Rows of a frame at ``t_ms`` between full detections, from the tracks alone: for each track
    in ``carried`` (it made a row at the last full detection),

    - with ``after`` (the next full detection, when the caller has run it) and the track found
      there: box, score and landmarks interpolated linearly in time between the two detections;
    - otherwise, when the track is live (in ``pred_ids``): its constant-velocity box ``pred``
      (T, 4) float32, the last detection's score and its landmarks moved and scaled with the box.

    Boxes are clipped to the frame ``hw`` (height, width); a box with less than 8 px left on a side
    is dropped.

    Returns:
        (boxes (T, 4) float32 x1 y1 x2 y2 in pixels, scores (T,) float32, landmarks (T, 5, 2)
        float32 or None (``landmarks`` False), track ids (T,) int64, interpolation weights (T,)
        float32 in [0, 1], NaN for a constant-velocity row), by descending score.
    """
    predicted = {int(t): q for q, t in enumerate(pred_ids)}
    found = {int(t): q for q, t in enumerate(after[3]) if t >= 0} if after is not None else {}
    fh, fw = hw[0], hw[1]
    rows: list[tuple[float, np.ndarray, np.ndarray | None, int, float]] = []
    for tid, (s0, b0, lm0, t0) in carried.items():
        if after is not None and tid in found:
            b1, s1, lm1, _, t1 = after
            q = found[tid]
            w = (t_ms - t0) / max(t1 - t0, 1e-3)
            box = b0 + w * (b1[q] - b0)
            lm = None if lm0 is None or lm1 is None else lm0 + w * (lm1[q] - lm0)
            rows.append((float(s0 + w * (s1[q] - s0)), box, lm, tid, w))
        elif tid in predicted:
            box = pred[predicted[tid]]
            lm = None
            if lm0 is not None:
                wh0 = np.maximum(b0[2:] - b0[:2], 1e-3)
                lm = box[:2] + (lm0 - b0[:2]) / wh0 * (box[2:] - box[:2])
            rows.append((s0, box, lm, tid, float("nan")))
    rows.sort(key=lambda r: -r[0])  # stable: ties keep the carried order
    boxes = np.clip(np.array([r[1] for r in rows], np.float32).reshape(-1, 4), 0, [fw, fh, fw, fh]).astype(np.float32)
    ok = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 8
    sel = [r for r, k in zip(rows, ok, strict=True) if k]
    lms = None
    if landmarks:
        lms = np.zeros((len(sel), 5, 2), np.float32)
        for q, r in enumerate(sel):
            if r[2] is not None:
                lms[q] = r[2]
    scores = np.array([r[0] for r in sel], np.float32)
    return boxes[ok], scores, lms, np.array([r[3] for r in sel], np.int64), np.array([r[4] for r in sel], np.float32)


def probs_agree(p0: np.ndarray, b0: np.ndarray, p1: np.ndarray, b1: np.ndarray) -> bool:
    """A track's classifications ``p0``, ``p1`` (8,) float32 at two full detections with boxes
    ``b0``, ``b1`` (4,) agree enough to interpolate between them: the same argmax, and the box's
    centre moved at most :data:`INTERPOLATE_MAX_MOTION` of its size (sqrt of ``b0``'s area)."""
    if argmax_known(p0[None])[0] != argmax_known(p1[None])[0]:
        return False
    size = float(np.sqrt(max((b0[2] - b0[0]) * (b0[3] - b0[1]), 1e-6)))
    moved = float(np.hypot(*((b1[:2] + b1[2:]) - (b0[:2] + b0[2:])) / 2))
    return moved <= INTERPOLATE_MAX_MOTION * size


def interpolate_probs(
    faces: FaceBatch,
    probs: np.ndarray,
    source: np.ndarray,
    rows: np.ndarray,
    weights: np.ndarray,
    ends: np.ndarray,
    carried_probs: dict[int, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Fill ``probs`` (M, 8) float32 in place for the ``rows`` between two full detections of their
    track whose classifications agree (:func:`probs_agree`): ``(1 - w) p_before + w p_after``,
    ``source`` set to :data:`ferbatch.faces.PROB_INTERPOLATED`.

    Args:
        faces: the call's rows (``track_id`` and ``source`` set); the full-detection rows already
            classified in ``probs``.
        rows: (R,) positions of the candidate rows.
        weights: (M,) float32 interpolation weight of each row (NaN elsewhere).
        ends: (M, 2) int64 call positions of the full detections before and after each row's
            frame; -1 before = the detection is in an earlier call (then ``carried_probs``).
        carried_probs: track id -> ((8,) probabilities, (4,) box) of its row at the last full
            detection of the earlier call.

    Returns:
        (K,) int64 the candidate rows left to classify: ends that disagree, or an end with no
        row (its detection below the row threshold).
    """
    assert faces.track_id is not None and faces.source is not None
    det_rows = {
        (int(f), int(t)): q
        for q, (f, t, so) in enumerate(zip(faces.frame_pos, faces.track_id, faces.source, strict=True))
        if so == SOURCE_FRAME and t >= 0
    }
    need: list[int] = []
    for q in rows:
        tid = int(faces.track_id[q])
        before, after = int(ends[q, 0]), int(ends[q, 1])
        q0 = det_rows.get((before, tid)) if before >= 0 else None
        end0 = (probs[q0], faces.boxes[q0]) if q0 is not None else (carried_probs.get(tid) if before < 0 else None)
        q1 = det_rows.get((after, tid))
        if end0 is None or q1 is None or not probs_agree(end0[0], end0[1], probs[q1], faces.boxes[q1]):
            need.append(int(q))
            continue
        probs[q] = (1 - weights[q]) * end0[0] + weights[q] * probs[q1]
        source[q] = PROB_INTERPOLATED
    return np.array(need, np.int64)
