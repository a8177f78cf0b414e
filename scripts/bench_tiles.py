"""Tiled detection at the interval: can ``--min-face-px`` (tiles) become the default for large frames
now that full detections run every N frames?

Clips (made once into a temporary folder, never into the repo):

- crowd: 1920x1080, 12 frames/s, ``--frames`` frames: a ``--grid`` x ``--grid`` grid of the four
  480x270 Intel clips, each cell looped from its own start frame: at 4 (native size) 20-40 faces of
  35-70 px per frame, at 8 (cells of 240x135, INTER_AREA) 80-160 faces of 17-35 px;
- 1080p: the walking clip scaled to 1920x1080 (``scripts/bench.py``'s 1080p clip, 3 large faces),
  first ``--frames`` frames.

For each clip and setting (``--detect-every`` 1 or 3, ``--min-face-px`` none or ``--tile-px``): face rows
per frame, CPU ms per frame of a single-threaded shard (decode included; ``time.process_time``) and,
against the rows of N = 1 with tiles (the most complete pass), recall at IoU >= 0.5 and the rows the
reference does not have (extra). Nothing is asserted; a table and one JSON line are printed.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_tiles.py [--frames 120] [--grid 4] [--tile-px 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FERBATCH_SHARED", REPO.parent / "shared")) / "data" / "videos_faces/intel_sample_videos_mp4"
CELLS = [
    "face-demographics-walking-and-pause.mp4",
    "head-pose-face-detection-female-and-male.mp4",
    "head-pose-face-detection-female.mp4",
    "head-pose-face-detection-male.mp4",
]


def crowd_clip(folder: Path, frames: int, grid: int = 4) -> Path:
    """The mosaic clip (module docstring): cell (r, c) plays ``CELLS[(r + c) % 4]`` from frame
    ``5 * (grid r + c)``, looped. Returns its path."""
    import av
    import cv2

    clips = []
    for name in CELLS:
        with av.open(str(DATA / name)) as c:
            cw, ch = 1920 // grid, 1080 // grid
            clips.append([cv2.resize(f.to_ndarray(format="rgb24"), (cw, ch), interpolation=cv2.INTER_AREA) for f in c.decode(video=0)])
    out = folder / f"crowd_{grid}x{grid}_{frames}.mp4"
    with av.open(str(out), "w") as dst:
        st = dst.add_stream("libx264", rate=12)
        st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(frames):
            canvas = np.zeros((1080, 1920, 3), np.uint8)
            for r in range(grid):
                for c in range(grid):
                    src = clips[(r + c) % 4]
                    canvas[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = src[(i + 5 * (grid * r + c)) % len(src)]
            for pkt in st.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                dst.mux(pkt)
        for pkt in st.encode():
            dst.mux(pkt)
    return out


def run(clip: Path, every: int, tile_px: float | None, frames: int):
    """(rows, CPU seconds, frames) of one single-threaded shard over the clip's first ``frames`` frames."""
    from ferbatch.config import JobConfig
    from ferbatch.media.probe import probe_video
    from ferbatch.media.shards import Shard
    from ferbatch.models.load import load_models
    from ferbatch.pipeline import FrameSettings, process_shard

    models = load_models(JobConfig(workers=1, min_face_px=tile_px), threads=1)
    _, index = probe_video(clip)
    n = min(frames, len(index.pts))
    cpu = time.process_time()
    out = process_shard(Shard("tiles", str(clip), 0, 0, n, index), models, prefetch=0, settings=FrameSettings(detect_every=every))
    cpu = time.process_time() - cpu
    models.close()
    return out.faces, cpu, n


def against(ref, got) -> tuple[float, int]:
    """(recall of ``ref``'s rows in ``got`` at IoU >= 0.5, rows of ``got`` matched to none)."""
    from ferbatch.vision.boxes import match_boxes

    found = extra = 0
    for f in np.union1d(ref.frame_pos, got.frame_pos):
        ia, ib = np.flatnonzero(ref.frame_pos == f), np.flatnonzero(got.frame_pos == f)
        m = match_boxes(ref.boxes[ia], got.boxes[ib], got.scores[ib])
        found += int((m >= 0).sum())
        extra += len(ib) - int((m >= 0).sum())
    return found / max(1, len(ref.frame_pos)), extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--tile-px", type=float, default=24.0, help="--min-face-px of the tiled settings")
    ap.add_argument("--grid", type=int, default=4, help="cells per side of the crowd clip")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    from bench import make_clip

    with tempfile.TemporaryDirectory(prefix="bench_tiles_") as tmp:
        clips = {"crowd": crowd_clip(Path(tmp), args.frames, args.grid), "1080p": Path(make_clip("1080p"))}
        settings = [(1, None), (3, None), (1, args.tile_px), (3, args.tile_px)]
        res: dict[str, dict] = {}
        print(f"{'clip':6} {'N':>2} {'tiles':>6} {'rows/frame':>10} {'recall':>7} {'extra':>6} {'CPU ms/frame':>12} {'vs N=1 plain':>12}")
        for name, clip in clips.items():
            rows = {s: run(clip, s[0], s[1], args.frames) for s in settings}
            ref = rows[(1, args.tile_px)][0]
            base = rows[(1, None)][1] / rows[(1, None)][2]
            for (every, tile), (faces, cpu, n) in rows.items():
                rec, extra = against(ref, faces)
                ms = 1000 * cpu / n
                key = f"{name} N={every} tiles={'none' if tile is None else int(tile)}"
                res[key] = {
                    "rows_per_frame": len(faces) / n,
                    "recall": rec,
                    "extra": extra,
                    "cpu_ms_per_frame": ms,
                    "cpu_vs_plain_n1": ms / (1000 * base),
                }
                t = "none" if tile is None else f"{tile:g}px"
                print(f"{name:6} {every:>2} {t:>6} {len(faces) / n:10.2f} {rec:7.3f} {extra:6d} {ms:12.2f} {ms / (1000 * base):12.2f}")
    line = json.dumps(res)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")


if __name__ == "__main__":
    main()
