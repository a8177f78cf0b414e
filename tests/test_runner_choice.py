"""Small local jobs run in-process on worker threads (no Ray start-up) and give the same rows."""

from __future__ import annotations

from conftest import WOLFGANG
from test_faults import _assert_same_rows

from ferbatch.config import JobConfig
from ferbatch.job import run_job
from ferbatch.job.inputs import scan_inputs
from ferbatch.job.run import LOCAL_MAX_VIDEOS, wants_ray


def test_small_job_runs_in_process_on_two_threads_with_the_same_rows(tmp_path, reference_wolfgang):
    s = run_job(WOLFGANG, tmp_path / "out", JobConfig(workers=2), shard_frames=100)
    assert s.runner.startswith("in-process") and "472" in s.runner
    assert s.ok == 1 and s.frames == 472
    assert 0 < s.startup_seconds < s.seconds
    _assert_same_rows(tmp_path / "out", reference_wolfgang)


def test_ray_is_chosen_for_a_cluster_or_a_big_job():
    tasks = scan_inputs(WOLFGANG).tasks
    assert wants_ray("auto", tasks, 0)[0]
    assert wants_ray(None, tasks, 3)[0]  # resuming: shards already planned for Ray's workers
    assert not wants_ray(None, tasks, 0)[0]
    assert wants_ray(None, tasks * (LOCAL_MAX_VIDEOS + 1), 0)[0]  # many videos
