"""Submitting the job to a running Ray cluster through Ray's Jobs API (``JobSubmissionClient``).

The cluster runs ``python -m jobs.run_ferbatch INPUTS --out OUT ...`` from a ``working_dir`` that
holds this checkout (``ferbatch/`` with its registry and bundled model, ``jobs/``), so the package and its registry
travel with the job; third-party dependencies come from the cluster's image or from ``pip`` in
the runtime env (``--pip``). Ray 2.6x clusters use token authentication: the client sends the
token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from ferbatch.errors import ConfigError

__all__ = ["runtime_env", "submit", "client", "submission_id_for", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # ferbatch/job/submit.py -> the checkout
AGENT_WAIT_S = 60  # how long to retry while a freshly started head has no job agent yet
_EXCLUDES = [
    ".git",
    ".venv*",
    "out",
    "**/__pycache__",
    "*.egg-info",
    "engines/*.plan",
    "engines/*.engine",
    "engines/*.cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "/.whl",
    "report",
]


def runtime_env(*, model_mirror: str | None = None, pip: Sequence[str] = (), env_vars: dict[str, str] | None = None) -> dict:
    """The runtime env of a submitted job.

    Args:
        model_mirror: ``FERBATCH_MODEL_MIRROR`` as the cluster's nodes see it (a shared path).
        pip: extra pip requirements installed for the job (e.g. the core dependencies).
        env_vars: more environment variables for the job and its workers.
    """
    if not (REPO_ROOT / "jobs" / "run_ferbatch.py").is_file():
        raise ConfigError(f"{REPO_ROOT} | not a ferbatch checkout (jobs/run_ferbatch.py missing): submit from a clone")
    env = {"RAY_USAGE_STATS_ENABLED": "0", **(env_vars or {})}
    if model_mirror:
        env["FERBATCH_MODEL_MIRROR"] = model_mirror
    rt: dict = {"working_dir": str(REPO_ROOT), "excludes": list(_EXCLUDES), "env_vars": env}
    if pip:
        rt["pip"] = list(pip)
    return rt


# object-storage settings a submitted job inherits from the submitting shell (never the keys: a
# runtime env is stored in Ray's GCS and shown by the dashboard; credentials belong on the nodes,
# e.g. a Kubernetes Secret or an instance role: jobs/README.md)
STORAGE_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def storage_env(inputs: Sequence[str], out: str) -> dict[str, str]:
    """The :data:`STORAGE_SETTINGS` set here, when an input or OUT is an object-storage URI."""
    from ferbatch.location import is_uri

    if not any(is_uri(p) for p in (*inputs, out)):
        return {}
    return {k: os.environ[k] for k in STORAGE_SETTINGS if os.environ.get(k)}


def submission_id_for(inputs: Sequence[str], out: str, run_args: Sequence[str]) -> str:
    """A deterministic id (``ferbatch-<12 hex>``) so the same job submitted twice is refused by Ray."""
    key = json.dumps([list(inputs), out, list(run_args)])
    return "ferbatch-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def client(address: str):
    """A ``JobSubmissionClient`` for the dashboard at ``address`` (http://HEAD:8265).

    Raises:
        ConfigError: the cluster cannot be reached (the message says which address).
    """
    from ray.job_submission import JobSubmissionClient

    # The SDK only sends a token once token auth is enabled in this process; clusters started by
    # Ray 2.6x require one. When the user has a token and chose no RAY_AUTH_MODE, use it (what
    # `ray.init` does) instead of failing with "Unauthorized".
    if "RAY_AUTH_MODE" not in os.environ:
        try:
            from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        except ImportError:  # another Ray version: the user sets RAY_AUTH_MODE=token
            pass
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # ConnectionError, RuntimeError from the SDK
        raise ConfigError(f"--address {address} | cannot reach the Ray dashboard: {e}") from e


def submit(
    address: str,
    inputs: Sequence[str],
    out: str,
    run_args: Sequence[str] = (),
    *,
    submission_id: str | None = None,
    model_mirror: str | None = None,
    pip: Sequence[str] = (),
    entrypoint_num_cpus: float = 0,
) -> str:
    """Submit ``ferbatch run INPUTS --out OUT RUN_ARGS`` to the cluster; returns the submission id.

    Every user string is shell-quoted into the entrypoint (Ray runs it through a shell). The
    driver reserves no CPU by default (``entrypoint_num_cpus=0``): it only schedules, and a
    reserved CPU would leave a worker actor unplaceable on a small cluster.

    Raises:
        ConfigError: the cluster cannot be reached or refuses the job (e.g. the id exists).
    """
    sid = submission_id or submission_id_for(inputs, out, run_args)
    cmd = ["python", "-m", "jobs.run_ferbatch", *inputs, "--out", out, *run_args]
    c = client(address)
    logging.getLogger("ray").setLevel(logging.WARNING)  # packaging chatter
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return c.submit_job(
                entrypoint=" ".join(shlex.quote(arg) for arg in cmd),
                submission_id=sid,
                runtime_env=runtime_env(model_mirror=model_mirror, pip=pip, env_vars=storage_env(inputs, out)),
                entrypoint_num_cpus=entrypoint_num_cpus,
                metadata={"tool": "ferbatch"},
            )
        except RuntimeError as e:
            # a head that has just started answers "No available agent ... try again later"
            if "try again later" in str(e) and time.monotonic() < deadline:
                time.sleep(2)
                continue
            if "already exists" in str(e):
                raise ConfigError(
                    f"submission id {sid} | already exists on the cluster: the same job was submitted before "
                    "(see `ferbatch jobs status`), or pass --submission-id"
                ) from e
            raise ConfigError(f"submit to {address} | the cluster refused the job: {str(e).splitlines()[-1]}") from e
