"""The dataset layout: few large parts listed by the manifest (the commit record), orphans never
read, small commits merged by ``ferbatch compact``, and layout-1 datasets (one hive folder per
video) still read, refused for new rows and converted."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import FACE_NOFACE, SINGLE_FACE

import ferbatch
from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table, read_manifest
from ferbatch.errors import ConfigError
from ferbatch.job import run_job
from ferbatch.job.compact import compact

CFG = JobConfig(workers=1)
SORT = {"faces": ["video_id", "frame_idx", "face_idx"], "frames": ["video_id", "frame_idx"], "tracks": ["video_id", "track_id"]}


def _table(out, name):
    return open_table(out, name).sort_by([(c, "ascending") for c in SORT[name]])


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory, _cache):
    out = tmp_path_factory.mktemp("two") / "out"
    run_job([SINGLE_FACE, FACE_NOFACE], out, CFG, use_ray=False)
    return out


def _files(out):
    return sorted(str(p.relative_to(out)) for d in ("faces", "frames", "tracks") for p in (out / d).rglob("*.parquet"))


def test_one_commit_holds_every_video_and_is_what_is_read(two_videos, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_videos, out)
    man = read_manifest(out)
    assert man["layout"] == 2 and len(man["commits"]) == 1
    assert len(_files(out)) == 3  # one part per table for the whole job
    faces = pq.read_table(out / next(iter(man["commits"].values()))["parts"]["faces"]["path"])
    assert faces.column_names[0] == "video_id" and len(faces["video_id"].unique()) == 2
    before = ferbatch.open(out).summary()
    # readers open from the snapshot in videos.parquet's footer, not the (large) manifest
    (out / "_manifest.json").rename(out / "manifest.bak")
    assert ferbatch.open(out).summary().equals(before)
    (out / "manifest.bak").rename(out / "_manifest.json")
    # a part no commit lists (a writer stopped between its PUT and the manifest) is never read ...
    (commit,) = man["commits"].values()
    shutil.copy(out / commit["parts"]["faces"]["path"], out / "faces" / "part-orphan.parquet")
    assert ferbatch.open(out).summary().equals(before)
    assert _table(out, "faces").num_rows == faces.num_rows
    # ... and the next run removes it, with staged shards of committed videos
    (out / "_staging" / next(iter(man["videos"]))).mkdir(parents=True)
    shutil.copy(out / commit["parts"]["frames"]["path"], out / "_staging" / next(iter(man["videos"])) / "frames-00000.parquet")
    s = run_job([SINGLE_FACE, FACE_NOFACE], out, CFG, use_ray=False)
    assert s.skipped == 2 and not (out / "faces" / "part-orphan.parquet").exists() and not (out / "_staging").exists()


def test_compact_merges_small_commits(two_videos, tmp_path):
    out = tmp_path / "out"
    run_job(SINGLE_FACE, out, CFG, use_ray=False)
    run_job([SINGLE_FACE, FACE_NOFACE], out, CFG, use_ray=False)  # a second job adds the second video
    assert len(read_manifest(out)["commits"]) == 2 and len(_files(out)) == 6
    res = compact(out)
    assert (res.parts_before, res.parts_after) == (6, 3)
    assert len(_files(out)) == 3 and len(read_manifest(out)["commits"]) == 1
    for name in ("faces", "frames", "tracks"):
        assert _table(out, name).equals(_table(two_videos, name)), name
    assert run_job([SINGLE_FACE, FACE_NOFACE], out, CFG, use_ray=False).skipped == 2


def _as_layout_1(src, dst):
    """The dataset at ``src`` rewritten as ferbatch 0.3 wrote it: a hive folder per video and
    table, shard-level files without ``video_id``, a manifest without ``layout``/``commits``."""
    man = read_manifest(src)
    for name in ("faces", "frames", "tracks"):
        t = open_table(src, name)
        for vid in t["video_id"].unique().to_pylist():
            part = t.filter(pc.equal(t["video_id"], vid)).drop_columns(["video_id"])
            folder = dst / name / f"video_id={vid}"
            folder.mkdir(parents=True)
            pq.write_table(part, folder / "shard-00000.parquet")
    videos = pq.read_table(src / "videos.parquet")  # as 0.3 wrote it: no readers' snapshot in its metadata
    meta = {k: v for k, v in (videos.schema.metadata or {}).items() if k not in (b"ferbatch.parts", b"ferbatch.layout")}
    pq.write_table(videos.replace_schema_metadata(meta), dst / "videos.parquet")
    shutil.copytree(src / "_index", dst / "_index")
    del man["layout"], man["commits"]
    for rec in man["videos"].values():
        rec.pop("commit", None)
    (dst / "_manifest.json").write_text(json.dumps(man))


def test_layout_1_is_read_refused_for_new_rows_and_converted(two_videos, tmp_path):
    old = tmp_path / "old"
    _as_layout_1(two_videos, old)
    for name in ("faces", "frames", "tracks"):
        assert _table(old, name).equals(_table(two_videos, name)), name
    assert ferbatch.open(old).summary().equals(ferbatch.open(two_videos).summary())
    snapshot = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="layout 1.*ferbatch compact"):
        run_job([SINGLE_FACE, FACE_NOFACE], old, CFG, use_ray=False)
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == snapshot  # refused before touching it
    res = compact(old)
    assert res.layout_before == 1 and res.parts_after == 3
    assert read_manifest(old)["layout"] == 2 and not list(old.glob("*/video_id=*"))
    for name in ("faces", "frames", "tracks"):
        assert _table(old, name).equals(_table(two_videos, name)), name
    assert run_job([SINGLE_FACE, FACE_NOFACE], old, CFG, use_ray=False).skipped == 2


def test_rows_without_video_records_are_not_wiped_by_other_settings(two_videos, tmp_path):
    # a dataset whose rows are commits without job records (what `ferbatch watch` writes): a job
    # with other result-changing settings is refused, as for a job's dataset, not started afresh
    out = tmp_path / "out"
    shutil.copytree(two_videos, out)
    man = read_manifest(out)
    live = {"layout": man["layout"], "config": man["config"], "commits": man["commits"], "live": {"cam1-x": {}}}
    (out / "_manifest.json").write_text(json.dumps(live))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="score_threshold"):
        run_job(SINGLE_FACE, out, JobConfig(workers=1, score_threshold=0.9), use_ray=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_rerun_skips_committed_videos_without_reading_their_indexes(two_videos, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_videos, out)
    shutil.rmtree(out / "_index")  # a rerun of 100,000 committed videos must not GET 100,000 indexes
    s = run_job([SINGLE_FACE, FACE_NOFACE], out, CFG, use_ray=False)
    assert s.skipped == 2 and s.frames == 0
