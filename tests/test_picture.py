"""Frames kept in their YUV planes (ferbatch.picture): what each consumer gets equals what it got
from full-size RGB, within the conversion's rounding.

Mutations run against these tests (each made the named test fail, then was restored):
- ``LUMA_TO_GRAY`` without the 16 offset (``(Y - 0) * 255 / 219``) -> test_grey_crops_are_the_luma_in_full_range;
- ``LUMA_TO_GRAY`` rounded instead of truncated -> test_grey_of_a_grey_picture_is_swscales;
- ``resized_rgb`` filling the U plane from V -> test_resized_planes_match_resized_rgb;
- ``nv12_image`` with U and V swapped -> test_nvdec_gives_the_same_picture;
- ``picture_matrix`` taking BT.709 for BT.601 (``_MATRIX[1] = (BT601, BT601_FULL)``) -> test_picture_matrix_follows_the_tags;
- BT.709's Kr and Kb swapped, or ``swscale_truncation`` zero (or the same for both ranges) -> test_planes_convert_as_swscale;
- yuvj420p frames left to swscale (``YUV420`` without it) -> test_full_range_video_is_a_picture;
- a BT.709 picture's grey from its luma alone (``gray`` as for BT.601) -> test_bt709_picture_matches_swscales_frame;
- ``rgb_region`` without rounding the region out to whole chroma blocks -> test_regions_convert_as_the_whole_picture.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from badinputs import encode
from conftest import DATA, WOLFGANG, read_frames

from ferbatch.media.decode import to_image
from ferbatch.media.nvdec import nv12_image
from ferbatch.picture import BT601, BT601_FULL, BT709, BT709_FULL, Nv12Picture, YuvPicture, as_rgb, picture_matrix, region_rgb

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


def test_picture_matrix_follows_the_tags():
    assert picture_matrix(None, None) == picture_matrix(6, 1) == picture_matrix(5, 0) == BT601
    assert picture_matrix(1, 1) == picture_matrix(1, 0) == BT709
    assert picture_matrix(6, 2) == picture_matrix(None, 2) == BT601_FULL and picture_matrix(1, 2) == BT709_FULL
    assert picture_matrix(9, 1) is None and picture_matrix(6, 3) is None  # BT.2020, an unknown range: swscale's RGB
    f709 = _first_frame(MOV_BT709)
    p = to_image(f709, pictures=True)
    assert isinstance(p, YuvPicture) and p.matrix == BT709
    q = to_image(f709, pictures="nv12")  # the NV12 detector graph takes the matrix's coefficients
    assert isinstance(q, Nv12Picture) and q.matrix == BT709 and q.host().matrix == BT709
    np.testing.assert_array_equal(q.host().rgb(), p.rgb())
    with pytest.raises(ValueError, match="even"):
        YuvPicture.from_i420(np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match="matrix"):
        YuvPicture.from_i420(np.zeros((6, 4), np.uint8), "bt2020")
    with pytest.raises(ValueError, match="matrix"):
        Nv12Picture(np.zeros((6, 4), np.uint8), "bt2020")


def _swscale_rgb(i420: np.ndarray, colorspace: int, color_range: int = 1) -> np.ndarray:
    f = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    f.colorspace, f.color_range = colorspace, color_range
    return f.to_ndarray(format="rgb24")


@pytest.mark.parametrize(("colorspace", "color_range", "matrix"), [(1, 1, BT709), (5, 2, BT601_FULL), (1, 2, BT709_FULL)])
def test_planes_convert_as_swscale(colorspace, color_range, matrix):
    """Random planes, each 2 x 2 block one colour (no chroma siting to differ by): pictures of each matrix
    OpenCV lacks convert as swscale converts a frame so tagged, to two levels (its truncations), without bias;
    the same planes as BT.601 limited range do not."""
    rng = np.random.default_rng(0)
    h, w = 128, 256
    y = rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    uv = rng.integers(0, 256, (2, h // 2, w // 2), dtype=np.uint8)
    i420 = np.concatenate([y.reshape(-1), uv.reshape(-1)]).reshape(h * 3 // 2, w)
    ref = _swscale_rgb(i420, colorspace, color_range).astype(int)
    inside = ((ref > 0) & (ref < 255)).all(-1)  # where neither clips
    d = YuvPicture.from_i420(i420, matrix).rgb().astype(int) - ref
    assert np.abs(d).max() <= 2 and np.abs(d[inside].mean(0)).max() < 0.15, (np.abs(d).max(), d[inside].mean(0))
    assert np.abs(YuvPicture.from_i420(i420).rgb().astype(int) - ref).max() > 20  # BT.601 limited is another picture


def test_full_range_video_is_a_picture(tmp_path):
    """A full-range stream (yuvj420p, as MJPEG and many webcams give) becomes a picture whose RGB and grey are
    swscale's to a level; so does a yuvj420p frame whose tag says limited (swscale reads the format as full)."""
    frames = [np.ascontiguousarray(f) for f in read_frames(WOLFGANG)[:2]]
    clip = encode(tmp_path / "full.mp4", frames, pix_fmt="yuvj420p")
    fr = _first_frame(clip)
    assert fr.format.name == "yuvj420p"
    p = to_image(fr, pictures=True)
    assert isinstance(p, YuvPicture) and p.matrix == BT601_FULL
    ref = fr.to_ndarray(format="rgb24")
    d = np.abs(p.rgb().astype(int) - ref)
    assert d.mean() < 0.5 and d.max() <= 2, (d.mean(), d.max())
    g = np.abs(p.gray(11, 7, 301, 203).astype(int) - cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)[7:203, 11:301])
    assert g.mean() < 0.5 and g.max() <= 2, (g.mean(), g.max())
    fr.color_range = 1
    assert to_image(fr, pictures=True).matrix == BT601_FULL


def test_bt709_picture_matches_swscales_frame():
    """A real BT.709 frame (960x540): RGB, grey crops at odd corners and the detector's resized input within
    a level of the RGB frame path's (swscale, then OpenCV)."""
    fr = _first_frame(MOV_BT709)
    p = to_image(fr, pictures=True)
    ref = fr.to_ndarray(format="rgb24")
    grey = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(int)
    d = np.abs(p.resized_rgb(512, 288).astype(int) - cv2.resize(ref, (512, 288), interpolation=cv2.INTER_LINEAR))
    assert d.mean() < 1.5, d.mean()
    assert p._rgb is None  # the detector's input came from the planes
    d = np.abs(p.gray(101, 37, 403, 299).astype(int) - grey[37:299, 101:403])
    assert d.mean() < 0.5 and d.max() <= 1, (d.mean(), d.max())
    d = np.abs(p.rgb().astype(int) - ref)
    assert d.mean() < 0.5 and d.max() <= 1, (d.mean(), d.max())


@pytest.mark.parametrize("path", [WOLFGANG, MOV_BT709], ids=["bt601", "bt709"])
def test_regions_convert_as_the_whole_picture(path):
    """A window's RGB (odd corners) converted from the planes around it equals the whole picture's RGB there,
    and makes no full-size RGB."""
    fr = _first_frame(path)
    p, whole = to_image(fr, pictures=True), to_image(fr, pictures=True).rgb()
    for x1, y1, x2, y2 in ((101, 37, 403, 299), (0, 0, 7, 5), (p.width - 9, p.height - 3, p.width, p.height)):
        np.testing.assert_array_equal(region_rgb(p, x1, y1, x2, y2), whole[y1:y2, x1:x2])
    assert p._rgb is None
    np.testing.assert_array_equal(region_rgb(whole, 3, 4, 9, 8), whole[4:8, 3:9])


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
