"""A small job's start-up: what ``ferbatch run`` imports (not how long it takes, which depends on
the machine). A one-frame clip is mostly start-up, and imports were 88 % of it (issue #30 item 3):
pandas (pulled in by ``pyarrow.dataset`` and by pyarrow's first conversion), onnx (when the
prepared graphs are cached), Ray (in-process), matplotlib, DuckDB and torch stay out."""

from __future__ import annotations

import os
import subprocess
import sys

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SINGLE_FACE

from ferbatch.config import JobConfig
from ferbatch.dataset.parquet_file import read_file
from ferbatch.models.load import prepare_graphs

# runs the console script's main in a fresh interpreter; writes sys.modules at exit (after SystemExit)
PROBE = """
import atexit, sys
out = sys.argv.pop(1)
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
sys.argv[0] = "ferbatch"
from ferbatch.cli import main
main()
"""

NEVER = ("pandas", "onnx", "ray", "matplotlib", "torch", "duckdb", "pyarrow.dataset", "tensorrt", "pycuda.autoinit")


def imported_by(tmp_path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules a ``ferbatch ARGS...`` process had imported when it exited, and the process."""
    dump = tmp_path / "modules.txt"
    p = subprocess.run([sys.executable, "-c", PROBE, str(dump), *args], capture_output=True, text=True, timeout=300, env=os.environ)
    return set(dump.read_text().split()), p


def heavy(modules: set[str]) -> list[str]:
    """The names of NEVER that ``modules`` holds (a module or any of its submodules)."""
    return [n for n in NEVER if any(m == n or m.startswith(n + ".") for m in modules)]


@pytest.fixture(scope="module")
def one_frame_clip(tmp_path_factory):
    """A one-frame H.264 clip cut from single_face.mp4."""
    dst = tmp_path_factory.mktemp("clip") / "one_frame.mp4"
    with av.open(str(SINGLE_FACE)) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        img = next(c.decode(s)).to_ndarray(format="rgb24")
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
        for p in (*vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")), *vs.encode()):
            out.mux(p)
    return dst


def test_run_help_imports_no_heavy_module(tmp_path):
    modules, p = imported_by(tmp_path, "run", "--help")
    assert p.returncode == 0, p.stderr
    assert "--out" in p.stdout
    assert not heavy(modules), f"ferbatch run --help imported {heavy(modules)}"


def test_a_one_frame_in_process_job_imports_no_heavy_module(tmp_path, one_frame_clip):
    prepare_graphs(JobConfig(), "onnxruntime")  # the prepared graphs cached (the session's cache, which the child shares)
    modules, p = imported_by(tmp_path, "run", str(one_frame_clip), "--out", str(tmp_path / "out"), "--no-ray", "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "out" / "videos.parquet").is_file()
    assert {"onnxruntime", "av", "pyarrow"} <= modules  # the job ran
    assert not heavy(modules), f"a one-frame in-process job imported {heavy(modules)}"


def test_reading_a_file_without_pyarrow_dataset_gives_what_read_table_gives(tmp_path):
    path = str(tmp_path / "old.parquet")
    old = pa.table(
        {
            "frame_idx": pa.array(np.arange(5), pa.int32()),  # stored narrower than the schema's
            "emotion": pa.array(["happy", "sad", "happy", None, "sad"]).dictionary_encode(),
            "dropped": pa.array(np.ones(5)),  # a column the schema no longer has
        }
    )
    pq.write_table(old, path)
    schema = pa.schema(
        [
            ("emotion", pa.string()),
            ("frame_idx", pa.int64()),
            ("shot_idx", pa.int32()),  # a column added after the file was written: all null
        ],
        metadata={b"k": b"v"},
    )
    got = read_file(path, None, schema)
    assert got.equals(pq.read_table(path, schema=schema)) and got.schema.equals(schema, check_metadata=True)
    assert got["shot_idx"].null_count == 5
    assert read_file(path).equals(pq.read_table(path))
    with pytest.raises(OSError):
        read_file(str(tmp_path / "missing.parquet"))


def test_pandas_is_refused_only_in_the_console_process_and_only_while_the_job_runs():
    code = """
import pyarrow as pa
from ferbatch.cli.startup import mark_console, without_pandas
with without_pandas():  # not the console script's process: nothing refused
    pass
mark_console()
with without_pandas():
    try:
        import pandas
        raise SystemExit("pandas imported inside the block")
    except ImportError:
        pass
    t = pa.table({"a": [1, 2]})  # pyarrow works as without pandas
    assert t["a"].to_numpy().tolist() == [1, 2]
assert type(t.to_pandas()).__name__ == "DataFrame"  # and imports it again afterwards
"""
    pytest.importorskip("pandas")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
