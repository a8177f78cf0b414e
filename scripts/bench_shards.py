"""Scaling of the Ray job on a long input: 1 worker vs 2 workers, 1 shard vs many.

Builds a long clip once (a real sample clip decoded and re-encoded end to end, H.264, to at
least --frames frames; cached in the temp dir), then times ``run_job`` (embedded Ray, each worker
single-threaded) for each setting into a fresh output directory. Ratios are against the 1-worker,
1-shard run of the same invocation. Ray start-up is excluded (Ray is started once first).

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_shards.py [--frames 5000] [--clip PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import av


def make_long_clip(src: str, dst: Path, frames: int, size: tuple[int, int] | None = None) -> Path:
    """Concatenate ``src`` with itself (decode + H.264 encode) until ``frames`` frames; returns dst.

    ``size`` (width, height) scales every frame first (bilinear, OpenCV), e.g. to make HD clips.
    """
    if dst.is_file():
        return dst
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(src) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        one = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    if size is not None:
        import cv2

        one = [cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) for img in one]
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = one[0].shape[1], one[0].shape[0], "yuv420p"
        vs.options = {"preset": "veryfast", "g": "48"}
        n = 0
        while n < frames:
            for img in one:
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
                n += 1
                if n >= frames:
                    break
        for p in vs.encode():
            out.mux(p)
    os.replace(tmp, dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="../shared/data/videos_faces/pyfeat/WolfgangLanger_Pexels.mp4")
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--shard-frames", type=int, default=500)
    ap.add_argument(
        "--prefetch",
        type=int,
        default=2,
        help="decoded batches buffered per worker; 0 = decode in the inference thread, i.e. strictly one thread of work per worker",
    )
    a = ap.parse_args()
    from ferbatch.config import JobConfig
    from ferbatch.job import run_job
    from ferbatch.job.workers import init_ray

    long = make_long_clip(a.clip, Path(tempfile.gettempdir()) / f"ferbatch_long_{Path(a.clip).stem}_{a.frames}.mp4", a.frames)
    init_ray(None, len(os.sched_getaffinity(0)))
    res = {}
    for workers, shard in [(1, 0), (1, a.shard_frames), (2, a.shard_frames), (2, 0)]:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            s = run_job(long, d, JobConfig(workers=workers, threads_per_worker=1, prefetch=a.prefetch), use_ray=True, shard_frames=shard)
            dt = time.perf_counter() - t
        res[f"{workers}w_{'1shard' if shard == 0 else f'{shard}f_shards'}"] = {
            "frames": s.frames,
            "seconds": round(dt, 2),
            "fps": round(s.frames / dt, 1),
        }
    base = res["1w_1shard"]["fps"]
    for k, v in res.items():
        v["ratio_vs_1w_1shard"] = round(v["fps"] / base, 2)
        print(f"{k:22s} {v['frames']:6d} frames {v['seconds']:7.1f} s {v['fps']:7.1f} frames/s  x{v['ratio_vs_1w_1shard']}")
    print(json.dumps({"input_frames": a.frames, "prefetch": a.prefetch, "cores": len(os.sched_getaffinity(0)), "runs": res}))


if __name__ == "__main__":
    main()
