"""Helpers for tests that start real servers on 127.0.0.1 in child processes (stopped by pid)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``python <args>`` from the repo root in its own process group (stdout/stderr to ``log``)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=e, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Send ``sig`` to the child (by pid), wait, SIGKILL it if it does not end; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def wait_until(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``cond`` every 0.1 s for at most ``timeout`` s; AssertionError naming ``what`` otherwise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended with {proc.returncode}" + (f"\n{log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s" + (f"\n{log.read_text()[-3000:]}" if log and log.exists() else ""))


def wait_serving(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    """Wait until ``ferbatch serve`` at ``url`` answers ``/healthz`` with status ok (its models loaded)."""
    import httpx

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).json()["status"] == "ok"
        except httpx.HTTPError:
            return False

    wait_until(up, timeout, "ferbatch serve start-up", proc, log)
