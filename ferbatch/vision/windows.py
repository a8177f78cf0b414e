"""Window detection between full detections (``--between window``): the detector runs on a
square window around each live track's predicted box, ``WINDOW_SCALE`` x the box's longer side, at
the scale the full-frame pass sees the frame (the window's input is the window times that scale,
rounded up to the graph's stride), so the boxes and scores are the detector's own. It needs a
graph whose input size can change (:class:`ferbatch.vision.tiling.FrameSizedDetector`); with large
faces the windows cost about a full frame (docs/performance.md), which is why the tracks'
predictions are the default between full detections (:mod:`ferbatch.vision.analysis`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ferbatch.faces import FaceBatch
from ferbatch.picture import Image, region_rgb
from ferbatch.vision.boxes import nms
from ferbatch.vision.tiling import AnyDetector, FrameSizedDetector, TiledDetector, from_crops

__all__ = ["WINDOW_SCALE", "detect_windows", "window_detector"]

WINDOW_SCALE = 2.5  # window side / the track's longer box side: a face moving 3/4 of its size between frames stays inside


def window_detector(detector: AnyDetector) -> FrameSizedDetector | None:
    """The detector whose input follows the frame, which runs the track windows; None when the
    graph's input size is fixed (a window would cost a full frame each)."""
    inner = detector.detector if isinstance(detector, TiledDetector) else detector
    return inner if isinstance(inner, FrameSizedDetector) else None


def _frame_scale(fs: FrameSizedDetector, wh: tuple[int, int]) -> float:
    """Input pixels per frame pixel of the full-frame pass on a frame of ``wh`` (letterboxed)."""
    iw, ih = fs.input_for(wh)
    return min(iw / wh[0], ih / wh[1])


def detect_windows(
    windows: FrameSizedDetector, images: list[Image], preds: list[np.ndarray], low: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per frame, the detections found in windows around the live tracks' predicted boxes.

    Args:
        windows: the detector whose input follows the window (:func:`window_detector`).
        images: F frames, (H, W, 3) uint8 RGB or pictures.
        preds: per frame, (T, 4) float32 predicted track boxes x1 y1 x2 y2 in pixels.
        low: least score kept (the tracker's low stage).

    Returns:
        Per frame (boxes (D, 4) float32 in frame pixels, scores (D,) float32, landmarks (D, 5, 2)
        float32 or None), merged per frame with the detector's NMS, by descending score.
    """
    crops: list[np.ndarray] = []
    owner: list[int] = []
    origin: list[tuple[int, int]] = []
    inner: list[tuple[bool, bool, bool, bool]] = []
    size: list[tuple[int, int]] = []
    m = windows.multiple
    sides = [WINDOW_SCALE * max(float(b[2] - b[0]), float(b[3] - b[1])) for p in preds for b in p]
    # one window side per frame size and group (the largest track's): one detector call for all
    # windows, each at the scale of the full-frame pass
    half_all = max(16.0, max(sides) / 2) if sides else 16.0
    for k, (img, pred) in enumerate(zip(images, preds, strict=True)):
        fh, fw = img.shape[:2]
        r = _frame_scale(windows, (fw, fh))
        half = min(half_all, max(fw, fh) / 2)
        side_in = max(m, int(np.ceil(2 * half * r / m)) * m)
        for b in pred:
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
            x1, y1 = int(min(fw, np.ceil(cx + half))), int(min(fh, np.ceil(cy + half)))
            if x1 - x0 < 8 or y1 - y0 < 8:  # the prediction left the frame
                continue
            crops.append(region_rgb(img, x0, y0, x1, y1))  # only the window converted
            owner.append(k)
            origin.append((x0, y0))
            inner.append((x0 > 0, y0 > 0, x1 < fw, y1 < fh))
            size.append((side_in, side_in))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    lm_empty = np.empty((0, 5, 2), np.float32) if windows.gives_landmarks else None
    if not crops:
        return [(np.empty((0, 4), np.float32), np.empty(0, np.float32), lm_empty) for _ in images]
    d = _detect_sized(windows, crops, size, low)
    win = d.frame_pos
    boxes, lms, ok = from_crops(d, origin, inner, [c.shape[:2] for c in crops])
    frame_of = np.asarray(owner, np.int64)[win]
    for k in range(len(images)):
        sel = np.flatnonzero(ok & (frame_of == k))
        keep = sel[nms(boxes[sel], d.scores[sel], -1.0, windows.iou_threshold, windows.max_faces)]
        out.append(
            (boxes[keep].astype(np.float32), d.scores[keep].astype(np.float32), None if lms is None else lms[keep].astype(np.float32))
        )
    return out


def _detect_sized(windows: FrameSizedDetector, crops: list[np.ndarray], size: list[tuple[int, int]], low: float) -> FaceBatch:
    """Run each window at its own input size (grouped by size, one call per size)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for q, wh in enumerate(size):
        groups.setdefault(wh, []).append(q)
    parts = []
    for wh, idx in groups.items():
        parts.append((np.asarray(idx, np.int64), windows.sized(wh).detect([crops[q] for q in idx], low)))
    return _join_windows(parts, windows.gives_landmarks)


def _join_windows(parts: list[tuple[np.ndarray, FaceBatch]], landmarks: bool) -> FaceBatch:
    """Detections of window groups (each with the windows' positions) -> one batch over all
    the windows, sorted by window."""
    if not parts:
        return FaceBatch.empty(landmarks)
    return FaceBatch.merge([replace(d, frame_pos=idx[d.frame_pos].astype(np.int32)) for idx, d in parts]).sorted_by_frame()
