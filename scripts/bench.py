"""Throughput of ferbatch's stages and of the whole pipeline on one real video (CPU, ONNX Runtime).

Prints frames/s for: decode only (PyAV), detector only, classifier only (faces/s), the in-process
pipeline, and the Ray job; ratios are against decode-only measured in the same run. No timing is
asserted anywhere: this is a measurement, not a test.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench.py [VIDEO] [--ray] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


from ferbatch.classify import extract_crops
from ferbatch.config import JobConfig
from ferbatch.loaders import load_models
from ferbatch.pipeline import Shard, process_shard
from ferbatch.video import iter_frames, probe_video


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", default="../shared/data/videos_faces/pyfeat/WolfgangLanger_Pexels.mp4")
    ap.add_argument("--ray", action="store_true", help="also time the Ray job (includes Ray start-up)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    info, index = probe_video(a.video)
    n = info.packets
    frames = [f.image for f in iter_frames(a.video, index)]
    res = {"video": os.path.basename(a.video), "frames": len(frames), "cores": cores, "cpu": platform.processor() or platform.machine()}
    res["decode_fps"] = len(frames) / best_of(lambda: sum(1 for _ in iter_frames(a.video, index)), a.repeat)
    cfg = JobConfig()
    m = load_models(cfg, threads=cores)
    res["detect_fps"] = len(frames) / best_of(lambda: [m.detector.detect(frames[i:i + 8]) for i in range(0, len(frames), 8)], a.repeat)
    dets = m.detector.detect(frames)
    crops = extract_crops(frames, dets, m.classifier.spec)
    res["classify_faces_per_s"] = len(crops) / best_of(lambda: m.classifier.classify(crops), a.repeat)
    shard = Shard("b", a.video, 0, 0, None, index)
    res["pipeline_fps"] = n / best_of(lambda: process_shard(shard, m), a.repeat)
    m.close()
    if a.ray:
        from ferbatch.job import run_job

        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            s = run_job(a.video, d, cfg, use_ray=True, shard_frames=max(100, n // (2 * cores)))
            res["ray_job_fps_incl_startup"] = s.frames / (time.perf_counter() - t)
    bound = 1 / (1 / res["decode_fps"] + 1 / res["detect_fps"] + (len(crops) / len(frames)) / res["classify_faces_per_s"])
    res["stage_bound_fps"] = bound
    res["pipeline_vs_bound"] = res["pipeline_fps"] / bound
    res["pipeline_vs_decode"] = res["pipeline_fps"] / res["decode_fps"]
    for k, v in res.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
