"""``ferbatch check-engines``: the same real frames and crops through two backends or precisions.

Compares a candidate (e.g. TensorRT fp16, ONNX Runtime CUDA) with a reference (ONNX Runtime fp32
on the CPU; the CLI's reference runs the detector's NumPy decoding + NMS, ``in_graph_nms=False``, so
the candidate's in-graph decoding + NMS, UltraFace's or YuNet's, is checked against it) on frames of a real clip plus all-black frames (the case where no box in the whole
batch passes the threshold, so the in-graph NMS sees zero-size tensors):

- detections: boxes matched greedily by IoU per frame; the least matched IoU, boxes without a
  match, the largest score difference;
- classification: the reference's crops through both classifiers; the largest probability
  difference and the share of equal labels;
- batching: the candidate on the whole batch against the candidate one frame at a time (an RFB
  ONNX once gave wrong batched results under TensorRT, NVIDIA/TensorRT#842).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from ferbatch.config import JobConfig
from ferbatch.faces import FaceBatch
from ferbatch.labels import argmax_known
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.models.load import Models, load_models
from ferbatch.picture import as_rgb
from ferbatch.vision.boxes import iou_matrix
from ferbatch.vision.classify import extract_crops

__all__ = ["Tolerance", "CheckReport", "check_engines", "tolerance_for"]


@dataclass(frozen=True)
class Tolerance:
    """What counts as agreeing.

    Attributes:
        score: largest detector score difference.
        prob: largest class-probability difference.
        iou: least IoU of a matched box pair.
        labels: least share of faces with the same top emotion.
    """

    score: float
    prob: float
    iou: float
    labels: float


def tolerance_for(reference: JobConfig, candidate: JobConfig) -> Tolerance:
    """fp32 against fp32 must agree to float noise; fp16 to half-precision noise (measured on the
    CPU: 1e-3 in scores, 1e-2 in probabilities, README)."""
    if "fp16" in (reference.precision, candidate.precision):  # measured: box edges within 3.2 px, IoU >= 0.88 at 480x270
        return Tolerance(score=0.02, prob=0.05, iou=0.85, labels=0.97)
    return Tolerance(score=2e-3, prob=5e-3, iou=0.99, labels=0.99)


@dataclass
class CheckReport:
    """The comparison of ``candidate`` with ``reference`` (backends as resolved, with the reason).

    Attributes:
        frames: real frames compared (plus ``black_frames`` all-black ones).
        faces_reference, faces_candidate: detections found by each.
        unmatched: detections of either side without a partner at IoU >= 0.5.
        min_iou, median_iou: least and median IoU of the matched pairs (1.0 when nothing was detected).
        max_score_diff, max_prob_diff: largest absolute differences.
        label_agreement: share of the reference's faces whose top emotion both give.
        max_batch_diff: largest score difference of the candidate, whole batch against one frame at a time.
        black_frames_empty: the all-black frames gave no detection and no error on both sides.
        passed: every number within ``tolerance``.
    """

    reference: str
    candidate: str
    frames: int
    black_frames: int
    faces_reference: int = 0
    faces_candidate: int = 0
    unmatched: int = 0
    min_iou: float = 1.0
    median_iou: float = 1.0
    max_score_diff: float = 0.0
    max_prob_diff: float = 0.0
    label_agreement: float = 1.0
    max_batch_diff: float = 0.0
    black_frames_empty: bool = True
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(0, 0, 1, 1))
    passed: bool = False

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)


def _match(a: FaceBatch, b: FaceBatch, n_frames: int) -> tuple[list[tuple[int, int]], int]:
    """Greedy per-frame matching by IoU >= 0.5: (pairs of indices into a and b, unmatched count)."""
    pairs, unmatched = [], 0
    for f in range(n_frames):
        ia, ib = np.flatnonzero(a.frame_pos == f), np.flatnonzero(b.frame_pos == f)
        iou = iou_matrix(a.boxes[ia], b.boxes[ib])
        used_a, used_b = set(), set()
        for flat in np.argsort(-iou, axis=None):
            r, c = divmod(int(flat), len(ib))
            if iou[r, c] < 0.5 or r in used_a or c in used_b:
                continue
            used_a.add(r)
            used_b.add(c)
            pairs.append((int(ia[r]), int(ib[c])))
        unmatched += len(ia) - len(used_a) + len(ib) - len(used_b)
    return pairs, unmatched


def check_engines(
    reference: JobConfig, candidate: JobConfig, video: str | os.PathLike[str], *, frames: int = 32, black_frames: int = 4
) -> CheckReport:
    """Run both configurations over ``frames`` frames of ``video`` and ``black_frames`` black ones.

    Args:
        reference, candidate: job configs differing in ``backend`` and/or ``precision``.
        video: a real clip with faces.
        frames: frames taken from its start.
        black_frames: all-black frames appended (no detection anywhere in them).

    Returns:
        The report; ``passed`` says whether every number is within :func:`tolerance_for`.

    Raises:
        ConfigError, ModelError: a backend is unusable here; DecodeError: the clip cannot be read.
    """
    _, index = probe_video(video)
    images = [as_rgb(f.image) for f in iter_frames(video, index, 0, frames)]
    h, w = images[0].shape[:2]
    images += [np.zeros((h, w, 3), np.uint8) for _ in range(black_frames)]
    # each side exactly as configured: in_graph_nms True = the graph's post-processing, even on a CPU
    ref, cand = (
        load_models(reference, threads=2, graph_nms=reference.in_graph_nms),
        load_models(candidate, threads=2, graph_nms=candidate.in_graph_nms),
    )
    try:
        return _compare(ref, cand, images, len(images) - black_frames, black_frames, tolerance_for(reference, candidate))
    finally:
        ref.close()
        cand.close()


def _label(m: Models) -> str:
    """Backend, detector and where NMS ran, e.g. 'onnxruntime (requested), yunet-frame, NMS in the graph'."""
    det = m.detector
    inner = getattr(det, "detector", det)
    inner = getattr(inner, "detector", inner)  # through TiledDetector and FrameSizedDetector
    where = "in the graph" if getattr(inner, "in_graph_nms", False) else "in NumPy"
    return f"{m.backend} ({m.backend_reason}), {det.spec.name}, NMS {where}"


def _compare(ref: Models, cand: Models, images: list[np.ndarray], n_real: int, n_black: int, tol: Tolerance) -> CheckReport:
    rep = CheckReport(_label(ref), _label(cand), n_real, n_black, tolerance=tol)
    da, db = ref.detector.detect(images), cand.detector.detect(images)
    rep.faces_reference, rep.faces_candidate = len(da), len(db)
    rep.black_frames_empty = not np.any(da.frame_pos >= n_real) and not np.any(db.frame_pos >= n_real)
    pairs, rep.unmatched = _match(da, db, len(images))
    if pairs:
        ia, ib = (np.array(x) for x in zip(*pairs, strict=True))
        ious = np.array([iou_matrix(da.boxes[i], db.boxes[j])[0, 0] for i, j in pairs])
        rep.min_iou, rep.median_iou = float(ious.min()), float(np.median(ious))
        rep.max_score_diff = float(np.abs(da.scores[ia] - db.scores[ib]).max())
    crops = extract_crops(images, da, ref.classifier.spec)
    pa, pb = ref.classifier.classify(crops), cand.classifier.classify(crops)
    if len(crops):
        both = ~np.isnan(pa) & ~np.isnan(pb)
        rep.max_prob_diff = float(np.abs(np.where(both, pa - pb, 0)).max())
        rep.label_agreement = float(np.mean(argmax_known(pa) == argmax_known(pb)))
    one_by_one = [cand.detector.detect([img]) for img in images]
    single = np.concatenate([d.scores for d in one_by_one]) if one_by_one else np.empty(0, np.float32)
    if len(single) == len(db):
        rep.max_batch_diff = float(np.abs(np.sort(single) - np.sort(db.scores)).max()) if len(db) else 0.0
    else:
        rep.max_batch_diff = float("inf")  # a different number of faces batched and one at a time
    rep.passed = (
        rep.unmatched == 0
        and rep.min_iou >= tol.iou
        and rep.median_iou >= 0.98
        and rep.max_score_diff <= tol.score
        and rep.max_prob_diff <= tol.prob
        and rep.label_agreement >= tol.labels
        and rep.max_batch_diff <= tol.score
        and rep.black_frames_empty
    )
    return rep
