"""Frames kept in their YUV planes (ferbatch.picture): what each consumer gets equals what it got
from full-size RGB, within the conversion's rounding.

Mutations run against these tests (each made the named test fail, then was restored):
- ``LUMA_TO_GRAY`` without the 16 offset (``(Y - 0) * 255 / 219``) -> test_grey_crops_are_the_luma_in_full_range;
- ``LUMA_TO_GRAY`` rounded instead of truncated -> test_grey_of_a_grey_picture_is_swscales;
- ``resized_rgb`` filling the U plane from V -> test_resized_planes_match_resized_rgb;
- ``converts`` accepting BT.709 (colorspace 1) -> test_only_bt601_limited_streams_become_pictures;
- ``nv12_image`` with U and V swapped -> test_nvdec_gives_the_same_picture.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from conftest import DATA, WOLFGANG

from ferbatch.media.decode import to_image
from ferbatch.media.nvdec import nv12_image
from ferbatch.picture import YuvPicture, as_rgb, converts

MOV_BT709 = DATA / "videos_faces/pyfeat/face_noface.mov"  # tagged BT.709


def _first_frame(path):
    with av.open(str(path)) as c:
        return next(c.decode(video=0))


@pytest.fixture(scope="module")
def frame():
    return _first_frame(WOLFGANG)  # 640x360 yuv420p, SMPTE 170M (BT.601), limited range


def test_picture_rgb_is_the_bt601_conversion(frame):
    p = to_image(frame, pictures=True)
    assert isinstance(p, YuvPicture) and p.shape == (360, 640, 3)
    swscale = frame.to_ndarray(format="rgb24")
    d = np.abs(p.rgb().astype(int) - swscale)
    assert d.mean() < 1.5 and d.max() <= 8, (d.mean(), d.max())  # OpenCV vs swscale: rounding and chroma siting
    assert as_rgb(p) is p.rgb() and as_rgb(swscale) is swscale


def test_grey_of_a_grey_picture_is_swscales(frame):
    """On every luma level of a grey picture the crop's grey equals the RGB frame path's (swscale's
    conversion, then OpenCV's RGB2GRAY)."""
    y = np.repeat(np.arange(256, dtype=np.uint8)[None], 2, 0)
    i420 = np.concatenate([y.reshape(-1), np.full(256, 128, np.uint8)]).reshape(3, 256)
    old = cv2.cvtColor(av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(YuvPicture.from_i420(i420).gray(0, 0, 256, 2), old)


def test_grey_crops_are_the_luma_in_full_range(frame):
    p = to_image(frame, pictures=True)
    grey = cv2.cvtColor(p.rgb(), cv2.COLOR_RGB2GRAY)
    d = np.abs(p.gray(100, 40, 400, 300).astype(int) - grey[40:300, 100:400])
    assert d.mean() < 0.5 and d.max() <= 4, (d.mean(), d.max())


def test_resized_planes_match_resized_rgb(frame):
    p = to_image(frame, pictures=True)
    small = p.resized_rgb(320, 180)
    ref = cv2.resize(p.rgb(), (320, 180), interpolation=cv2.INTER_LINEAR)
    d = np.abs(small.astype(int) - ref)
    assert small.shape == (180, 320, 3) and d.mean() < 1.5, d.mean()


def test_only_bt601_limited_streams_become_pictures():
    assert converts(None, None) and converts(6, 1) and converts(5, 0)
    assert not converts(1, 1) and not converts(6, 2) and not converts(9, 1)  # BT.709, full range, BT.2020
    f709 = _first_frame(MOV_BT709)
    img = to_image(f709, pictures=True)
    assert isinstance(img, np.ndarray)
    np.testing.assert_array_equal(img, f709.to_ndarray(format="rgb24"))
    with pytest.raises(ValueError, match="even"):
        YuvPicture.from_i420(np.zeros((5, 4), np.uint8))


def test_nvdec_gives_the_same_picture(frame):
    """NVDEC's NV12 (interleaved U/V) of a frame becomes the picture PyAV's planes give."""
    p = to_image(frame, pictures=True)
    y, u, v = p.y, p.u, p.v
    uv = np.stack([u, v], axis=-1).reshape(u.shape[0], -1)
    pitch = 16  # NVDEC's rows may be wider than the picture
    nv12 = np.zeros((p.height * 3 // 2, p.width + pitch), np.uint8)
    nv12[: p.height, : p.width], nv12[p.height :, : p.width] = y, uv
    q = nv12_image(nv12, p.width, p.height, colorspace=6, color_range=1)
    assert isinstance(q, YuvPicture)
    np.testing.assert_array_equal(q.i420(), p.i420())
    np.testing.assert_array_equal(q.rgb(), p.rgb())
