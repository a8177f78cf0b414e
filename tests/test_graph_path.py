"""The in-graph pre-processing wired into the pipeline (``--preprocess graph``, issue 33), on the CPU
provider: PyAV's frames as host :class:`ferbatch.picture.Nv12Picture`, letterbox and colour
conversion inside the detector graph (:mod:`ferbatch.models.graph_nv12`), aligned grey crops inside
the classifier graph (:mod:`ferbatch.models.graph_crop`). On a GPU node NVDEC's frames take the same
path in GPU memory (``scripts/gpu_check.py``).

Mutations run against these tests (each made the named test fail, then was restored):
- ``Detector._run_nv12`` scaling boxes by the input size instead of the letterboxed size -> test_graph_rows_are_the_host_rows;
- ``Classifier.crops_in_graph`` always False (crops cut on the host) -> test_graph_rows_are_the_host_rows;
- ``Detector._nv12_feed`` always None (the host letterbox) -> test_graph_rows_are_the_host_rows;
- ``ShardWorker.pictures_for`` always True -> test_worker_decodes_nv12_for_graph_models;
- ``ShardWorker.run`` not passing its pictures to ``run_shard`` -> test_worker_decodes_nv12_for_graph_models;
- ``frame_pictures`` keeping frames on the device for a CPU session -> test_frames_stay_on_the_gpu_only_where_the_graphs_can_read_them;
- ``frame_graphs``' auto ignoring ``device_frames`` -> test_graph_preprocessing_needs_onnxruntime_and_a_letterbox;
- ``frame_graphs`` (ferbatch.models.frame_graphs) accepting the OpenVINO backend -> test_graph_preprocessing_needs_onnxruntime_and_a_letterbox;
- ``Nv12Picture.resized_planes`` reading V from U's channel -> test_device_thumbnail_is_the_thumbnail.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
from conftest import FACE_NOFACE, INTEL_2FACE, INTEL_3FACE, WOLFGANG

from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.media.decode import to_image
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.frame_graphs import frame_graphs, frame_pictures
from ferbatch.models.load import load_models, resolve_specs
from ferbatch.picture import Nv12Picture, YuvPicture, stack_nv12
from ferbatch.pipeline import FrameSettings, process_shard
from ferbatch.vision.shots import thumbnail


@pytest.fixture(scope="module")
def graph_models(_cache):
    m = load_models(JobConfig(preprocess="graph"), threads=2)
    yield m
    m.close()


def _rows(path, models, pictures, cfg):
    info, index = probe_video(path)
    return process_shard(Shard("v", str(path), 0, 0, None, index), models, settings=FrameSettings.of(cfg), pictures=pictures)


@pytest.mark.parametrize(
    ("path", "cfg"),
    [(WOLFGANG, JobConfig()), (INTEL_3FACE, JobConfig()), (INTEL_3FACE, JobConfig(between="window")), (FACE_NOFACE, JobConfig())],
    ids=["wolfgang", "intel3", "intel3-windows", "bt709"],
)
def test_graph_rows_are_the_host_rows(models, graph_models, path, cfg):
    """The default job's settings (detection every 3 frames, tracks, interpolated probabilities; and
    windows between full detections, read from the pictures' host planes):
    the same frames, faces per frame, sources, track ids, boxes and landmarks bit for bit (the NV12
    graph makes the host path's detector input exactly); labels equal on >= 99 % of rows (a crop
    pixel in 500 can round the other way). Both graphs ran: the detector counted every full
    detection's frames, and no crop was cut on the host. A BT.709 video (HEVC, 960x540) takes both graphs
    with its own coefficients (its grey crops take the chroma too)."""
    assert graph_models.takes_nv12 and not models.takes_nv12
    host = _rows(path, models, True, cfg)
    before = graph_models.detector.frames_in_graph
    graph = _rows(path, graph_models, "nv12", cfg)
    a, b = host.faces, graph.faces
    assert host.result.status == graph.result.status == "ok"
    assert np.array_equal(host.frame_idx, graph.frame_idx) and np.array_equal(host.face_count, graph.face_count)
    assert np.array_equal(a.source, b.source) and np.array_equal(a.track_id, b.track_id)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.scores, b.scores)
    agree = (a.probs.argmax(1) == b.probs.argmax(1)).mean()
    assert agree >= 0.99, agree
    assert np.abs(a.probs - b.probs).mean() < 0.002
    full_with_faces = len(np.unique(b.frame_pos[b.source == 0]))  # frame indices of rows from full detections
    assert graph_models.detector.frames_in_graph - before >= full_with_faces > 0
    assert graph.result.preprocess == ("graph,host" if cfg.between == "window" else "graph") and host.result.preprocess == "host"
    assert graph.result.stage_seconds["crop"] == 0.0 < host.result.stage_seconds["crop"]


def test_worker_decodes_nv12_for_graph_models(_cache, tmp_path):
    """A worker whose models run the graphs asks the decoder for NV12 pictures (PyAV's, on the CPU)
    and its shard goes through the NV12 graph; one with host pre-processing keeps YUV pictures."""
    from ferbatch.job.workers import ShardWorker

    w = ShardWorker(JobConfig(preprocess="graph", decoder="pyav"), threads=1)
    try:
        assert w.pictures_for("pyav") == "nv12"
        _, index = probe_video(INTEL_2FACE)
        res = w.run(Shard("v", str(INTEL_2FACE), 0, 0, 24, index), str(tmp_path))
        assert res.status == "ok" and res.faces > 0 and w.models.detector.frames_in_graph > 0
    finally:
        w.models.close()
    h = ShardWorker(JobConfig(preprocess="host", decoder="pyav"), threads=1)
    try:
        assert h.pictures_for("pyav") is True and not h.models.takes_nv12
    finally:
        h.models.close()


def test_graph_preprocessing_needs_onnxruntime_and_a_letterbox():
    """``--preprocess graph`` with a backend or detector that cannot take it is refused, naming the
    option; auto never picks it on the CPU; host never."""
    det, _ = resolve_specs(JobConfig())
    assert frame_graphs(JobConfig(preprocess="graph"), "onnxruntime", det)
    assert not frame_graphs(JobConfig(preprocess="auto"), "onnxruntime", det)
    assert not frame_graphs(JobConfig(preprocess="host"), "onnxruntime-cuda", det, device_frames=True)
    # auto: only where NVDEC's frames can stay on the GPU (PyNvVideoCodec and CuPy), never with --decoder pyav
    assert frame_graphs(JobConfig(preprocess="auto"), "onnxruntime-cuda", det, device_frames=True)
    assert not frame_graphs(JobConfig(preprocess="auto"), "onnxruntime-cuda", det, device_frames=False)
    assert not frame_graphs(JobConfig(preprocess="auto", decoder="pyav"), "onnxruntime-cuda", det, device_frames=True)
    assert not frame_graphs(JobConfig(preprocess="auto"), "onnxruntime-cuda", det)  # this machine: no PyNvVideoCodec
    with pytest.raises(ConfigError, match="--preprocess graph"):
        frame_graphs(JobConfig(preprocess="graph"), "openvino", det)
    ultra, _ = resolve_specs(JobConfig(detector="ultraface-rfb-320"))
    with pytest.raises(ConfigError, match="letterbox"):
        frame_graphs(JobConfig(preprocess="graph", detector="ultraface-rfb-320"), "onnxruntime", ultra)
    with pytest.raises(ConfigError, match="--preprocess"):
        JobConfig(preprocess="gpu")


def test_frames_stay_on_the_gpu_only_where_the_graphs_can_read_them():
    """What a shard is decoded to: device NV12 only for NVDEC on onnxruntime-cuda with CuPy; host NV12
    with --preprocess graph otherwise (a CPU session cannot read GPU memory); the host path's pictures
    for models without the graphs and for auto's PyAV videos."""
    assert frame_pictures(True, "auto", "nvdec", "onnxruntime-cuda", True) == "nv12-device"
    assert frame_pictures(True, "graph", "nvdec", "onnxruntime-cuda", True) == "nv12-device"
    assert frame_pictures(True, "graph", "nvdec", "onnxruntime", True) == "nv12"
    assert frame_pictures(True, "graph", "nvdec", "onnxruntime-cuda", False) == "nv12"
    assert frame_pictures(True, "graph", "pyav", "onnxruntime-cuda", True) == "nv12"
    assert frame_pictures(True, "auto", "pyav", "onnxruntime-cuda", True) is True
    assert frame_pictures(False, "graph", "nvdec", "onnxruntime-cuda", True) is True


@pytest.fixture(scope="module")
def frame():
    with av.open(str(WOLFGANG)) as c:
        return next(c.decode(video=0))


def test_nv12_picture_is_the_yuv_picture(frame):
    """PyAV's frame as an NV12 picture: the YUV picture's pixels, its host planes, RGB and grey."""
    yuv = to_image(frame, pictures=True)
    nv = to_image(frame, pictures="nv12")
    assert isinstance(yuv, YuvPicture) and isinstance(nv, Nv12Picture) and not nv.on_device
    assert nv.shape == yuv.shape and nv.nv12.shape == (540, 640)
    fresh = Nv12Picture(nv.nv12)  # no cached planes: de-interleaved from the array
    assert np.array_equal(fresh.rgb(), yuv.rgb()) and np.array_equal(fresh.gray(10, 20, 90, 120), yuv.gray(10, 20, 90, 120))
    assert stack_nv12([nv, fresh]).shape == (2, 540, 640)
    with pytest.raises(ValueError, match="one size"):
        stack_nv12([nv, Nv12Picture(nv.nv12[:270, :320].copy())])
    with pytest.raises(ValueError, match="Nv12Picture"):
        Nv12Picture(nv.nv12[:-1])


def test_device_thumbnail_is_the_thumbnail():
    """What a device frame's shot thumbnail is made from: its planes resized where they lie
    (``resize_plane``, run here on NumPy arrays, the same code CuPy runs) then converted, equal to the
    host path's ``resized_rgb`` bit for bit, at the thumbnail's size and at sizes scaled up."""
    with av.open(str(WOLFGANG)) as c:
        pics = [to_image(f, pictures="nv12") for _, f in zip(range(3), c.decode(video=0), strict=False)]
    for p in pics:
        bare = Nv12Picture(p.nv12)  # no cached host planes
        for w, h in ((96, 54), (512, 288), (800, 450)):
            assert np.array_equal(bare.resized_planes(w, h).rgb(), p.host().resized_rgb(w, h)), (w, h)
        assert np.array_equal(thumbnail(bare), thumbnail(p.host()))
