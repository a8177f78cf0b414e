"""A real Ray cluster on loopback, started by the test: submit through the Jobs API, compare rows."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SHARED

from ferbatch.dataset.store import open_table


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head --block` in its own process group, killed as a group afterwards (also on
    failure), so the test never touches another Ray instance on the machine the way `ray stop` would."""
    port, dash = _free_port(), _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash),
        "--num-cpus",
        "2",
        "--disable-usage-stats",
        "--include-dashboard",
        "true",
        # fixed defaults (agent 52365, client 10001) may be taken by the session's embedded Ray
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--ray-client-server-port",
        str(_free_port()),
    ]
    log = open(tmp_path_factory.mktemp("cluster") / "head.log", "w")  # noqa: SIM115 - closed in the finally below
    # the job's entrypoint runs `python` from the head's PATH: this interpreter's, as on a cluster whose
    # nodes run ferbatch's environment (also when the tests run without an activated venv)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    p = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "PATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        from ferbatch.job.submit import client

        deadline = time.time() + 90
        while True:
            try:
                client(address).list_jobs()
                break
            except Exception:
                if time.time() > deadline or p.poll() is not None:
                    raise RuntimeError(f"the Ray head did not start; see {log.name}") from None
                time.sleep(1)
        yield address
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:  # `ray start --block` rarely exits on SIGTERM within 30 s: its own group gets SIGKILL soon after
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        log.close()


def test_submit_to_cluster_gives_the_local_rows(cluster, tmp_path):
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job
    from ferbatch.job.submit import client, submit

    src = DATA / "videos_faces/intel_sample_videos_mp4"
    out = tmp_path / "cluster_out"
    sid = submit(cluster, [str(src)], str(out), ["--shard-frames", "20"], model_mirror=str(SHARED / "models"))
    c = client(cluster)
    deadline = time.time() + 300
    while (status := str(c.get_job_status(sid))) not in (
        "JobStatus.SUCCEEDED",
        "SUCCEEDED",
        "JobStatus.FAILED",
        "FAILED",
        "JobStatus.STOPPED",
    ):
        assert time.time() < deadline, c.get_job_logs(sid)
        time.sleep(2)
    logs = c.get_job_logs(sid)
    assert status.endswith("SUCCEEDED"), logs
    assert "frames/s" in logs
    local = tmp_path / "local_out"
    run_job(src, local, JobConfig(workers=1), use_ray=False)
    for table in ("frames", "faces"):
        a = open_table(out, table).sort_by([("video_id", "ascending"), ("frame_idx", "ascending")])
        b = open_table(local, table).sort_by([("video_id", "ascending"), ("frame_idx", "ascending")])
        assert a.num_rows == b.num_rows > 0
        assert a["video_id"].to_pylist() == b["video_id"].to_pylist()
        np.testing.assert_array_equal(a["frame_idx"].to_numpy(), b["frame_idx"].to_numpy())
    fa = open_table(out, "faces").sort_by([("video_id", "ascending"), ("frame_idx", "ascending"), ("face_idx", "ascending")])
    fb = open_table(local, "faces").sort_by([("video_id", "ascending"), ("frame_idx", "ascending"), ("face_idx", "ascending")])
    for col in ("x1", "y2", "det_score", "prob_happiness"):
        np.testing.assert_allclose(fa[col].to_numpy(), fb[col].to_numpy(), atol=1e-3)
