"""A video's identity: its id is never given to other content, and its content hash compares like
with like.

- A file replaced by other content is a new video (the old one's rows are released), and the old
  content reappearing at another path is a video of its own: it never writes over the rows of the
  content that replaced it (before: exit 0, "videos 3, skipped 2, ok 1" and 2 videos in the
  dataset, the old content's rows in place of the new's).
- ``--full-hash`` jobs check at the end that the file is unchanged with the same kind of hash
  (before: every file over 3 MiB failed as "changed while it was being processed"), so a change
  the sampled hash cannot see is still caught.
- The sampled hash reads exactly its blocks: two files that differ only between them hash equal
  (and are one video) unless ``--full-hash``; a byte changed inside any sampled block changes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from conftest import INTEL_2FACE, SINGLE_FACE

from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table
from ferbatch.job import run_job
from ferbatch.job.inputs import SAMPLED_SPAN, VideoTask, content_hash, scan_inputs
from ferbatch.job.manifest import adopt_ids
from ferbatch.media.probe import probe_video

CFG = JobConfig(workers=1, track=False)
FEMALE = INTEL_2FACE.parent / "head-pose-face-detection-female.mp4"  # 23 frames
MALE = INTEL_2FACE.parent / "head-pose-face-detection-male.mp4"  # 62 frames
MiB = 1 << 20


def _rows_by_video(out: Path, table: str) -> dict[str, int]:
    t = open_table(out, table)
    counts = pc.value_counts(t["video_id"]).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def _check_dataset(out: Path) -> dict[str, dict]:
    """Every video row's hash is its file's, its frame rows are its file's frames, its face rows
    the faces it counts; no rows belong to no video."""
    videos = {r["abs_path"]: r for r in open_table(out, "videos").to_pylist()}
    frames, faces = _rows_by_video(out, "frames"), _rows_by_video(out, "faces")
    for path, r in videos.items():
        assert r["content_hash"] == content_hash(path, os.path.getsize(path)), path
        assert frames.get(r["video_id"], 0) == probe_video(path)[0].packets == r["frames"], (path, r["video_id"])
        assert faces.get(r["video_id"], 0) == r["faces"], (path, r["video_id"])
    assert set(frames) | set(faces) <= {r["video_id"] for r in videos.values()}
    return videos


def test_replaced_file_then_its_old_content_elsewhere_keeps_every_video(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(SINGLE_FACE, src / "clip.mp4")
    shutil.copy(MALE, src / "other.mp4")
    s = run_job(src, out, CFG, use_ray=False)
    assert s.ok == 2
    first_id = _check_dataset(out)[str(src / "clip.mp4")]["video_id"]

    shutil.copy(FEMALE, src / "clip.mp4")  # other content under the same path
    s = run_job(src, out, CFG, use_ray=False)
    assert (s.videos, s.skipped, s.ok) == (2, 1, 1), s
    videos = _check_dataset(out)
    assert len(videos) == 2
    assert videos[str(src / "clip.mp4")]["video_id"] != first_id  # the old id stays with the old content

    (src / "old").mkdir()
    shutil.copy(SINGLE_FACE, src / "old/clip.mp4")  # the original content comes back elsewhere
    s = run_job(src, out, CFG, use_ray=False)
    assert (s.videos, s.skipped, s.ok, s.failed) == (3, 2, 1, 0), s
    videos = _check_dataset(out)
    assert len(videos) == 3 and len({r["video_id"] for r in videos.values()}) == 3
    assert videos[str(src / "old/clip.mp4")]["frames"] == 72 and videos[str(src / "clip.mp4")]["frames"] == 23


def test_an_id_held_by_other_content_is_never_reused():
    """A dataset written before this fix holds an id whose record has other content (the edited
    file adopted the id by path): the old content gets an id of its own, the record stays with
    the content it holds."""
    x, y = "a" * 64, "b" * 64
    videos = {"clip-aaaaaaaa": {"path": "/in/clip.mp4", "content_hash": y}}
    edited = VideoTask("clip-bbbbbbbb", "/in/clip.mp4", "clip.mp4", 10, 0, y)
    original = VideoTask("clip-aaaaaaaa", "/in/old/clip.mp4", "old/clip.mp4", 10, 0, x)
    got = {t.path: t.video_id for t in adopt_ids(videos, [edited, original])}
    assert got["/in/clip.mp4"] == "clip-aaaaaaaa"  # recognised by its content
    assert got["/in/old/clip.mp4"] not in ("clip-aaaaaaaa", "clip-bbbbbbbb") and got["/in/old/clip.mp4"].startswith("clip-")
    # a record of an older manifest (no content hash) is still taken by its path
    legacy = {"clip-0": {"path": "/in/clip.mp4"}}
    assert adopt_ids(legacy, [edited])[0].video_id == "clip-0"


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """single_face.mp4 with 3 MiB of trailing bytes: a decodable MP4 larger than the sampled span."""
    p = tmp_path_factory.mktemp("big") / "big.mp4"
    shutil.copy(SINGLE_FACE, p)
    with open(p, "ab") as f:
        f.write(os.urandom(3 * MiB))
    assert p.stat().st_size > SAMPLED_SPAN
    return p


def test_full_hash_job_keeps_an_untouched_large_file(big_clip, tmp_path):
    s = run_job(big_clip, tmp_path, CFG, use_ray=False, full_hash=True)
    assert (s.ok, s.failed, s.frames) == (1, 0, 72), s.errors
    (row,) = open_table(tmp_path, "videos").to_pylist()
    assert row["status"] == "ok" and row["content_hash"] == content_hash(big_clip, big_clip.stat().st_size, full=True)
    assert run_job(big_clip, tmp_path, CFG, use_ray=False, full_hash=True).skipped == 1


def test_full_hash_job_notices_a_change_between_the_sampled_blocks(big_clip, tmp_path):
    """Same size, one byte changed where the sampled hash does not look, while the job runs: the
    full hash the scan made is compared with a full hash of the file now."""
    src = tmp_path / "big.mp4"
    shutil.copy(big_clip, src)
    size = src.stat().st_size
    gap = _sampled_offsets(size)[7] + (1 << 16) + 10  # in the trailing bytes, between two sampled blocks

    def progress(kind, done, total):
        if kind == "probe":
            with open(src, "r+b") as f:
                f.seek(gap)
                b = f.read(1)
                f.seek(gap)
                f.write(bytes([b[0] ^ 0xFF]))

    out = tmp_path / "out"
    s = run_job(src, out, CFG, use_ray=False, full_hash=True, progress=progress)
    (row,) = open_table(out, "videos").to_pylist()
    assert s.failed == 1 and row["status"] == "failed", s.errors
    assert f"changed while it was being processed (same size {size} bytes, other content)" in row["error"]
    assert open_table(out, "frames").num_rows == 0
    assert run_job(src, out, CFG, use_ray=False, full_hash=True).ok == 1


def _sampled_offsets(size: int) -> list[int]:
    """Start offsets of the 64 KiB blocks between the first and the last MiB (as documented)."""
    span = size - 2 * MiB - (1 << 16)
    return [MiB + span * i // 15 for i in range(16)]


def test_sampled_hash_reads_its_blocks_and_only_them(tmp_path):
    size = 5 * MiB + 12345
    base = bytearray(os.urandom(size))
    a = tmp_path / "in/a.mp4"
    a.parent.mkdir()
    a.write_bytes(base)

    def differs_at(offset: int, name: str) -> Path:
        p = tmp_path / "in" / name
        data = bytearray(base)
        data[offset] ^= 0xFF
        p.write_bytes(data)
        return p

    h = content_hash(a, size)
    for i, off in enumerate(_sampled_offsets(size)):  # every sampled block counts, first and last byte
        for o in (off, off + (1 << 16) - 1):
            assert content_hash(differs_at(o, "x.bin"), size) != h, (i, o)
    for o in (0, MiB - 1, size - MiB, size - 1):  # head and tail
        assert content_hash(differs_at(o, "x.bin"), size) != h, o
    (tmp_path / "in/x.bin").unlink()

    gap = _sampled_offsets(size)[3] + (1 << 16) + 100  # between two sampled blocks
    b = differs_at(gap, "b.mp4")
    assert content_hash(b, size) == h  # documented: the sampled hash does not see it
    assert content_hash(b, size, full=True) != content_hash(a, size, full=True)
    sampled = scan_inputs(tmp_path / "in")
    assert len(sampled.tasks) == 1 and sampled.tasks[0].other_paths == (str(b),)
    full = scan_inputs(tmp_path / "in", full_hash=True)
    assert len(full.tasks) == 2 and all(t.full_hash for t in full.tasks)
    # a file up to the sampled span is hashed whole either way
    small = tmp_path / "small.bin"
    small.write_bytes(base[:SAMPLED_SPAN])
    assert content_hash(small, SAMPLED_SPAN) == content_hash(small, SAMPLED_SPAN, full=True)
