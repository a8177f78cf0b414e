"""Box maths shared by detection, cropping, tracking and evaluation: the one IoU, the one NMS, square
boxes, matching found boxes to true ones.

Boxes are ``x1 y1 x2 y2`` (corner form) in any consistent unit; functions are vectorised and
return correctly shaped empty arrays for empty input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["iou_matrix", "match_boxes", "nms", "square_boxes"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a: (A, 4) x1 y1 x2 y2.
        b: (B, 4) x1 y1 x2 y2, same unit.

    Returns:
        (A, B) float32 IoU in 0..1; 0 where the union is empty (degenerate boxes).

    Example:
        >>> iou_matrix(np.array([[0, 0, 2, 2]], np.float32), np.array([[1, 0, 3, 2]], np.float32))
        array([[0.33333334]], dtype=float32)
    """
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.maximum(union, np.float32(1e-12)), np.float32(0)).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float, max_out: int) -> np.ndarray:
    """Greedy hard NMS with the semantics of ONNX ``NonMaxSuppression`` (opset 10+).

    Keeps boxes with ``score > score_threshold`` in descending score order (stable for ties),
    dropping any box whose IoU with a kept box is ``> iou_threshold``; at most ``max_out``.
    The in-graph NMS of :func:`ferbatch.models.graphs.prepare_detector` gives the same selection.

    Args:
        boxes: (P, 4) float32 x1 y1 x2 y2 (any consistent unit).
        scores: (P,) float32.
        score_threshold, iou_threshold: as above.
        max_out: most boxes kept.

    Returns:
        (k,) int64 indices into ``boxes``, k <= max_out, sorted by descending score.
    """
    idx = np.flatnonzero(scores > score_threshold)
    if idx.size == 0 or max_out <= 0:
        return np.empty(0, np.int64)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    keep: list[int] = []
    while idx.size and len(keep) < max_out:
        i = idx[0]
        keep.append(int(i))
        rest = idx[1:]
        idx = rest[iou_matrix(boxes[i : i + 1], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, np.int64)


def square_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Squares of side ``max(w, h) * scale`` centred on each box.

    Args:
        boxes: (M, 4) float32 x1 y1 x2 y2 in pixels.
        scale: side multiplier (the classifier registry's ``crop.scale``).

    Returns:
        (M, 4) float32 x1 y1 x2 y2 in pixels (not clipped to the frame).
    """
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True) * scale / 2
    return np.concatenate([c - half, c + half], axis=1).astype(np.float32)


def match_boxes(truth: np.ndarray, found: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """One-to-one matching of found boxes to true boxes, as in the PASCAL VOC / WIDER FACE protocol:
    found boxes in descending score order each take the unmatched true box of highest IoU, if that
    IoU is ``>= iou_threshold`` (Everingham et al. 2010, IJCV 88:303).

    Args:
        truth: (T, 4) float32 x1 y1 x2 y2 in pixels.
        found: (D, 4) float32 x1 y1 x2 y2 in pixels, same unit.
        scores: (D,) float32 scores of ``found``.
        iou_threshold: least IoU of a match (0.5 in both protocols).

    Returns:
        (D,) int64: index of the true box each found box matched, -1 for a false positive.
        Recall = matched / T, precision = matched / D.
    """
    out = np.full(len(found), -1, np.int64)
    if len(found) == 0 or len(truth) == 0:
        return out
    iou = iou_matrix(found, truth)
    free = np.ones(len(truth), bool)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(free, iou[d], -1.0)
        t = int(cand.argmax())
        if cand[t] >= iou_threshold:
            out[d] = t
            free[t] = False
    return out
