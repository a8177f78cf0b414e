"""ferbatch against the seed's loop and against the physical bound, on one real video (CPU).

One run measures, on the same video and the same model files:
1. decode only: PyAV (ferbatch's decoder) and OpenCV VideoCapture, frames/s;
2. model only: the detector (frames/s at ferbatch's batch) and the classifier (faces/s), single-threaded;
3. the seed's loop (the LearnOpenCV recipe): OpenCV reads a frame, cv2.dnn runs the detector,
   cv2.dnn.NMSBoxes, cv2.dnn classifies face by face;
4. ferbatch end to end: the in-process pipeline (all cores) and the Ray job (one single-threaded
   worker per core, shards; Ray start-up excluded);
5. ratios: (4)/(3), and (4)/bound with bound = cores / (decode + detector + classifier x faces per
   frame), each stage's single-threaded time per frame;
6. peak RSS of the in-process pipeline on the clip and on the clip concatenated 10 times.
Nothing here is asserted: it prints a table and one JSON line.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench.py [VIDEO] [--repeat 3] [--no-rss] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferbatch.config import JobConfig
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.load import load_models
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.pipeline import process_shard
from ferbatch.vision.classify import extract_crops


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def opencv_decode(video: str) -> int:
    cap = cv2.VideoCapture(video)
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def seed_loop(video: str, det_file: str, cls_file: str, score=0.7, iou=0.3) -> tuple[int, int]:
    """The LearnOpenCV-style loop: cv2 decode, cv2.dnn detector, NMSBoxes, cv2.dnn classifier per face."""
    det = cv2.dnn.readNetFromONNX(det_file)
    cls = cv2.dnn.readNetFromONNX(cls_file)
    cap = cv2.VideoCapture(video)
    frames = faces = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        det.setInput(cv2.dnn.blobFromImage(frame, 1 / 128, (320, 240), (127, 127, 127), swapRB=True))
        scores, boxes = det.forward(["scores", "boxes"])
        s, b = scores[0, :, 1], boxes[0] * np.array([w, h, w, h], np.float32)
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
        for k in np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), s.tolist(), score, iou)).reshape(-1):
            x1, y1, x2, y2 = np.clip(b[k], 0, [w, h, w, h]).astype(int)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            gray = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
            cls.setInput(cv2.dnn.blobFromImage(cv2.resize(gray, (64, 64)), 2 / 255, (64, 64), 127.5))
            cls.forward()
            faces += 1
        frames += 1
    return frames, faces


RSS_CHILD = """
import resource, sys
from ferbatch.config import JobConfig
from ferbatch.job import run_job
s = run_job(sys.argv[1], sys.argv[2], JobConfig(workers=1, track=False), use_ray=False, shard_frames=0)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(s.frames, hwm)
"""


def peak_rss_mib(video: str) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, video, d], capture_output=True, text=True, check=True).stdout.split()
    return int(out[-2]), int(out[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", default="../shared/data/videos_faces/pyfeat/WolfgangLanger_Pexels.mp4")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-rss", action="store_true", help="skip the 1x / 10x memory runs")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray job")
    ap.add_argument("--smoke", action="store_true", help="tiny settings for CI: 1 repeat, no RSS, no Ray")
    a = ap.parse_args()
    if a.smoke:
        a.repeat, a.no_rss, a.no_ray = 1, True, True
    cores = len(os.sched_getaffinity(0))
    res: dict = {"video": os.path.basename(a.video), "cores": cores, "cpu": cpu_model()}
    info, index = probe_video(a.video)
    frames = [f.image for f in iter_frames(a.video, index)]
    n = len(frames)
    res["frames"] = n
    # 1. decode only (single thread: FFmpeg thread_count 1)
    res["decode_pyav_fps"] = n / best_of(lambda: sum(1 for _ in iter_frames(a.video, index, threads=1)), a.repeat)
    cv2.setNumThreads(1)
    res["decode_opencv_fps"] = n / best_of(lambda: opencv_decode(a.video), a.repeat)
    # 2. models only, single-threaded, at ferbatch's batch sizes
    cfg = JobConfig()
    m1 = load_models(cfg, threads=1)
    res["detect_fps_1thread"] = n / best_of(lambda: m1.detector.detect(frames), a.repeat)
    dets = m1.detector.detect(frames)
    crops = extract_crops(frames, dets, m1.classifier.spec)
    res["faces_per_frame"] = len(crops) / n
    res["crop_fps_1thread"] = n / best_of(lambda: extract_crops(frames, dets, m1.classifier.spec), a.repeat)
    res["classify_faces_per_s_1thread"] = len(crops) / best_of(lambda: m1.classifier.classify(crops), a.repeat)
    m1.close()
    # 3. the seed's loop: once single-threaded, once with OpenCV's default threads (what a user's
    #    script gets); the ratio uses the faster of the two
    reg = load_registry()
    det_file = str(resolve_model_file(reg.get(reg.default_detector)))
    # the seed's classifier is a public 64x64 gray model run through cv2.dnn: mini-XCEPTION here
    cls_file = str(resolve_model_file(reg.get("mini-xception-fer2013")))
    res["seed_loop_fps_1thread"] = n / best_of(lambda: seed_loop(a.video, det_file, cls_file), max(1, a.repeat - 1))
    cv2.setNumThreads(cores)
    res["seed_loop_fps"] = max(
        res["seed_loop_fps_1thread"], n / best_of(lambda: seed_loop(a.video, det_file, cls_file), max(1, a.repeat - 1))
    )
    # 4. ferbatch end to end
    m = load_models(cfg, threads=cores)
    shard = Shard("b", a.video, 0, 0, None, index)
    res["ferbatch_inprocess_fps"] = info.packets / best_of(lambda: process_shard(shard, m), a.repeat)
    m.close()
    if not a.no_ray:
        from ferbatch.job import run_job
        from ferbatch.job.workers import init_ray

        init_ray(None, cores)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            s = run_job(a.video, d, JobConfig(workers=cores, threads_per_worker=1), use_ray=True, shard_frames=max(60, n // (2 * cores)))
            res["ferbatch_ray_fps"] = s.frames / (time.perf_counter() - t)
    # 5. ratios
    per_frame_1t = (
        1 / res["decode_pyav_fps"]
        + 1 / res["detect_fps_1thread"]
        + 1 / res["crop_fps_1thread"]
        + res["faces_per_frame"] / res["classify_faces_per_s_1thread"]
    )
    res["bound_fps"] = cores / per_frame_1t
    best = max(res["ferbatch_inprocess_fps"], res.get("ferbatch_ray_fps", 0))
    res["ferbatch_best_fps"] = best
    res["ratio_vs_seed"] = best / res["seed_loop_fps"]
    res["ratio_vs_bound"] = best / res["bound_fps"]
    # 6. memory flat in video length (and the steady-state Ray throughput on the 10x clip)
    if not a.no_rss:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_shards import make_long_clip

        long = make_long_clip(a.video, Path(tempfile.gettempdir()) / f"ferbatch_long_{Path(a.video).stem}_{10 * n}.mp4", 10 * n)
        if not a.no_ray:
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                s = run_job(long, d, JobConfig(workers=cores, threads_per_worker=1), use_ray=True, shard_frames=500)
                res["ferbatch_ray_fps_10x_clip"] = s.frames / (time.perf_counter() - t)
                res["ratio_vs_bound_10x_clip"] = res["ferbatch_ray_fps_10x_clip"] / res["bound_fps"]
        f1, r1 = peak_rss_mib(a.video)
        f10, r10 = peak_rss_mib(str(long))
        res.update(rss_1x_mib=r1, rss_10x_mib=r10, rss_ratio_10x_vs_1x=r10 / r1, rss_frames=[f1, f10])
    res["rss_this_process_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for k, v in res.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
