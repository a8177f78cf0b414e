"""Shared fixtures: the real models and clips from ../shared, one embedded Ray per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FERBATCH_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
os.environ.setdefault("FERBATCH_MODEL_MIRROR", str(SHARED / "models"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # tests that import onnxruntime themselves send nothing either

WOLFGANG = DATA / "videos_faces/pyfeat/WolfgangLanger_Pexels.mp4"
NO_FACE = DATA / "videos_faces/pyfeat/no_face.mp4"
FACE_NOFACE = DATA / "videos_faces/pyfeat/face_noface.mov"
SINGLE_FACE = DATA / "videos_faces/pyfeat/single_face.mp4"
INTEL_2FACE = DATA / "videos_faces/intel_sample_videos_mp4/head-pose-face-detection-female-and-male.mp4"
INTEL_3FACE = DATA / "videos_faces/intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4"
ASTRONAUT = DATA / "smoke_images/skimage_astronaut.png"
MULTI_FACE = DATA / "face_detection_images/pyfeat/multi_face.jpg"


def pytest_configure(config):
    if not (SHARED / "models").is_dir() or not DATA.is_dir():
        raise pytest.UsageError(f"the tests need the real models and clips in {SHARED} (set FERBATCH_SHARED)")


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Prepared graphs go to a per-session cache, so tests never depend on a user's cache."""
    os.environ["FERBATCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def models(_cache):
    from ferbatch.config import JobConfig
    from ferbatch.models.load import load_models

    m = load_models(JobConfig(), threads=2)
    yield m
    m.close()


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray runtime for the whole test session (start-up costs ~10 s), shut down after
    the last test that uses it (an idle Ray keeps using CPU)."""
    ray = pytest.importorskip("ray")
    from ferbatch.job.workers import init_ray

    init_ray(None, 2)
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    users = [it.nodeid for it in items if "ray_session" in getattr(it, "fixturenames", ())]
    config.stash[_LAST_RAY_USER] = users[-1] if users else None


_LAST_RAY_USER = pytest.StashKey[str | None]()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """The session's Ray stops after its last user's teardown (the fixture's own teardown at the
    session's end then finds it stopped)."""
    if item.nodeid == item.config.stash.get(_LAST_RAY_USER, None):
        import sys

        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def read_frames(path):
    """Decode a clip with the PyAV default settings: list of RGB arrays (independent of ferbatch)."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


@pytest.fixture(scope="session")
def reference_wolfgang(tmp_path_factory, _cache):
    """An uninterrupted in-process run over WolfgangLanger_Pexels.mp4 (one shard): the rows to compare with.
    ``detect_every=1``: rows that do not depend on the shard plan, so runs cut into other shards
    (faults, resumes, two threads) must give them exactly (at N > 1 a shard's first frame gets a
    full detection: rows near shard starts differ slightly, tests/test_time.py measures how much)."""
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    out = tmp_path_factory.mktemp("ref_wolfgang")
    s = run_job(WOLFGANG, out, JobConfig(workers=1, detect_every=1), use_ray=False, shard_frames=0)
    assert s.ok == 1 and s.frames == 472
    return out


@pytest.fixture(scope="session")
def wolfgang_288(tmp_path_factory):
    """WolfgangLanger_Pexels.mp4's first 288 frames, its packets copied (the same pictures): four
    keyframe-aligned 72-frame shards, for tests whose property does not need the whole clip."""
    from badinputs import cut_mp4

    return cut_mp4(WOLFGANG, tmp_path_factory.mktemp("cut") / "wolfgang_288.mp4", 288)


@pytest.fixture(scope="session")
def reference_wolfgang_288(tmp_path_factory, wolfgang_288, _cache):
    """``reference_wolfgang`` over :func:`wolfgang_288`: the rows that runs of that clip cut into
    other shards (faults, resumes, two threads) must give exactly."""
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    out = tmp_path_factory.mktemp("ref_wolfgang_288")
    s = run_job(wolfgang_288, out, JobConfig(workers=1, detect_every=1), use_ray=False, shard_frames=0)
    assert s.ok == 1 and s.frames == 288
    return out
