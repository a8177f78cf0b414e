"""A job never reaches the network: ONNX Runtime's telemetry is off, Ray reports no usage stats
and probes no cloud metadata service, the embedded Ray node lives on 127.0.0.1.

A small in-process job and a Ray job (one short clip) run in a child process under
``strace -f -e trace=connect,sendto,sendmsg``, so every process counts (Ray's GCS, raylet,
dashboard and worker processes too); any connection or datagram to an address that is not
loopback, and any DNS query (anything sent to port 53), fails the test. ``ferbatch serve`` on
127.0.0.1 runs at the same time in a second traced child: it answers one real image request
(``POST /v1/analyze`` with its bearer token), lives as long as the jobs' child (ONNX Runtime's
telemetry delay, so both share one wait) and is stopped by its pid. The children start without
``RAY_*`` or ``ORT_*`` variables in their environment: ferbatch itself must turn things off.
Skipped where strace is missing or cannot trace (CI installs it, see .ci/run).

What it found (each fails the test when its fix is taken out):
- ONNX Runtime 1.3x looks up its telemetry host ~30 s after import even after
  ``disable_telemetry_events()``: ``ORT_DISABLE_TELEMETRY=1`` before the import stops it.
- Ray turns ``_node_ip_address="127.0.0.1"`` into the address of a UDP probe towards 8.8.8.8
  and runs GCS/raylet traffic over the machine's address: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``.
- Ray's dashboard process (started even without the dashboard) asks 169.254.169.254 and
  resolves metadata.google.internal before reading the usage-stats opt-out: its plain-HTTP
  requests are sent to a closed loopback proxy port.
- ``ferbatch serve`` needed no fix of its own (the runner's telemetry switch covers it); a UDP
  ``connect`` to 192.0.2.1 added before ``uvicorn.run`` (a mutation, since restored) fails the test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import INTEL_2FACE, MULTI_FACE, SINGLE_FACE
from servers import free_port, wait_until

FEMALE = INTEL_2FACE.parent / "head-pose-face-detection-female.mp4"  # 23 frames

# ONNX Runtime's telemetry uploader sends its first batch about 30 s after the library loads
# (disable_telemetry_events() does not stop it): the child lives that long, whatever the jobs took.
HOLD_S = 40

JOBS = textwrap.dedent(
    f"""
    import sys, time
    t0 = time.monotonic()
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    clip, short, out = sys.argv[1:4]
    s = run_job(clip, out + "/local", JobConfig(workers=1), use_ray=False)
    assert s.ok == 1, s
    s = run_job(short, out + "/ray", JobConfig(workers=1), use_ray=True)
    assert s.ok == 1, s
    time.sleep(max(0.0, {HOLD_S} - (time.monotonic() - t0)))
    print("JOBS OK")
    """
)

# connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.1")}, 16)
_INET = re.compile(r"sa_family=AF_INET6?, sin6?_port=htons\((\d+)\).*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True).returncode == 0


def outside_calls(log: str) -> list[str]:
    """The traced calls that left the machine or looked a name up: an AF_INET/AF_INET6 address
    that is not loopback (0.0.0.0, ::, ::1, 127/8 and IPv4-mapped loopback are local), or port 53."""
    bad = []
    for line in log.splitlines():
        for port, v4, v6 in _INET.findall(line):
            addr = ipaddress.ip_address(v4 or v6)
            mapped = getattr(addr, "ipv4_mapped", None)
            local = addr.is_loopback or addr.is_unspecified or (mapped is not None and mapped.is_loopback)
            if not local or int(port) == 53:
                bad.append(line.strip())
    return bad


def test_outside_calls_are_recognised():
    log = "\n".join(
        [
            '12 connect(5, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
            '12 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 0',
            '13 connect(6, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
            '14 connect(7, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1 ENETUNREACH',
            '15 sendto(8, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 1',
            '16 connect(9, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0',
        ]
    )
    assert [b.split()[0] for b in outside_calls(log)] == ["13", "14", "15"]


def _traced(log: Path) -> list[str]:
    """The strace prefix writing every process's calls to ``log``."""
    return ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none", "-o", str(log)]


def _analyze(url: str, token: str, image: Path) -> dict:
    """POST ``image`` to ``url``/v1/analyze as a multipart upload with the bearer token (urllib: the
    request comes from this untraced process); the JSON answer."""
    boundary = "ferbatch-network-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{url}/v1/analyze",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return json.loads(r.read()).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop_traced(tracer: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM the process strace started (by its pid, found as the tracer's child), then wait for
    the tracer; the traced process's exit status as strace reports it (None when it was gone)."""
    import psutil

    if tracer.poll() is None:
        for child in psutil.Process(tracer.pid).children():
            os.kill(child.pid, signal.SIGTERM)
        try:
            tracer.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(tracer.pid).children(recursive=True):
                os.kill(child.pid, signal.SIGKILL)
            tracer.wait(10)
    return tracer.returncode


@pytest.mark.skipif(not _strace_works(), reason="strace is not installed or cannot trace here")
def test_jobs_and_serve_reach_no_network(tmp_path):
    pytest.importorskip("psutil")
    pytest.importorskip("uvicorn")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ORT_"))}
    env["FERBATCH_CACHE"] = os.environ.get("FERBATCH_CACHE") or str(tmp_path / "cache")
    jobs_log, serve_log, serve_out = tmp_path / "strace_jobs.log", tmp_path / "strace_serve.log", tmp_path / "serve.out"
    token = "network-test-token"
    (tmp_path / "token").write_text(token + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_cmd = [*_traced(serve_log), sys.executable, "-m", "ferbatch", "serve", "--host", "127.0.0.1", "--port", str(port)]
    serve_cmd += ["--token-file", str(tmp_path / "token"), "--backend", "onnxruntime"]
    t0 = time.monotonic()
    with open(serve_out, "wb") as out:
        serve = subprocess.Popen(serve_cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    jobs_cmd = [*_traced(jobs_log), sys.executable, "-c", JOBS, str(SINGLE_FACE), str(FEMALE), str(tmp_path)]
    jobs = subprocess.Popen(jobs_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _healthy(url), 120, "ferbatch serve start-up under strace", serve, serve_out)
        answer = _analyze(url, token, MULTI_FACE)
        assert answer["kind"] == "image" and answer["frames"][0]["faces"], answer
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - t0)))  # serve outlives ONNX Runtime's telemetry delay
        assert _stop_traced(serve) in (0, 128 + signal.SIGTERM, -signal.SIGTERM), serve_out.read_text()[-3000:]
        stdout, stderr = jobs.communicate(timeout=240)
    finally:
        for p in (serve, jobs):
            if p.poll() is None:
                _stop_traced(p, timeout=5)
    assert jobs.returncode == 0 and "JOBS OK" in stdout, stderr[-3000:]
    # the traces saw the processes: Ray's own (local) connections; serve's answer to the request
    for log, seen in ((jobs_log, "connect("), (serve_log, '"HTTP/1.1 200')):
        text = log.read_text(errors="replace")
        assert seen in text, f"{log.name} lacks {seen}"
        bad = outside_calls(text)
        assert not bad, f"{log.name}:\n" + "\n".join(bad[:20])
