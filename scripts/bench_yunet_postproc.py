"""Per-frame CPU cost of YuNet's post-processing: NumPy decoding + NMS (the fallback) against the
in-graph decoding + NMS (what is left on the CPU: scaling the fixed-size outputs to frame pixels).

For each frame size (real frames of WolfgangLanger_Pexels.mp4 resized; the input follows the frame
as in ``FrameSizedDetector``, longest side <= 512) and a batch of ``--batch`` frames (default 8):

- ``host_ms``: ``Detector._run`` with the model's outputs replayed (a runner that returns the
  outputs of one earlier inference), i.e. the per-frame CPU work after inference — what a GPU
  worker pays on its CPU;
- ``ort_cpu_ms``: the whole ``Detector.detect`` on ONNX Runtime CPU (letterbox + network + post-
  processing; with NMS in the graph the decoding runs inside ONNX Runtime on the CPU here).

Best of ``--repeat`` runs, ms per frame. Prints a table and one JSON line; asserts nothing.

Usage: FERBATCH_MODEL_MIRROR=<models> python scripts/bench_yunet_postproc.py [--data <shared>/data] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.models.graphs import prepare_detector
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.vision.detect import Detector, preprocess_frames
from ferbatch.vision.tiling import FrameSizedDetector

REPO = Path(__file__).resolve().parent.parent


class _Replay:
    """A runner that returns the outputs of one earlier inference (no model work)."""

    def __init__(self, runner: OrtRunner, feed: dict[str, np.ndarray]):
        self.name, self.max_batch = "replay", 0
        self.input_names, self.output_names = runner.input_names, runner.output_names
        self.optional_input_names = getattr(runner, "optional_input_names", ())
        self._out = runner.infer(feed)

    def infer(self, feed):
        return self._out

    def close(self):
        pass


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    clip = args.data / "videos_faces/pyfeat/WolfgangLanger_Pexels.mp4"
    _, index = probe_video(clip)
    frames = [f.image for f in iter_frames(clip, index, 0, args.batch)]
    spec = load_registry().get("yunet-frame")
    src = resolve_model_file(spec)
    runners = {
        nms: OrtRunner(prepare_detector(src, spec, in_graph_nms=nms), threads=args.threads, max_batch=args.batch) for nms in (False, True)
    }
    rows = []
    for wh in ((480, 270), (640, 360), (1280, 720)):
        batch = [cv2.resize(f, wh, interpolation=cv2.INTER_AREA) for f in frames]
        for thr in (None, 0.3):
            row: dict = {"frame": f"{wh[0]}x{wh[1]}", "min_score": thr}
            for nms in (False, True):
                fs = FrameSizedDetector(Detector(runners[nms], spec, in_graph_nms=nms), max_side=spec.input_max_side)
                det = fs.sized(fs.input_for(wh))
                row["input"] = f"{det.spec.input.width}x{det.spec.input.height}"
                x, scale = preprocess_frames(batch, det.spec.input, letterbox=True)
                sizes = np.array([[f.shape[1], f.shape[0]] for f in batch], np.float32)
                feed = {spec.input.name: x}
                replay = Detector(_Replay(runners[nms], feed), det.spec, in_graph_nms=nms)
                host = _best(
                    lambda replay=replay, x=x, scale=scale, sizes=sizes, thr=thr: replay._run(x, scale, sizes, 0, thr), args.repeat
                )
                full = _best(lambda fs=fs, batch=batch, thr=thr: fs.detect(batch, min_score=thr), max(3, args.repeat // 5))
                key = "graph" if nms else "numpy"
                row[f"{key}_host_ms"] = round(host * 1e3 / len(batch), 4)
                row[f"{key}_ort_cpu_ms"] = round(full * 1e3 / len(batch), 3)
                row[f"{key}_faces"] = len(fs.detect(batch, min_score=thr))
            rows.append(row)
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    print(json.dumps({"threads": args.threads, "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
