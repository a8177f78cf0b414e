"""Detector decoders: each family's NumPy post-processing as a type (:class:`ferbatch.specs.DetectorDecoder`).

:data:`DECODERS` maps the registry's ``decoder`` value to its type; the registry
(:func:`ferbatch.models.registry.load_registry`) is the one place that picks one for an entry, so a
detector is never decoded by another family's rules (an entry whose ``decoder`` is not a key here
is refused at load). A new family (SCRFD, RetinaFace) is a new class here plus its registry key.

- :class:`UltraFaceDecoder`: plain resize; scores (N, P, 2) and corner boxes (N, P, 4) normalised to
  0..1, hard NMS (:func:`postprocess_raw`).
- :class:`YuNetDecoder`: letterboxed input; per-stride cls/obj/bbox/kps outputs decoded as in
  OpenCV's ``FaceDetectorYN`` (:func:`_decode_yunet`), NMS per frame; 5 landmarks per face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ferbatch.specs import DetectorDecoder, ModelSpec
from ferbatch.vision.boxes import nms

__all__ = ["DECODERS", "UltraFaceDecoder", "YuNetDecoder", "postprocess_raw"]


def postprocess_raw(
    scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy fallback of the in-graph post-processing for UltraFace raw outputs.

    Args:
        scores: (N, P, 2) float32 softmaxed (column 1 = face).
        boxes: (N, P, 4) float32 corner boxes normalised to 0..1.

    Returns:
        det_boxes (N, K, 4) float32 and det_scores (N, K) float32, zero-padded, like the graph.
    """
    n = scores.shape[0]
    out_b = np.zeros((n, k, 4), np.float32)
    out_s = np.zeros((n, k), np.float32)
    for i in range(n):
        keep = nms(boxes[i], scores[i, :, 1], score_threshold, iou_threshold, k)
        out_b[i, : len(keep)] = boxes[i, keep]
        out_s[i, : len(keep)] = scores[i, keep, 1]
    return out_b, out_s


def _decode_yunet(
    out: dict[str, np.ndarray], w: int, h: int, strides: Sequence[int], score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """YuNet per-stride outputs -> the candidates with ``score > score_threshold``, input pixels.

    Only candidates are decoded (a frame has thousands of priors and a few faces), in the order the
    NMS needs: per stride, by frame then prior, so a frame's candidates keep the priors' order.

    Returns:
        frame (C,) int64 frame of each candidate in the batch; boxes (C, 4) float32 x1 y1 x2 y2;
        scores (C,) float32 sqrt(cls * obj); landmarks (C, 5, 2) float32 x y.
    """
    fs, bs, ss, ks = [], [], [], []
    for s in strides:
        cols = w // s
        score = np.sqrt(np.clip(out[f"cls_{s}"][..., 0], 0, 1) * np.clip(out[f"obj_{s}"][..., 0], 0, 1))
        f, a = np.nonzero(score > score_threshold)
        bb = out[f"bbox_{s}"][f, a]
        kp = out[f"kps_{s}"][f, a]
        r, c = np.divmod(a.astype(np.float32), np.float32(cols))
        cx = (c + bb[:, 0]) * s
        cy = (r + bb[:, 1]) * s
        bw = np.exp(bb[:, 2]) * s
        bh = np.exp(bb[:, 3]) * s
        fs.append(f)
        bs.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1))
        ss.append(score[f, a])
        ks.append(np.stack([(c[:, None] + kp[:, 0::2]) * s, (r[:, None] + kp[:, 1::2]) * s], -1))
    return np.concatenate(fs), np.concatenate(bs), np.concatenate(ss), np.concatenate(ks)


def _strides(spec: ModelSpec) -> tuple[int, ...]:
    """The strides of a YuNet entry's outputs (``outputs.strides``, default "8,16,32")."""
    return tuple(int(s) for s in spec.outputs.get("strides", "8,16,32").split(","))


@dataclass(frozen=True)
class UltraFaceDecoder:
    """Linzaer Ultra-Light-Fast-Generic-Face-Detector-1MB: plain resize, no landmarks."""

    name: str = field(default="ultraface", init=False)
    gives_landmarks: bool = field(default=False, init=False)
    letterbox: bool = field(default=False, init=False)
    nms_in_graph: bool = field(default=True, init=False)

    def decode(
        self, out: dict[str, np.ndarray], spec: ModelSpec, score_threshold: float, iou_threshold: float, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """See :meth:`ferbatch.specs.DetectorDecoder.decode` (outputs named by ``spec.outputs``)."""
        db, ds = postprocess_raw(out[spec.outputs["scores"]], out[spec.outputs["boxes"]], score_threshold, iou_threshold, k)
        return db * np.tile(np.array([spec.input.width, spec.input.height], np.float32), 2), ds, None


@dataclass(frozen=True)
class YuNetDecoder:
    """OpenCV Zoo YuNet: letterboxed input, per-stride outputs, 5 landmarks per face."""

    name: str = field(default="yunet", init=False)
    gives_landmarks: bool = field(default=True, init=False)
    letterbox: bool = field(default=True, init=False)
    nms_in_graph: bool = field(default=True, init=False)

    def decode(
        self, out: dict[str, np.ndarray], spec: ModelSpec, score_threshold: float, iou_threshold: float, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """See :meth:`ferbatch.specs.DetectorDecoder.decode` (outputs ``cls_<s>``, ``obj_<s>``,
        ``bbox_<s>``, ``kps_<s>`` per stride)."""
        strides = _strides(spec)
        n = len(out[f"cls_{strides[0]}"])
        cand_f, cand_b, cand_s, cand_k = _decode_yunet(out, spec.input.width, spec.input.height, strides, score_threshold)
        db = np.zeros((n, k, 4), np.float32)
        ds = np.zeros((n, k), np.float32)
        dk = np.zeros((n, k, 5, 2), np.float32)
        order = np.argsort(cand_f, kind="stable")  # by frame, each frame's candidates in prior order
        bounds = np.searchsorted(cand_f[order], np.arange(n + 1))
        for i in range(n):
            sel = order[bounds[i] : bounds[i + 1]]
            keep = sel[nms(cand_b[sel], cand_s[sel], score_threshold, iou_threshold, k)]
            db[i, : len(keep)], ds[i, : len(keep)], dk[i, : len(keep)] = cand_b[keep], cand_s[keep], cand_k[keep]
        return db, ds, dk


# the registry's ``decoder`` value -> its type: the one table a detector's post-processing comes from
DECODERS: dict[str, type[DetectorDecoder]] = {"ultraface": UltraFaceDecoder, "yunet": YuNetDecoder}
