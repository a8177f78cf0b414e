"""Guards that no other test noticed: each test below fails when its guard is taken out.

Mutations run against these tests (each made by hand, the test watched failing, then restored):

- ``run_sql`` without its one-SELECT check (ferbatch/dataset/query.py): ``COPY ... TO
  '<OUT>/videos.parquet'`` overwrites the dataset's own table (DuckDB's sandbox allows writes
  inside OUT), ``ATTACH`` creates a file there -> test_only_one_select_runs_and_the_dataset_stays_as_it_was.
- ``min_face_px`` dropped from ``RESULT_KEYS`` (ferbatch/config.py): a rerun with another
  ``--min-face-px`` is skipped as done instead of refused -> test_another_min_face_px_is_refused.
- the decoder's re-seek (ferbatch/media/decode.py ``iter_frames``): ``MAX_RESEEKS = 0``, or the
  overshoot check removed -> test_a_seek_that_lands_late_is_redone_from_an_earlier_keyframe
  (frames before the late keyframe missing).
- the content hash's sampled blocks (ferbatch/job/inputs.py ``content_hash``): fewer or shorter
  blocks -> tests/test_identity.py::test_sampled_hash_reads_its_blocks_and_only_them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from badinputs import encode
from conftest import INTEL_2FACE, SINGLE_FACE, read_frames

from ferbatch.config import JobConfig
from ferbatch.dataset.query import connect, run_sql
from ferbatch.errors import ConfigError, OutputError
from ferbatch.job import run_job
from ferbatch.media.decode import DecodeStats, iter_frames
from ferbatch.media.probe import probe_video

FEMALE = INTEL_2FACE.parent / "head-pose-face-detection-female.mp4"  # 23 frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guards") / "out"
    s = run_job(FEMALE, out, JobConfig(workers=1), use_ray=False)
    assert s.ok == 1 and s.frames == 23
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1 AS x) TO '{out}/videos.parquet' (FORMAT parquet)",
        "COPY frames TO '{out}/frames.csv'",
        "ATTACH '{out}/x.duckdb' AS x",
        "EXPORT DATABASE '{out}/export'",
        "CREATE TABLE t AS SELECT 1 AS x",
        "INSERT INTO frames SELECT * FROM frames",
        "SELECT 1; COPY (SELECT 1 AS x) TO '{out}/videos.parquet' (FORMAT parquet)",
        "SET threads = 1",
    ],
)
def test_only_one_select_runs_and_the_dataset_stays_as_it_was(dataset, sql):
    before = _snapshot(dataset)
    con = connect(dataset)
    with pytest.raises(OutputError, match="only one SELECT query is allowed"):
        run_sql(con, sql.format(out=dataset)).fetchall()
    assert _snapshot(dataset) == before
    # queries still run, WITH ... SELECT included
    assert run_sql(con, "WITH f AS (SELECT * FROM frames) SELECT count(*) FROM f").fetchall() == [(23,)]


def test_another_min_face_px_is_refused(dataset, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    before = _snapshot(out)
    with pytest.raises(ConfigError, match=r"min_face_px: None -> 40"):
        run_job(FEMALE, out, JobConfig(workers=1, min_face_px=40), use_ray=False)
    assert _snapshot(out) == before


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory) -> Path:
    """72 frames of single_face.mp4 as H.264 with B-frames and a keyframe every 12 frames."""
    return encode(tmp_path_factory.mktemp("gop") / "gop.mp4", read_frames(SINGLE_FACE), options={"g": "12", "bf": "2"})


@pytest.mark.parametrize("late", [1, 2])
def test_a_seek_that_lands_late_is_redone_from_an_earlier_keyframe(gop_clip, late):
    """An index whose keyframe seek timestamps point ``late`` keyframes further on (as when a
    container's seek lands after the keyframe asked for; the MP4 demuxer seeks to the keyframe
    at or before a presentation time, so the later keyframes' pts do it): the first seek lands
    after the range's first frame, and decoding restarts from earlier keyframes until it has it."""
    _, index = probe_video(gop_clip)
    assert len(index.keyframes) >= 6 and len(index.key_dts) == len(index.keyframes)
    step = int(np.diff(index.keyframes).max())
    key_dts = np.r_[index.keyframes[late:], index.keyframes[-1] + step * np.arange(1, late + 1)]
    wrong = type(index)(index.pts, index.keyframes, index.time_base, key_dts, index.segment_offsets)
    whole = list(iter_frames(gop_clip, index))
    assert [f.idx for f in whole] == list(range(len(index.pts)))

    start = int(np.searchsorted(index.pts, index.keyframes[3]))  # a shard that starts at keyframe 3
    end = start + 20
    stats = DecodeStats()
    got = list(iter_frames(gop_clip, wrong, start, end, stats=stats))
    assert [f.idx for f in got] == list(range(start, end))
    for f, ref in zip(got, whole[start:end], strict=True):
        assert f.pts_ms == ref.pts_ms and np.array_equal(f.image, ref.image), f.idx
    assert stats.reseeks == late and not stats.problems()  # the path under test was taken
