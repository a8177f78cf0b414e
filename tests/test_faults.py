"""Faults: a worker killed mid-shard and an interrupted driver lose no row and duplicate none.

The runs use ``--detect-every 1`` so their rows are those of the one-shard reference whatever the
shard plan (at N > 1 rows near shard starts depend on the plan: tests/test_time.py). The clip is
WolfgangLanger's first 288 frames (conftest ``wolfgang_288``): four 72-frame shards."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table
from ferbatch.job import run_job

COLS = ["frame_idx", "pts_ms", "face_idx", "x1", "y1", "x2", "y2", "det_score", "prob_happiness", "prob_neutral"]


def _rows(out):
    faces = open_table(out, "faces").sort_by([("frame_idx", "ascending"), ("face_idx", "ascending")])
    frames = open_table(out, "frames").sort_by("frame_idx")
    return faces, frames


def _assert_same_rows(out, ref, frames=288):
    (fa, fr), (ra, rr) = _rows(out), _rows(ref)
    assert fr["frame_idx"].to_pylist() == rr["frame_idx"].to_pylist() == list(range(frames))
    assert fr["face_count"].to_pylist() == rr["face_count"].to_pylist()
    assert fa.num_rows == ra.num_rows
    for c in COLS:
        np.testing.assert_allclose(fa[c].to_numpy(), ra[c].to_numpy(), atol=1e-3, err_msg=c)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(clip, out, *extra: str) -> list[str]:
    """``ferbatch run`` over ``clip`` in 60-frame shards at ``--detect-every 1`` (module docstring), quiet."""
    args = f"run {clip} --out {out} --shard-frames 60 --detect-every 1 -q".split()
    return [sys.executable, "-m", "ferbatch", *args, *extra]


def _worker_pids(method="ShardWorker.run"):
    """PIDs of this test session's own Ray workers busy in ``method`` (Ray sets the process title to
    ray::CLASS.METHOD): only descendants of this process, never another run's workers."""
    import psutil

    pids = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if f"ray::{method}" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def test_worker_killed_mid_shard(ray_session, tmp_path, wolfgang_288, reference_wolfgang_288):
    out = tmp_path / "out"
    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            parts = list((out / "_staging").glob("*/frames-*.parquet"))
            pids = _worker_pids()
            if parts and pids:  # some shards done, a worker busy in another: kill it mid-shard
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    s = run_job(wolfgang_288, out, JobConfig(workers=2, detect_every=1), use_ray=True, shard_frames=60)
    t.join()
    assert killed, "no worker was busy long enough to be killed"
    assert s.retried >= 1 and s.ok == 1 and s.failed == 0
    _assert_same_rows(out, reference_wolfgang_288)


def test_interrupted_driver_resumes_only_missing_shards(tmp_path, wolfgang_288, reference_wolfgang_288):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = _cli(wolfgang_288, out, "--workers", "1")
    # SIGINT back to its default in the child: a signal ignored by this process (Ray's driver set-up
    # can leave SIGINT ignored) would be inherited, and Python keeps an inherited SIG_IGN for SIGINT
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list((out / "_staging").glob("*/frames-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    output, _ = p.communicate(timeout=60)
    assert p.returncode == 130, output
    assert "resume" in output
    done_before = len(list((out / "_staging").glob("*/frames-*.parquet")))
    assert 2 <= done_before < 4
    s = run_job(wolfgang_288, out, JobConfig(workers=1, detect_every=1), use_ray=False, shard_frames=60)
    assert 0 < s.frames < 288 and s.ok == 1  # only the missing shards ran
    _assert_same_rows(out, reference_wolfgang_288)


def test_sigterm_is_an_interrupt(tmp_path, wolfgang_288, reference_wolfgang_288):
    out = tmp_path / "out"
    cmd = _cli(wolfgang_288, out, "--no-ray")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "_staging").glob("*/frames-*.parquet")):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    output, _ = p.communicate(timeout=60)
    assert p.returncode == 130, output
    (row,) = open_table(out, "videos").to_pylist()
    assert row["status"] == "incomplete" and "rerun" in row["error"]
    s = run_job(wolfgang_288, out, JobConfig(workers=1, detect_every=1), use_ray=False, shard_frames=60)
    assert s.ok == 1
    _assert_same_rows(out, reference_wolfgang_288)
