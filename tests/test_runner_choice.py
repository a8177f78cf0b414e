"""Small local jobs run in-process on worker threads (no Ray start-up) and give the same rows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import WOLFGANG
from test_faults import _assert_same_rows

from ferbatch.config import JobConfig
from ferbatch.job import run_job
from ferbatch.job.inputs import scan_inputs
from ferbatch.job.run import LOCAL_MAX_FRAMES, LOCAL_MAX_VIDEOS, wants_ray
from ferbatch.media.probe import VideoIndex
from ferbatch.media.shards import Shard


def test_small_job_runs_in_process_on_two_threads_with_the_same_rows(tmp_path, wolfgang_288, reference_wolfgang_288):
    """WolfgangLanger's first 288 frames (conftest ``wolfgang_288``) in 72-frame shards on two threads."""
    s = run_job(wolfgang_288, tmp_path / "out", JobConfig(workers=2, detect_every=1), shard_frames=72)
    assert s.runner.startswith("in-process") and "288" in s.runner
    assert s.ok == 1 and s.frames == 288
    assert 0 < s.startup_seconds < s.seconds
    _assert_same_rows(tmp_path / "out", reference_wolfgang_288)


def test_ray_is_chosen_for_a_cluster_or_a_big_job():
    tasks = scan_inputs(WOLFGANG).tasks
    assert wants_ray("auto", tasks, [])[0]
    assert not wants_ray(None, tasks, [])[0]
    assert wants_ray(None, tasks * (LOCAL_MAX_VIDEOS + 1), [])[0]  # many videos


def _shards(frames: int, n: int) -> list[Shard]:
    """``n`` planned shards of ``frames`` frames each (one video's index of ``frames * n`` packets)."""
    pts = np.arange(frames * n, dtype=np.int64)
    index = VideoIndex(pts=pts, keyframes=pts[::frames], time_base=Fraction(1, 25))
    return [Shard("v", "v.mp4", i, i * frames, (i + 1) * frames, index) for i in range(n)]


def test_a_resumed_job_is_sized_by_the_frames_of_its_shards():
    tasks = scan_inputs(WOLFGANG).tasks
    small = _shards(100, 4)
    use_ray, why = wants_ray(None, [], small)
    assert not use_ray and "400 frames" in why and "4 resumed shards" in why
    assert not wants_ray(None, tasks, small)[0]  # 400 resumed + 472 new frames
    assert wants_ray(None, [], _shards(LOCAL_MAX_FRAMES // 4 + 1, 4))[0]
    assert wants_ray(None, tasks, _shards(LOCAL_MAX_FRAMES - 100, 1))[0]  # resumed + new frames over the limit
    assert wants_ray("auto", [], small)[0]


def test_a_small_resumed_job_runs_in_process_with_the_same_rows(tmp_path, wolfgang_288, reference_wolfgang_288):
    out = tmp_path / "out"

    def stop(kind, done, total):
        if kind == "frames" and done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(wolfgang_288, out, JobConfig(workers=1, detect_every=1), use_ray=False, shard_frames=72, progress=stop)
    s = run_job(wolfgang_288, out, JobConfig(workers=1, detect_every=1), shard_frames=72)  # the runner left to the job
    assert s.runner.startswith("in-process") and "resumed shards" in s.runner, s.runner
    assert s.ok == 1 and 0 < s.frames < 288  # only the missing shards ran
    _assert_same_rows(out, reference_wolfgang_288)
