"""Runners under threads (issue #30 item 5): two threads over one runner of each CPU backend give
the single-threaded outputs, each thread on the runner's ``clone()`` where the runner is not
thread-safe (an OpenVINO infer request is one call's state: shared, it gave wrong outputs and
``cannot reshape array`` errors), and a two-worker in-process job gives the one-worker rows."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import INTEL_2FACE, INTEL_3FACE, SINGLE_FACE

from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table
from ferbatch.job import run_job
from ferbatch.models.load import load_models

NO_OPENVINO = importlib.util.find_spec("openvino") is None
BACKENDS = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(NO_OPENVINO, reason="the openvino extra is not installed"))]
ROUNDS = 6  # passes of each thread over the feeds: 2 x 6 x 24 = 288 concurrent calls per runner


@pytest.fixture(scope="module", params=BACKENDS)
def models(request, _cache):
    m = load_models(JobConfig(backend=request.param), threads=1)
    yield m
    m.close()


def feeds(runner, spec, n: int = 24) -> list[dict[str, np.ndarray]]:
    """``n`` uint8 NHWC batches of 1 to 4 images for ``runner``; for the detector two frame sizes
    (its input follows the frame), so two concurrent calls differ in shape as well as in values."""
    rng = np.random.default_rng(7)
    inp = spec.input
    sizes = [(inp.height, inp.width), (inp.height // 2, inp.width // 2)] if spec.kind == "detector" else [(inp.height, inp.width)]
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        out.append({runner.input_names[0]: rng.integers(0, 256, (1 + i % 4, h, w, inp.channels), dtype=np.uint8)})
    return out


def test_the_runner_says_whether_threads_may_share_it(models):
    for r in (models.detector.runner, models.classifier.runner):
        assert r.thread_safe == (models.backend == "onnxruntime")
        twin = r.clone()
        assert (twin is r) == r.thread_safe
        assert twin.input_names == r.input_names and twin.output_names == r.output_names
        if twin is not r:
            twin.close()
    other = models.for_thread()
    assert (other is models) == models.thread_safe
    if other is not models:  # its own runners over the same loaded models, wrapped alike
        assert other.detector.runner is not models.detector.runner and type(other.detector) is type(models.detector)
        other.close()
        assert models.detector.detect([np.zeros((120, 160, 3), np.uint8)]) is not None  # the originals still run


@pytest.mark.parametrize("which", ["detector", "classifier"])
def test_two_threads_over_one_runner_give_the_single_threaded_outputs(models, which):
    runner = getattr(models, which).runner
    batches = feeds(runner, getattr(models, which).spec)
    expected = [runner.infer(f) for f in batches]
    per_thread = [runner, runner.clone()]  # the same runner when it is thread-safe
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(k: int) -> None:
        r = per_thread[k]
        order = np.random.default_rng(k).permutation(np.tile(np.arange(len(batches)), ROUNDS))
        start.wait()
        try:
            for i in order:
                got = r.infer(batches[i])
                bad = [
                    n
                    for n, want in expected[i].items()
                    if got[n].shape != want.shape or not np.allclose(got[n], want, rtol=1e-5, atol=1e-5)
                ]
                if bad:
                    wrong.append(f"thread {k} feed {i} outputs {bad}")
        except BaseException as e:  # a shared request: "cannot reshape array of size ..."
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if per_thread[1] is not runner:
        per_thread[1].close()
    assert not errors, f"{runner.name}: {errors[0]!r}"
    assert not wrong, f"{runner.name}: {len(wrong)} of {2 * ROUNDS * len(batches)} calls gave other outputs, e.g. {wrong[:3]}"


def _rows(out):
    t = open_table(out, "faces").sort_by([("video_id", "ascending"), ("frame_idx", "ascending"), ("face_idx", "ascending")])
    return t.select(["frame_idx", "face_idx", "x1", "y1", "x2", "y2", "det_score", "emotion_prob"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_two_worker_in_process_job_gives_the_one_worker_rows(tmp_path, backend, _cache):
    clips = [str(INTEL_3FACE), str(INTEL_2FACE), str(SINGLE_FACE)]  # 0 to 3 faces a frame: classifier batches differ
    one = run_job(clips, tmp_path / "one", JobConfig(workers=1, backend=backend), use_ray=False, shard_frames=0)
    two = run_job(clips, tmp_path / "two", JobConfig(workers=2, backend=backend), use_ray=False, shard_frames=8)
    assert one.ok == two.ok == 3 and one.frames == two.frames == 41 + 56 + 72 and two.runner.startswith("in-process")
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert a.num_rows == b.num_rows > 0
    for c in a.column_names:
        assert pc.max(pc.abs(pc.subtract(pc.cast(a[c], "float64"), pc.cast(b[c], "float64")))).as_py() <= 1e-3, c


class _Models:
    def __init__(self, log: list[str], name: str):
        self.log, self.name = log, name

    def close(self) -> None:
        self.log.append(f"close {self.name}")


class _Worker:
    """A worker whose runner is one call's state: two calls at once on one worker are a failure."""

    def __init__(self, log: list[str], name: str = "w0"):
        self.log, self.name, self.busy = log, name, False
        self.models = _Models(log, name)
        self.twins = 0

    def ping(self) -> str:
        return "fake (test)"

    def for_thread(self) -> _Worker:
        self.twins += 1
        return _Worker(self.log, f"w{self.twins}")

    def run(self, item: int) -> str:
        assert not self.busy, f"{self.name} ran two calls at once"
        self.busy = True
        try:
            threading.Event().wait(0.02)  # long enough for the other thread's call to overlap
            return self.name
        finally:
            self.busy = False


def test_the_in_process_pool_gives_each_concurrent_call_its_own_worker():
    from ferbatch.job.workers import LocalPool

    log: list[str] = []
    pool = LocalPool(lambda: _Worker(log), n=3)
    results = list(pool.map("run", range(30)))
    assert all(err is None for _, _, err in results), [e for _, _, e in results if e]
    assert len({name for _, name, _ in results}) == 3  # the loaded worker and two for other threads
    pool.close()
    assert log == ["close w1", "close w2", "close w0"]  # the threads' clones before the models they share
