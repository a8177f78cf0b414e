"""What BT.709-tagged and full-range streams cost against the same pictures untagged (BT.601 limited range assumed).

Most HD video from cameras and phones is tagged BT.709; MJPEG, many webcams and some phones give full range
(yuvj420p). ferbatch's frame path keeps a decoded frame in its YUV planes (:class:`ferbatch.picture.YuvPicture`) and
converts only what each consumer needs. Until session 14 it did so only for BT.601 limited-range or untagged streams,
and any other frame was converted to full-size RGB by swscale in the decoder (BT.709 720p: 0.75x the frames/s of the
same pictures untagged). Since then those pictures convert from their planes too (:mod:`ferbatch.colour`), so the
ratios printed here should sit near 1. The in-graph pre-processing (``--preprocess graph``) takes every matrix too
(the detector graph; the crop graph cuts BT.601 limited-range crops only).

This script encodes the same pictures three times at 1280x720 (the shared 640x360 WolfgangLanger clip scaled up, 472
frames, H.264): untagged, tagged BT.709 limited range, and tagged full range; the decoded planes are equal. It runs
the real job in-process on each, alternating, ``--reps`` times, and prints per stream: median frames/s, median CPU
seconds per frame (``time.process_time`` of the whole process: other load on the machine does not count), the ratio of
each tagged stream to the untagged one measured in the same run, and the ``videos`` table's ``preprocess`` column.
Nothing is asserted.

Usage: FERBATCH_MODEL_MIRROR=../shared/models python scripts/bench_colorspace.py [--reps 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("FERBATCH_SHARED", REPO.parent / "shared")) / "data"
SOURCE = DATA / "videos_faces/pyfeat/WolfgangLanger_Pexels.mp4"
# (AVColorSpace, AVColorRange): 1 = BT.709; range 1 = limited (MPEG), 2 = full (JPEG: decoded as yuvj420p)
TAGS = {"untagged": (None, None), "bt709": (1, 1), "full": (None, 2)}


def encode(src: Path, dst: Path, tag: tuple[int | None, int | None], width: int = 1280, height: int = 720) -> Path:
    """``src`` scaled to ``width`` x ``height``, H.264 (libx264, CRF 23, GOP 48), tagged with ``tag`` (colorspace,
    colour range; None: untagged); equal pictures whatever the tag."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.time_base = Fraction(1, 30)
        s.options = {"crf": "23", "g": "48", "preset": "veryfast"}
        colorspace, color_range = tag
        if colorspace is not None:
            s.codec_context.colorspace = colorspace
        if color_range is not None:
            s.codec_context.color_range = color_range
        for k, f in enumerate(i.decode(video=0)):
            g = f.reformat(width, height, "yuv420p")
            g.pts, g.time_base = k, s.codec_context.time_base
            for p in s.encode(g):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4, help="runs per tag, alternating")
    ap.add_argument("--json", default="", help="also write the JSON here")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    from ferbatch.config import JobConfig
    from ferbatch.job import run_job

    tmp = Path(tempfile.mkdtemp(prefix="bench_colorspace_"))
    try:
        clips = {tag: encode(SOURCE, tmp / f"{tag}.mp4", cs) for tag, cs in TAGS.items()}
        fps: dict[str, list[float]] = {t: [] for t in TAGS}
        cpu: dict[str, list[float]] = {t: [] for t in TAGS}
        used: dict[str, list] = {}
        for _ in range(args.reps):
            for tag, clip in clips.items():
                out = tmp / f"out_{tag}"
                shutil.rmtree(out, ignore_errors=True)
                c0 = time.process_time()
                s = run_job(clip, out, JobConfig(), use_ray=False)
                cpu[tag].append((time.process_time() - c0) / max(s.frames, 1))
                fps[tag].append(s.frames / max(s.seconds - s.startup_seconds, 1e-9))
                used[tag] = pq.read_table(out / "videos.parquet", columns=["decoder", "preprocess", "frames", "faces"]).to_pylist()
        res = {
            tag: {"fps_median": round(statistics.median(fps[tag]), 1), "cpu_ms_per_frame": round(1000 * statistics.median(cpu[tag]), 2)}
            | used[tag][0]
            for tag in TAGS
        }
        for tag in TAGS:
            if tag != "untagged":
                res[f"ratio_{tag}_fps"] = round(res[tag]["fps_median"] / res["untagged"]["fps_median"], 3)
                res[f"ratio_{tag}_cpu"] = round(res[tag]["cpu_ms_per_frame"] / res["untagged"]["cpu_ms_per_frame"], 3)
        print("| stream | frames/s (median) | CPU ms/frame (median) | preprocess | frames | faces |")
        print("|---|---|---|---|---|---|")
        for tag in TAGS:
            r = res[tag]
            print(f"| {tag} | {r['fps_median']} | {r['cpu_ms_per_frame']} | {r['preprocess']} | {r['frames']} | {r['faces']} |")
        for tag in TAGS:
            if tag != "untagged":
                print(
                    f"{tag} / untagged: frames/s x{res[f'ratio_{tag}_fps']}, CPU per frame x{res[f'ratio_{tag}_cpu']} ({args.reps} runs each)"
                )
        print(json.dumps(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
