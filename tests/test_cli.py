"""The command line: every command explains itself, imports need no GPU stack, a real run works."""

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main
from conftest import ASTRONAUT, MULTI_FACE, REPO, SINGLE_FACE, WOLFGANG
from typer.testing import CliRunner

from ferbatch.cli import app
from ferbatch.labels import EMOTIONS


def test_every_command_has_help():
    """Every command and sub-command has help, and its text reads as written: a literal ``%`` is not
    doubled (click prints help strings as they are; ``%%`` showed in ``train --help`` and ``run --help``)."""
    cmd = typer.main.get_command(app)
    for name, sub in cmd.commands.items():
        assert sub.help, f"{name} is missing its help"
        for path in [[name], *([name, s] for s in getattr(sub, "commands", {}))]:
            res = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
            assert res.exit_code == 0 and "Usage" in res.output, path
            assert "%%" not in res.output, (path, res.output[res.output.index("%%") - 80 :][:120])


def test_import_without_tensorrt_pycuda_or_ray():
    code = (
        "import sys; sys.modules['tensorrt'] = None; sys.modules['pycuda'] = None; "
        "import ferbatch.cli, ferbatch.job; assert 'ray' not in sys.modules, 'ray imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_no_ray_then_query(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(out), "--no-ray", "-q"])
    assert res.exit_code == 0, res.output
    assert res.stdout == res.stderr == ""  # -q: only errors; the exit status tells the rest
    q = CliRunner().invoke(app, ["query", str(out), "--sql", "SELECT count(*) AS n FROM frames", "--format", "csv"])
    assert q.exit_code == 0 and q.output.strip().splitlines()[-1] == "72"
    positional = CliRunner().invoke(app, ["query", str(out), "SELECT count(*) AS n FROM frames", "--format", "csv"])
    assert positional.exit_code == 0 and positional.output == q.output
    bad = CliRunner().invoke(app, ["query", str(out), "--sql", "COPY faces TO 'x.csv'"])
    assert bad.exit_code == 2
    for args in ([], ["SELECT 1", "--sql", "SELECT 2"]):  # no SELECT, or two: one line saying so
        res = CliRunner().invoke(app, ["query", str(out), *args])
        assert res.exit_code == 2 and "give one" in res.stderr, res.output


def test_missing_input_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-ray"])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_local_ray_runs_with_token_authentication(ray_session):
    """Ray 2.6x token auth stays on for the embedded instance (its gRPC ports listen on every
    interface, which Ray does not let us change: the token is what guards them)."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert is_token_auth_enabled()


def test_errors_keep_their_brackets(tmp_path):
    """Messages pass through rich without markup eating "[gpu]"."""
    from ferbatch.models.trt_plans import gpu_available

    if gpu_available()[0]:
        pytest.skip("tensorrt is usable on this machine: nothing to refuse")
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(tmp_path / "o"), "--no-ray", "--backend", "tensorrt"])
    assert res.exit_code == 2 and "ferbatch[gpu]" in res.output.replace("\n", "")


# --- terminal-friendly output (issue 17): every check at 80 columns ---------------------------------

W80 = {"COLUMNS": "80", "LINES": "40"}


@pytest.fixture(scope="module")
def single_out(tmp_path_factory):
    """A dataset from the CLI's own in-process run over one short clip (72 frames, one face)."""
    out = tmp_path_factory.mktemp("cli") / "out"
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(out), "--no-ray", "-q"])
    assert res.exit_code == 0, res.output
    return out


def _fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert not wide, f"{len(wide)} lines wider than {width}: {wide[:2]}"


def test_summary_table_fits_80_columns_with_whole_headers(single_out):
    res = CliRunner().invoke(app, ["summary", str(single_out), "--format", "table"], env=W80)
    assert res.exit_code == 0, res.output
    _fits(res.stdout)
    header = res.stdout.splitlines()[0].split()
    assert header == ["path", "status", "duration_s", "frames", "faces", "dominant_emotion"]
    assert "single_face.mp4" in res.stdout and "happiness" in res.stdout


def test_columns_option_and_wide_results_as_record_blocks(single_out):
    picked = CliRunner().invoke(app, ["summary", str(single_out), "--format", "csv", "--columns", "path,share_happiness"])
    assert picked.stdout.splitlines()[0] == "path,share_happiness", picked.output
    # every column of the videos table cannot fit 80 columns: one "column value" block per row
    wide = CliRunner().invoke(app, ["query", str(single_out), "--sql", "SELECT * FROM videos", "--format", "table"], env=W80)
    assert wide.exit_code == 0, wide.output
    _fits(wide.stdout)
    lines = wide.stdout.splitlines()
    assert lines[0].split()[0] == "path" and any(line.split()[:1] == ["detector_sha256"] for line in lines)
    bad = CliRunner().invoke(app, ["summary", str(single_out), "--columns", "path,nope"])
    assert bad.exit_code == 2 and "--columns | no column nope" in bad.stderr and "--sql" not in bad.stderr


def test_piped_output_is_csv_and_json_formats(single_out):
    """CliRunner's stdout is not a terminal: the default is csv. jsonl is one object per line, json one array."""
    res = CliRunner().invoke(app, ["summary", str(single_out)])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("video_id,path,status,"), res.output
    jl = CliRunner().invoke(app, ["summary", str(single_out), "--format", "jsonl"])
    (row,) = [json.loads(line) for line in jl.stdout.splitlines()]
    assert row["frames"] == 72 and row["dominant_emotion"] == "happiness"
    js = CliRunner().invoke(app, ["summary", str(single_out), "--format", "json"])
    assert json.loads(js.stdout) == [row]
    tsv = CliRunner().invoke(app, ["query", str(single_out), "--sql", "SELECT count(*) AS n, 1 AS one FROM frames", "--format", "tsv"])
    assert tsv.stdout == "n\tone\n72\t1\n"
    # with --output, the extension picks the format
    dst = single_out.parent / "summary.parquet"
    assert CliRunner().invoke(app, ["summary", str(single_out), "--output", str(dst)]).exit_code == 0
    import pyarrow.parquet as pq

    assert pq.read_table(dst).num_rows == 1


def test_closed_pipe_is_silent(single_out):
    """`ferbatch query ... | head`: the reader is gone; no traceback, no "error: --sql"."""
    p = subprocess.Popen(
        [sys.executable, "-m", "ferbatch", "query", str(single_out), "--sql", "SELECT * FROM faces", "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()  # like `head` exiting before ferbatch writes
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert err == "", err


def test_sql_errors_name_sql(single_out):
    res = CliRunner().invoke(app, ["query", str(single_out), "--sql", "SELECT no_such_column FROM faces"])
    assert res.exit_code == 2 and res.stderr.startswith("error: SELECT | BinderException"), res.output


def test_help_has_metavars_choices_exit_codes_and_dash_h():
    top = CliRunner().invoke(app, ["-h"], env=W80)
    assert top.exit_code == 0 and "130 interrupted" in top.stdout.replace("\n", " ")
    res = CliRunner().invoke(app, ["run", "-h"], env=W80)
    assert res.exit_code == 0, res.output
    _fits(res.stdout)
    text = " ".join(res.stdout.split())
    assert "<bool>" not in text and "<str>" not in text and "{inputs}" not in text
    assert "{VIDEO|DIR|URI}..." in text and "--out DIR" in text
    assert "--backend <auto|tensorrt|onnxruntime-cuda|onnxruntime|openvino>" in text and "--precision <fp32|fp16>" in text
    assert "130 interrupted" in text and "RAY_ADDRESS" in text
    bad = CliRunner().invoke(app, ["summary", "out", "--format", "yaml"])
    assert bad.exit_code == 2 and "yaml" in bad.output
    train = CliRunner().invoke(app, ["train", "-h"], env=W80)
    assert "--label-mode <probability|majority>" in " ".join(train.stdout.split())


def _complete(words: str) -> list[str]:
    """What bash completion offers for the last word of ``words`` (typer's completion protocol)."""
    env = {**os.environ, "_FERBATCH_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    code = "import sys; sys.argv[0] = 'ferbatch'; from ferbatch.cli import main; main()"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_choices_complete_in_the_shell():
    assert _complete("ferbatch summary out --format j") == ["jsonl", "json"]
    assert _complete("ferbatch run x --precision fp") == ["fp32", "fp16"]
    assert _complete("ferbatch moments out --emotion s") == ["surprise", "sadness"]


def test_address_honours_ray_address():
    cmd = typer.main.get_command(app)
    run = cmd.commands["run"]
    ctx = run.make_context("run", ["v.mp4", "--out", "o"], parent=None)
    assert ctx.params["address"] is None
    os.environ["RAY_ADDRESS"] = "10.0.0.9:6379"
    try:
        ctx = run.make_context("run", ["v.mp4", "--out", "o"])
        assert ctx.params["address"] == "10.0.0.9:6379"
        ctx = run.make_context("run", ["v.mp4", "--out", "o", "--address", "auto"])
        assert ctx.params["address"] == "auto"
        jobs = cmd.commands["jobs"].commands["status"].make_context("status", ["some-id"])
        assert jobs.params["address"] == "10.0.0.9:6379"
    finally:
        del os.environ["RAY_ADDRESS"]


def test_cache_honours_xdg_cache_home(tmp_path):
    res = CliRunner().invoke(app, ["models"], env={"FERBATCH_CACHE": None, "XDG_CACHE_HOME": str(tmp_path)})
    assert res.exit_code == 0, res.output
    assert f"cache: {tmp_path / 'ferbatch'}" in res.stdout
    rel = CliRunner().invoke(app, ["models"], env={"FERBATCH_CACHE": None, "XDG_CACHE_HOME": "relative/dir"})
    assert f"cache: {Path.home() / '.cache' / 'ferbatch'}" in rel.stdout  # the XDG spec: relative paths are ignored


def test_models_prints_full_values_and_json():
    from ferbatch.models.registry import load_registry, resolve_model_file

    reg = load_registry()
    spec = reg.get(reg.default_detector)
    path, url = str(resolve_model_file(spec, allow_download=False)), spec.url
    res = CliRunner().invoke(app, ["models"], env=W80)
    assert res.exit_code == 0, res.output
    assert path in res.stdout and (url is None or url in res.stdout)  # never cut, however narrow the terminal
    js = CliRunner().invoke(app, ["models", "--format", "json"], env=W80)
    rows = {r["name"]: r for r in json.loads(js.stdout)}
    assert rows[spec.name]["file"] == path and rows[spec.name]["url"] == url and rows[spec.name]["default"] is True


def test_moments_without_a_match_say_so(single_out):
    args = ["moments", str(single_out), "--emotion", "fear", "--min-prob", "0.99", "--min-duration", "10s"]
    res = CliRunner().invoke(app, [*args, "--format", "table"])
    assert res.exit_code == 0 and res.stdout == "" and "no moments: no face shows fear" in res.stderr, res.output
    js = CliRunner().invoke(app, [*args, "--format", "json"])
    assert json.loads(js.stdout) == [] and "no moments" in js.stderr


def test_readme_moments_example_finds_moments(reference_wolfgang):
    """The README's `ferbatch moments` example, run on one of the sample videos it is about."""
    line = next(ln for ln in (REPO / "README.md").read_text().splitlines() if ln.startswith("ferbatch moments out/"))
    args = shlex.split(line.split("#")[0])[3:]  # after "ferbatch moments out/"
    res = CliRunner().invoke(app, ["moments", str(reference_wolfgang), *args, "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    spans = [json.loads(x) for x in res.stdout.splitlines()]
    assert spans and all(s["path"] == "WolfgangLanger_Pexels.mp4" for s in spans), res.output


def test_annotate_keeps_the_audio(single_out, tmp_path):
    import av

    dst = tmp_path / "annotated.mp4"
    res = CliRunner().invoke(app, ["annotate", str(SINGLE_FACE), "--results", str(single_out), "-o", str(dst)])
    assert res.exit_code == 0, res.output
    with av.open(str(SINGLE_FACE)) as src, av.open(str(dst)) as out:
        (a_src,), (a_out,) = src.streams.audio, out.streams.audio
        assert a_out.codec_context.name == a_src.codec_context.name
        n_src = sum(1 for p in src.demux(a_src) if p.size)
        n_out = sum(1 for p in out.demux(a_out) if p.size)
    assert n_out == n_src
    help_text = " ".join(CliRunner().invoke(app, ["annotate", "-h"]).stdout.split())
    assert "#3 is the face's track id" in help_text


def test_still_images_are_refused_before_ray_starts(tmp_path):
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["run", str(ASTRONAUT), "--out", str(tmp_path / "o")])  # with Ray: refused before it starts
    assert res.exit_code == 2 and "is a still image (png), not a video" in res.stderr, res.output
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "o").exists()
    photos = MULTI_FACE.parent
    res = CliRunner().invoke(app, ["run", str(photos), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "still image(s) and no video" in res.stderr and "ferbatch analyze" in res.stderr, res.output


def test_out_refuses_a_foreign_folder(tmp_path):
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "thesis.txt").write_text("mine")
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(mine), "--no-ray", "-q"])
    assert res.exit_code == 2 and "not a ferbatch dataset (thesis.txt)" in res.stderr and "--force" in res.stderr, res.output
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(mine), "--no-ray", "-q", "--force"])
    assert res.exit_code == 0 and (mine / "videos.parquet").is_file(), res.output
    again = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(mine), "--no-ray", "-q"])  # a dataset now? still foreign files
    assert again.exit_code == 2


def test_analyze_command(tmp_path):
    res = CliRunner().invoke(app, ["analyze", str(MULTI_FACE), "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 5 and {r["path"] for r in rows} == {str(MULTI_FACE)}
    assert all(r["emotion"] in EMOTIONS for r in rows)


def test_verbosity_flags_set_the_log_levels(single_out):
    import logging

    CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(single_out), "--no-ray", "-q"])
    assert logging.getLogger("ferbatch").level == logging.ERROR and logging.getLogger("ray._private").level == logging.ERROR
    try:
        CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(single_out), "--no-ray", "-vv"])
        assert logging.getLogger("ferbatch").level == logging.DEBUG and logging.getLogger("ray._private").level == logging.NOTSET
    finally:  # leave the test process as it was
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("ferbatch").setLevel(logging.NOTSET)


@pytest.mark.ray
def test_quiet_run_on_ray_prints_nothing_on_stderr(tmp_path):
    """-q: no progress bar and none of Ray's start-up lines ("Token authentication is enabled ...")."""
    env = {**os.environ, "COLUMNS": "80"}
    res = subprocess.run(
        [sys.executable, "-m", "ferbatch", "run", str(SINGLE_FACE), "--out", str(tmp_path / "o"), "-q", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    _fits(res.stdout)


# --- issue 32: what a new user meets -----------------------------------------------------------------


def test_rerun_with_other_settings_names_out_by_its_path(single_out):
    """The refusal names OUT as the user wrote it (its path), not a Location object."""
    res = CliRunner().invoke(app, ["run", str(SINGLE_FACE), "--out", str(single_out), "--no-ray", "-q", "--score-threshold", "0.95"])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {single_out} | holds rows made with other result-changing settings"), res.stderr
    assert "Location(" not in res.stderr


def _readme_block(after: str) -> str:
    """The first ```python block of README.md after the line that starts with ``after``."""
    text = (REPO / "README.md").read_text()
    rest = text[text.index("\n" + after) :]
    start = rest.index("```python\n") + len("```python\n")
    return rest[start : rest.index("```", start)]


def test_readme_plain_duckdb_snippet_reads_the_dataset(single_out):
    """The README's "plain DuckDB" snippet, run as written from the folder that holds out/."""
    snippet = _readme_block("Or plain DuckDB/pyarrow")
    assert "read_parquet('out/" in snippet
    res = subprocess.run([sys.executable, "-c", snippet], cwd=single_out.parent, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    from collections import Counter

    from ferbatch.dataset.store import open_table

    counts = Counter(open_table(single_out, "faces")["emotion"].to_pylist())  # ferbatch's own reader
    shown = {
        cells[0]: int(cells[1])
        for line in res.stdout.splitlines()
        if len(cells := line.strip("│ ").split("│")) == 2 and cells[1].strip().isdigit()
    }
    assert {k.strip(): v for k, v in shown.items()} == dict(counts), res.stdout


def _on_a_terminal(
    args: list[str], *, stdout_tty: bool = True, stderr_tty: bool = False, cwd=None, code: str | None = None
) -> tuple[str, str]:
    """Run ``python -m ferbatch ARGS`` (or ``python -c CODE``) with standard output and/or error on
    a real pseudo-terminal (100 columns); (what the terminal showed, what went to the pipes)."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "ferbatch", *args]
    p = subprocess.Popen(
        cmd,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            p.kill()
            raise AssertionError(f"no output for 120 s: {seen[-500:]!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    piped, err = p.communicate(timeout=120)
    assert p.returncode == 0, (seen, piped, err)
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode()).replace("\r\n", "\n"), (piped or err or b"").decode()


def _frame_rows(text: str) -> list[int]:
    """The frame_idx of each "frame_idx emotion" row of a printed table."""
    return [int(c[0]) for ln in text.splitlines() if len(c := ln.split()) == 2 and c[0].isdigit() and c[1] in EMOTIONS]


def test_query_caps_rows_at_a_terminal_only(single_out):
    """At a terminal a table shows the first and last 20 rows and says how many it left out (as the
    duckdb shell); --max-rows 0 shows all; piped output has every row."""
    sql = ["--sql", "SELECT frame_idx, emotion FROM faces ORDER BY frame_idx"]
    shown, _ = _on_a_terminal(["query", str(single_out), *sql])
    lines = [ln.split() for ln in shown.splitlines() if ln.strip()]
    assert lines[0] == ["frame_idx", "emotion"], shown
    assert _frame_rows(shown) == [*range(20), *range(52, 72)], shown
    assert "72 rows, 32 not shown" in shown and "--max-rows 0" in shown
    every, _ = _on_a_terminal(["query", str(single_out), *sql, "--max-rows", "0"])
    assert _frame_rows(every) == list(range(72)) and "not shown" not in every
    few, _ = _on_a_terminal(["query", str(single_out), *sql, "--max-rows", "3"])
    assert _frame_rows(few) == [0, 1, 71] and "69 not shown" in few
    piped = CliRunner().invoke(app, ["query", str(single_out), *sql, "--format", "table"])  # not a terminal: complete
    assert piped.exit_code == 0 and _frame_rows(piped.stdout) == list(range(72)) and "not shown" not in piped.stdout, piped.output


def test_python_run_shows_a_bar_on_a_terminal_only(tmp_path):
    """ferbatch.run(): a progress bar when standard error is a terminal; progress=False: none (the
    non-terminal case is tests/test_api.py's)."""
    code = f"import ferbatch; ferbatch.run({str(SINGLE_FACE)!r}, 'out', use_ray=False, workers=1{{}})"
    shown, piped = _on_a_terminal([], stdout_tty=False, stderr_tty=True, cwd=tmp_path, code=code.format(""))
    assert "frames" in shown and "72/72" in shown and "━" in shown, shown
    assert piped == ""
    quiet, _ = _on_a_terminal([], stdout_tty=False, stderr_tty=True, cwd=tmp_path, code=code.format(", progress=False, overwrite=True"))
    assert quiet.strip() == "", quiet


@pytest.mark.ray
def test_embedded_ray_keeps_token_auth_without_the_opt_out_notice(tmp_path):
    """Ray's "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to opt out" is not
    shown (ferbatch keeps token auth on on purpose); token auth is still on."""
    code = (
        "from ferbatch.job.workers import init_ray; init_ray(None, 1)\n"
        "from ray._private.authentication.authentication_utils import is_token_auth_enabled\n"
        "import ray; print(is_token_auth_enabled()); ray.shutdown()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "True"
    assert "RAY_AUTH_MODE" not in res.stderr and "Token authentication" not in res.stderr, res.stderr


def test_annotate_finds_a_renamed_copy_by_its_content(single_out, tmp_path):
    """Videos are identified by content: a renamed copy of a processed clip is the same video."""
    import shutil

    copy = tmp_path / "renamed copy.mp4"
    shutil.copy(SINGLE_FACE, copy)
    dst = tmp_path / "annotated.mp4"
    res = CliRunner().invoke(app, ["annotate", str(copy), "--results", str(single_out), "-o", str(dst)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"{dst}: 72 frames" and dst.is_file()
    other = tmp_path / "other.mp4"  # another clip, not in the dataset: still refused
    shutil.copy(WOLFGANG, other)
    res = CliRunner().invoke(app, ["annotate", str(other), "--results", str(single_out), "-o", str(tmp_path / "o.mp4")])
    assert res.exit_code == 2 and "'other.mp4' | not in" in res.stderr, res.output


def test_numbers_one_formatter_for_tables_and_files(single_out, tmp_path, capsys):
    """Written files carry float32 values as their shortest float32 text (0.9, not
    0.8999999761581421); a table's float column shares one number of decimals (no 2.558e-05)."""
    import numpy as np
    import pyarrow as pa
    from rich.console import Console

    from ferbatch.cli.render import render

    t = pa.table(
        {
            "n": pa.array([238, 5, 12], pa.int64()),
            "p": pa.array([0.9, 2.558e-05, 0.12345678], pa.float32()),
            "ms": pa.array([238.4, 58.0912, 0.5], pa.float64()),
            "share_happiness": pa.array([0.5, 0.25, None], pa.float64()),
        }
    )
    render(t, "csv", None, tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["p"] for r in rows] == ["0.9", "2.558e-05", "0.12345678"] and [r["ms"] for r in rows] == ["238.4", "58.0912", "0.5"]
    render(t, "json", None, tmp_path / "t.json")
    assert [r["p"] for r in json.loads((tmp_path / "t.json").read_text())] == [0.9, 2.558e-05, 0.12345678]
    render(t, "table", Console(width=100, file=io.StringIO()), tmp_path / "t.txt")
    lines = [ln.split() for ln in (tmp_path / "t.txt").read_text().splitlines()]
    assert lines == [["n", "p", "ms", "hap%"], ["238", "0.9000", "238.4", "50"], ["5", "0.0000", "58.1", "25"], ["12", "0.1235", "0.5"]]
    # a real dataset: csv streamed from DuckDB (float32 columns) and a table of its float columns
    res = CliRunner().invoke(app, ["query", str(single_out), "--sql", "SELECT det_score, prob_fear FROM faces", "--format", "csv"])
    values = [v for line in res.stdout.splitlines()[1:] for v in line.split(",")]
    assert len(values) == 144 and all(v == str(np.float32(v)) for v in values), values[:6]
    tab = CliRunner().invoke(app, ["query", str(single_out), "--sql", "SELECT pts_ms, prob_fear FROM faces", "--format", "table"])
    cells = [ln.split() for ln in tab.stdout.splitlines()[1:]]
    for col in zip(*cells, strict=True):
        assert len({len(c.split(".")[1]) for c in col}) == 1 and not any("e" in c for c in col), col


TYPER_LABELS = re.compile(r"<(str|int|float|path|file|directory|bool|text|list\[[^\]]*\]|[a-z]+ range)>")


def test_help_metavars_say_what_a_value_is_and_min_face_px_suggests_one():
    """No command's --help shows typer's type labels (<str>, <int>, <list[str]>, <float range>)."""
    cmd = typer.main.get_command(app)
    paths = [[n] if not hasattr(c, "commands") else [n, s] for n, c in cmd.commands.items() for s in (getattr(c, "commands", None) or [""])]
    for path in paths:
        res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        assert not TYPER_LABELS.search(res.stdout), (path, TYPER_LABELS.findall(res.stdout))
    text = " ".join(CliRunner().invoke(app, ["run", "-h"], env=W80).stdout.split())
    assert "--min-face-px PX" in text and "Try 30" in text
    assert "{VIDEO|DIR|URI}..." in text and "VIDEO|DIR|URI Video files" in text  # the argument: its metavar, no <list[str]>
    assert "OUT A ferbatch output" in " ".join(CliRunner().invoke(app, ["query", "-h"], env=W80).stdout.split())


def test_emotion_takes_the_common_names(single_out):
    """--emotion happy is happiness (as eval's folder names); an unknown name lists the choices."""
    args = ["--min-prob", "0.5", "--min-duration", "0.1s", "--format", "jsonl"]
    full = CliRunner().invoke(app, ["moments", str(single_out), "--emotion", "happiness", *args])
    for alias in ("happy", "Happy", "joy"):
        res = CliRunner().invoke(app, ["moments", str(single_out), "--emotion", alias, *args])
        assert res.exit_code == 0 and res.stdout == full.stdout and '"emotion": "happiness"' in res.stdout, res.output
    bad = CliRunner().invoke(app, ["moments", str(single_out), "--emotion", "glee", *args])
    assert bad.exit_code == 2 and "--emotion | received 'glee'; expected one of neutral, happiness" in bad.stderr and "happy" in bad.stderr
    import ferbatch

    with ferbatch.open(single_out) as ds:
        assert ds.moments("happy", 0.5, "0.1s").equals(ds.moments("happiness", 0.5, "0.1s"))
