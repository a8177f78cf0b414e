"""YUV 4:2:0 planes to RGB and grey for the matrices OpenCV does not convert: BT.709, and full range.

Why: OpenCV's ``COLOR_YUV2RGB_I420`` implements BT.601 limited range only, so until this module a BT.709 or
full-range frame skipped the planes path (:class:`ferbatch.picture.YuvPicture`) and was converted to full-size
RGB by swscale in the decoder, every frame: 720p BT.709 (most HD video) ran at 0.75x the frames/s of the same
pictures untagged (``scripts/bench_colorspace.py``, docs/performance.md). Here the planes are converted where a
consumer needs them, at the size it needs: chroma repeated 2 x 2 (as OpenCV's 4:2:0 conversion does), the three
planes merged, then one affine ``cv2.transform`` (float coefficients, rounded and saturated to uint8).

Coefficients (:func:`yuv_to_rgb`): ITU-R BT.709-6 (Kr = 0.2126, Kb = 0.0722) or BT.601-7 (Kr = 0.299, Kb = 0.114);
``R = E'Y + 2 (1 - Kr) E'Cr``, ``G = E'Y - 2 (1 - Kb) Kb / Kg E'Cb - 2 (1 - Kr) Kr / Kg E'Cr``,
``B = E'Y + 2 (1 - Kb) E'Cb``, times 255, where limited range has ``E'Y = (Y - 16) / 219`` and
``E'Cb = (U - 128) / 224`` and full range ``E'Y = Y / 255`` and ``E'Cb = (U - 128) / 255``. These are swscale's
own (libswscale ``ff_yuv2rgb_coeffs``, 16.16 fixed point: BT.709's 117489 / 65536 = 1.7927 = 2 (1 - Kr) 255 / 224).

swscale's table lookup truncates each term it adds that has a fraction, half a level each on average: limited
range, the luma term and the chroma terms (two for R and B, three for G); full range, the chroma terms only. Its
RGB therefore lies 1.0, 1.5, 1.0 (limited) or 0.5, 1.0, 0.5 (full) levels under the exact values (measured on
32,768 random 2 x 2 blocks, standard deviation 0.3-0.5), and the affine maps here subtract those means
(:func:`swscale_truncation`). A frame converted here then differs from ``VideoFrame.to_ndarray(format="rgb24")``
by 0.3-0.4 level on average, at most 2 (rounding and chroma siting; ``tests/test_picture.py``).

Grey is the grey a consumer of swscale's RGB computes, OpenCV's ``RGB2GRAY`` (0.299 R + 0.587 G + 0.114 B,
BT.601 luma weights) of the RGB: for BT.709 it is not the luma alone (chroma adds ``0.116 (U - 128) + 0.223
(V - 128)`` in limited range, a few levels on skin), so it is computed from all three planes, through the RGB
(saturated colours clip there first, as in swscale's RGB).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "BT601",
    "BT601_FULL",
    "BT601_FIXED",
    "BT709",
    "BT709_FULL",
    "MATRICES",
    "fixed_point",
    "gray_of",
    "rgb_of",
    "swscale_truncation",
    "yuv444",
    "yuv_to_rgb",
]

BT601, BT709, BT601_FULL, BT709_FULL = "bt601", "bt709", "bt601-full", "bt709-full"
MATRICES = {
    BT601: (0.299, 0.114, False),
    BT709: (0.2126, 0.0722, False),
    BT601_FULL: (0.299, 0.114, True),
    BT709_FULL: (0.2126, 0.0722, True),
}
"""Matrix name -> (Kr, Kb, full range): ITU-R BT.601-7 table 2 item 2.2 and BT.709-6 table 3.2."""


def swscale_truncation(full: bool) -> np.ndarray:
    """(3, 1) float64 mean levels swscale's R, G, B lie under the exact values: half a level per truncated
    term with a fraction (module docstring)."""
    terms = np.array([[1.0], [2.0], [1.0]]) + (0 if full else 1)  # chroma terms, plus the luma term in limited range
    return -0.5 * terms


def yuv_to_rgb(matrix: str) -> np.ndarray:
    """(3, 4) float32 affine map of (Y, U, V, 1) to (R, G, B), 0..255, as swscale converts on average
    (``cv2.transform`` of a (H, W, 3) YUV array, which rounds).

    Raises:
        KeyError: a name not in :data:`MATRICES`.
    """
    kr, kb, full = MATRICES[matrix]
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full else (255.0 / 219.0, 255.0 / 224.0)  # limited: 219 luma levels, 224 chroma levels
    lin = np.array(
        [[ys, 0.0, 2 * (1 - kr) * cs], [ys, -2 * (1 - kb) * kb / kg * cs, -2 * (1 - kr) * kr / kg * cs], [ys, 2 * (1 - kb) * cs, 0.0]]
    )  # rows R, G, B; columns Y, U, V
    black = np.array([[0.0 if full else 16.0], [128.0], [128.0]])
    return np.hstack([lin, swscale_truncation(full) - lin @ black]).astype(np.float32)


_AFFINE = {name: yuv_to_rgb(name) for name in MATRICES}
for _m in _AFFINE.values():
    _m.setflags(write=False)  # shared by every thread

# ITU-R BT.601 limited range in OpenCV's 20-bit fixed point (imgproc color_yuv: ITUR_BT_601_CY, CVR, CVG, CUG, CUB)
BT601_FIXED = {"cy": 1220542, "cvr": 1673527, "cvg": -852492, "cug": -409993, "cub": 2116026}
TRANSFORM_BITS = 10  # OpenCV's uint8 cv2.transform: the matrix in 10 fractional bits (core matmul transform_8u)


def fixed_point(matrix: str) -> np.ndarray:
    """(13,) int32 integer form of a matrix's conversion, as the NV12 detector graph takes it
    (:mod:`ferbatch.models.graph_nv12`): ``[ylo, cRY, cRU, cRV, cGY, cGU, cGV, cBY, cBU, cBV, bR, bG, bB]`` with
    ``R = clip((cRY max(Y - ylo, 0) + cRU (U - 128) + cRV (V - 128) + bR) >> 20, 0, 255)``, likewise G and B.

    Bit for bit what the host path computes: for :data:`BT601`, OpenCV's ``COLOR_YUV2RGB_I420`` (20-bit
    coefficients :data:`BT601_FIXED`, Y - 16 clamped at 0, rounded by 2^19); for the others, OpenCV's uint8
    ``cv2.transform`` of :func:`yuv_to_rgb`'s matrix, which rounds the float32 matrix to 10 fractional bits and
    computes ``(Y mY + U mU + V mV + o + 512) >> 10`` (equal on 65,536 random pixels; ``tests/test_graph_nv12.py``),
    here scaled by 2^10 with the chroma's 128 folded into the bias.

    Raises:
        KeyError: a name not in :data:`MATRICES`.
    """
    if matrix == BT601:
        f = BT601_FIXED
        c = [f["cy"], 0, f["cvr"], f["cy"], f["cug"], f["cvg"], f["cy"], f["cub"], 0]
        return np.array([16, *c, 1 << 19, 1 << 19, 1 << 19], np.int32)
    s = 1 << TRANSFORM_BITS
    m = np.rint(_AFFINE[matrix].astype(np.float64) * s).astype(np.int64)  # (3, 4): Y, U, V, offset
    bias = (m[:, 3] + 128 * (m[:, 1] + m[:, 2]) + s // 2) * s
    return np.array([0, *(m[:, :3] * s).reshape(-1), *bias], np.int32)


def yuv444(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 Y, U, V of 4:2:0 planes, each chroma sample repeated over its 2 x 2 block.

    Args:
        y: (H, W) uint8, H and W even (rows may be strided).
        u, v: (H / 2, W / 2) uint8.
    """
    h, w = y.shape
    up = [cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST) for c in (u, v)]  # exactly 2x: x -> x // 2
    return cv2.merge([np.ascontiguousarray(y), *up])


def rgb_of(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of 4:2:0 planes (shapes as :func:`yuv444`) in one of :data:`MATRICES`."""
    return cv2.transform(yuv444(y, u, v), _AFFINE[matrix])


def gray_of(yuv: np.ndarray, matrix: str) -> np.ndarray:
    """(H, W) uint8 grey (OpenCV's ``RGB2GRAY`` of the RGB) of a (H, W, 3) uint8 YUV array in one of
    :data:`MATRICES` (:func:`yuv444`, or a warp of one: the map is affine, so warping then converting is
    converting then warping, up to rounding and where no channel saturates)."""
    return cv2.cvtColor(cv2.transform(np.ascontiguousarray(yuv), _AFFINE[matrix]), cv2.COLOR_RGB2GRAY)
