"""ferbatch against the seed's loop and against the machine's bound, at 360p, 720p and 1080p (CPU).

Clips (made once, cached in the temp dir, never in the repo): 360p = WolfgangLanger_Pexels.mp4 looped;
720p and 1080p = the 3-person Intel walking clip scaled up (bilinear) and looped; H.264, keyframe every
48 frames.

For each clip, in one run:
1. whole process, as a user runs it: ``python -m ferbatch run CLIP --out DIR`` (defaults) against the
   seed's loop in a fresh interpreter with OpenCV's default threads (cv2.VideoCapture, cv2.dnn RFB-320,
   NMSBoxes, cv2.dnn mini-XCEPTION per face: the LearnOpenCV recipe); the two commands alternate
   ``--repeat`` times, medians;
2. steady state: ``run_job`` with defaults in this process after Ray is up (Ray start-up excluded;
   actor start, indexing, tracking and writes included; the default runner of the code measured:
   ``--compare-ray`` also forces Ray), and "in workers": frames over the busy time of the workers
   (sum of shard seconds / workers used);
3. per-stage costs, ms per frame on one core (1 FFmpeg thread, 1 ORT thread, 1 OpenCV thread, no
   prefetch, the default settings) from the pipeline's own stage timers over the first ``--stage-frames`` frames: decode,
   resize (detector input), detect, crop, classify, write;
4. the bound = cores / (CPU time per frame of that single-threaded run; the wall-clock stage sum is
   also given), and each measured rate as a fraction of it; CPU seconds of both whole-process runs;
5. peak RSS (VmHWM) of an in-process job on the clip.
5b. issue 30's before/after (``--no-frame-path`` skips it): one shard of ``--stage-frames`` frames in a fresh
   process with items 1, 2 and 4 off (full RGB frames, YuNet's decoding + NMS in NumPy, batches of 8 frames
   whatever their size) and as shipped (YUV pictures, in-graph NMS, batches bounded by pixels): stage ms/frame,
   CPU ms/frame, the bound, VmHWM. Item 3 (start-up) is the one-frame job below.
6. the time settings (``MODES``: default (``--detect-every 3``), ``--detect-every 1``, ``--detect-every 4``,
   ``--sample-fps 5``), whole process against the seed in the same alternation: seed time /
   ferbatch time and video-seconds analysed per wall second;
Then once: a 1-frame job, whole process (``python -m ferbatch run``); with ``--quality`` the
``--detect-every`` quality figures of ``scripts/bench_interval.py``.
Nothing is asserted: it prints a table and one JSON line (``--json PATH`` also writes it).

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench.py [--res 360p,720p,1080p] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_shards import make_long_clip

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FERBATCH_SHARED", REPO.parent / "shared")) / "data" / "videos_faces"
# name -> (source clip, (width, height) or None for the source size, frames)
CLIPS = {
    "360p": (DATA / "pyfeat/WolfgangLanger_Pexels.mp4", None, 2360),
    "720p": (DATA / "intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4", (1280, 720), 1517),
    "1080p": (DATA / "intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4", (1920, 1080), 1517),
}


RSS_CHILD = """
import sys
from ferbatch.config import JobConfig
from ferbatch.job import run_job
s = run_job(sys.argv[1], sys.argv[2], JobConfig(), use_ray=False, shard_frames=1500)  # defaults, as `ferbatch run`
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(s.frames, hwm)
"""

# issue 30's items 1, 2 and 4 off ("before") or as shipped ("after") in one shard of a fresh process: RGB frames
# (pictures=False) vs YUV pictures, YuNet's decoding and NMS in NumPy vs in the graph, batches of 8 frames vs
# batches bounded by pixels. Prints {stage ms/frame, CPU ms/frame, VmHWM MiB}.
FRAME_PATH_CHILD = """
import json, sys, time
from ferbatch.config import JobConfig
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.load import load_models
from ferbatch.pipeline import FrameSettings, process_shard
before = sys.argv[2] == "before"
c = JobConfig(in_graph_nms=not before)
m = load_models(c, threads=1)
_, index = probe_video(sys.argv[1])
shard = Shard("fp", sys.argv[1], 0, 0, min(int(sys.argv[3]), len(index.pts)), index)
st = FrameSettings.of(c)
kw = dict(prefetch=2, decode_threads=1, settings=st, pictures=not before, batch_pixels=None if before else c.batch_pixels(m.backend))
process_shard(shard, m, **kw)  # warm-up
cpu = time.process_time()
out = process_shard(shard, m, **kw)
cpu = time.process_time() - cpu
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
n = out.result.frames
print(json.dumps({"stage_ms": {k: round(1000 * v / n, 3) for k, v in out.result.stage_seconds.items()},
                  "cpu_ms": round(1000 * cpu / n, 3), "rss_mib": round(int(hwm) / 1024, 1)}))
"""


def frame_path(video: str, frames: int, repeat: int) -> dict[str, dict]:
    """Issue 30's before/after (``FRAME_PATH_CHILD``) on ``video``'s first ``frames`` frames, each side in a fresh
    process, alternated ``repeat`` times; the run with the median CPU ms/frame of each side, and the bound
    (cores / CPU ms per frame)."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(max(1, repeat)):
        for side in runs:
            out = subprocess.run([sys.executable, "-c", FRAME_PATH_CHILD, video, side, str(frames)], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"frame path {side} | {out.stderr[-500:]}")
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    cores = len(os.sched_getaffinity(0))
    res = {}
    for side, rs in runs.items():
        r = sorted(rs, key=lambda x: x["cpu_ms"])[len(rs) // 2]
        res[side] = {**r, "bound_fps": round(cores * 1000 / r["cpu_ms"], 1)}
    return res


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seed_loop(video: str, det_file: str, cls_file: str, score: float = 0.7, iou: float = 0.3) -> tuple[int, int]:
    """The LearnOpenCV-style loop: cv2 decode, cv2.dnn detector, NMSBoxes, cv2.dnn classifier per face.

    Returns (frames, faces).
    """
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


# the seed as its own script: imports cv2 and NumPy only, OpenCV's default threads
SEED_CHILD = "import sys\nimport cv2\nimport numpy as np\n" + inspect.getsource(seed_loop) + "print(*seed_loop(*sys.argv[1:4]))\n"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + sys of the process and the children it waited for) and
    stdout of a subprocess that must succeed. Ray's worker processes are not its children: their CPU
    is not in the count."""
    c, t = _children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt, cpu = time.perf_counter() - t, _children_cpu() - c
    if p.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return dt, cpu, p.stdout


def ferbatch_cli(video: str, *extra: str) -> tuple[float, float]:
    """(wall s, CPU s) of ``python -m ferbatch run VIDEO --out TMP -q [extra]`` (defaults), a fresh process."""
    with tempfile.TemporaryDirectory() as d:
        return timed([sys.executable, "-m", "ferbatch", "run", video, "--out", d, "-q", *extra])[:2]


# the time settings measured against the seed in one run: name -> extra CLI arguments
MODES = {
    "default": (),
    "detect-every-1": ("--detect-every", "1"),
    "detect-every-4": ("--detect-every", "4"),
    "sample-fps-5": ("--sample-fps", "5"),
}


def stage_costs(video: str, index, frames: int) -> tuple[dict[str, float], float]:
    """Single-core ms/frame of each stage, from the pipeline's stage timers (first ``frames`` frames),
    and the CPU ms/frame of the whole single-threaded shard (``time.process_time``: on a busy machine
    the wall-clock stage times include waiting for a core; the CPU time does not)."""
    from ferbatch.config import JobConfig
    from ferbatch.media.shards import Shard
    from ferbatch.models.load import load_models
    from ferbatch.pipeline import FrameSettings, run_shard

    cv2.setNumThreads(1)
    m = load_models(JobConfig(), threads=1)
    c = JobConfig()  # the defaults' time settings (the interval) and the frame path
    settings = FrameSettings.of(c)
    shard = Shard("bench", video, 0, 0, min(frames, len(index.pts)), index)
    with tempfile.TemporaryDirectory() as d:
        run_shard(shard, m, d, prefetch=0, decode_threads=1, settings=settings)  # warm-up (allocations, graph caches)
        cpu = time.process_time()
        res = run_shard(shard, m, d, prefetch=0, decode_threads=1, settings=settings)
        cpu = time.process_time() - cpu
    st = dict(res.stage_seconds)
    if "resize" not in st and "detect" in st and "decode_wait" in st:  # before the split: resize + normalise ran inside detect
        from ferbatch.media.decode import iter_frames
        from ferbatch.vision.detect import preprocess_frames

        imgs = [f.image for f in iter_frames(video, index, 0, shard.end, threads=1)]
        t = time.perf_counter()
        for i in range(0, len(imgs), 8):
            preprocess_frames(imgs[i : i + 8], m.detector.spec.input)
        st["resize"] = time.perf_counter() - t
        st["detect"] -= st["resize"]
        st["decode"] = st.pop("decode_wait")
    m.close()
    cv2.setNumThreads(-1)
    return {k: 1000 * v / res.frames for k, v in st.items()}, 1000 * cpu / res.frames


def warm_job(video: str, **kw) -> tuple[float, float, int]:
    """(job frames/s, in-worker frames/s, frames) of ``run_job`` with defaults (and ``kw``), Ray already up."""
    from ferbatch.config import JobConfig
    from ferbatch.dataset.store import read_manifest
    from ferbatch.job import run_job

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = run_job(video, d, JobConfig(), shard_frames=1500, **kw)
        dt = time.perf_counter() - t
        shards = [sh for v in read_manifest(d)["videos"].values() for sh in v["shards"]]
    workers = min(len(shards), JobConfig().resolved_workers())
    busy = sum(sh["seconds"] for sh in shards) / workers
    return s.frames / dt, s.frames / busy, s.frames


def ort_levels(video: str, index, frames: int = 200) -> dict[str, float]:
    """Detector ms/frame (batch 8, 1 thread, uint8 input already resized) per ONNX Runtime graph optimisation level."""
    import onnxruntime as ort

    from ferbatch.config import JobConfig
    from ferbatch.media.decode import iter_frames
    from ferbatch.models.graphs import prepare_detector
    from ferbatch.models.load import resolve_specs
    from ferbatch.models.registry import resolve_model_file
    from ferbatch.vision.detect import preprocess_frames

    det, _ = resolve_specs(JobConfig())
    graph = str(prepare_detector(resolve_model_file(det), det))
    imgs = [f.image for f in iter_frames(video, index, 0, min(frames, len(index.pts)), threads=1)]
    x, _ = preprocess_frames(imgs, det.input)
    out = {}
    for name in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, name)
        so.log_severity_level = 3
        sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        sess.run(None, {det.input.name: x[:8]})
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            for i in range(0, len(x), 8):
                sess.run(None, {det.input.name: x[i : i + 8]})
            best = min(best, time.perf_counter() - t)
        out[name] = round(1000 * best / len(x), 3)
    return out


def peak_rss_mib(video: str) -> float:
    """VmHWM (MiB) of a fresh in-process job over ``video`` with the defaults (2 workers here)."""
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, video, d], capture_output=True, text=True, check=True).stdout.split()
    return int(out[-1]) / 1024


def make_clip(name: str, frames: int | None = None) -> str:
    """The benchmark clip ``name`` (see CLIPS), made once into the temp dir."""
    src, size, n = CLIPS[name]
    n = frames or n
    dst = Path(tempfile.gettempdir()) / f"ferbatch_bench_{name}_{Path(src).stem}_{n}.mp4"
    return str(make_long_clip(str(src), dst, n, size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", default="360p,720p,1080p", help="comma-separated clips: 360p, 720p, 1080p")
    ap.add_argument("--repeat", type=int, default=1, help="whole-process runs of each command (alternated; medians)")
    ap.add_argument("--stage-frames", type=int, default=400)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-process runs (ferbatch CLI and the seed)")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--ort-levels", action="store_true", help="also the detector's cost per ONNX Runtime optimisation level")
    ap.add_argument("--compare-ray", action="store_true", help="also the steady-state job forced onto Ray actors")
    ap.add_argument("--json", help="also write the JSON result here")
    ap.add_argument("--no-modes", action="store_true", help="skip the whole-process runs of the time settings (MODES) besides the default")
    ap.add_argument(
        "--quality", action="store_true", help="also the --detect-every quality figures (scripts/bench_interval.py) on the shared clips"
    )
    ap.add_argument("--smoke", action="store_true", help="CI: a 96-frame 360p clip, stages and whole process once, no RSS")
    ap.add_argument(
        "--no-frame-path", action="store_true", help="skip issue 30's before/after (RGB vs pictures, NumPy vs graph NMS, batches)"
    )
    a = ap.parse_args()
    if a.smoke:
        a.res, a.repeat, a.no_rss, a.stage_frames, a.no_modes, a.no_frame_path = "360p", 1, True, 96, True, True
    from ferbatch.job.workers import init_ray
    from ferbatch.media.probe import probe_video
    from ferbatch.models.registry import load_registry, resolve_model_file

    cores = len(os.sched_getaffinity(0))
    res: dict = {"cores": cores, "cpu": cpu_model(), "opencv_threads": cv2.getNumThreads(), "clips": {}}
    reg = load_registry()
    # the seed's detector: its recipe decodes UltraFace's two outputs, whatever ferbatch's default is
    det_file = str(resolve_model_file(reg.get("ultraface-rfb-320")))
    # the seed's classifier is a public 64x64 gray model run through cv2.dnn: mini-XCEPTION here
    cls_file = str(resolve_model_file(reg.get("mini-xception-fer2013")))
    if not a.smoke:
        init_ray(None, cores)
    for name in a.res.split(","):
        clip = make_clip(name, 96 if a.smoke else None)
        info, index = probe_video(clip)
        r: dict = {"clip": Path(clip).name, "size": f"{info.width}x{info.height}", "frames": len(index.pts)}
        st, cpu_ms = stage_costs(clip, index, a.stage_frames)
        r["stage_ms"] = {k: round(v, 3) for k, v in st.items()}
        r["stage_cpu_ms"] = round(cpu_ms, 3)
        # decode_wait is the inference thread waiting on decode (= decode here, no prefetch): not a stage
        r["bound_wall_fps"] = cores * 1000.0 / sum(v for k, v in st.items() if k != "decode_wait")
        r["bound_fps"] = cores * 1000.0 / cpu_ms  # the CPU-time bound: robust to other load on the machine
        if not a.no_whole:
            seed, ours, seed_cpu, ours_cpu = [], [], [], []
            modes: dict[str, list[float]] = {m: [] for m in MODES}
            for _ in range(a.repeat):
                dt, cpu, out = timed([sys.executable, "-c", SEED_CHILD, clip, det_file, cls_file])
                seed.append(dt)
                seed_cpu.append(cpu)
                r["seed_faces"] = int(out.split()[1])
                dt, cpu = ferbatch_cli(clip)
                ours.append(dt)
                ours_cpu.append(cpu)
                for m, extra in MODES.items():
                    if m != "default" and not a.no_modes:
                        modes[m].append(ferbatch_cli(clip, *extra)[0])
            # seed time / ferbatch time per mode, and video-seconds analysed per wall second
            r["modes"] = {
                m: {
                    "speedup_vs_seed": statistics.median(seed) / statistics.median(v),
                    "video_s_per_s": info.duration_s / statistics.median(v),
                }
                for m, v in {**modes, "default": ours}.items()
                if v
            }
            r["seed_whole_s"], r["ferbatch_whole_s"] = statistics.median(seed), statistics.median(ours)
            r["seed_cpu_s"], r["ferbatch_cpu_s"] = statistics.median(seed_cpu), statistics.median(ours_cpu)
            r["seed_whole_fps"] = r["frames"] / r["seed_whole_s"]
            r["ferbatch_whole_fps"] = r["frames"] / r["ferbatch_whole_s"]
            r["speedup_vs_seed"] = r["seed_whole_s"] / r["ferbatch_whole_s"]
            r["seed_bound_speedup"] = r["bound_fps"] / r["seed_whole_fps"]  # the most any ratio can be
            r["whole_of_bound"] = r["ferbatch_whole_fps"] / r["bound_fps"]
        if not a.smoke:
            r["steady_job_fps"], r["steady_worker_fps"], _ = warm_job(clip)
            r["steady_job_of_bound"] = r["steady_job_fps"] / r["bound_fps"]
            r["steady_worker_of_bound"] = r["steady_worker_fps"] / r["bound_fps"]
            if a.compare_ray:
                r["steady_ray_job_fps"], r["steady_ray_worker_fps"], _ = warm_job(clip, use_ray=True)
        if not a.no_rss:
            r["rss_mib"] = peak_rss_mib(clip)
        if a.ort_levels:
            r["detector_ms_per_ort_level"] = ort_levels(clip, index)
        if not a.no_frame_path:
            r["frame_path"] = frame_path(clip, a.stage_frames, a.repeat)
        res["clips"][name] = r
        print(name, json.dumps(r), file=sys.stderr, flush=True)  # partial results survive an interrupted run
    if not a.no_whole:
        one = make_clip("360p", 1)
        res["one_frame_job_s"] = statistics.median(ferbatch_cli(one)[0] for _ in range(a.repeat))
    if a.quality:
        q = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "bench_interval.py"), "--every", "2,3,5"], capture_output=True, text=True
        )
        res["detect_every_quality"] = json.loads(q.stdout.strip().splitlines()[-1])["results"] if q.returncode == 0 else q.stderr[-500:]
    for name, r in res["clips"].items():
        print(f"== {name} {r['size']} {r['frames']} frames")
        for m, v in r.get("modes", {}).items():
            print(f"  {m:24s} seed/ferbatch {v['speedup_vs_seed']:.2f}  video-s/s {v['video_s_per_s']:.1f}")
        for side, v in r.get("frame_path", {}).items():
            stages = " ".join(f"{k} {x:.2f}" for k, x in v["stage_ms"].items() if k != "decode_wait")
            print(
                f"  frame path {side:6s}  CPU {v['cpu_ms']:.2f} ms/frame  bound {v['bound_fps']:.0f} fps  RSS {v['rss_mib']:.0f} MiB  | {stages}"
            )
        for k, v in r.items():
            if k not in ("clip", "size", "frames", "modes", "frame_path"):
                print(f"  {k:24s} {v:.3f}" if isinstance(v, float) else f"  {k:24s} {v}")
    if "one_frame_job_s" in res:
        print(f"one-frame job (whole process)  {res['one_frame_job_s']:.2f} s")
    line = json.dumps(res)
    print(line)
    if a.json:
        Path(a.json).write_text(line + "\n")


if __name__ == "__main__":
    main()
