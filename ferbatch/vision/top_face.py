"""One face per picture: the detector's highest-scoring face of each frame, cut out as the pipeline
cuts faces (:func:`ferbatch.vision.classify.extract_crops`).

For labelled photos (``ferbatch eval --faces detect``) and for measuring the crop path on
pre-cropped faces placed in frames (``scripts/eval_crop_path.py``): both must see the crop that
``ferbatch run`` gives the classifier, not a resize of the whole picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ferbatch.faces import FaceBatch
from ferbatch.specs import ModelSpec
from ferbatch.vision.classify import extract_crops
from ferbatch.vision.tiling import AnyDetector

__all__ = ["top_faces", "whole_frame", "crop_top_faces"]


def top_faces(dets: FaceBatch) -> FaceBatch:
    """The highest-scoring detection of each frame.

    Args:
        dets: detections of a batch of frames.

    Returns:
        FaceBatch with at most one face per frame, in frame order; frames without a face have none.
    """
    order = np.lexsort((-dets.scores, dets.frame_pos))  # by frame, best score first
    pos = dets.frame_pos[order]
    first = order[np.r_[True, pos[1:] != pos[:-1]]] if len(order) else order
    return dets[first]


def whole_frame(frame: np.ndarray) -> FaceBatch:
    """One detection covering all of ``frame`` ((H, W, 3) uint8): box (0, 0, W, H), score 1."""
    h, w = frame.shape[:2]
    return FaceBatch(np.zeros(1, np.int32), np.array([[0, 0, w, h]], np.float32), np.ones(1, np.float32), None)


def crop_top_faces(detector: AnyDetector, spec: ModelSpec, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's top face in the classifier's input geometry; the whole frame where none is found.

    Args:
        detector: the face detector (for an ``align5`` classifier, one that gives landmarks).
        spec: the classifier's registry entry (input size, colour, ``crop``).
        frames: F arrays (H, W, 3) uint8 RGB; sizes may differ.

    Returns:
        crops: (F, h, w, C) uint8, as :func:`~ferbatch.vision.classify.extract_crops` makes them;
            a frame without a face is cut whole (square crop mode, scale 1, the aspect ratio lost).
        found: (F,) bool, True where the detector found a face.

    Raises:
        ConfigError: an ``align5`` classifier with a detector that gives no landmarks.
    """
    top = top_faces(detector.detect(frames))
    out = np.empty((len(frames), spec.input.height, spec.input.width, spec.input.channels), np.uint8)
    found = np.zeros(len(frames), bool)
    if len(top):
        out[top.frame_pos] = extract_crops(frames, top, spec)
        found[top.frame_pos] = True
    whole = replace(spec, crop={"mode": "square", "scale": 1.0})
    for i in np.flatnonzero(~found):
        out[i] = extract_crops([frames[int(i)]], whole_frame(frames[int(i)]), whole)[0]
    return out, found
