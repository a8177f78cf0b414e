"""BT.709 limited-range YUV 4:2:0 planes to RGB and grey, for :class:`ferbatch.picture.YuvPicture`.

Why: most HD video from cameras and phones is tagged BT.709. OpenCV's ``COLOR_YUV2RGB_I420`` implements
BT.601 only, so until this module a BT.709 frame skipped the planes path and was converted to full-size RGB by
swscale in the decoder, every frame: 720p ran at 0.75x the frames/s of the same pictures untagged
(``scripts/bench_colorspace.py``, docs/performance.md). Here the planes are converted where a consumer needs
them, at the size it needs: chroma repeated 2 x 2 (as OpenCV's 4:2:0 conversion does), the three planes merged,
then one affine ``cv2.transform`` (float coefficients, rounded and saturated to uint8).

Coefficients: ITU-R BT.709-6 item 3.2-3.3, Kr = 0.2126, Kb = 0.0722, limited range (Y 16..235, Cb and Cr
16..240): ``E'Y = (Y - 16) / 219``, ``E'Cb = (U - 128) / 224``, ``R = E'Y + 2 (1 - Kr) E'Cr``,
``G = E'Y - 2 (1 - Kb) Kb / Kg E'Cb - 2 (1 - Kr) Kr / Kg E'Cr``, ``B = E'Y + 2 (1 - Kb) E'Cb``, times 255. These are
swscale's own (libswscale ``ff_yuv2rgb_coeffs[AVCOL_SPC_BT709]``, 16.16 fixed point: 117489 / 65536 = 1.7927
= 2 (1 - Kr) 255 / 224). swscale's table lookup truncates each term it adds (the luma term and each chroma term:
two for R and B, three for G), half a level each on average, so its RGB lies 1.0, 1.5 and 1.0 levels under the exact
values (measured on 32,768 random 2 x 2 blocks, standard deviation 0.4-0.5); the affine maps here subtract those
means (:data:`SWSCALE_TRUNCATION`). A frame converted here then differs from ``VideoFrame.to_ndarray(format="rgb24")``
by 0.3-0.4 level on average, at most 2-4 (rounding and chroma siting; ``tests/test_picture.py``).

Grey is the grey a consumer of swscale's RGB computes, OpenCV's ``RGB2GRAY`` (0.299 R + 0.587 G + 0.114 B, ITU-R
BT.601 luma weights) of the BT.709 RGB: unlike BT.601 it is not the luma alone, chroma adds
``0.116 (U - 128) + 0.223 (V - 128)`` (a few levels on skin), so it is computed from all three planes, through the
RGB (saturated colours clip there first, as in swscale's RGB).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BT709_RGB", "SWSCALE_TRUNCATION", "bt709_gray", "bt709_rgb", "yuv444"]

_KR, _KB = 0.2126, 0.0722  # ITU-R BT.709-6, table 3.2
_KG = 1.0 - _KR - _KB
_Y, _C = 255.0 / 219.0, 255.0 / 224.0  # limited range: 219 luma levels, 224 chroma levels
_LINEAR = np.array(
    [
        [_Y, 0.0, 2 * (1 - _KR) * _C],
        [_Y, -2 * (1 - _KB) * _KB / _KG * _C, -2 * (1 - _KR) * _KR / _KG * _C],
        [_Y, 2 * (1 - _KB) * _C, 0.0],
    ]
)  # rows R, G, B; columns Y, U, V
SWSCALE_TRUNCATION = np.array([[-1.0], [-1.5], [-1.0]])
"""(3, 1) mean levels swscale's R, G, B lie under the exact BT.709 values (half a level per truncated term)."""
BT709_RGB = np.hstack([_LINEAR, SWSCALE_TRUNCATION - _LINEAR @ np.array([[16.0], [128.0], [128.0]])]).astype(np.float32)
"""(3, 4) float32 affine map of (Y, U, V, 1) to (R, G, B), 0..255, as swscale converts on average
(``cv2.transform`` of a (H, W, 3) YUV array, which rounds)."""


def yuv444(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 Y, U, V of 4:2:0 planes, each chroma sample repeated over its 2 x 2 block.

    Args:
        y: (H, W) uint8, H and W even (rows may be strided).
        u, v: (H / 2, W / 2) uint8.
    """
    h, w = y.shape
    up = [cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST) for c in (u, v)]  # exactly 2x: x -> x // 2
    return cv2.merge([np.ascontiguousarray(y), *up])


def bt709_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of BT.709 limited-range 4:2:0 planes (shapes as :func:`yuv444`)."""
    return cv2.transform(yuv444(y, u, v), BT709_RGB)


def bt709_gray(yuv: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey (OpenCV's ``RGB2GRAY`` of the BT.709 RGB) of a (H, W, 3) uint8 YUV array
    (:func:`yuv444`, or a warp of one: the map is affine, so warping then converting is converting then warping)."""
    return cv2.cvtColor(cv2.transform(np.ascontiguousarray(yuv), BT709_RGB), cv2.COLOR_RGB2GRAY)
