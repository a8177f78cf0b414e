"""The command line: every command explains itself, imports need no GPU stack, a real run works."""

import subprocess
import sys

import pytest
import typer.main
from conftest import SINGLE_FACE
from typer.testing import CliRunner

from ferbatch.cli import app


def test_every_command_has_help():
    cmd = typer.main.get_command(app)
    for name, sub in cmd.commands.items():
        assert sub.help, f"{name} is missing its help"
        res = CliRunner().invoke(app, [name, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


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
    assert "72" in res.output  # frames
    q = CliRunner().invoke(app, ["query", str(out), "--sql", "SELECT count(*) AS n FROM frames", "--format", "csv"])
    assert q.exit_code == 0 and q.output.strip().splitlines()[-1] == "72"
    bad = CliRunner().invoke(app, ["query", str(out), "--sql", "COPY faces TO 'x.csv'"])
    assert bad.exit_code == 2


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
