"""GPU-node logic that runs on any machine: worker sizing as a pure function, check-engines on the
CPU (ONNX Runtime fp32 vs fp16), and GPU backends refusing clearly where there is no GPU."""

from __future__ import annotations

import json

import pytest
from conftest import INTEL_2FACE
from typer.testing import CliRunner

from ferbatch.checks import check_engines
from ferbatch.cli import app
from ferbatch.config import JobConfig
from ferbatch.errors import ConfigError
from ferbatch.job.sizing import NodeResources, plan_placement
from ferbatch.models.load import resolve_backend


@pytest.mark.parametrize(
    "node,backend,kw,expect",
    [
        # a 16-core, 1-GPU node: 15 decoding workers share the GPU (one core for the driver)
        (NodeResources(16, 1), "auto", {}, (15, 1.0, round(1 / 15, 4), 1, True)),
        (NodeResources(16, 1), "tensorrt", {"workers_per_gpu": 4}, (4, 1.0, 0.25, 1, True)),
        (NodeResources(64, 4), "onnxruntime-cuda", {}, (60, 1.0, round(1 / 15, 4), 1, True)),
        (NodeResources(8, 2), "auto", {"workers": 3}, (3, 1.0, 0.5, 1, True)),
        # CPU: one single-threaded worker per core, never more workers than known items
        (NodeResources(2, 0), "auto", {}, (2, 1.0, 0.0, 1, False)),
        (NodeResources(8, 0), "onnxruntime", {"items": 3}, (3, 1.0, 0.0, 2, False)),
        (NodeResources(16, 1), "onnxruntime", {}, (16, 1.0, 0.0, 1, False)),  # CPU asked on a GPU node: no GPU taken
    ],
)
def test_placement(node, backend, kw, expect):
    p = plan_placement(node, backend, **kw)
    assert (p.workers, p.cpus_per_worker, p.gpus_per_worker, p.ort_threads, p.on_gpu) == expect


@pytest.mark.parametrize("backend", ["tensorrt", "onnxruntime-cuda"])
def test_gpu_backend_without_gpu_is_a_clear_error(backend):
    with pytest.raises(ConfigError, match=f"--backend {backend} .*no GPU"):
        plan_placement(NodeResources(32, 0), backend)


def test_batch_sizes_follow_the_backend():
    assert JobConfig().batches("onnxruntime") == (8, 64)
    assert JobConfig().batches("tensorrt") == (64, 512) == JobConfig().batches("onnxruntime-cuda")
    assert JobConfig(detect_batch=16).batches("tensorrt") == (16, 512)


def test_onnxruntime_cuda_refused_clearly_on_this_machine(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's CUDA provider")
    with pytest.raises(ConfigError, match="onnxruntime-cuda .*no CUDA provider"):
        resolve_backend("onnxruntime-cuda")
    assert resolve_backend("auto")[0] == "onnxruntime"
    res = CliRunner().invoke(app, ["run", str(INTEL_2FACE), "--out", str(tmp_path / "out"), "--no-ray", "--backend", "onnxruntime-cuda"])
    assert res.exit_code == 2 and "no CUDA provider" in res.output


def test_check_engines_fp16_against_fp32_on_the_cpu():
    rep = check_engines(JobConfig(backend="onnxruntime"), JobConfig(backend="onnxruntime", precision="fp16"), INTEL_2FACE, frames=24)
    assert rep.passed, rep
    assert rep.faces_reference >= 40 and rep.black_frames_empty and rep.max_batch_diff <= 1e-4
    assert rep.label_agreement >= 0.97


def test_check_engines_catches_a_different_model():
    # another detector is not "the same engine": the check must say so
    rep = check_engines(
        JobConfig(backend="onnxruntime"), JobConfig(backend="onnxruntime", detector="ultraface-slim-320"), INTEL_2FACE, frames=24
    )
    assert not rep.passed and rep.max_score_diff > 0.02


def test_check_engines_cli_json():
    res = CliRunner().invoke(app, ["check-engines", "--video", str(INTEL_2FACE), "--frames", "8", "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["passed"] and rep["frames"] == 8 and rep["black_frames"] == 4


def test_gpu_check_runs_its_cpu_steps(tmp_path):
    """The GPU check's harness runs where there is no GPU (CPU backend, tiny clips): clips, decode-only,
    the detector profile, the device-side graphs, end-to-end workers through the job's ShardWorker and the real job
    under Ray, results merged into one JSON across calls (as a short GPU lease splits them)."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import DATA

    script = Path(__file__).resolve().parent.parent / "scripts/gpu_check.py"
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--steps" in res.stdout
    out, work = tmp_path / "r.json", tmp_path / "w"
    base = [sys.executable, str(script), "--data", str(DATA), "--out", str(out), "--work", str(work), "--counts", "1", "--frames", "8"]
    for steps in ("clips,decode,nvdec_exact", "profile,device_graphs,e2e,ray"):
        res = subprocess.run(
            [*base, "--steps", steps, "--backend", "onnxruntime", "--decoders", "pyav,nvdec"], capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["clip_frames"] == 8 and rep["decode_fps"]["720p"]["1"] > 0
    e2e = rep["e2e"]["720p"]["1"]
    assert e2e["frames"] == 8 and e2e["faces"] > 0 and e2e["fps"] > 0, e2e
    assert rep["profile_detect_ms_per_frame"]["720p"]["detect_total"] > 0
    dev = rep["device_graphs"]["720p"]  # the device-side graphs on the CPU provider against the host path
    assert dev["provider"] == "cpu" and dev["nv12_detector"]["same_faces"] and dev["nv12_detector"]["box_err_px_median"] <= 1, dev
    assert dev["crop"]["faces"] > 0 and dev["crop"]["labels_equal"] >= 0.9 and dev["crop"]["nv12_labels_equal"] >= 0.9, dev
    assert len(rep["dates"]) == 2
    # NVDEC (#33): without PyNvVideoCodec the comparison is skipped and the NVDEC workers refuse to start, both saying why
    assert "PyNvVideoCodec is not installed" in rep["nvdec_exact"]["skipped"]
    assert "--decoder nvdec | not usable on this machine: PyNvVideoCodec is not installed" in rep["e2e_nvdec"]["720p"]["1"]["error"]
    assert e2e["decoder"] == "pyav"
    ray = rep["ray"]["720p"]["1"]  # two remuxed copies of the clip (same frames, other content hash): both processed
    assert ray["videos_ok"] == 2 and ray["frames"] == 16 and ray["faces"] == 2 * e2e["faces"] and ray["runner"].startswith("ray"), ray
    assert ray["used"] == {"decoder": ["pyav"], "preprocess": ["host"]}, ray  # what ran, from the videos table


def test_gpu_payload_round_trip(tmp_path):
    """The packages a GPU lease carries (scripts/gpu_payload.py): packed into pieces here, taken call by call there.
    Pieces that arrive in separate calls complete the set; a wheel's ``.data/platlib`` lands at the root; members
    ferbatch never loads are dropped; a damaged piece is refused and removed so the next call can carry it again."""
    import importlib.util
    import os
    import zipfile
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_payload", Path(__file__).resolve().parent.parent / "scripts/gpu_payload.py")
    gp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gp)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    blob = os.urandom(6000)  # incompressible: several pieces of 2,000 bytes
    with zipfile.ZipFile(wheels / "alpha-1.0-py3-none-any.whl", "w") as z:
        z.writestr("alpha/__init__.py", "VALUE = 7\n")
        z.writestr("alpha/blob.bin", blob)
        z.writestr("alpha-1.0.dist-info/METADATA", "Name: alpha\n")
    with zipfile.ZipFile(wheels / "ray-9.0-cp312-cp312-manylinux_2_28_x86_64.whl", "w") as z:
        z.writestr("ray/__init__.py", "")
        z.writestr("ray/jars/ray_dist.jar", b"x" * 100)
        z.writestr("ray-9.0.data/platlib/ray_native.py", "N = 1\n")
        z.writestr("ray-9.0.data/scripts/ray", "#!/bin/sh\n")
    shared = tmp_path / "shared_models"
    shared.mkdir()
    (shared / "m.onnx").write_bytes(b"onnx")
    out = tmp_path / "carry"
    m = gp.pack(sorted(wheels.glob("*.whl")), out, piece_bytes=2000, shared={"shared/models": shared})
    names = [p["name"] for p in m["pieces"]]
    assert len(names) >= 3 and m["dropped_bytes"] >= 100 + len("#!/bin/sh\n")
    store, site = tmp_path / "store", tmp_path / "site"
    assert gp.take(tmp_path, store, site) == 2  # no manifest carried
    # the first call carries the manifest and half the pieces
    first = tmp_path / "call1"
    first.mkdir()
    (first / "payload.json").write_text((out / "payload.json").read_text())
    for n in names[: len(names) // 2]:
        (first / n).write_bytes((out / n).read_bytes())
    assert gp.take(first, store, site) == 3 and not site.exists()
    # a damaged piece is refused and removed
    second = tmp_path / "call2"
    second.mkdir()
    (second / "payload.json").write_text((out / "payload.json").read_text())
    for n in names[len(names) // 2 :]:
        (second / n).write_bytes((out / n).read_bytes())
    bad = second / names[len(names) // 2]  # the call's first piece damaged: the pieces after it are kept all the same
    bad.write_bytes(bad.read_bytes()[:-1] + b"?")
    assert gp.take(second, store, site) == 1 and not (store / bad.name).exists()
    assert all((store / n).exists() for n in names if n != bad.name) and not list(second.glob("payload.tar.xz.*"))
    (second / bad.name).write_bytes((out / bad.name).read_bytes())  # the next call carries only it
    site.mkdir()
    (site / "stale.py").write_text("")  # an older payload's file
    assert gp.take(second, store, site) == 0 and not (site / "stale.py").exists()
    assert (site / "alpha/blob.bin").read_bytes() == blob and (site / "ray_native.py").read_text() == "N = 1\n"
    assert (site / "shared/models/m.onnx").read_bytes() == b"onnx" and (site / "alpha-1.0.dist-info/METADATA").exists()
    assert not (site / "ray/jars").exists() and not list(site.rglob("ray-9.0.data"))
    assert gp.take(second, store, site) == 0  # complete: a later call does nothing
    assert f"export PYTHONPATH={site}:{Path(__file__).resolve().parent.parent}" in gp.env(site)  # the packages, then ferbatch
    assert "export PYTHONPATH='/tmp/a b:" in gp.env(Path("/tmp/a b"))  # quoted for the shell
