"""Inputs and OUT in object storage, against a real S3-compatible server on loopback (moto's
standalone server, started by this module and stopped by its pid); every byte goes through the S3
protocol (pyarrow's S3FileSystem with the endpoint from AWS_ENDPOINT_URL)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from conftest import FACE_NOFACE, SINGLE_FACE, WOLFGANG
from typer.testing import CliRunner

from ferbatch.cli import app
from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table, read_manifest
from ferbatch.errors import ConfigError, OutputError
from ferbatch.job import run_job
from ferbatch.location import open_location

CFG = JobConfig(workers=1)
SORT = {
    "faces": ["video_id", "frame_idx", "face_idx"],
    "frames": ["video_id", "frame_idx"],
    "tracks": ["video_id", "track_id"],
}


def _moto_server(log: Path) -> tuple[subprocess.Popen, str]:
    """Start moto's S3 server on a free loopback port (its output to ``log``); (the process, its URL)
    once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=f, stderr=subprocess.STDOUT
        )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def _aws_env(url: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 and a bucket holding two real clips under ``in/``; yields
    the bucket's s3:// root. The AWS_* variables point at it for the module's tests."""
    proc, url = _moto_server(tmp_path_factory.mktemp("moto") / "server.log")
    env = _aws_env(url)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(endpoint_override=url, region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("ferbatch-test")
    for src in (SINGLE_FACE, FACE_NOFACE):
        with open(src, "rb") as i, fs.open_output_stream(f"ferbatch-test/in/{Path(src).name}") as o:
            o.write(i.read())
    try:
        yield "s3://ferbatch-test"
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory, _cache):
    """The same two clips processed from a local folder into a local OUT."""
    d = tmp_path_factory.mktemp("local")
    (d / "in").mkdir()
    for src in (SINGLE_FACE, FACE_NOFACE):
        shutil.copy(src, d / "in" / Path(src).name)
    run_job(d / "in", d / "out", CFG, use_ray=False, shard_frames=30)
    return d / "out"


def _table(out, name):
    return open_table(out, name).sort_by([(c, "ascending") for c in SORT[name]])


def _videos(out):
    return {r["path"]: (r["status"], r["frames"], r["faces"], r["video_id"]) for r in open_table(out, "videos").to_pylist()}


@pytest.fixture(scope="module")
def s3_job(s3, local_ref):
    """The two clips processed from the bucket into OUT in the bucket: (OUT, the job's summary), shared
    by the tests that read it (a rerun over it does nothing)."""
    out = f"{s3}/out-equal"
    return out, run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30)


def test_a_job_on_object_storage_equals_the_local_run(s3, local_ref, s3_job):
    out, s = s3_job
    assert s.ok == 2 and s.failed == 0
    for name in ("faces", "frames", "tracks"):
        got, ref = _table(out, name), _table(local_ref, name)
        assert got.num_rows == ref.num_rows > 0
        assert got.equals(ref), name
    assert _videos(out) == _videos(local_ref)
    loc = open_location(out)
    assert loc.list_files("_staging", recursive=True) == [] and not loc.exists("_lock.json")  # staging committed, lock released
    rerun = run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30)
    assert rerun.skipped == 2 and rerun.frames == 0


def test_an_interrupted_job_resumes_on_object_storage(s3, local_ref):
    out = f"{s3}/out-resume"
    seen = []

    def stop_after_some(kind, done, total):
        if kind == "frames":
            seen.append(done)
            if done >= 60:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30, progress=stop_after_some)
    first = read_manifest(out)
    done_shards = sum(sh["status"] == "ok" for r in first["videos"].values() for sh in r["shards"])
    assert 0 < done_shards < sum(len(r["shards"]) for r in first["videos"].values())
    s = run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30)
    total = sum(r["frames"] for r in open_table(local_ref, "videos").to_pylist())
    assert 0 < s.frames < total  # only what the first run had not done
    for name in ("faces", "frames", "tracks"):
        assert _table(out, name).equals(_table(local_ref, name)), name


def test_summary_and_query_read_it_back(s3_job, local_ref):
    out = s3_job[0]
    exe = [sys.executable, "-m", "ferbatch"]
    sql = "SELECT v.path, count(*) AS n FROM faces f JOIN videos v USING (video_id) GROUP BY 1 ORDER BY 1"
    for args in (
        ["summary", "--format", "csv"],
        ["query", "--sql", sql, "--format", "csv"],
        ["timeline", "single_face", "--format", "csv"],
    ):
        remote = subprocess.run([*exe, args[0], out, *args[1:]], capture_output=True, text=True, timeout=120)
        local = CliRunner().invoke(app, [args[0], str(local_ref), *args[1:]])  # the local answer: in this process
        assert remote.returncode == 0 and local.exit_code == 0, (remote.stderr, local.output)
        assert remote.stdout == local.stdout and len(remote.stdout.splitlines()) >= 2


def test_object_storage_errors_are_one_clear_line(s3, tmp_path):
    with pytest.raises(OutputError, match="missing bucket name"):
        run_job(SINGLE_FACE, "s3://", CFG, use_ray=False)
    with pytest.raises(ConfigError, match="does not exist"):
        run_job(f"{s3}/no-such-prefix", tmp_path / "out", CFG, use_ray=False)
    r = subprocess.run([sys.executable, "-m", "ferbatch", "summary", f"{s3}/never-written"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a ferbatch output directory" in r.stderr and "Traceback" not in r.stderr


def test_a_live_lock_in_object_storage_refuses_a_second_run(s3):
    out = f"{s3}/out-locked"
    loc = open_location(out)
    holder = {"host": "another-host", "pid": 4242, "started": "then", "beat": time.time()}
    loc.write_bytes("_lock.json", json.dumps(holder).encode())
    with pytest.raises(OutputError, match="another ferbatch run is writing this dataset.*another-host"):
        run_job(SINGLE_FACE, out, CFG, use_ray=False)
    assert not loc.exists("_manifest.json")
    holder["beat"] = time.time() - 3600  # its machine went away an hour ago: taken over
    loc.write_bytes("_lock.json", json.dumps(holder).encode())
    s = run_job(SINGLE_FACE, out, CFG, use_ray=False)
    assert s.ok == 1 and not loc.exists("_lock.json")


def test_a_submitted_job_gets_the_endpoint_but_never_the_keys(monkeypatch):
    from ferbatch.job.submit import storage_env

    for k in ("AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://storage.internal:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-gcs")
    env = storage_env(["s3://bucket/in"], "s3://bucket/out")
    assert env == {"AWS_ENDPOINT_URL": "http://storage.internal:9000", "AWS_REGION": "eu-west-1"}
    assert storage_env(["/data/in"], "/shared/out") == {}  # nothing to pass on without object storage


def test_an_object_replaced_during_the_job_is_failed_not_mixed(s3):
    loc = open_location(f"{s3}/changing")
    loc.write_bytes("clip.mp4", Path(SINGLE_FACE).read_bytes())
    replaced = []

    def replace_after_probing(kind, done, total):
        if kind == "probe" and not replaced:
            time.sleep(1.1)  # LastModified has 1 s resolution
            loc.write_bytes("clip.mp4", Path(SINGLE_FACE).read_bytes()[:-1000] + b"\0" * 1000)
            replaced.append(done)

    out = f"{s3}/out-changing"
    s = run_job(f"{s3}/changing", out, CFG, use_ray=False, shard_frames=30, progress=replace_after_probing)
    assert replaced and s.failed == 1
    (row,) = open_table(out, "videos").to_pylist()
    assert row["status"] == "failed" and "changed while it was being processed" in row["error"]
    assert open_table(out, "faces").num_rows == 0  # its rows were dropped, not committed


def test_reruns_and_compact_rewrite_parts_on_object_storage(s3, local_ref):
    from ferbatch.job.compact import compact

    out = f"{s3}/out-compact"
    run_job(f"{s3}/in/{Path(SINGLE_FACE).name}", out, CFG, use_ray=False, shard_frames=30)
    run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30)  # a second commit with the other video
    loc = open_location(out)
    man = read_manifest(out)
    assert len(man["commits"]) == 2
    rec = next(r for r in man["videos"].values() if len(r["shards"]) > 1)
    rec["shards"][1].update(status="failed", error="planted")  # a committed video with a shard to redo
    loc.write_bytes("_manifest.json", json.dumps(man).encode())
    s = run_job(f"{s3}/in", out, CFG, use_ray=False, shard_frames=30)
    assert s.frames == rec["shards"][1]["frames"] and s.skipped == 1  # released, one shard redone, committed again
    res = compact(out)
    assert res.parts_after == 3 and len(loc.list_files("faces")) == 1
    for name in ("faces", "frames", "tracks"):
        assert _table(out, name).equals(_table(local_ref, name)), name


def test_a_missing_bucket_is_exit_2_in_one_line_nothing_run(s3):
    r = subprocess.run(
        [sys.executable, "-m", "ferbatch", "run", str(SINGLE_FACE), "--out", "s3://no-such-bucket/out", "-q", "--no-ray"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr  # README: an --out that cannot be created
    assert "s3://no-such-bucket/out" in lines[0] and "does not exist" in lines[0], r.stderr


def test_an_object_store_gone_mid_job_is_exit_4_in_one_line(tmp_path):
    """The job's own moto server, stopped (by its pid) once the first shard is staged."""
    proc, url = _moto_server(tmp_path / "server.log")
    try:
        fs = pafs.S3FileSystem(endpoint_override=url, region="us-east-1", allow_bucket_creation=True)
        fs.create_dir("gone-mid-job")
        cmd = [
            sys.executable,
            "-m",
            "ferbatch",
            "run",
            str(WOLFGANG),
            "--out",
            "s3://gone-mid-job/out",
            "-q",
            "--no-ray",
            "--shard-frames",
            "60",
        ]
        p = subprocess.Popen(cmd, env={**os.environ, **_aws_env(url)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline:
            with contextlib.suppress(OSError):
                if any(
                    i.path.endswith(".parquet") for i in fs.get_file_info(pafs.FileSelector("gone-mid-job/out/_staging", recursive=True))
                ):
                    break
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 4 and len(lines) == 1, err
    assert "s3://gone-mid-job/out/" in lines[0] and "the job stopped" in lines[0] and "rerun" in lines[0], err
