"""TensorRT path: CPU-side parts here (backend choice, fp16 graphs, engine keys); engine building and
ORT/TRT parity run only where a GPU with tensorrt and pycuda is present."""

import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import WOLFGANG, read_frames

from ferbatch.errors import ConfigError
from ferbatch.models.load import resolve_backend
from ferbatch.models.trt_plans import EngineKey, gpu_available

HAS_GPU, WHY = gpu_available()
gpu = pytest.mark.skipif(not HAS_GPU, reason=f"needs an NVIDIA GPU with tensorrt and pycuda: {WHY}")


def test_auto_backend_says_why_it_picked():
    backend, reason = resolve_backend("auto")
    if HAS_GPU:
        assert backend == "tensorrt"
    else:
        assert backend == "onnxruntime" and reason
        with pytest.raises(ConfigError, match="tensorrt"):
            resolve_backend("tensorrt")


def test_auto_on_a_machine_without_a_gpu_says_so_briefly(monkeypatch):
    """No GPU visible: "no GPU", not which GPU packages are missing (that is for a GPU machine)."""
    from ferbatch.models.load import gpu_visible

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not gpu_visible()
    backend, reason = resolve_backend("auto")
    if backend == "onnxruntime":  # (a GPU this process already holds is still used)
        assert reason == "no GPU"


def test_import_never_needs_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    assert resolve_backend("onnxruntime") == ("onnxruntime", "requested")
    ok, why = gpu_available()
    assert not ok and "ferbatch[gpu]" in why


def test_fp16_graphs_agree_with_fp32_on_real_frames(_cache):
    from ferbatch.models.graphs import prepare_classifier, prepare_detector
    from ferbatch.models.registry import load_registry, resolve_model_file
    from ferbatch.models.runners.onnxruntime import OrtRunner
    from ferbatch.vision.classify import Classifier, extract_crops
    from ferbatch.vision.detect import Detector

    reg = load_registry()
    ds, cs = reg.get("ultraface-rfb-320"), reg.get("mini-xception-fer2013")
    frames = read_frames(WOLFGANG)[::60]
    det = {p: Detector(OrtRunner(prepare_detector(resolve_model_file(ds), ds, precision=p), threads=2), ds) for p in ("fp32", "fp16")}
    a, b = det["fp32"].detect(frames), det["fp16"].detect(frames)
    assert len(a) == len(b) == len(frames)
    assert np.abs(a.boxes - b.boxes).max() < 2.0 and np.abs(a.scores - b.scores).max() < 1e-3
    crops = extract_crops(frames, a, cs)
    pa, pb = (
        Classifier(OrtRunner(prepare_classifier(resolve_model_file(cs), cs, precision=p)), cs).classify(crops) for p in ("fp32", "fp16")
    )
    assert np.nanmax(np.abs(pa - pb)) < 1e-2
    assert (np.nanargmax(pa, 1) == np.nanargmax(pb, 1)).all()


def test_engine_key_changes_with_anything_that_makes_a_plan_unportable():
    k = EngineKey(
        "ultraface-rfb-320",
        "ab" * 32,
        "fp16",
        "input",
        ((1, 3, 240, 320), (32, 3, 240, 320), (64, 3, 240, 320)),
        "11.4.0",
        13,
        "NVIDIA H100",
        "9.0",
    )
    assert k.file_stem().startswith("ultraface-rfb-320-fp16-b64-trt11.4.0-sm90-")
    for change in (
        {"gpu": "NVIDIA A100"},
        {"compute_capability": "8.0"},
        {"trt": "10.16.0"},
        {"precision": "fp32"},
        {"onnx_sha256": "cd" * 32},
        {"cuda_major": 12},
        {"tf32": False},
    ):
        assert replace(k, **change).digest() != k.digest(), change


@gpu
def test_tensorrt_rows_match_onnxruntime(tmp_path, _cache):
    from ferbatch.config import JobConfig
    from ferbatch.dataset.store import open_table
    from ferbatch.job import run_job

    outs = {}
    for backend in ("onnxruntime", "tensorrt"):
        outs[backend] = tmp_path / backend
        run_job(WOLFGANG, outs[backend], JobConfig(backend=backend, workers=1), use_ray=False)
    a = open_table(outs["onnxruntime"], "faces").sort_by("frame_idx")
    b = open_table(outs["tensorrt"], "faces").sort_by("frame_idx")
    assert a.num_rows == b.num_rows
    np.testing.assert_allclose(a["x1"].to_numpy(), b["x1"].to_numpy(), atol=1.0)
    np.testing.assert_allclose(a["prob_happiness"].to_numpy(), b["prob_happiness"].to_numpy(), atol=1e-2)


@gpu
def test_stale_plan_is_rebuilt(tmp_path, _cache):
    import json

    from ferbatch.models.graphs import prepare_classifier
    from ferbatch.models.registry import load_registry, resolve_model_file
    from ferbatch.models.trt_plans import build_or_load_plan, engine_key, engine_paths

    spec = load_registry().get("mini-xception-fer2013")
    g = prepare_classifier(resolve_model_file(spec), spec)
    key = engine_key(spec.name, g, "fp32", "input", (1, 64, 64), 8)
    plan = build_or_load_plan(g, key, tmp_path)
    _, sidecar = engine_paths(key, tmp_path)
    d = json.loads(sidecar.read_text())
    d["trt"] = "0.0.0"
    sidecar.write_text(json.dumps(d))
    before = plan.stat().st_mtime_ns
    build_or_load_plan(g, key, tmp_path)
    assert plan.stat().st_mtime_ns != before
