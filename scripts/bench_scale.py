"""The dataset layout at scale: answers over the outputs of 10,000 and 100,000 short videos.

Generates synthetic rows (no processing) for N short videos — 50 frames at 25 fps, one face per
frame, a track each — and writes them twice:
- "before": layout 1, the writer of ferbatch 0.3 reproduced here (one hive folder per video, one
  fsynced file per video per table: faces/video_id=<id>/shard-00000.parquet, ...);
- "after": layout 2 through the real writer (:class:`ferbatch.dataset.writer.DatasetWriter`, the
  videos table of :func:`ferbatch.dataset.videos.videos_table`),
  locally and (``--s3``) on an S3-compatible server on loopback (moto's standalone server,
  started and stopped here) through pyarrow's S3 filesystem.
Then times, each from a fresh ``ferbatch.open`` (what one CLI command does after Python starts):
``summary``, a query with a JOIN (faces x videos, happiness per video, top 10), and ``timeline``
for one video. Ratios are against layout 1 on the local disk, measured in the same run.
Layout 1 was never readable from object storage (``--out s3://`` did not exist before), so the
S3 rows have no "before".

Usage: python scripts/bench_scale.py [--videos 10000 100000] [--s3] [--skip-before-above 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import ferbatch
from ferbatch.atomic import atomic_target
from ferbatch.dataset.schema import faces_table, frames_table
from ferbatch.dataset.store import LAYOUT, write_manifest, write_videos
from ferbatch.dataset.videos import videos_table
from ferbatch.dataset.writer import DatasetWriter
from ferbatch.faces import FaceBatch
from ferbatch.location import Location, open_location

FRAMES = 50
TEMPLATES = 64  # distinct synthetic videos; video i reuses template i % TEMPLATES (generation is not what is measured)
JOIN_SQL = """SELECT v.path, count(*) AS happy FROM faces f JOIN videos v USING (video_id)
              WHERE f.emotion = 'happiness' GROUP BY v.path ORDER BY happy DESC, v.path LIMIT 10"""


_TEMPLATES: dict[int, tuple[pa.Table, pa.Table, pa.Table]] = {}


def video_rows(i: int, rng: np.random.Generator) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(faces, frames, tracks) of synthetic video ``i`` in the shard-level schemas."""
    k = i % TEMPLATES
    if k not in _TEMPLATES:
        _TEMPLATES[k] = _make_rows(k, rng)
    return _TEMPLATES[k]


def _make_rows(i: int, rng: np.random.Generator) -> tuple[pa.Table, pa.Table, pa.Table]:
    from ferbatch.job.tracking import track_faces

    idx = np.arange(FRAMES, dtype=np.int64)
    pts = idx * 40.0
    probs = rng.dirichlet(np.ones(8), FRAMES).astype(np.float32)
    x = np.float32(100 + i % 50)
    boxes = np.tile(np.float32([x, 80, x + 60, 140]), (FRAMES, 1))
    rows = FaceBatch(idx, boxes, np.full(FRAMES, 0.9, np.float32), probs=probs, pts_ms=pts, face_idx=np.zeros(FRAMES, np.int16))
    faces, tracks = track_faces(faces_table(rows, 0))
    return faces, frames_table(idx, pts, np.ones(FRAMES, np.int16), 0), tracks


def record(vid: str, i: int) -> dict:
    """A manifest record as the job writes one for a finished one-shard video."""
    return {
        "video_id": vid,
        "path": f"/data/videos/{i // 1000:03d}/clip{i:06d}.mp4",
        "rel_path": f"{i // 1000:03d}/clip{i:06d}.mp4",
        "paths": [f"/data/videos/{i // 1000:03d}/clip{i:06d}.mp4"],
        "mtime_ns": 1_700_000_000_000_000_000 + i,
        "size_bytes": 400_000 + i,
        "content_hash": f"{i:064x}",
        "notes": [],
        "status": "ok",
        "error": "",
        "frames": FRAMES,
        "faces": FRAMES,
        "width": 640,
        "height": 360,
        "fps": 25.0,
        "duration_s": FRAMES / 25,
        "codec": "h264",
        "packets": FRAMES,
        "shards": [
            {"shard_idx": 0, "start": 0, "end": FRAMES, "status": "ok", "frames": FRAMES, "faces": FRAMES, "error": "", "seconds": 0.5}
        ],
        "tracked": True,
        "tracks": 1,
    }


def manifest_for(n: int) -> dict:
    m = {"ferbatch_version": ferbatch.__version__, "config": {}, "config_key": "bench", "skipped_inputs": {}}
    m["models"] = {k: {"name": k, "sha256": "0" * 64, "file": ""} for k in ("detector", "classifier")}
    m["videos"] = {f"clip{i:06d}-{i:08x}": record(f"clip{i:06d}-{i:08x}", i) for i in range(n)}
    return m


def write_before(root: Path, n: int, seed: int = 0) -> float:
    """Layout 1 as ferbatch 0.3 wrote it (each file atomically and fsynced); returns seconds."""
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    manifest = manifest_for(n)
    for i, vid in enumerate(manifest["videos"]):
        for name, table in zip(("faces", "frames", "tracks"), video_rows(i, rng), strict=True):
            dst = root / name / f"video_id={vid}" / "shard-00000.parquet"
            with atomic_target(dst, fsync=True) as tmp:
                pq.write_table(table, tmp, compression="zstd", write_statistics=True)
    loc = open_location(root)
    write_manifest(loc, manifest)
    write_videos(loc, videos_table(manifest), manifest)
    return time.perf_counter() - t


def write_after(loc: Location, n: int, seed: int = 0) -> float:
    """Layout 2 through the job's own writer; returns seconds."""
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    manifest = manifest_for(n)
    manifest["layout"] = LAYOUT
    with DatasetWriter(loc, command="bench", videos=videos_table) as writer:
        writer.start(manifest)
        for i, vid in enumerate(manifest["videos"]):
            faces, frames, tracks = video_rows(i, rng)
            writer.stage(vid, {"faces": faces, "frames": frames, "tracks": tracks})
            if writer.due():
                writer.commit()
                writer.save_manifest()
        writer.commit()
        writer.save()
    return time.perf_counter() - t


def time_answers(where: str, video: str) -> dict[str, float]:
    """Seconds of summary, the JOIN query and one timeline, each from a fresh open."""
    out = {}
    for name, fn in (
        ("summary", lambda ds: ds.summary()),
        ("join query", lambda ds: ds.sql(JOIN_SQL).to_arrow_table()),
        ("timeline", lambda ds: ds.timeline(video, 1.0)),
    ):
        t = time.perf_counter()
        with ferbatch.open(where) as ds:
            res = fn(ds)
        out[name] = time.perf_counter() - t
        assert res.num_rows > 0, name
    return out


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def files_in(loc: Location) -> int:
    return len(loc.list_files("", recursive=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--s3", action="store_true", help="also on a moto S3 server on loopback")
    ap.add_argument("--skip-before-above", type=int, default=10**9, help="no layout-1 run above this many videos")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir, removed after)")
    args = ap.parse_args()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="ferbatch-scale-"))
    moto = None
    if args.s3:
        moto, url = start_moto()
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=url, allow_bucket_creation=True).create_dir("bench")
    print(
        f"{'videos':>8} {'where':6} {'layout':7} {'write s':>8} {'files':>7} {'summary s':>10} {'join s':>8} {'timeline s':>11}  ratios vs layout 1 local"
    )
    try:
        for n in args.videos:
            video = f"clip{n // 2:06d}-{n // 2:08x}"
            base = None
            runs = []
            if n <= args.skip_before_above:
                runs.append(("local", 1, scratch / f"v1-{n}"))
            runs.append(("local", 2, scratch / f"v2-{n}"))
            if args.s3:
                runs.append(("s3", 2, f"s3://bench/v2-{n}"))
            for where, layout, target in runs:
                loc = open_location(target)
                secs = write_before(Path(target), n) if layout == 1 else write_after(loc, n)
                answers = time_answers(str(target), video)
                ratios = ""
                if base is None and layout == 1:
                    base = answers
                elif base is not None:
                    ratios = "  " + " ".join(f"{k} {base[k] / v:.1f}x" for k, v in answers.items())
                print(
                    f"{n:>8} {where:6} {layout:>7} {secs:>8.1f} {files_in(loc):>7} {answers['summary']:>10.2f} "
                    f"{answers['join query']:>8.2f} {answers['timeline']:>11.2f}{ratios}",
                    flush=True,
                )
                if loc.local:
                    shutil.rmtree(target, ignore_errors=True)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
