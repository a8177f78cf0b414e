"""One command for a machine with an NVIDIA GPU: is the GPU path right, and how fast is it?

    FERBATCH_MODEL_MIRROR=../shared/models python scripts/gpu_check.py --data ../shared/data --out gpu_check.json

1. the device (nvidia-smi, and the CUDA/ONNX Runtime providers this Python sees);
2. ``check-engines`` for each GPU backend present (ONNX Runtime CUDA fp32 and fp16, TensorRT when
   installed) against ONNX Runtime fp32 on the CPU, on a real clip plus all-black frames;
3. the job on the shared sample videos with the GPU backend, rows compared with a CPU run
   (boxes within 1 px, labels equal on >= 99% of faces);
4. throughput on 720p and 1080p clips made from the shared 3-person clip (scaled up, looped):
   decode-only frames/s with 1/4/8/14 processes, end-to-end frames/s with 1/4/8/14 workers per
   GPU, and GPU utilisation sampled by nvidia-smi during each run.
Prints a table and writes JSON. Budget: under 8 minutes on one GPU (``--quick`` halves it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def device_info() -> dict:
    info: dict = {"python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = "name,memory.total,driver_version,compute_cap"
        out = subprocess.run([smi, f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
        info["gpus"] = [dict(zip(q.split(","), (x.strip() for x in line.split(",")), strict=True)) for line in out.splitlines()]
    import onnxruntime as ort

    info["onnxruntime"] = ort.__version__
    info["ort_providers"] = ort.get_available_providers()
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def make_clip(src: Path, dst: Path, width: int, height: int, frames: int) -> Path:
    """Scale ``src`` to width x height and loop it to ``frames`` frames (H.264, GOP 48)."""
    import av
    import cv2

    with av.open(str(src)) as c:
        imgs = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "veryfast", "g": "48"}
        for i in range(frames):
            img = cv2.resize(imgs[i % len(imgs)], (width, height), interpolation=cv2.INTER_LINEAR)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode())
    return dst


def _decode_count(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"
        for f in c.decode(s):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def decode_fps(path: Path, processes: int) -> float:
    """Frames/s of ``processes`` single-threaded PyAV decoders (to RGB), each decoding the clip."""
    ctx = mp.get_context("spawn")
    t = time.perf_counter()
    with ctx.Pool(processes) as pool:
        n = sum(pool.map(_decode_count, [str(path)] * processes))
    return n / (time.perf_counter() - t)


class GpuSampler:
    """nvidia-smi utilisation samples (percent) while a block runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        smi = shutil.which("nvidia-smi")
        while smi and not self._stop.is_set():
            out = subprocess.run([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"], capture_output=True, text=True)
            vals = [float(x) for x in out.stdout.split() if x.strip().replace(".", "").isdigit()]
            if vals:
                self.samples.append(float(np.mean(vals)))
            self._stop.wait(0.5)

    def __enter__(self) -> GpuSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=5)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def compare_rows(a: Path, b: Path) -> dict:
    from ferbatch.dataset.store import open_table

    key = [("video_id", "ascending"), ("frame_idx", "ascending"), ("face_idx", "ascending")]
    fa, fb = open_table(a, "faces").sort_by(key), open_table(b, "faces").sort_by(key)
    res = {"faces_cpu": fa.num_rows, "faces_gpu": fb.num_rows}
    if fa.num_rows == fb.num_rows and fa.num_rows:
        boxes = np.stack([np.abs(fa[c].to_numpy() - fb[c].to_numpy()) for c in ("x1", "y1", "x2", "y2")], 1)
        res["max_box_px"] = float(boxes.max())
        res["labels_equal"] = float(np.mean(np.array(fa["emotion"].to_pylist()) == np.array(fb["emotion"].to_pylist())))
        res["passed"] = res["max_box_px"] <= 1.0 and res["labels_equal"] >= 0.99
    else:
        res["passed"] = False
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (videos_faces/...)")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--backend", default="onnxruntime-cuda", help="GPU backend for the job and throughput runs")
    ap.add_argument("--quick", action="store_true", help="fewer frames and process counts")
    a = ap.parse_args()
    from ferbatch.checks import check_engines
    from ferbatch.config import JobConfig
    from ferbatch.errors import FerbatchError
    from ferbatch.job import run_job

    t0 = time.perf_counter()
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": device_info()}
    two = a.data / "videos_faces/intel_sample_videos_mp4/head-pose-face-detection-female-and-male.mp4"
    three = a.data / "videos_faces/intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4"
    checks = {}
    for backend, precision in [("onnxruntime-cuda", "fp32"), ("onnxruntime-cuda", "fp16"), ("tensorrt", "fp16")]:
        try:
            rep = check_engines(JobConfig(backend="onnxruntime"), JobConfig(backend=backend, precision=precision), two)
            checks[f"{backend} {precision}"] = rep.to_dict()
        except FerbatchError as e:
            checks[f"{backend} {precision}"] = {"skipped": str(e)}
    report["check_engines"] = checks
    work = Path(tempfile.mkdtemp(prefix="ferbatch_gpu_"))
    samples = a.data / "videos_faces"
    run_job(samples, work / "cpu", JobConfig(backend="onnxruntime"), use_ray=False)
    try:
        run_job(samples, work / "gpu", JobConfig(backend=a.backend), use_ray=False)
        report["rows_equal"] = compare_rows(work / "cpu", work / "gpu")
    except FerbatchError as e:
        report["rows_equal"] = {"skipped": str(e)}
    n = 300 if a.quick else 750
    counts = [1, 4] if a.quick else [1, 4, 8, 14]
    thr: dict = {}
    for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        clip = make_clip(three, work / f"{name}.mp4", w, h, n)
        row: dict = {"frames": n, "decode_fps": {}, "e2e_fps": {}, "gpu_util_pct": {}}
        for p in counts:
            row["decode_fps"][p] = round(decode_fps(clip, p), 1)
        for wpg in counts:
            out = work / f"e2e_{name}_{wpg}"
            with GpuSampler() as g:
                try:
                    s = run_job(
                        clip, out, JobConfig(backend=a.backend, workers_per_gpu=wpg), use_ray=True, shard_frames=max(50, n // (2 * wpg))
                    )
                    row["e2e_fps"][wpg] = round(s.frames / s.seconds, 1)
                except FerbatchError as e:
                    row["e2e_fps"][wpg] = str(e)
            row["gpu_util_pct"][wpg] = round(g.mean, 1)
        thr[name] = row
    report["throughput"] = thr
    report["seconds"] = round(time.perf_counter() - t0, 1)
    a.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["device"], indent=1))
    for k, v in checks.items():
        print(f"check-engines {k}: {'PASSED' if v.get('passed') else v.get('skipped', 'FAILED')}")
    print("rows vs CPU:", report["rows_equal"])
    print(f"{'clip':6} {'procs/workers':>13} {'decode f/s':>11} {'e2e f/s':>9} {'GPU %':>6}")
    for name, row in thr.items():
        for p in counts:
            print(f"{name:6} {p:>13} {row['decode_fps'][p]:>11} {row['e2e_fps'][p]!s:>9} {row['gpu_util_pct'][p]:>6}")
    print(f"total {report['seconds']} s; JSON in {a.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
