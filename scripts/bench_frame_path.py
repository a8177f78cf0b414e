"""The frame path before and after YUV pictures (issue 30 item 1): rows and CPU of full-size RGB
frames (swscale's ``to_ndarray("rgb24")`` for every frame, the old path) against
:class:`ferbatch.picture.YuvPicture` frames (the pipeline's path: the detector input resized in the
planes, grey crops from the luma, RGB only where needed), on the shared clips and the bench clips.

For each clip, one single-threaded shard (:func:`ferbatch.pipeline.process_shard`, 1 FFmpeg, 1 ONNX
Runtime, 1 OpenCV thread, no prefetch) per path and per ``--detect-every``; the rows of the picture
path are matched to the RGB path's frame by frame (IoU >= 0.5): face-frame recall, median box IoU,
label agreement (``scripts/bench_interval.py``'s ``compare``), and CPU ms/frame (``time.process_time``,
best of ``--repeat``) of each path. Nothing is asserted; it prints a table and one JSON line.

With ``--graph`` the two paths are the host pre-processing of those pictures and the in-graph one
(``--preprocess graph``, issue 33: NV12 pictures, letterbox and colour conversion inside the
detector graph, aligned crops inside the classifier graph), both on the CPU provider: the first
columns then read host, the second graph.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_frame_path.py [--every 1,3] [--extra CLIP,...] [--graph]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_interval import CLIPS, compare, emit_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", default="1,3", help="comma-separated --detect-every values")
    ap.add_argument("--extra", default="", help="comma-separated extra clips (e.g. the bench's 720p/1080p clips)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", default="")
    ap.add_argument("--graph", action="store_true", help="compare host pictures (first) with the in-graph pre-processing (second)")
    args = ap.parse_args()
    from ferbatch.config import JobConfig
    from ferbatch.media.probe import probe_video
    from ferbatch.media.shards import Shard
    from ferbatch.models.load import load_models
    from ferbatch.pipeline import FrameSettings, process_shard

    cv2.setNumThreads(1)
    models = load_models(JobConfig(workers=1, preprocess="host"), threads=1)
    paths = [("rgb", False, models), ("pic", True, models)]
    if args.graph:
        paths = [("rgb", True, models), ("pic", "nv12", load_models(JobConfig(workers=1, preprocess="graph"), threads=1))]
    clips = CLIPS + [Path(c) for c in args.extra.split(",") if c]
    res: dict = {}
    for n in [int(x) for x in args.every.split(",")]:
        tot = {"rows": 0, "matched": 0, "ious": [], "agree": 0, "rgb_s": 0.0, "pic_s": 0.0, "frames": 0}
        for clip in clips:
            _, index = probe_video(clip)
            shard = Shard("bench", str(clip), 0, 0, None, index)
            out, best = {}, {}
            for _ in range(args.repeat):
                for name, pictures, m in paths:
                    t = time.process_time()
                    out[name] = process_shard(shard, m, prefetch=0, settings=FrameSettings(detect_every=n), pictures=pictures)
                    best[name] = min(best.get(name, 1e9), time.process_time() - t)
            c = compare(out["rgb"], out["pic"])
            nf = len(out["rgb"].frame_idx)
            for k in ("rows", "matched", "agree"):
                tot[k] += c[k]
            tot["ious"] += c["ious"]
            tot["rgb_s"] += best["rgb"]
            tot["pic_s"] += best["pic"]
            tot["frames"] += nf
            print(
                f"N={n} {clip.name:50s} recall {c['matched'] / max(1, c['rows']):.3f} agreement {c['agree'] / max(1, c['matched']):.3f} "
                f"CPU {1000 * best['rgb'] / nf:.2f} -> {1000 * best['pic'] / nf:.2f} ms/frame",
                file=sys.stderr,
            )
        res[n] = {
            "recall": tot["matched"] / max(1, tot["rows"]),
            "median_iou": float(np.median(tot["ious"])) if tot["ious"] else 1.0,
            "agreement": tot["agree"] / max(1, tot["matched"]),
            "rgb_ms_per_frame": 1000 * tot["rgb_s"] / max(1, tot["frames"]),
            "picture_ms_per_frame": 1000 * tot["pic_s"] / max(1, tot["frames"]),
        }
    first, second = ("host", "graph") if args.graph else ("RGB", "picture")
    print(f"{'N':>3} {'recall':>7} {'median IoU':>10} {'agreement':>9} {first + ' ms/frame':>14} {second + ' ms/frame':>16}")
    for n, r in res.items():
        print(
            f"{n:>3} {r['recall']:7.3f} {r['median_iou']:10.3f} {r['agreement']:9.3f} {r['rgb_ms_per_frame']:14.2f} {r['picture_ms_per_frame']:16.2f}"
        )
    emit_json(clips, res, args.json)


if __name__ == "__main__":
    main()
