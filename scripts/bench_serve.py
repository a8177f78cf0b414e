"""Latency and throughput of ``ferbatch serve``: a real uvicorn on 127.0.0.1, N requests of one
image at a bounded concurrency, p50/p95 latency (ms) and requests/s.

    FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_serve.py IMAGE [--requests 200] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-batch", type=int, default=16)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FERBATCH_TOKEN="bench", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "ferbatch", "serve", "--port", str(port), "--backend", "onnxruntime", "--max-batch", str(a.max_batch)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        data = a.image.read_bytes()
        print(f"image {a.image.name} ({len(data)} bytes), {a.requests} requests, max batch {a.max_batch}")
        print("| concurrency | p50 ms | p95 ms | requests/s | model calls |")
        print("|---|---|---|---|---|")
        for c in a.concurrency:
            before = httpx.get(f"{url}/healthz").json()["batcher"]["calls"]
            lat, secs = asyncio.run(_load(url, data, a.requests, c))
            calls = httpx.get(f"{url}/healthz").json()["batcher"]["calls"] - before
            print(f"| {c} | {np.percentile(lat, 50):.1f} | {np.percentile(lat, 95):.1f} | {a.requests / secs:.1f} | {calls} |")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def _load(url: str, data: bytes, n: int, conc: int) -> tuple[list[float], float]:
    sem = asyncio.Semaphore(conc)
    lat: list[float] = []
    async with httpx.AsyncClient(timeout=120, headers={"Authorization": "Bearer bench"}) as c:
        await c.post(f"{url}/v1/analyze", files={"file": ("i.jpg", data, "image/jpeg")})  # warm-up

        async def one() -> None:
            async with sem:
                t = time.perf_counter()
                r = await c.post(f"{url}/v1/analyze", files={"file": ("i.jpg", data, "image/jpeg")})
                r.raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(n)])
        return lat, time.perf_counter() - t0


if __name__ == "__main__":
    main()
