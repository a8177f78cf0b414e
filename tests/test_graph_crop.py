"""Aligned grey face crops inside the classifier graph (``ferbatch.models.graph_crop``, issue 33's
device-side crop), run here on ONNX Runtime's CPU provider against the CPU path's crops.

Frames: WolfgangLanger at several scales (the face from ~25 to ~200 px, so every supersampling
factor k = 1..4 of ``ferbatch.vision.align.supersampling`` occurs), as decoded pictures' luma planes.

Mutations run against these tests (each made the named test fail, then was restored):
- the tap weights ignored (every face averaged as k = 4) -> test_graph_crops_are_the_cpu_crops;
- no clamp into the face's own frame (the next frame's rows read at the border) -> test_graph_crops_are_the_cpu_crops
  (the cut-off face at the bottom edge);
- ``frame_pos`` not added (every face read from frame 0) -> test_graph_crops_are_the_cpu_crops;
- NV12 luma rows taken as all rows (``nv12`` ignored) -> test_nv12_pictures_give_the_same_crops;
- the luma -> grey range map removed -> test_graph_crops_are_the_cpu_crops;
- (chroma, other matrices) no ``(k - 1) / 2k`` centre, no ``- 0.25`` siting -> test_nv12_crops_of_other_matrices_take_the_chroma
  (a reviewer's ten mutations, U/V swapped and the frame offset among them, each failed it).
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import onnx
import pytest
from conftest import DATA

from ferbatch.colour import BT601, BT601_FULL, BT709, BT709_FULL, fixed_point
from ferbatch.models.graph_crop import crop_classifier, crop_graph, crop_inputs, prepare_crop_classifier
from ferbatch.models.graphs import prepare_classifier
from ferbatch.models.registry import resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.picture import YuvPicture
from ferbatch.vision.align import FER48_TEMPLATE, similarity_to, supersampling
from ferbatch.vision.classify import extract_crops

SCALES = (0.25, 0.35, 0.5, 0.75, 1.0, 2.0)


@pytest.fixture(scope="module")
def batches(models):
    """Per scale: (pictures of one size, their I420 frames, detections); the last one's frames are cut
    so that the face runs off the bottom edge."""
    with av.open(str(DATA / "videos_faces/pyfeat/WolfgangLanger_Pexels.mp4")) as c:
        rgb = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 80 == 0]
    out = []
    for s in (*SCALES, "cut"):
        if s == "cut":
            frames = [f[: int(f.shape[0] * 0.42) // 2 * 2] for f in rgb]  # the chin below the frame
        else:
            frames = [
                cv2.resize(f, (int(f.shape[1] * s) // 2 * 2, int(f.shape[0] * s) // 2 * 2), interpolation=cv2.INTER_AREA) for f in rgb
            ]
        i420 = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420) for f in frames]
        pics = [YuvPicture.from_i420(x) for x in i420]
        dets = models.detector.detect([p.rgb() for p in pics])
        assert len(dets) >= (2 if s == "cut" else len(frames) - 1), s
        out.append((pics, i420, dets))
    return out


def _run(graph, feed: dict) -> np.ndarray:
    return OrtRunner(graph, threads=1).infer(feed)


def test_graph_crops_are_the_cpu_crops(models, batches, tmp_path):
    """Faces of several frames in one call, in reverse order, every k: each crop the CPU path's
    (luma plane, ``aligned_crops``, ``LUMA_TO_GRAY``) but for < 0.2 % of pixels, by at most 2 grey
    levels (each sample rounded before the area average, ties as INTER_AREA breaks them)."""
    path = tmp_path / "crop.onnx"
    onnx.save(crop_graph(), str(path))
    spec = models.classifier.spec
    ks = []
    for pics, _, dets in batches:
        order = np.arange(len(dets))[::-1]
        d = dets[order]
        cpu = extract_crops(pics, d, spec)
        feed = {"planes": np.stack([np.ascontiguousarray(p.y) for p in pics]), **crop_inputs(d.landmarks, d.frame_pos)}
        got = _run(str(path), feed)["crops"]
        diff = np.abs(got.astype(int) - cpu.astype(int))
        assert got.shape == cpu.shape and got.dtype == np.uint8
        assert diff.max() <= 2 and (diff > 0).mean() < 0.002, (diff.max(), (diff > 0).mean())
        ks.extend(supersampling(similarity_to(d.landmarks, FER48_TEMPLATE)).tolist())
    assert set(ks) == {1, 2, 3, 4}


def test_nv12_pictures_give_the_same_crops(batches, tmp_path):
    """Whole 4:2:0 pictures (luma rows first, then chroma: NVDEC's NV12 layout) give the luma planes' crops
    (to float rounding: the tall image is longer), also where the face runs off the bottom edge."""
    luma, nv12 = tmp_path / "luma.onnx", tmp_path / "nv12.onnx"
    onnx.save(crop_graph(), str(luma))
    onnx.save(crop_graph(nv12=True), str(nv12))
    for pics, i420, dets in (batches[2], batches[-1]):
        ins = crop_inputs(dets.landmarks, dets.frame_pos)
        a = _run(str(luma), {"planes": np.stack([np.ascontiguousarray(p.y) for p in pics]), **ins})["crops"]
        b = _run(str(nv12), {"planes": np.stack(i420), **ins, "colour": fixed_point(BT601)})["crops"]
        diff = np.abs(a.astype(int) - b.astype(int))
        # a sample's float position can tip its rounding by one luma level: up to 2 grey levels (255 / 219)
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def _nv12(i420: np.ndarray) -> np.ndarray:
    """NVDEC's layout of an I420 frame: the luma rows, then U and V interleaved."""
    h = i420.shape[0] * 2 // 3
    w, q = i420.shape[1], h * i420.shape[1] // 4
    flat = i420.reshape(-1)
    uv = np.stack([flat[h * w : h * w + q], flat[h * w + q :]], -1).reshape(h // 2, w)
    return np.concatenate([i420[:h], uv])


@pytest.mark.parametrize("matrix", [BT709, BT601_FULL, BT709_FULL])
def test_nv12_crops_of_other_matrices_take_the_chroma(models, batches, tmp_path, matrix):
    """BT.709 (and full-range) NV12 pictures: the graph samples the chroma too and converts with the ``colour``
    input, giving the CPU path's grey (``aligned_grey``: chroma warped at the supersampled luma's pixel centres,
    converted, RGB2GRAY) but for < 0.2 % of pixels by a level or two; read as BT.601 (its luma alone) most
    pixels differ. Every k, the face cut off at the bottom edge. Mutations: the chroma sampled at the crop's
    pixel corners (no ``(k - 1) / 2k``), or without the ``- 0.25`` siting -> fails."""
    path = tmp_path / "nv12.onnx"
    onnx.save(crop_graph(nv12=True), str(path))
    spec = models.classifier.spec
    worst, off, total, as601 = 0, 0, 0, 0
    for pics, i420, dets in batches:
        pics = [YuvPicture(p.y, p.u, p.v, matrix) for p in pics]
        cpu = extract_crops(pics, dets, spec).astype(int)
        feed = {"planes": np.stack([_nv12(x) for x in i420]), **crop_inputs(dets.landmarks, dets.frame_pos)}
        got = _run(str(path), {**feed, "colour": fixed_point(matrix)})["crops"].astype(int)
        luma = _run(str(path), {**feed, "colour": fixed_point(BT601)})["crops"].astype(int)
        diff = np.abs(got - cpu)
        worst, off, total = max(worst, int(diff.max())), off + int((diff > 0).sum()), total + diff.size
        as601 += int((np.abs(luma - cpu) > 0).sum())
    assert worst <= 2 and off / total < 0.002, (worst, off / total)  # measured: 2, 0.014 %
    assert as601 / total > 0.3, as601 / total  # measured: 67 % of pixels


def test_crop_classifier_is_one_graph(models, batches, tmp_path):
    """The prepared crop + classifier graph: the classifier's logits of the graph's crops, and the CPU
    path's labels."""
    spec = models.classifier.spec
    src = resolve_model_file(spec)
    both = OrtRunner(str(prepare_crop_classifier(src, spec)), threads=1)
    plain = OrtRunner(str(prepare_classifier(src, spec)), threads=1)
    onnx.save(crop_graph(), str(tmp_path / "crop.onnx"))
    crops = OrtRunner(str(tmp_path / "crop.onnx"), threads=1)
    agree = total = 0
    for pics, _, dets in batches:
        ins = crop_inputs(dets.landmarks, dets.frame_pos)
        planes = np.stack([np.ascontiguousarray(p.y) for p in pics])
        z = both.infer({"planes": planes, **ins})[both.output_names[0]]
        zc = plain.infer({spec.input.name: crops.infer({"planes": planes, **ins})["crops"]})[plain.output_names[0]]
        np.testing.assert_allclose(z, zc, atol=1e-4)
        zcpu = plain.infer({spec.input.name: extract_crops(pics, dets, spec)})[plain.output_names[0]]
        agree += int((z.argmax(1) == zcpu.argmax(1)).sum())
        total += len(z)
    assert agree >= total - 1, (agree, total)


def test_crop_classifier_refuses_a_float_input(models):
    spec = models.classifier.spec
    src = resolve_model_file(spec)
    cls = onnx.load(str(prepare_classifier(src, spec, uint8_input=False)))
    with pytest.raises(ValueError, match="not uint8"):
        crop_classifier(cls, spec.input.name)
