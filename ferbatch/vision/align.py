"""Aligned face crops for the square gray FER+ classifiers: one similarity warp per face that maps the
detector's 5 landmarks onto a fixed FER2013-like template (eyes level, a fixed inter-ocular
distance, the FER2013 framing), so a rolled or off-centre face reaches the classifier upright.

The landmarks are YuNet's, in its order (OpenCV Zoo face_detection_yunet; checked on FER+ faces,
``tests/test_align.py``): right eye, left eye, nose tip, right mouth corner, left mouth corner,
"right"/"left" as the subject's: the right eye is the one on the image's left (smaller x).

:data:`FER48_TEMPLATE` is where those points sit in a 48x48 FER2013 face: the per-point median of
YuNet's landmarks on the selection split of FER2013Train (each 48x48 face upscaled 3x into a
256x256 frame of blurred noise, as ``scripts/eval_protocol.py --estimate-template`` does; 2,715 of
2,869 faces found), made left-right symmetric about the eyes' midpoint and with both eyes on one
row. The warps are solved for all faces at once (closed-form least squares, :func:`similarity_to`);
a face without landmarks keeps the square box crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ferbatch.colour import gray_of
from ferbatch.picture import BT601, LUMA_TO_GRAY, YuvPicture

__all__ = ["FER48_TEMPLATE", "TAPS", "similarity_to", "crop_template", "supersampling", "aligned_crops", "aligned_grey", "crop_inputs"]

# (5, 2) float32 (x, y) pixels in a 48x48 face; see the module docstring for the source
FER48_TEMPLATE = np.array(
    [[14.16, 18.23], [32.80, 18.23], [23.48, 28.07], [15.94, 36.64], [31.02, 36.64]],
    np.float32,
)


def similarity_to(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (rotation, uniform scale, translation; no reflection)
    mapping each point set of ``src`` onto ``dst``.

    Args:
        src: (N, K, 2) float points (x, y), K >= 2, e.g. detector landmarks in frame pixels.
        dst: (K, 2) float target points, e.g. :data:`FER48_TEMPLATE` scaled to the input size.

    Returns:
        (N, 2, 3) float32 affine matrices ``[[a, -b, tx], [b, a, ty]]`` for ``cv2.warpAffine``:
        the minimisers of sum_k |M src_k - dst_k|^2 (Umeyama 1991, 2-D closed form). A degenerate
        set (all points equal) gives the pure translation of its mean onto ``dst``'s.

    Raises:
        ValueError: shapes that do not match (N, K, 2) and (K, 2).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 3 or src.shape[2] != 2 or dst.shape != src.shape[1:]:
        raise ValueError(f"similarity_to | received src {src.shape} and dst {dst.shape}; expected (N, K, 2) and (K, 2)")
    mu_s, mu_d = src.mean(1), dst.mean(0)
    xs, xd = src - mu_s[:, None], dst - mu_d
    norm = (xs**2).sum((1, 2))
    degenerate = norm < 1e-12
    safe = np.where(degenerate, 1.0, norm)
    a = np.where(degenerate, 1.0, (xs[..., 0] * xd[:, 0] + xs[..., 1] * xd[:, 1]).sum(1) / safe)
    b = np.where(degenerate, 0.0, (xs[..., 0] * xd[:, 1] - xs[..., 1] * xd[:, 0]).sum(1) / safe)
    m = np.empty((len(src), 2, 3), np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a, -b, b, a
    m[:, 0, 2] = mu_d[0] - (a * mu_s[:, 0] - b * mu_s[:, 1])
    m[:, 1, 2] = mu_d[1] - (b * mu_s[:, 0] + a * mu_s[:, 1])
    return m.astype(np.float32)


def crop_template(width: int, height: int, scale: float = 1.0) -> np.ndarray:
    """(5, 2) float32: :data:`FER48_TEMPLATE` shrunk about the crop centre by ``scale`` (> 1 shows more
    context, as ``crop.scale``) and stretched to a ``width`` x ``height`` crop, in its pixels."""
    tpl = (FER48_TEMPLATE - 24.0) / scale + 24.0
    return (tpl * np.array([width / 48.0, height / 48.0], np.float32)).astype(np.float32)


def supersampling(mats: np.ndarray) -> np.ndarray:
    """How many times the crop's size each face is warped at before the area average.

    A large face shrinks a lot: it is warped at ``k`` times the size (bilinear), then area-averaged
    down, as the square crop's ``cv2.resize(INTER_AREA)`` does; ``k = floor(1 / s)`` clipped to
    1..4, ``s`` the similarity's scale (crop pixels per frame pixel).

    Args:
        mats: (N, 2, 3) float similarity matrices frame -> crop pixels (:func:`similarity_to`).

    Returns:
        (N,) int64 factors k in 1..4.
    """
    s = np.maximum(np.hypot(mats[:, 0, 0], mats[:, 1, 0]).astype(np.float64), 1e-6)
    return np.clip(np.floor(1.0 / s), 1, 4).astype(np.int64)


def aligned_crops(
    frames: Sequence[np.ndarray | None],
    frame_pos: np.ndarray,
    landmarks: np.ndarray,
    width: int,
    height: int,
    scale: float = 1.0,
    supersample: bool = True,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Warp each face onto :data:`FER48_TEMPLATE` scaled to ``width`` x ``height``.

    Args:
        frames: the batch's frames, (H, W, C) uint8 each (any channel count; gray (H, W) too, e.g. a
            luma plane); frames no face refers to may be None.
        frame_pos: (M,) int index into ``frames`` of each face.
        landmarks: (M, 5, 2) float32 frame pixels in YuNet's order (module docstring).
        width, height: the classifier input size in pixels.
        scale: >1 shows more context around the face (the template shrinks about the crop centre),
            like ``crop.scale`` of the square crop.
        supersample: warp a face larger than the crop at :func:`supersampling`'s factor, then area-resize
            (False: warp straight to the crop size; for planes with little detail, such as chroma).
        shift: (M,) float32 crop pixels each face's crop samples further right and down (its pixel ``i``
            at template coordinate ``i + shift``), or None.

    Returns:
        (M, height, width, C) uint8 crops (C as the frames'); pixels outside the frame repeat its
        border (``cv2.BORDER_REPLICATE``: FER2013 faces have no black corners).
    """
    tpl = crop_template(width, height, scale)
    mats = similarity_to(landmarks, tpl)
    if shift is not None:
        mats[:, :, 2] -= np.asarray(shift, np.float32)[:, None]
    first = frames[int(frame_pos[0])] if len(frame_pos) else None
    ch = 1 if first is None or first.ndim == 2 else first.shape[2]
    out = np.empty((len(frame_pos), height, width, ch), np.uint8)
    ks = supersampling(mats) if supersample else np.ones(len(mats), np.int64)
    for i in range(len(frame_pos)):
        k = int(ks[i])
        m = mats[i] * k
        src = frames[int(frame_pos[i])]
        assert src is not None  # a frame a face refers to
        crop = cv2.warpAffine(src, m, (width * k, height * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if k > 1:
            crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        out[i] = crop.reshape(height, width, ch)
    return out


def aligned_grey(
    pictures: Sequence[YuvPicture | None], frame_pos: np.ndarray, landmarks: np.ndarray, width: int, height: int, scale: float = 1.0
) -> np.ndarray:
    """:func:`aligned_crops` in full-range grey, from pictures' planes (no RGB made): the luma plane warped, then
    mapped by :data:`ferbatch.picture.LUMA_TO_GRAY` (BT.601 limited range: grey is the luma); for a picture of
    another matrix (BT.709, full range) the chroma planes are warped too, at their own resolution (landmarks
    ``/ 2 - 0.25``: a chroma sample's centre lies between the two luma columns it covers; without
    supersampling, at the luma's supersampled pixel centres), and the three converted together (:func:`ferbatch.colour.gray_of`; its grey is not the luma).

    Args: as :func:`aligned_crops`, ``pictures`` instead of frames.

    Returns:
        (M, height, width, 1) uint8 grey crops.
    """
    y = aligned_crops([p.y if p else None for p in pictures], frame_pos, landmarks, width, height, scale)
    out = LUMA_TO_GRAY[y]
    matrices = [getattr(pictures[int(p)], "matrix", BT601) for p in frame_pos]
    chroma = np.flatnonzero([m != BT601 for m in matrices])
    if len(chroma):
        lm = landmarks[chroma] / 2 - np.float32(0.25)
        # a luma crop warped at k times the size, then area-averaged, has its pixel i at template coordinate
        # i + (k - 1) / 2k; the chroma, smooth and half the size, is warped straight to the crop size, there
        ks = supersampling(similarity_to(landmarks[chroma], crop_template(width, height, scale)))
        centre = ((ks - 1) / (2 * ks)).astype(np.float32)
        u, v = (
            aligned_crops([getattr(p, c) if p else None for p in pictures], frame_pos[chroma], lm, width, height, scale, False, centre)
            for c in "uv"
        )
        for k, i in enumerate(chroma):
            out[i, ..., 0] = gray_of(np.dstack([y[i], u[k], v[k]]), matrices[i])
    return out


TAPS = 4  # samples per crop pixel and axis: the CPU path's largest supersampling factor (align.supersampling)


def crop_inputs(landmarks: np.ndarray, frame_pos: np.ndarray, size: int = 48, scale: float = 1.0) -> dict[str, np.ndarray]:
    """The crop graph's per-face inputs (:mod:`ferbatch.models.graph_crop`) for YuNet landmarks:
    the same warp as :func:`aligned_crops`, as the inverse map and supersampling taps.

    Args:
        landmarks: (N, 5, 2) float32 frame pixels, YuNet's order (``ferbatch.vision.align``).
        frame_pos: (N,) int index of each face's frame in ``planes``.
        size: the crop side in pixels (the classifier's input, 48).
        scale: the crop's ``crop.scale`` (> 1 shows more context).

    Returns:
        ``{"warps": (N, 2, 3) float32, "taps": (N, 4) float32, "tap_weights": (N, 4) float32,
        "frame_pos": (N,) int64}``.
    """
    mats = similarity_to(landmarks, crop_template(size, size, scale)).astype(np.float64)  # frame -> crop pixels
    k = supersampling(mats)
    # the CPU path warps with mats * k at k x the size: crop pixel i + j / k reads M^-1 (i + j / k)
    a, b = mats[:, 0, 0], mats[:, 1, 0]
    det = a * a + b * b
    inv = np.empty_like(mats)
    inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 0], inv[:, 1, 1] = a / det, b / det, -b / det, a / det
    t = mats[:, :, 2]
    inv[:, 0, 2] = -(inv[:, 0, 0] * t[:, 0] + inv[:, 0, 1] * t[:, 1])
    inv[:, 1, 2] = -(inv[:, 1, 0] * t[:, 0] + inv[:, 1, 1] * t[:, 1])
    j = np.arange(TAPS)[None]
    used = j < k[:, None]
    taps = np.where(used, j / k[:, None], 0.0)
    weights = np.where(used, 1.0 / k[:, None], 0.0)
    return {
        "warps": inv.astype(np.float32),
        "taps": taps.astype(np.float32),
        "tap_weights": weights.astype(np.float32),
        "frame_pos": np.asarray(frame_pos, np.int64),
    }
