"""The evaluation protocol's data: the selection split of FER2013Train, FER+ faces made into photos,
and the realistic degradations of the out-of-domain checks (``scripts/eval_protocol.py``).

**Selection split.** Every choice (logit adjustment tau, temperature, crop alignment, which model
ships) is made on a fixed tenth of FER2013Train, chosen by image: an image is in it when the first 8
bytes of ``sha256(f"{seed}:{name}")`` (``name`` = its file name in ``label.csv``, e.g.
``fer0000123.png``), read as a big-endian integer over 2**64, fall below ``fraction`` (seed 0,
fraction 0.1). Membership depends on the name only: not on the order of the rows, the other images
or the machine. FER2013Valid is left for one measurement per released model (its card).

Caveat: ferbatch-ferplus-cnn-v1..v4 were trained on all of FER2013Train, the selection split
included, so their selection figures are training-set figures (optimistic); a model trained with
the split held out (``selection_mask`` on the training rows) is measured honestly on it.

**Photos.** A 48x48 FER+ face, upscaled 3x (bicubic, 144 px), pasted at the centre of a 256x256 frame
of blurred noise (:func:`face_photo`), so that the detector, its landmarks and the pipeline's crop
run on it as on a video frame.

**Degradations** (:data:`DEGRADATIONS`, applied to the photo, i.e. at 3x the FER+ scale): ``blur``
(Gaussian, sigma 4.5 px: 1.5 px of the 48-px face, a soft focus), ``jpeg`` (quality 15), ``low_light``
(intensities x 0.25, then Gaussian sensor noise sigma 3 grey levels), ``roll`` (the photo rotated
about the face centre by +20 deg for even indices, -20 deg for odd ones; the frame's border
reflected).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np

__all__ = [
    "selection_mask",
    "face_photo",
    "DEGRADATIONS",
    "degrade",
    "PHOTO_SIZE",
    "PHOTO_FACE",
    "PHOTO_UPSCALE",
    "balanced_accuracy",
]

SELECTION_SEED = 0
SELECTION_FRACTION = 0.1
PHOTO_SIZE = 256  # frame side, pixels
PHOTO_UPSCALE = 3  # 48 px -> 144 px
PHOTO_FACE = (PHOTO_SIZE - 48 * PHOTO_UPSCALE) // 2  # top-left corner of the face in the frame (both axes)


def selection_mask(names: Sequence[str], fraction: float = SELECTION_FRACTION, seed: int = SELECTION_SEED) -> np.ndarray:
    """Which images belong to the selection split (module docstring).

    Args:
        names: image file names as ``label.csv`` gives them (a folder prefix is ignored).
        fraction: the share of images to select, in [0, 1].
        seed: changes the split; 0 is the protocol's.

    Returns:
        (N,) bool, True for selection images.

    Raises:
        ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"selection_mask | received fraction {fraction}; expected 0..1")
    cut = int(fraction * 2**64)
    keys = (hashlib.sha256(f"{seed}:{n.rsplit('/', 1)[-1]}".encode()).digest()[:8] for n in names)
    return np.fromiter((int.from_bytes(k, "big") < cut for k in keys), bool, len(names))


def face_photo(face: np.ndarray, seed: int) -> np.ndarray:
    """A FER+ face as a photo (module docstring).

    Args:
        face: (48, 48) uint8 gray face.
        seed: seeds the background noise (the index of the face, for a reproducible set).

    Returns:
        (PHOTO_SIZE, PHOTO_SIZE, 3) uint8 RGB (gray in all three channels); the face covers
        ``[PHOTO_FACE, PHOTO_FACE + 144)`` on both axes.
    """
    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(90, 170, (PHOTO_SIZE, PHOTO_SIZE)).astype(np.uint8), (0, 0), 6)
    side = 48 * PHOTO_UPSCALE
    frame[PHOTO_FACE : PHOTO_FACE + side, PHOTO_FACE : PHOTO_FACE + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.repeat(frame[..., None], 3, axis=2)


def _blur(img: np.ndarray, i: int) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), 4.5)


def _jpeg(img: np.ndarray, i: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 15])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if out is None:  # pragma: no cover - decoding what was just encoded
        raise RuntimeError("JPEG decoding failed")
    return out.reshape(img.shape)


def _low_light(img: np.ndarray, i: int) -> np.ndarray:
    noise = np.random.default_rng(i).normal(0.0, 3.0, img.shape[:2])[..., None]
    return np.clip(img.astype(np.float32) * 0.25 + noise, 0, 255).astype(np.uint8)


def _roll(img: np.ndarray, i: int) -> np.ndarray:
    c = PHOTO_FACE + 24 * PHOTO_UPSCALE
    m = cv2.getRotationMatrix2D((c, c), 20.0 if i % 2 == 0 else -20.0, 1.0)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# name -> f(photo (H, W, 3) uint8, index) -> degraded photo, same shape and dtype
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "blur": _blur,
    "jpeg": _jpeg,
    "low_light": _low_light,
    "roll": _roll,
}


def degrade(photo: np.ndarray, kind: str, index: int) -> np.ndarray:
    """``photo`` under the degradation ``kind`` (a key of :data:`DEGRADATIONS`, or ``"clean"``).

    Args:
        photo: (H, W, 3) uint8 from :func:`face_photo`.
        kind: "clean", "blur", "jpeg", "low_light" or "roll".
        index: the face's index (the roll's sign and the noise seed).

    Returns:
        (H, W, 3) uint8.

    Raises:
        KeyError: an unknown ``kind``.
    """
    return photo if kind == "clean" else DEGRADATIONS[kind](photo, index)


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` ((N,) int each); NaN when empty."""
    classes = np.unique(labels)
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[labels == c] == c) for c in classes]))
