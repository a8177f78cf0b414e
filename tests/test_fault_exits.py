"""Faults end in one line and the documented exit status (README "Exit status"; EXIT_CODES):
a Ray that cannot start, SIGTERM under Ray, a damaged part under the readers, a full disk while
committing, an object store gone mid-job; and a huge ``query`` result is streamed, never held whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from conftest import SINGLE_FACE, WOLFGANG

from ferbatch.config import JobConfig
from ferbatch.dataset.store import read_manifest
from ferbatch.job import run_job

CFG = JobConfig(workers=1)
FERBATCH = [sys.executable, "-m", "ferbatch"]


@pytest.fixture(scope="module")
def small(tmp_path_factory, _cache):
    """A finished in-process job over one short clip (read only by the tests that share it)."""
    out = tmp_path_factory.mktemp("small") / "out"
    s = run_job(SINGLE_FACE, out, CFG, use_ray=False)
    assert s.ok == 1
    return out


def _peak_rss(cmd: list[str], **kw) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``cmd``; (its result, its peak resident memory in bytes, sampled every 10 ms)."""
    import psutil

    p = subprocess.Popen(cmd, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=subprocess.PIPE, text=True, **kw)
    proc = psutil.Process(p.pid)
    peak = 0
    while p.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.01)
    _, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, p.returncode, "", err), peak


# a huge query result is written batch by batch (csv, json, jsonl, parquet)


def test_a_huge_query_result_is_streamed_not_held(small, tmp_path):
    base, small_peak = _peak_rss(
        [*FERBATCH, "query", str(small), "--sql", "SELECT 1 AS i", "--format", "parquet", "--output", str(tmp_path / "a.parquet")]
    )
    assert base.returncode == 0, base.stderr
    n = 20_000_000  # 160 MB of int64 in Arrow, far more as Python objects
    big, big_peak = _peak_rss(
        [
            *FERBATCH,
            "query",
            str(small),
            "--sql",
            f"SELECT range AS i FROM range({n})",
            "--format",
            "parquet",
            "--output",
            str(tmp_path / "b.parquet"),
        ]
    )
    assert big.returncode == 0, big.stderr
    assert pq.ParquetFile(tmp_path / "b.parquet").metadata.num_rows == n
    assert big_peak - small_peak < 120 * 2**20, f"{(big_peak - small_peak) / 2**20:.0f} MB more for {n} rows"


def test_json_and_csv_are_streamed_with_their_usual_layout(small, tmp_path):
    sql = "SELECT range AS i, (range / 2)::DOUBLE AS x FROM range(150000)"  # more than two batches
    res, _ = _peak_rss([*FERBATCH, "query", str(small), "--sql", sql, "--format", "json", "--output", str(tmp_path / "r.json")])
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "r.json").read_text()
    rows = [{"i": i, "x": i * 0.5} for i in range(150000)]
    assert text == json.dumps(rows, indent=1) + "\n"  # what json.dump(rows, indent=1) of the whole table wrote
    empty = subprocess.run(
        [*FERBATCH, "query", str(small), "--sql", "SELECT 1 AS i WHERE false", "--format", "json"], capture_output=True, text=True
    )
    assert empty.returncode == 0 and json.loads(empty.stdout) == []
    csv = subprocess.run([*FERBATCH, "query", str(small), "--sql", sql, "--format", "csv"], capture_output=True, text=True)
    assert csv.returncode == 0 and csv.stdout.splitlines()[:2] == ["i,x", "0,0.0"] and len(csv.stdout.splitlines()) == 150001


# Ray that cannot start: the job runs in-process with one warning line


def test_a_ray_that_cannot_start_falls_back_to_in_process(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # Ray's temp folder cannot be made under a file: the embedded Ray fails to start
    env = {**os.environ, "RAY_TMPDIR": str(blocker)}
    out = tmp_path / "out"
    r = subprocess.run(
        [*FERBATCH, "run", str(SINGLE_FACE), "--out", str(out), "--ray", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    (warning,) = [ln for ln in r.stderr.splitlines() if "Ray could not start" in ln]
    assert "running in this process" in warning and "--no-ray" in warning
    assert "in-process (Ray could not start)" in r.stdout
    assert read_manifest(out)["videos"]  # the job was done


# SIGTERM under Ray: exit 130 with one line, finished shards kept


def test_sigterm_under_ray_is_an_interrupt(tmp_path):
    out = tmp_path / "out"
    cmd = [*FERBATCH, "run", str(WOLFGANG), "--out", str(out), "--shard-frames", "60", "--ray", "--workers", "1", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "_staging").glob("*/frames-*.parquet"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)  # this test's own child, by its pid
    stdout, stderr = p.communicate(timeout=90)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    assert [ln for ln in stderr.splitlines() if ln.strip()] == [
        "interrupted: finished shards are recorded; run the same command again to resume"
    ], stderr
    (rec,) = read_manifest(out)["videos"].values()
    assert [s["status"] for s in rec["shards"]].count("ok") >= 1, rec["shards"]  # the finished shards are kept


# a full disk stops the job with exit 4 at every stage, in one line


@pytest.mark.parametrize(
    ("limit_kb", "stage", "file"),
    [(1, "models", "cache"), (1, "indexing", "_index/"), (3, "staging", "_staging/"), (20, "committing", "faces/part-")],
)
def test_disk_full_is_exit_4_at_every_stage(small, tmp_path, limit_kb, stage, file):
    """``small`` leaves the prepared graphs in the session's cache, so the job gets past the models
    to the stage; ``models`` prepares them afresh into a cache of its own."""
    import resource

    def small_files():  # writes past the limit fail with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))

    out = tmp_path / "out"
    r = subprocess.run(
        [*FERBATCH, "run", str(SINGLE_FACE), "--out", str(out), "-q", "--no-ray"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
        env={**os.environ, "FERBATCH_CACHE": str(tmp_path / "cache")} if stage == "models" else None,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 4, (stage, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), (stage, r.stderr)
    assert file in lines[0] and "File too large" in lines[0] and "rerun" in lines[0], (stage, r.stderr)


# a damaged part under the readers: one line naming it (the rerun redoes it)


@pytest.fixture(scope="module")
def damaged(small, tmp_path_factory):
    """Copies of ``small`` with its faces part cut short (footer gone) and with its middle
    overwritten (footer intact: DuckDB meets the damage only while reading rows)."""
    import shutil

    made = {}
    for kind in ("truncated", "overwritten"):
        out = tmp_path_factory.mktemp(kind) / "out"
        shutil.copytree(small, out)
        (part,) = (out / "faces").glob("*.parquet")
        data = bytearray(part.read_bytes())
        if kind == "truncated":
            data = data[:100]
        else:
            data[4 : len(data) // 2] = b"\\xff" * (len(data) // 2 - 4)
        part.write_bytes(bytes(data))
        made[kind] = (out, part)
    return made


@pytest.mark.parametrize("kind", ["truncated", "overwritten"])
@pytest.mark.parametrize(
    "args",
    [
        ["summary"],
        ["timeline", "{out}", "single_face"],
        ["report", "--to", "{tmp}/report"],
        ["query", "--sql", "SELECT count(*), avg(x1) FROM faces"],
    ],
    ids=["summary", "timeline", "report", "query"],
)
def test_a_damaged_part_is_named_in_one_line_by_the_readers(damaged, tmp_path, kind, args):
    from typer.testing import CliRunner

    from ferbatch.cli import app

    out, part = damaged[kind]
    argv = [args[0], str(out), *[a.format(out=out, tmp=tmp_path) for a in args[1:] if a != "{out}"]]
    res = CliRunner().invoke(app, argv)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert str(part) in lines[0] and "cannot be read" in lines[0] and "rerun" in lines[0], res.output


def test_open_table_names_a_damaged_part(damaged):
    from ferbatch.dataset.store import open_table
    from ferbatch.errors import OutputError

    out, part = damaged["truncated"]
    with pytest.raises(OutputError, match="cannot be read") as e:
        open_table(out, "faces")
    assert str(part) in str(e.value)


def test_an_unreachable_ray_cluster_is_one_line_naming_no_ray(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    r = subprocess.run(
        [*FERBATCH, "run", str(SINGLE_FACE), "--out", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "--no-ray" in lines[0], r.stderr
    assert time.monotonic() - t < 60  # not Ray's minutes of retries
