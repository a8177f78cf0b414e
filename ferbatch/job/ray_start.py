"""Ray start-up for a job: connect to a cluster, or start an embedded instance that reaches no
network (usage stats off, loopback node, no dashboard, no metrics export), keeping the caller's
SIGTERM handler. :mod:`ferbatch.job.workers` re-exports :func:`init_ray`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["init_ray", "EMBEDDED_RAY_ENV"]

# Every Ray process of the embedded instance inherits these (they are set before ``ray.init``
# starts the GCS, raylet, dashboard and agents, whose workers inherit them in turn):
EMBEDDED_RAY_ENV = {
    # no usage-stats reporting
    "RAY_USAGE_STATS_ENABLED": "0",
    # the node's address is loopback: without this Ray replaces 127.0.0.1 by the address its
    # UDP "route to 8.8.8.8" probe finds, and its processes connect to each other over it
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray 2.6x's dashboard process (started even with include_dashboard=False, for usage stats)
    # asks the cloud metadata services (169.254.169.254, metadata.google.internal) which cloud
    # it runs on before it reads the opt-out, and no setting turns that off: its plain-HTTP
    # requests go to a closed loopback port instead (nothing of an embedded instance uses plain
    # HTTP off this machine; HTTPS and loopback are left alone)
    "http_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
}
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def init_ray(address: str | None, num_cpus: int) -> None:
    """Connect to the Ray cluster at ``address``, or start an embedded one (``address`` None)
    with ``num_cpus`` CPUs that reaches no network: usage stats off, the node on 127.0.0.1, no
    dashboard, no metrics export (:data:`EMBEDDED_RAY_ENV`). Nothing happens when Ray is
    already initialised in this process.

    ``RAY_USAGE_STATS_ENABLED=0`` is set in this process for good, before Ray is imported; the
    rest of :data:`EMBEDDED_RAY_ENV` only while the embedded instance starts (its processes keep
    it; this process gets its own values back).

    Raises:
        ConnectionError, RuntimeError: Ray's own, when the cluster cannot be reached or started.
    """
    # no usage-stats reporting (it contacts cloud metadata services); set before Ray reads it
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    if ray.is_initialized():
        return
    with _own_sigterm():
        _start_ray(ray, address, num_cpus)


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler across ``ray.init``, which installs its own (one that
    exits with a stack dump, status 134, instead of the caller's interrupt: ``ferbatch run``'s
    SIGTERM is Ctrl-C, exit 130, finished shards kept)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _start_ray(ray: Any, address: str | None, num_cpus: int) -> None:
    """``ray.init`` for :func:`init_ray`: connect to ``address``, or start the embedded instance."""
    if address:
        ray.init(address=address, configure_logging=False, log_to_driver=True)
    else:
        # address="local": always a new embedded instance, never a cluster that happens to run on
        # this machine. No dashboard, no metrics export, the node's address on loopback; Ray 2.6x
        # token authentication is on by default and stays on, its token file private to the user
        # (umask while Ray creates it, chmod for one an older Ray created world-readable).
        old_umask = os.umask(0o077)
        quiet = _DropTokenNotice()
        token_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
        token_log.addFilter(quiet)  # "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to opt out": ferbatch wants it on
        try:
            with _embedded_env() as own:
                ray.init(
                    runtime_env={"env_vars": own},  # the workers get this process's proxies back ("" = none)
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    object_store_memory=256 * 2**20,
                    configure_logging=False,
                    log_to_driver=True,
                    _node_ip_address="127.0.0.1",
                    _system_config={"enable_metrics_collection": False},
                )
        finally:
            os.umask(old_umask)
            token_log.removeFilter(quiet)
        _private_token_file()


class _DropTokenNotice(logging.Filter):
    """Drops Ray's notice that it turned token authentication on for a new local instance (and how
    to opt out): ferbatch keeps it on on purpose (the embedded Ray's ports listen on every
    interface), so the notice only invites the user to weaken it. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


@contextlib.contextmanager
def _embedded_env() -> Iterator[dict[str, str]]:
    """:data:`EMBEDDED_RAY_ENV` (and loopback in ``no_proxy``) in ``os.environ`` while an
    embedded Ray starts; Ray's "is this a cluster" constant follows it when Ray was imported
    before it was set. Everything is put back afterwards. Yields this process's own proxy
    settings ("" where unset), for the worker processes."""
    from ray._private import ray_constants

    no_proxy = ",".join(x for x in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY"), *_LOOPBACK) if x)
    env = {**EMBEDDED_RAY_ENV, "no_proxy": no_proxy, "NO_PROXY": no_proxy}
    saved = {k: os.environ.get(k) for k in env}
    cluster = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ.update(env)
    if cluster is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield {k: v or "" for k, v in saved.items() if "proxy" in k.lower()}
    finally:
        for k, v in saved.items():
            if k == "RAY_USAGE_STATS_ENABLED":
                continue
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cluster is not None:
            ray_constants.ENABLE_RAY_CLUSTER = cluster


def _private_token_file() -> None:
    """Make Ray's token file (``~/.ray/auth_token``) readable by its owner only."""
    default = Path.home() / ".ray" / "auth_token"
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or default)
    with contextlib.suppress(OSError):
        if token.is_file():
            token.chmod(0o600)
            if token == default:
                token.parent.chmod(0o700)
