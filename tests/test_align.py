"""Aligned crops (``ferbatch.vision.align``, crop mode "aligned") on real FER+ faces and YuNet landmarks.

Mutations run against these tests (each made the named test fail, then was restored):
- ``similarity_to`` with the sign of ``b`` flipped (rotation the wrong way) -> test_similarity_recovers_a_known_warp,
  test_aligned_crop_undoes_a_roll;
- ``similarity_to`` with ``b`` forced to 0 (no rotation: scale and shift only) -> test_aligned_crop_undoes_a_roll;
- ``FER48_TEMPLATE`` with its two eyes swapped -> test_yunet_landmark_order_and_the_template;
- ``extract_crops`` without the ``dets.landmarks is not None`` guard -> test_aligned_mode_without_landmarks_is_the_square_crop;
- ``aligned_crops`` ignoring ``scale`` -> test_aligned_scale_shows_more_context;
- the luma path without ``LUMA_TO_GRAY`` (limited-range luma fed as grey), or through RGB ->
  test_aligned_crop_of_a_yuv_picture_is_the_rgb_one.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import DATA

from ferbatch.faces import FaceBatch
from ferbatch.models.prior import configure_classifier
from ferbatch.models.registry import load_registry
from ferbatch.picture import BT601, BT601_FULL, BT709, YuvPicture
from ferbatch.training.data import load_faces
from ferbatch.training.protocol import PHOTO_FACE, PHOTO_UPSCALE, degrade, face_photo
from ferbatch.vision.align import FER48_TEMPLATE, aligned_crops, crop_template, similarity_to, supersampling
from ferbatch.vision.classify import extract_crops
from ferbatch.vision.top_face import top_faces


@pytest.fixture(scope="module")
def faces():
    return load_faces(DATA / "fer_sample", 48)


@pytest.fixture(scope="module")
def spec():
    return configure_classifier(load_registry().get("ferbatch-ferplus-cnn-v4", "classifier"), "graph", True)


def test_similarity_recovers_a_known_warp():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ang, s, t = rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 5), rng.uniform(-100, 100, 2)
        r = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        src = (FER48_TEMPLATE @ r.T + t)[None]
        m = similarity_to(src, FER48_TEMPLATE)[0]
        back = src[0] @ m[:, :2].T + m[:, 2]
        np.testing.assert_allclose(back, FER48_TEMPLATE, atol=1e-3)
    with pytest.raises(ValueError, match="expected"):
        similarity_to(np.zeros((2, 5, 2)), np.zeros((4, 2)))


def test_yunet_landmark_order_and_the_template(models, faces):
    """YuNet's first landmark is the eye on the image's left, the nose lies between the eyes and the
    mouth, and its median on FER+ faces sits within 2 px of the template (48-px units)."""
    photos = [face_photo(f, i) for i, f in enumerate(faces.images)]
    top = top_faces(models.detector.detect(photos))
    assert len(top) >= 70
    lm = (top.landmarks - PHOTO_FACE) / PHOTO_UPSCALE
    assert np.mean(lm[:, 0, 0] < lm[:, 1, 0]) > 0.95  # right eye (subject's) on the image's left
    assert np.mean(lm[:, 3, 0] < lm[:, 4, 0]) > 0.95
    assert np.mean((lm[:, 2, 1] > lm[:, :2, 1].max(1)) & (lm[:, 2, 1] < lm[:, 3:, 1].min(1))) > 0.95
    assert np.abs(np.median(lm, 0) - FER48_TEMPLATE).max() < 2.0


def test_aligned_crop_undoes_a_roll(models, faces, spec):
    """A face rolled by 20 deg comes out of the aligned crop close to the upright face's aligned crop;
    the square crop keeps the roll."""
    square = replace(spec, crop={"mode": "square", "scale": 1.0})
    gains = []
    for i in range(0, 80, 4):
        photo = face_photo(faces.images[i], i)
        pair = [photo, degrade(photo, "roll", i)]
        top = top_faces(models.detector.detect(pair))
        if len(top) < 2:
            continue
        a, s = extract_crops(pair, top, spec).astype(np.float32), extract_crops(pair, top, square).astype(np.float32)
        gains.append(np.abs(s[0] - s[1]).mean() - np.abs(a[0] - a[1]).mean())
    assert len(gains) >= 15
    assert np.median(gains) > 5.0  # grey levels: the aligned pair is much closer than the square pair


def test_aligned_mode_without_landmarks_is_the_square_crop(faces, spec):
    photo = face_photo(faces.images[0], 0)
    box = np.array([[PHOTO_FACE, PHOTO_FACE, PHOTO_FACE + 144, PHOTO_FACE + 144]], np.float32)
    d = FaceBatch(np.zeros(1, np.int32), box, np.ones(1, np.float32), None)
    got = extract_crops([photo], d, spec)
    want = extract_crops([photo], d, replace(spec, crop={"mode": "square", "scale": 1.0}))
    np.testing.assert_array_equal(got, want)
    # the unscaled photo's face region is the FER+ face itself (upscaled, resized back)
    assert np.abs(got[0, ..., 0].astype(int) - faces.images[0].astype(int)).mean() < 4


def test_aligned_scale_shows_more_context(faces):
    photo = cv2.cvtColor(face_photo(faces.images[5], 5), cv2.COLOR_RGB2GRAY)
    lm = (FER48_TEMPLATE * PHOTO_UPSCALE + PHOTO_FACE)[None]
    tight = aligned_crops([photo], np.zeros(1, np.int64), lm, 48, 48, 1.0)[0, ..., 0]
    loose = aligned_crops([photo], np.zeros(1, np.int64), lm, 48, 48, 1.5)[0, ..., 0]
    assert np.abs(tight.astype(int) - faces.images[5].astype(int)).mean() < 4  # the template is the FER+ framing
    assert np.abs(loose.astype(int) - faces.images[5].astype(int)).mean() > 10


def test_aligned_grey_samples_the_chroma_where_the_luma_is(models, faces, spec):
    """BT.709 pictures with sharp colour edges (face photos tinted by a 6-px checker of three colours): the
    aligned grey crop from the planes (chroma warped at half resolution, at the supersampled luma's pixel
    centres) is the crop of the picture's own RGB to under 1.1 grey levels on average (0.87 measured; a
    chroma offset a quarter of a chroma pixel off gave 1.29-1.35, the chroma at the crop's pixel corners
    instead of the supersampled luma's centres 2.38)."""
    grey = [face_photo(faces.images[i], i) for i in range(0, 80, 8)]
    top = top_faces(models.detector.detect(grey))  # landmarks from the untinted photos
    assert len(top) >= 8 and (supersampling(similarity_to(top.landmarks, crop_template(48, 48))) > 1).all()
    y, x = np.mgrid[:256, :256]
    tints = np.array([[1.0, 0.55, 0.45], [0.45, 1.0, 0.55], [0.55, 0.45, 1.0]], np.float32)
    i420 = [
        cv2.cvtColor(np.clip(g * tints[(x // 6 + y // 6 + i) % 3], 0, 255).astype(np.uint8), cv2.COLOR_RGB2YUV_I420)
        for i, g in enumerate(grey)
    ]
    pics = [YuvPicture.from_i420(q, BT709) for q in i420]
    a = extract_crops(pics, top, spec).astype(int)
    b = extract_crops([YuvPicture.from_i420(q, BT709).rgb() for q in i420], top, spec).astype(int)
    assert all(p._rgb is None for p in pics)
    assert np.abs(a - b).mean() < 1.1, np.abs(a - b).mean()


@pytest.mark.parametrize("matrix", [BT601, BT709, BT601_FULL])
def test_aligned_crop_of_a_yuv_picture_is_the_rgb_one(models, faces, spec, matrix):
    """A decoded picture's grey aligned crop comes from its planes (BT.601: the luma alone; BT.709: chroma
    too, its grey is not the luma) with no RGB made, and matches the crop of its RGB conversion to a
    couple of grey levels. Mutation: ``aligned_grey`` without the chroma planes (BT.709 as BT.601) -> fails (BT.709)."""
    photos = [face_photo(faces.images[i], i) for i in range(0, 80, 8)]
    i420 = [cv2.cvtColor(p, cv2.COLOR_RGB2YUV_I420) for p in photos]
    rgbs = [YuvPicture.from_i420(x, matrix).rgb() for x in i420]
    pics = [YuvPicture.from_i420(x, matrix) for x in i420]
    top = top_faces(models.detector.detect(rgbs))
    assert len(top) >= 8
    a = extract_crops(pics, top, spec).astype(int)
    b = extract_crops(rgbs, top, spec).astype(int)
    assert all(p._rgb is None for p in pics)  # no RGB picture was made
    assert np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() <= 4
