"""Frames -> faces for callers that hold their frames in memory (the HTTP service, the live watcher).

The same analysis step as :func:`ferbatch.pipeline.process_shard` (:class:`ferbatch.vision.analysis.FrameAnalyzer`):
batched detection, crops in the classifier's geometry, batched classification.
"""

from __future__ import annotations

import math

from ferbatch.faces import FaceBatch
from ferbatch.labels import EMOTIONS, argmax_known
from ferbatch.vision.analysis import analyze_images as infer_images

__all__ = ["infer_images", "split_by_frame", "faces_json"]


def split_by_frame(faces: FaceBatch, n_frames: int) -> list[FaceBatch]:
    """Cut the result of :func:`infer_images` into one batch per image (the faces of image i,
    with their ``probs``)."""
    return faces.per_frame(n_frames)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def faces_json(ff: FaceBatch) -> list[dict]:
    """JSON-ready faces of a frame: ``box`` [x1, y1, x2, y2] in pixels, ``score``, ``probs``
    (8 numbers in FER+ order, null for a class the classifier lacks), ``emotion`` (the most
    probable known class) and ``emotion_prob``.

    Raises:
        ValueError: faces without ``probs`` (not classified).
    """
    if ff.probs is None:
        raise ValueError("faces_json | received faces without probs; expected classified faces (infer_images)")
    if not len(ff):
        return []
    probs = ff.probs
    best = argmax_known(probs)
    return [
        {
            "box": [round(float(v), 2) for v in ff.boxes[j]],
            "score": round(float(ff.scores[j]), 6),
            "emotion": EMOTIONS[int(best[j])],
            "emotion_prob": _num(probs[j, best[j]]),
            "probs": [_num(v) for v in probs[j]],
        }
        for j in range(len(ff))
    ]
