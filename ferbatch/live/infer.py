"""Frames -> faces for callers that hold their frames in memory (the HTTP service, the live watcher).

The same analysis step as :func:`ferbatch.pipeline.process_shard` (:class:`ferbatch.vision.analysis.FrameAnalyzer`):
batched detection, crops in the classifier's geometry, batched classification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ferbatch.labels import EMOTIONS, argmax_known
from ferbatch.vision.analysis import analyze_images as infer_images
from ferbatch.vision.detect import Detections

__all__ = ["FrameFaces", "infer_images", "split_by_frame", "faces_json"]


@dataclass
class FrameFaces:
    """The faces of one frame.

    Attributes:
        boxes: (N, 4) float32 x1 y1 x2 y2 in the frame's pixels.
        scores: (N,) float32 detector scores.
        probs: (N, 8) float32 in FER+ order (NaN = a class the classifier lacks).
    """

    boxes: np.ndarray
    scores: np.ndarray
    probs: np.ndarray


def split_by_frame(dets: Detections, probs: np.ndarray, n_frames: int) -> list[FrameFaces]:
    """Cut the results of :func:`infer_images` into one :class:`FrameFaces` per image."""
    out = []
    for i in range(n_frames):
        sel = dets.frame_pos == i
        out.append(FrameFaces(dets.boxes[sel], dets.scores[sel], probs[sel]))
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def faces_json(ff: FrameFaces) -> list[dict]:
    """JSON-ready faces of a frame: ``box`` [x1, y1, x2, y2] in pixels, ``score``, ``probs``
    (8 numbers in FER+ order, null for a class the classifier lacks), ``emotion`` (the most
    probable known class) and ``emotion_prob``."""
    if not len(ff.boxes):
        return []
    best = argmax_known(ff.probs)
    return [
        {
            "box": [round(float(v), 2) for v in ff.boxes[j]],
            "score": round(float(ff.scores[j]), 6),
            "emotion": EMOTIONS[int(best[j])],
            "emotion_prob": _num(ff.probs[j, best[j]]),
            "probs": [_num(v) for v in ff.probs[j]],
        }
        for j in range(len(ff.boxes))
    ]
