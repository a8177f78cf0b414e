"""Frames/s of the models (detect + crop + classify, frames already decoded) on ONNX Runtime and
OpenVINO, and their parity on the same frames (boxes, labels).

    FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_backends.py CLIP [--threads 2] [--batch 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import av
import numpy as np

from ferbatch.config import JobConfig
from ferbatch.labels import argmax_known
from ferbatch.live.infer import infer_images, split_by_frame
from ferbatch.models.load import load_models


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with av.open(a.clip) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, batch {a.batch}, {a.threads} threads")
    # both backends loaded, runs interleaved (ORT, OpenVINO, ORT, ...) so a shared machine's load hits both alike
    models = {b: load_models(JobConfig(backend=b, detect_batch=a.batch), threads=a.threads) for b in ("onnxruntime", "openvino")}
    best = dict.fromkeys(models, 0.0)
    results: dict[str, list] = {}
    for m in models.values():
        infer_images(m, frames[: a.batch])  # warm-up
    for _ in range(a.repeat):
        for backend, m in models.items():
            t = time.perf_counter()
            out = []
            for i in range(0, len(frames), a.batch):
                chunk = frames[i : i + a.batch]
                out += split_by_frame(infer_images(m, chunk), len(chunk))
            best[backend] = max(best[backend], len(frames) / (time.perf_counter() - t))
            results[backend] = out
    print("| backend | frames/s (best of runs) | faces |")
    print("|---|---|---|")
    for backend in models:
        print(f"| {backend} | {best[backend]:.1f} | {sum(len(f.boxes) for f in results[backend])} |")
    ort, ov = results["onnxruntime"], results["openvino"]
    same_n = sum(len(x.boxes) == len(y.boxes) for x, y in zip(ort, ov, strict=True))
    diffs = [np.abs(x.boxes - y.boxes).max() for x, y in zip(ort, ov, strict=True) if len(x.boxes) == len(y.boxes) and len(x.boxes)]
    labels = [
        (argmax_known(x.probs) == argmax_known(y.probs)).mean()
        for x, y in zip(ort, ov, strict=True)
        if len(x.boxes) == len(y.boxes) and len(x.boxes)
    ]
    print(
        f"parity: same face count on {same_n}/{len(frames)} frames; largest box difference {max(diffs, default=0):.4f} px; "
        f"labels equal on {100 * float(np.mean(labels)) if labels else 100:.2f}% of faces"
    )


if __name__ == "__main__":
    main()
