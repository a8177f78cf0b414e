"""Commands for Ray clusters: submit a job, and follow, inspect or stop submitted jobs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferbatch.cli.common import console
from ferbatch.cli.common import fail as _fail
from ferbatch.errors import FerbatchError

__all__ = ["register"]


def _require_cluster_extra() -> None:
    """Exit 2 with the install hint when Ray's Jobs API client is missing (core ``ray`` lacks it)."""
    import importlib.util

    if importlib.util.find_spec("aiohttp") is None:  # what Ray's Jobs SDK imports besides core Ray
        _fail(FerbatchError("ray[default] | the cluster commands need Ray's Jobs API client: pip install 'ferbatch[cluster]'"))


def submit(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Video files/directories as the cluster's nodes see them.", show_default=False)],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output directory on storage every node shares, or an s3:// / gs:// URI (the nodes need the credentials; "
            "AWS_ENDPOINT_URL and AWS_REGION are passed on).",
        ),
    ],
    address: Annotated[
        str, typer.Option(help="The cluster's dashboard, e.g. http://HEAD:8265.", envvar="RAY_ADDRESS", show_envvar=True, metavar="URL")
    ],
    submission_id: Annotated[
        str | None, typer.Option(help="Job id; default: a hash of inputs, out and options (a repeat is refused).", metavar="ID")
    ] = None,
    model_mirror: Annotated[str | None, typer.Option(help="FERBATCH_MODEL_MIRROR on the cluster's nodes.", metavar="DIR|URL")] = None,
    pip: Annotated[
        list[str] | None, typer.Option(help="Extra pip requirement for the job's runtime env (repeatable).", metavar="REQUIREMENT")
    ] = None,
) -> None:
    """Submit a ferbatch run to a running Ray cluster (Ray Jobs API).

    Options after `--` are passed to `ferbatch run` on the cluster.

    Example: ferbatch submit /data/videos --out /shared/out --address http://head:8265 --model-mirror /shared/models -- --shard-frames 3000

    Clusters with token authentication (the Ray 2.6x default): the token is read from RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.
    """
    from ferbatch.job.submit import submit as do_submit

    _require_cluster_extra()
    try:
        sid = do_submit(address, inputs, out, list(ctx.args), submission_id=submission_id, model_mirror=model_mirror, pip=pip or ())
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # the SDK raises RuntimeError for a duplicate id, a refused upload, ...
        _fail(FerbatchError(f"submit | {e}"))
    print(sid)
    console.print(f"follow it with: ferbatch jobs logs {sid} --address {address} --follow", soft_wrap=True, highlight=False, markup=False)


jobs_app = typer.Typer(help="Status, logs and stopping of submitted jobs (Ray Jobs API).", no_args_is_help=True)
AddressOpt = Annotated[
    str, typer.Option(help="The cluster's dashboard, e.g. http://HEAD:8265.", envvar="RAY_ADDRESS", show_envvar=True, metavar="URL")
]
SubmissionIdArg = Annotated[
    str, typer.Argument(help="The job's submission id (ferbatch submit prints it).", metavar="ID", show_default=False)
]


@jobs_app.command("status")
def jobs_status(submission_id: SubmissionIdArg, address: AddressOpt) -> None:
    """Print a submitted job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

    Example: ferbatch jobs status ferbatch-1a2b3c4d5e6f --address http://head:8265
    """
    from ferbatch.job.submit import client

    _require_cluster_extra()
    try:
        info = client(address).get_job_info(submission_id)
    except FerbatchError as e:
        _fail(e)
    except Exception as e:  # unknown id
        _fail(FerbatchError(f"{submission_id} | {e}"))
    print(info.status.value if hasattr(info.status, "value") else info.status)
    if info.message:
        console.print(info.message, soft_wrap=True, highlight=False, markup=False)


@jobs_app.command("logs")
def jobs_logs(
    submission_id: SubmissionIdArg,
    address: AddressOpt,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """Print a submitted job's logs.

    Example: ferbatch jobs logs ferbatch-1a2b3c4d5e6f --address http://head:8265 --follow
    """
    import asyncio

    from ferbatch.job.submit import client

    _require_cluster_extra()
    try:
        c = client(address)
        if not follow:
            sys.stdout.write(c.get_job_logs(submission_id))
            return

        async def tail():
            async for chunk in c.tail_job_logs(submission_id):
                sys.stdout.write(chunk)
                sys.stdout.flush()

        asyncio.run(tail())
    except Exception as e:
        _fail(FerbatchError(f"{submission_id} | {e}"))


@jobs_app.command("stop")
def jobs_stop(submission_id: SubmissionIdArg, address: AddressOpt) -> None:
    """Stop a submitted job (a rerun with the same --out resumes it).

    Example: ferbatch jobs stop ferbatch-1a2b3c4d5e6f --address http://head:8265
    """
    from ferbatch.job.submit import client

    _require_cluster_extra()
    try:
        stopped = client(address).stop_job(submission_id)
    except Exception as e:
        _fail(FerbatchError(f"{submission_id} | {e}"))
    print("stopping" if stopped else "already finished")


@jobs_app.command("list")
def jobs_list(address: AddressOpt) -> None:
    """List the cluster's submitted jobs.

    Example: ferbatch jobs list --address http://head:8265
    """
    from ferbatch.job.submit import client

    _require_cluster_extra()
    t = Table("submission id", "status", "entrypoint")
    try:
        jobs = client(address).list_jobs()
    except FerbatchError as e:
        _fail(e)
    for j in jobs:
        t.add_row(str(j.submission_id), str(getattr(j.status, "value", j.status)), j.entrypoint[:80])
    Console().print(t)


def register(app: typer.Typer) -> None:
    """Add ``submit`` and the ``jobs`` group to ``app``."""
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit)
    app.add_typer(jobs_app, name="jobs")
