"""One command for a machine with an NVIDIA GPU: is the GPU path right, and how fast is it?

    FERBATCH_MODEL_MIRROR=../shared/models python scripts/gpu_check.py --data ../shared/data --out gpu_check.json

Steps (``--steps``, default all; a later call with ``--work`` set reuses the clips and merges
its results into the same JSON, so the work can be split between calls of a short GPU lease):

1. ``device``: nvidia-smi, and the CUDA/ONNX Runtime providers this Python sees;
2. ``clips``: 720p and 1080p H.264 clips (GOP 48) made from the shared 3-person clip (scaled, looped);
3. ``decode``: decode-only frames/s (PyAV to RGB) with 1/4/8/14 single-threaded processes, and one
   process with FFmpeg's own threads;
4. ``engines``: ``check-engines`` for each GPU backend present (ONNX Runtime CUDA fp32 and fp16,
   TensorRT when installed) against ONNX Runtime fp32 on the CPU, on a real clip plus black frames;
5. ``rows``: the job on the shared sample videos with the GPU backend, rows compared with a CPU run
   (boxes within 1 px, labels equal on >= 99% of faces);
6. ``nvdec_exact``: NVDEC against PyAV frame by frame (``ferbatch.media.nvdec.iter_frames_nvdec``
   vs ``ferbatch.media.decode.iter_frames``) on the shared sample videos, the clips and an HEVC
   clip: the same frame indices, pts and RGB pixels over each whole video and over each of its
   shards (keyframe seeks), and the decode frames/s of both (one process, host RGB);
7. ``device_graphs``: NV12 frames into the detector graph (``ferbatch.models.graph_nv12``) and the
   aligned face crop inside the classifier graph (``ferbatch.models.graph_crop``) against the host
   path: faces, box error, labels, logits, ms per frame / face with host and device-resident planes;
8. ``e2e``: end-to-end frames/s with 1/4/8/14 workers per GPU, for each decoder of ``--decoders``
   (``pyav`` results under ``e2e``, ``nvdec`` under ``e2e_nvdec``). Each worker is the job's
   :class:`ferbatch.job.workers.ShardWorker` (one decoding core, its own sessions; what a Ray actor
   runs) in its own process, processing the whole clip (a batch of videos, one per worker), timed
   from a barrier after the models are loaded and warmed up; GPU utilisation sampled by nvidia-smi;
   time per pipeline stage summed over workers. Ray itself is not needed (the scheduling is not
   what is measured).
9. ``ray``: the real job under embedded Ray (``run_job(use_ray=True)``: the job's actors, placement,
   scheduling and writer) on remuxed copies of the 720p clip (``--ray-videos``, default two per worker),
   ``--ray-counts`` workers per GPU (default the largest of ``--counts``), for each decoder and pre-processing; frames/s after start-up and with
   it, GPU busy. Needs Ray on the machine (``scripts/gpu_payload.py`` carries it).

``rows`` also runs the job with ``--decoder nvdec`` when ``nvdec`` is in ``--decoders``
(``rows_equal_nvdec``: the rows must equal the CPU run's as the PyAV GPU run's do); those baselines
pre-process on the host (``--preprocess host``). With ``graph`` in ``--preprocess`` it also runs the
job with ``--preprocess graph`` per decoder (``rows_equal_graph_pyav``, ``rows_equal_graph_nvdec``:
NVDEC's frames stay on the GPU, needs CuPy), and ``e2e`` measures each decoder with each
pre-processing (``e2e_nvdec_graph`` and so on).

Frames on the device end to end and the job under Ray (#33), one prepared command (not yet run; the packages and
``../shared``'s files travel as ``scripts/gpu_payload.py`` pieces, see its doc and docs/performance.md)::

    FERBATCH_MODEL_MIRROR=/tmp/site/shared/models python3 scripts/gpu_check.py --data /tmp/site/shared/data \
        --out gpu_graph.json --work /tmp/gpu_graph --frames 300 --counts 1,4,8 --ray-counts 8 \
        --steps device,clips,device_graphs,rows,ray --decoders nvdec,pyav --preprocess graph,host
    # the target path first (NVDEC frames on the device into the graphs); then, in a later call (same --work,
    # the JSON merges): --steps e2e --counts 4,8

PyAV vs NVDEC end to end, one prepared command (#33; about 8 minutes on one H100/H200)::

    FERBATCH_MODEL_MIRROR=../shared/models python scripts/gpu_check.py --data ../shared/data \
        --out gpu_nvdec.json --work /tmp/gpu_nvdec --frames 300 --counts 1,4,8 \
        --steps device,clips,nvdec,nvdec_exact,rows,e2e --decoders pyav,nvdec

Prints a table and writes JSON. Budget: about 5 minutes on one GPU (``--quick`` less).
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
            img = np.asarray(cv2.resize(imgs[i % len(imgs)], (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode())
    return dst


def _decode_count(path: str, threaded: bool = False) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO" if threaded else "NONE"
        for f in c.decode(s):
            f.to_ndarray(format="rgb24")
            n += 1
    return n


def decode_fps(path: Path, processes: int, threaded: bool = False) -> float:
    """Frames/s of ``processes`` PyAV decoders (to RGB), each decoding the whole clip; single-threaded
    unless ``threaded`` (FFmpeg's frame/slice threads, as many as it picks)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        pool.map(int, range(processes))  # processes started before the clock
        t = time.perf_counter()
        n = sum(pool.starmap(_decode_count, [(str(path), threaded)] * processes))
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


def paths_used(out: Path) -> dict:
    """The decoders and pre-processing a dataset's videos went through (its ``videos`` table's ``decoder``
    and ``preprocess`` columns): what a run measured, not only what it asked for."""
    import pyarrow.parquet as pq

    t = pq.read_table(out / "videos.parquet", columns=["decoder", "preprocess"])
    return {c: sorted({str(v) for v in t[c].to_pylist() if v is not None}) for c in ("decoder", "preprocess")}


def compare_rows(a: Path, b: Path) -> dict:
    """Faces of two datasets of the same videos: counts, largest box difference (px), labels equal; the decoders and
    pre-processing of ``b`` (:func:`paths_used`)."""
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
    return res | {"used": paths_used(b)}


def _e2e_worker(
    clip: str, backend: str, precision: str, algo: str, barrier, results, out_dir: str, decoder: str = "pyav", preprocess: str = "host"
) -> None:
    """One worker process: load the models, warm up on the first frames, wait at the barrier, run the clip."""
    from ferbatch.config import JobConfig
    from ferbatch.job.workers import ShardWorker
    from ferbatch.media.probe import probe_video
    from ferbatch.media.shards import Shard
    from ferbatch.models.runners.onnxruntime import OrtRunner

    OrtRunner.cudnn_conv_algo_search = algo
    try:
        w = ShardWorker(JobConfig(backend=backend, precision=precision, decoder=decoder, preprocess=preprocess), threads=1)
        _, index = probe_video(clip)
        n = len(index.pts)
        w.run(Shard(f"warm{os.getpid()}", clip, 0, 0, min(n, 2 * w.models.detect_batch), index), out_dir)
        barrier.wait(timeout=900)
        t0 = time.time()
        res = w.run(Shard(f"run{os.getpid()}", clip, 0, 0, None, index), out_dir)
        results.put(
            {
                "ok": res.status == "ok",
                "t0": t0,
                "t1": time.time(),
                "frames": res.frames,
                "faces": res.faces,
                "stages": res.stage_seconds,
                "decoder": res.decoder,
            }
        )
    except Exception as e:  # reported in the table; the other workers' barrier breaks
        barrier.abort()
        results.put({"ok": False, "error": f"{type(e).__name__}: {e}"})


def e2e_fps(
    clip: Path, workers: int, backend: str, precision: str, algo: str, work: Path, decoder: str = "pyav", preprocess: str = "host"
) -> dict:
    """Steady-state frames/s of ``workers`` worker processes sharing the GPU (see the module doc),
    decoding with ``decoder`` (the one each worker actually used is reported), pre-processing on the
    host or in the graphs (``--preprocess``: with NVDEC the frames stay on the GPU)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    out = work / f"e2e_out_{workers}_{decoder}_{preprocess}"
    t_start = time.perf_counter()
    procs = [
        ctx.Process(target=_e2e_worker, args=(str(clip), backend, precision, algo, barrier, results, str(out), decoder, preprocess))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    with GpuSampler() as g:
        got = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    shutil.rmtree(out, ignore_errors=True)
    errors = [r["error"] for r in got if "error" in r]
    if errors:
        return {"error": errors[0]}
    frames = sum(r["frames"] for r in got)
    span = max(r["t1"] for r in got) - min(r["t0"] for r in got)
    stages: dict = {}
    for r in got:
        for k, v in r["stages"].items():
            stages[k] = round(stages.get(k, 0.0) + v, 2)
    return {
        "fps": round(frames / span, 1),
        "frames": frames,
        "seconds": round(span, 2),
        "with_startup_s": round(time.perf_counter() - t_start, 1),
        "faces": sum(r["faces"] for r in got),
        "gpu_util_pct": round(g.mean, 1),
        "stage_seconds_sum": stages,
        "decoder": ",".join(sorted({r.get("decoder", "") for r in got})),
    }


def remux_copy(src: Path, dst: Path, tag: str) -> Path:
    """``src``'s video packets, unchanged, in a new MP4 whose title is ``tag``: the same frames under another content
    hash (the job processes files of equal content once). Written under a temporary name and renamed, so that a copy
    cut short is never taken for a whole one."""
    import av

    part = dst.with_name(f".{dst.name}.part")
    with av.open(str(src)) as i, av.open(str(part), "w", format="mp4") as o:
        o.metadata["title"] = tag
        s = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = s
                o.mux(pkt)
    part.replace(dst)
    return dst


def ray_job(clip: Path, videos: int, workers: int, backend: str, work: Path, decoder: str = "pyav", preprocess: str = "host") -> dict:
    """The real job under Ray (#33 item 3): ``ferbatch run`` on ``videos`` copies of ``clip`` with embedded local Ray,
    the job's own actors, placement (``workers`` per GPU on a GPU backend, else ``workers`` in all), scheduling and
    dataset writer. frames/s over the job's wall time after start-up (Ray, actors placed, models loaded) and with it."""
    from ferbatch.config import GPU_BACKENDS, JobConfig
    from ferbatch.job import run_job

    src = work / f"ray_in_{clip.stem}_{videos}"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        dst = src / f"{clip.stem}_{i:02d}.mp4"
        if not dst.exists() or dst.stat().st_mtime < clip.stat().st_mtime:  # the clip rebuilt since (another --frames)
            remux_copy(clip, dst, f"copy {i}")
    gpu = backend in GPU_BACKENDS
    cfg = JobConfig(
        backend=backend, decoder=decoder, preprocess=preprocess, workers=0 if gpu else workers, workers_per_gpu=workers if gpu else 0
    )
    out = work / f"ray_out_{clip.stem}_{workers}_{decoder}_{preprocess}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        with GpuSampler() as g:
            s = run_job(src, out, cfg, use_ray=True)
        used = paths_used(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    steady = s.seconds - s.startup_seconds
    return {
        "fps": round(s.frames / steady, 1) if steady > 0 else 0.0,
        "fps_with_startup": round(s.frames / s.seconds, 1) if s.seconds > 0 else 0.0,
        "frames": s.frames,
        "faces": s.faces,
        "videos_ok": s.ok,
        "videos_failed": s.failed,
        "seconds": round(s.seconds, 2),
        "startup_s": round(s.startup_seconds, 2),
        "runner": s.runner,
        "gpu_util_pct": round(g.mean, 1),
        "used": used,
    }


def nvdec_exact(paths: list[Path], shard_frames: int = 48) -> dict:
    """NVDEC against PyAV on each video: frame indices, pts and RGB pixels over the whole video and
    over each shard of :func:`ferbatch.media.shards.plan_shards` (keyframe seeks), streamed frame by
    frame; decode frames/s of both (one process, host RGB). ``{"skipped": why}`` where
    PyNvVideoCodec is missing; a video NVDEC does not take is listed with the fallback reason."""
    from ferbatch.media.decode import iter_frames
    from ferbatch.media.decoders import choose_decoder, nvdec_available, stream_format
    from ferbatch.media.nvdec import iter_frames_nvdec
    from ferbatch.media.probe import probe_video
    from ferbatch.media.shards import plan_shards

    ok, why = nvdec_available()
    if not ok:
        return {"skipped": why}
    out: dict = {}
    for p in paths:
        info, index = probe_video(p)
        row: dict = {"codec": info.codec, "frames": len(index.pts), "rotation": info.rotation}
        out[p.name] = row
        name, why = choose_decoder("nvdec", "tensorrt", stream_format(str(p)))
        if name != "nvdec":
            row["skipped"] = why
            continue
        ranges: list[tuple[int, int | None]] = [(0, None)] + [(s.start, s.end) for s in plan_shards("v", str(p), index, shard_frames)]
        problems: list[str] = []
        unequal, max_diff, n, t_pyav, t_nv = 0, 0, 0, 0.0, 0.0
        for a, b in ranges:
            ref_it, got_it = iter_frames(p, index, a, b), iter_frames_nvdec(p, index, a, b)
            while True:
                t = time.perf_counter()
                ref = next(ref_it, None)
                t_pyav += time.perf_counter() - t
                t = time.perf_counter()
                try:
                    got = next(got_it, None)
                except Exception as e:  # recorded, the next range goes on
                    problems.append(f"{a}-{b}: {type(e).__name__}: {e}")
                    break
                t_nv += time.perf_counter() - t
                if ref is None and got is None:
                    break
                if ref is None or got is None or (ref.idx, ref.pts_ms) != (got.idx, got.pts_ms):
                    r, g = ((f.idx, f.pts_ms) if f is not None else None for f in (ref, got))
                    problems.append(f"{a}-{b}: pyav {r} vs nvdec {g}")
                    break
                n += 1
                if ref.image.shape != got.image.shape:
                    problems.append(f"{a}-{b} frame {ref.idx}: shape {ref.image.shape} vs {got.image.shape}")
                    break
                d = int(np.abs(ref.image.astype(np.int16) - got.image).max())
                unequal += d > 0
                max_diff = max(max_diff, d)
            if len(problems) >= 5:
                break
        row.update(
            ranges=len(ranges),
            frames_compared=n,
            frames_unequal=unequal,
            max_pixel_diff=max_diff,
            problems=problems[:5],
            equal=not problems and unequal == 0,
            pyav_fps=round(n / t_pyav, 1) if t_pyav else None,
            nvdec_fps=round(n / t_nv, 1) if t_nv else None,
        )
        print(f"nvdec_exact {p.name}: {row}", flush=True)
    return out


def hevc_clip(src: Path, dst: Path, frames: int) -> Path | None:
    """``src``'s first ``frames`` frames as HEVC 8-bit 4:2:0 with B-frames (None without libx265)."""
    import av

    if "libx265" not in av.codecs_available:
        return None
    with av.open(str(src)) as c:
        imgs = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0), strict=False)]
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx265", rate=25)
        s.height, s.width = imgs[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"x265-params": "log-level=error:keyint=24:bframes=3"}
        for img in imgs:
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode())
    return dst


def nvdec_fps(path: Path, sessions: int, rgb: bool) -> dict:
    """Frames/s of ``sessions`` NVDEC decoders (PyNvVideoCodec SimpleDecoder, frames left in device
    memory; NV12, or RGB converted on the GPU), one thread each in this process, each decoding the clip."""
    import PyNvVideoCodec as nvc

    color = nvc.OutputColorType.RGB if rgb else nvc.OutputColorType.NATIVE
    decs = [nvc.SimpleDecoder(str(path), gpu_id=0, use_device_memory=True, output_color_type=color) for _ in range(sessions)]
    counts = [0] * sessions

    def run(i: int) -> None:
        while True:
            got = decs[i].get_batch_frames(64)
            if not got:
                return
            counts[i] += len(got)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"fps": round(sum(counts) / (time.perf_counter() - t), 1), "frames": sum(counts)}


def profile_detect(clip: Path, backend: str, batch: int = 64, repeats: int = 4) -> dict:
    """Milliseconds per frame of each part of one detector call on a ``batch`` of the clip's frames,
    one process: preprocessing (letterbox copy), the runner call, YuNet decoding, NMS (the last two
    only with ``--numpy-nms``'s path; with decoding + NMS in the graph they are inside the runner call); for ONNX
    Runtime CUDA, the runner call split into host->device copy, the graph on device-resident
    tensors, and device->host copy of the outputs."""
    import ferbatch.vision.decoders as dec_mod
    import ferbatch.vision.detect as det_mod
    from ferbatch.config import JobConfig
    from ferbatch.media.decode import iter_frames
    from ferbatch.media.probe import probe_video
    from ferbatch.models.load import load_models

    _, index = probe_video(clip)
    imgs = [f.image for f in iter_frames(str(clip), index, 0, batch, threads=0)]
    m = load_models(JobConfig(backend=backend), threads=1)
    det = m.detector
    runner = det.runner
    acc: dict[str, float] = {}

    def timed(name, fn):
        def w(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t
            return r

        return w

    saved = (det_mod.preprocess_frames, dec_mod._decode_yunet, dec_mod.nms, runner.infer)
    det_mod.preprocess_frames = timed("preprocess", det_mod.preprocess_frames)
    dec_mod._decode_yunet = timed("decode_outputs", dec_mod._decode_yunet)
    dec_mod.nms = timed("nms", dec_mod.nms)
    setattr(runner, "infer", timed("runner", runner.infer))  # noqa: B010 (an instance attribute shadows the method)
    try:
        det.detect(imgs)
        acc.clear()
        t = time.perf_counter()
        for _ in range(repeats):
            det.detect(imgs)
        total = time.perf_counter() - t
    finally:
        det_mod.preprocess_frames, dec_mod._decode_yunet, dec_mod.nms = saved[:3]
        del runner.infer
    res = {k: round(1000 * v / (repeats * batch), 3) for k, v in acc.items()}
    res["detect_total"] = round(1000 * total / (repeats * batch), 3)
    sess = getattr(runner, "_sess", None)
    if sess is not None and getattr(runner, "on_cuda", False):
        import onnxruntime as ort

        spec = det.spec.input
        wh = det.input_for((imgs[0].shape[1], imgs[0].shape[0])) if hasattr(det, "input_for") else (spec.width, spec.height)
        x = np.zeros((batch, wh[1], wh[0], 3), np.uint8)
        name = sess.get_inputs()[0].name
        t = time.perf_counter()
        for _ in range(repeats):
            xv = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        res["h2d"] = round(1000 * (time.perf_counter() - t) / (repeats * batch), 3)
        io = sess.io_binding()
        io.bind_ortvalue_input(name, xv)
        for o in sess.get_outputs():
            io.bind_output(o.name, "cuda")
        sess.run_with_iobinding(io)
        t = time.perf_counter()
        for _ in range(repeats):
            sess.run_with_iobinding(io)
        io.synchronize_outputs()
        res["graph_on_device"] = round(1000 * (time.perf_counter() - t) / (repeats * batch), 3)
        t = time.perf_counter()
        for _ in range(repeats):
            outs = io.copy_outputs_to_cpu()
        res["d2h"] = round(1000 * (time.perf_counter() - t) / (repeats * batch), 3)
        res["output_mb_per_frame"] = round(sum(o.nbytes for o in outs) / batch / 1e6, 3)
        res["input_mb_per_frame"] = round(x.nbytes / batch / 1e6, 3)
    m.close()
    return res


def device_graphs_check(clip: Path, backend: str, batch: int = 32, repeats: int = 5) -> dict:
    """The device-side graphs (#33) against the host path on ``batch`` decoded pictures of ``clip``:

    - ``nv12_detector`` (``ferbatch.models.graph_nv12``): NV12 planes into the prepared detector
      (letterbox and BT.601 conversion in the graph) against ``preprocess_frames`` + the same graph:
      faces above the threshold equal, max box error in frame pixels, ms per frame of each;
    - ``crop``: the aligned crop + classifier as one graph (``ferbatch.models.graph_crop``) against
      ``extract_crops`` + the classifier on the CPU: labels equal, max |logit difference|, ms per face.

    Graphs run on ``backend``'s provider; with CuPy on CUDA also fed planes already in GPU memory, as
    NVDEC leaves them (bound through DLPack)."""
    from ferbatch.colour import BT601, fixed_point
    from ferbatch.config import JobConfig
    from ferbatch.media.decode import iter_frames
    from ferbatch.media.probe import probe_video
    from ferbatch.models.graph_crop import crop_inputs, prepare_crop_classifier
    from ferbatch.models.graph_nv12 import letterbox_sizes, prepare_nv12_detector
    from ferbatch.models.load import load_models, prepare_graphs
    from ferbatch.models.registry import resolve_model_file
    from ferbatch.models.runners.onnxruntime import CUDA_PROVIDER, OrtRunner
    from ferbatch.vision.classify import extract_crops
    from ferbatch.vision.detect import preprocess_frames

    _, index = probe_video(clip)
    pics = [f.image for f in iter_frames(str(clip), index, 0, batch, threads=0, pictures=True)]
    m = load_models(JobConfig(backend="onnxruntime"), threads=1)
    spec, cls = m.classifier.spec, m.classifier.runner
    cuda = backend == "onnxruntime-cuda"
    providers = [CUDA_PROVIDER] if cuda else None
    try:
        import cupy
    except ImportError:
        cupy = None

    def timed(fn, per: int) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return round(1000 * (time.perf_counter() - t) / (repeats * per), 4)

    res: dict = {"provider": "cuda" if cuda else "cpu", "frames": len(pics)}
    # the detector: NV12 planes vs the host letterbox, the GPU backends' graph (decoding and NMS inside)
    (dspec, dgraph), _ = prepare_graphs(JobConfig(backend="onnxruntime"), backend="onnxruntime-cuda")
    host_det = OrtRunner(str(dgraph), providers=providers)
    nv12_det = OrtRunner(str(prepare_nv12_detector(dgraph, dspec)), providers=providers)
    w, h = pics[0].width, pics[0].height
    wh = m.detector.input_for((w, h))
    sized = m.detector.sized(wh).spec.input
    nv12 = np.stack([np.concatenate([p.y, np.stack([p.u, p.v], -1).reshape(h // 2, w)]) for p in pics])
    sizes = letterbox_sizes((w, h), wh, pics[0].matrix)
    x, scale = preprocess_frames(pics, sized, letterbox=True)
    a = nv12_det.infer_bound({"planes": nv12, **sizes})
    b = host_det.infer_bound({dspec.input.name: x})
    keep = b["det_scores"] > dspec.score_threshold
    px = np.array([wh[0], wh[1]] * 2, np.float32) * np.tile(scale[:, None], (1, 1, 2))
    res["nv12_detector"] = {
        "faces": int(keep.sum()),
        "same_faces": bool(np.array_equal(a["det_scores"] > dspec.score_threshold, keep)),
        # per face, the largest coordinate error in frame pixels: median, 90th percentile, max (a face whose
        # box the detector places unstably moves by several pixels for a level of input difference)
        **{
            f"box_err_px_{k}": round(float(np.percentile((np.abs(a["det_boxes"] - b["det_boxes"]) * px)[keep].max(1), q)), 3)
            for k, q in (("median", 50), ("p90", 90), ("max", 100))
        },
        "ms_per_frame_host_letterbox_and_graph": timed(
            lambda: host_det.infer_bound({dspec.input.name: preprocess_frames(pics, sized, letterbox=True)[0]}), len(pics)
        ),
        "ms_per_frame_nv12_graph_host_planes": timed(lambda: nv12_det.infer_bound({"planes": nv12, **sizes}), len(pics)),
    }
    if cuda and cupy is not None:
        dev = cupy.asarray(nv12)
        res["nv12_detector"]["ms_per_frame_nv12_graph_device_planes"] = timed(
            lambda: nv12_det.infer_bound({"planes": dev, **sizes}), len(pics)
        )
    # the crop + classifier
    dets = m.detector.detect(pics)
    if len(dets) and dets.landmarks is not None and pics[0].matrix == BT601:  # the crop graph's grey is BT.601's luma
        planes = np.stack([np.ascontiguousarray(p.y) for p in pics])
        ins = crop_inputs(dets.landmarks, dets.frame_pos)
        graph = OrtRunner(str(prepare_crop_classifier(resolve_model_file(spec), spec)), providers=providers)
        out = graph.output_names[0]
        ref = cls.infer({spec.input.name: extract_crops(pics, dets, spec)})[cls.output_names[0]]
        got = graph.infer_bound({"planes": planes, **ins})[out]
        res["crop"] = {
            "faces": len(dets),
            "labels_equal": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "max_abs_logit_diff": round(float(np.abs(got - ref).max()), 5),
            "ms_per_face_cpu_crop_and_classify": timed(lambda: cls.infer({spec.input.name: extract_crops(pics, dets, spec)}), len(dets)),
            "ms_per_face_graph_host_planes": timed(lambda: graph.infer_bound({"planes": planes, **ins}), len(dets)),
        }
        # the whole NV12 pictures, as NVDEC leaves them (the graph reads the luma, and the chroma for other matrices)
        nv12_graph = OrtRunner(str(prepare_crop_classifier(resolve_model_file(spec), spec, nv12=True)), providers=providers)
        nv12_ins = {**ins, "colour": fixed_point(pics[0].matrix)}
        res["crop"]["nv12_labels_equal"] = float(
            np.mean(nv12_graph.infer_bound({"planes": nv12, **nv12_ins})[nv12_graph.output_names[0]].argmax(1) == ref.argmax(1))
        )
        if cuda and cupy is not None:
            dev = cupy.asarray(nv12)
            res["crop"]["ms_per_face_graph_device_nv12"] = timed(lambda: nv12_graph.infer_bound({"planes": dev, **nv12_ins}), len(dets))
    else:
        res["crop"] = {"skipped": "no faces with landmarks in the clip"}
    m.close()
    return res


STEPS = ("device", "clips", "decode", "nvdec", "nvdec_exact", "engines", "rows", "profile", "device_graphs", "e2e", "ray")
CLIPS = {"720p": (1280, 720), "1080p": (1920, 1080)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (videos_faces/...)")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON report (merged into when it exists)")
    ap.add_argument("--work", type=Path, default=None, help="folder for clips and datasets, kept (default: a temp folder, removed)")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--backend", default="onnxruntime-cuda", help="GPU backend for the job and throughput runs")
    ap.add_argument("--counts", default="1,4,8,14", help="process / worker counts for decode and e2e")
    ap.add_argument("--frames", type=int, default=600, help="frames per clip (each e2e worker runs the whole clip)")
    ap.add_argument("--quick", action="store_true", help="300 frames, counts 1,4")
    ap.add_argument("--label", default="", help="store e2e results under e2e_<label> (e.g. a baseline run of older code)")
    ap.add_argument("--decoders", default="pyav", help="decoders for e2e and rows: pyav, nvdec or pyav,nvdec")
    ap.add_argument(
        "--preprocess",
        default="host",
        help="e2e and rows: host, graph or host,graph (graph: --preprocess graph, frames on the GPU with NVDEC)",
    )
    ap.add_argument("--ray-videos", type=int, default=0, help="ray: copies of the 720p clip in the job (0 = two per worker)")
    ap.add_argument("--ray-counts", default="", help="ray: workers per GPU, e.g. 8 or 4,8 (default: the largest of --counts)")
    ap.add_argument("--variants", action="store_true", help="e2e: also fp16 and cuDNN exhaustive search at the best 720p count")
    a = ap.parse_args()
    steps = [x for x in a.steps.split(",") if x]
    unknown = set(steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from {STEPS}")
    counts = [1, 4] if a.quick else [int(x) for x in a.counts.split(",")]
    decoders = [x for x in a.decoders.split(",") if x]
    if set(decoders) - {"pyav", "nvdec"}:
        ap.error(f"--decoders {a.decoders}: choose from pyav, nvdec")
    ray_counts = [int(x) for x in a.ray_counts.split(",") if x] or [max(counts)]
    n = 300 if a.quick else a.frames
    preprocess = [x for x in a.preprocess.split(",") if x]
    if set(preprocess) - {"host", "graph"}:
        ap.error(f"--preprocess {a.preprocess}: choose from host, graph")

    t0 = time.perf_counter()
    report: dict = json.loads(a.out.read_text()) if a.out.exists() else {}
    report.setdefault("dates", []).append(time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    work = a.work or Path(tempfile.mkdtemp(prefix="ferbatch_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        a.out.write_text(json.dumps(report, indent=1))

    three = a.data / "videos_faces/intel_sample_videos_mp4/face-demographics-walking-and-pause.mp4"
    two = a.data / "videos_faces/intel_sample_videos_mp4/head-pose-face-detection-female-and-male.mp4"
    clips = {name: work / f"{name}.mp4" for name in CLIPS}
    if "device" in steps:
        report["device"] = device_info()
        print(json.dumps(report["device"], indent=1), flush=True)
    if "clips" in steps:
        for name, (w, h) in CLIPS.items():
            make_clip(three, clips[name], w, h, n)
        report["clip_frames"] = n
    if "decode" in steps:
        dec = report.setdefault("decode_fps", {})
        for name, clip in clips.items():
            row = dec.setdefault(name, {})
            for p in counts:
                row[str(p)] = round(decode_fps(clip, p), 1)
            row["1_threaded"] = round(decode_fps(clip, 1, threaded=True), 1)
            print(f"decode {name}: {row}", flush=True)
            save()
    if "nvdec" in steps:
        nv = report.setdefault("nvdec_fps", {})
        for sessions in counts:
            for rgb in (False, True):
                key = f"{sessions} {'rgb' if rgb else 'nv12'}"
                try:
                    nv[key] = nvdec_fps(clips["720p"], sessions, rgb)
                except Exception as e:  # a missing wheel or driver library: recorded, not fatal
                    nv[key] = {"error": f"{type(e).__name__}: {e}"}
                print(f"nvdec 720p {key}: {nv[key]}", flush=True)
        save()
    if "nvdec_exact" in steps:
        videos = sorted((a.data / "videos_faces").rglob("*.mp4")) + sorted((a.data / "videos_faces").rglob("*.mov"))
        hevc = hevc_clip(three, work / "hevc.mkv", 120)
        report["nvdec_exact"] = nvdec_exact([*videos, *(c for c in clips.values() if c.exists()), *([hevc] if hevc else [])])
        if "skipped" in report["nvdec_exact"]:
            print(f"nvdec_exact: skipped: {report['nvdec_exact']['skipped']}", flush=True)
        save()
    if "profile" in steps:
        prof = report.setdefault("profile_detect_ms_per_frame", {})
        for name, clip in clips.items():
            prof[name] = profile_detect(clip, a.backend)
            print(f"profile {name}: {prof[name]}", flush=True)
        save()
    if "device_graphs" in steps:
        report["device_graphs"] = {name: device_graphs_check(clip, a.backend) for name, clip in clips.items()}
        print(f"device_graphs: {report['device_graphs']}", flush=True)
        save()
    if "engines" in steps:
        from ferbatch.checks import check_engines
        from ferbatch.config import JobConfig
        from ferbatch.errors import FerbatchError

        checks = report.setdefault("check_engines", {})
        for backend, precision in [("onnxruntime-cuda", "fp32"), ("onnxruntime-cuda", "fp16"), ("tensorrt", "fp16")]:
            try:
                rep = check_engines(JobConfig(backend="onnxruntime"), JobConfig(backend=backend, precision=precision), two)
                checks[f"{backend} {precision}"] = rep.to_dict()
            except FerbatchError as e:
                checks[f"{backend} {precision}"] = {"skipped": str(e)}
            v = checks[f"{backend} {precision}"]
            print(f"check-engines {backend} {precision}: {'PASSED' if v.get('passed') else v.get('skipped', 'FAILED')}", flush=True)
        save()
    if "rows" in steps:
        from ferbatch.config import JobConfig
        from ferbatch.errors import FerbatchError
        from ferbatch.job import run_job

        samples = a.data / "videos_faces"
        for d in ("cpu", "gpu"):
            shutil.rmtree(work / d, ignore_errors=True)
        t = time.perf_counter()
        run_job(samples, work / "cpu", JobConfig(backend="onnxruntime"), use_ray=False)
        t_cpu = time.perf_counter() - t
        try:
            t = time.perf_counter()
            run_job(samples, work / "gpu", JobConfig(backend=a.backend, preprocess="host"), use_ray=False)
            report["rows_equal"] = compare_rows(work / "cpu", work / "gpu") | {
                "cpu_s": round(t_cpu, 1),
                "gpu_s": round(time.perf_counter() - t, 1),
            }
        except FerbatchError as e:
            report["rows_equal"] = {"skipped": str(e)}
        print("rows vs CPU:", report["rows_equal"], flush=True)
        if "nvdec" in decoders:
            shutil.rmtree(work / "gpu_nvdec", ignore_errors=True)
            try:
                t = time.perf_counter()
                run_job(samples, work / "gpu_nvdec", JobConfig(backend=a.backend, decoder="nvdec", preprocess="host"), use_ray=False)
                report["rows_equal_nvdec"] = compare_rows(work / "cpu", work / "gpu_nvdec") | {"gpu_s": round(time.perf_counter() - t, 1)}
            except FerbatchError as e:
                report["rows_equal_nvdec"] = {"skipped": str(e)}
            print("rows (NVDEC) vs CPU:", report["rows_equal_nvdec"], flush=True)
        save()
    if "rows" in steps and "graph" in preprocess:
        from ferbatch.config import JobConfig
        from ferbatch.errors import FerbatchError
        from ferbatch.job import run_job

        for dec in decoders:  # the in-graph pre-processing against the CPU run (host NV12 with PyAV, device NV12 with NVDEC)
            d = work / f"gpu_graph_{dec}"
            shutil.rmtree(d, ignore_errors=True)
            try:
                t = time.perf_counter()
                run_job(a.data / "videos_faces", d, JobConfig(backend=a.backend, decoder=dec, preprocess="graph"), use_ray=False)
                report[f"rows_equal_graph_{dec}"] = compare_rows(work / "cpu", d) | {"gpu_s": round(time.perf_counter() - t, 1)}
            except FerbatchError as e:
                report[f"rows_equal_graph_{dec}"] = {"skipped": str(e)}
            print(f"rows (graph, {dec}) vs CPU:", report[f"rows_equal_graph_{dec}"], flush=True)
        save()
    if "e2e" in steps:
        for dec in decoders:
            for pre in preprocess:
                key = "_".join(x for x in ("e2e", a.label, "" if dec == "pyav" else dec, "" if pre == "host" else pre) if x)
                e2e = report.setdefault(key, {})
                for name, clip in clips.items():
                    row = e2e.setdefault(name, {})
                    for wpg in counts:
                        row[str(wpg)] = e2e_fps(clip, wpg, a.backend, "fp32", "HEURISTIC", work, decoder=dec, preprocess=pre)
                        print(f"e2e {dec} {pre} {name} {wpg} workers: {row[str(wpg)]}", flush=True)
                        save()
        e2e = report.setdefault(f"e2e_{a.label}" if a.label else "e2e", {})
    if "e2e" in steps and a.variants:
        best = max(counts, key=lambda c: e2e["720p"][str(c)].get("fps", 0))
        extra = e2e.setdefault("720p_variants", {})
        for label, precision, algo in [("fp16", "fp16", "HEURISTIC"), ("cudnn_exhaustive", "fp32", "EXHAUSTIVE")]:
            extra[f"{label} {best}"] = e2e_fps(clips["720p"], best, a.backend, precision, algo, work)
            print(f"e2e 720p {best} workers {label}: {extra[f'{label} {best}']}", flush=True)
            save()
    if "ray" in steps:
        for dec in decoders:
            for pre in preprocess:
                key = "_".join(x for x in ("ray", "" if dec == "pyav" else dec, "" if pre == "host" else pre) if x)
                row = report.setdefault(key, {}).setdefault("720p", {})
                clip = clips["720p"]
                for wpg in ray_counts:
                    try:
                        row[str(wpg)] = ray_job(clip, a.ray_videos or 2 * wpg, wpg, a.backend, work, decoder=dec, preprocess=pre)
                    except Exception as e:  # a missing wheel (Ray, a decoder) or a failed job: recorded, not fatal
                        row[str(wpg)] = {"error": f"{type(e).__name__}: {e}"}
                    print(f"ray {dec} {pre} 720p {wpg} workers: {row[str(wpg)]}", flush=True)
                    save()
    report.setdefault("seconds", []).append(round(time.perf_counter() - t0, 1))
    save()
    if "decode_fps" in report or "e2e" in report:
        print(f"{'clip':6} {'procs/workers':>13} {'decode f/s':>11} {'e2e f/s':>9} {'GPU %':>6} {'e2e NVDEC':>10} {'GPU %':>6}")
        for name in CLIPS:
            for p in counts:
                d = report.get("decode_fps", {}).get(name, {}).get(str(p), "")
                r = report.get("e2e", {}).get(name, {}).get(str(p), {})
                v = report.get("e2e_nvdec", {}).get(name, {}).get(str(p), {})
                print(
                    f"{name:6} {p:>13} {d!s:>11} {r.get('fps', r.get('error', ''))!s:>9} {r.get('gpu_util_pct', '')!s:>6}"
                    f" {v.get('fps', v.get('error', ''))!s:>10} {v.get('gpu_util_pct', '')!s:>6}"
                )
    print(f"{round(time.perf_counter() - t0, 1)} s; JSON in {a.out}")
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
