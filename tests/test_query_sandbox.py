"""``ferbatch query`` cannot reach outside the dataset, cannot run forever, and cannot overwrite it."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from ferbatch.cli import app
from ferbatch.dataset.query import connect, deadline, run_sql
from ferbatch.errors import OutputError


@pytest.fixture(scope="module")
def out(reference_wolfgang):
    return reference_wolfgang


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('{outside}')",
        "SELECT * FROM read_csv('.tmp/secret.csv')",
    ],
)
def test_files_outside_the_dataset_are_unreadable(out, tmp_path, monkeypatch, sql):
    outside = tmp_path / "other.parquet"
    shutil.copy(out / "videos.parquet", outside)
    monkeypatch.chdir(tmp_path)  # DuckDB's default temp directory is <cwd>/.tmp, auto-allowed unless turned off
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp/secret.csv").write_text("a,b\n1,2\n")
    con = connect(out)
    with pytest.raises(Exception, match="[Pp]ermission|disabled"):
        run_sql(con, sql.format(outside=outside)).fetchall()
    assert run_sql(con, "SELECT count(*) FROM frames").fetchall()[0][0] == 472  # the dataset itself is readable


def test_a_never_ending_query_is_stopped(out):
    con = connect(out)
    with pytest.raises(OutputError, match="longer than 1 s"), deadline(con, 1.0):
        run_sql(con, "SELECT count(*) FROM range(1000000000000) a").fetchall()


def test_output_inside_the_dataset_and_annotate_over_the_source_are_refused(out, tmp_path):
    before = (out / "videos.parquet").read_bytes()
    res = CliRunner().invoke(app, ["query", str(out), "--sql", "SELECT 1 AS x", "--format", "csv", "--output", str(out / "videos.parquet")])
    assert res.exit_code == 2 and "inside the dataset" in res.output
    assert (out / "videos.parquet").read_bytes() == before
    from conftest import WOLFGANG

    src = tmp_path / "w.mp4"
    shutil.copy(WOLFGANG, src)
    res = CliRunner().invoke(app, ["annotate", str(src), "--results", str(out), "-o", str(src)])
    assert res.exit_code == 2 and "source video itself" in res.output
    assert src.read_bytes() == WOLFGANG.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_large_results_are_streamed_whole(out, tmp_path, fmt):
    """Written batch by batch (65,536 rows each): every row once, the csv header once."""
    import json

    import pyarrow.parquet as pq

    dst = tmp_path / f"big.{fmt}"
    sql = "SELECT range AS i, range % 7 AS k FROM range(200000)"
    res = CliRunner().invoke(app, ["query", str(out), "--sql", sql, "--format", fmt, "--output", str(dst)])
    assert res.exit_code == 0, res.output
    if fmt == "csv":
        lines = dst.read_text().splitlines()
        assert lines[0] == "i,k" and len(lines) == 200001 and lines[-1] == f"199999,{199999 % 7}"
    elif fmt == "jsonl":
        lines = dst.read_text().splitlines()
        assert len(lines) == 200000 and json.loads(lines[123456]) == {"i": 123456, "k": 123456 % 7}
    else:
        t = pq.read_table(dst)
        assert t.num_rows == 200000 and t["i"].to_pylist()[-1] == 199999
