"""Never lose, double or fake a row: exact shards on every container, one identity per video,
models checked before OUT is touched, settings and locks guarding the dataset, changed and
damaged inputs and outputs noticed. Each test failed on the code before these guards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from badinputs import encode
from conftest import INTEL_2FACE, WOLFGANG, read_frames

from ferbatch.atomic import write_json_atomic
from ferbatch.config import JobConfig
from ferbatch.dataset.store import open_table, read_manifest
from ferbatch.errors import ConfigError, ModelError, OutputError
from ferbatch.job import run_job
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.media.shards import Shard
from ferbatch.models.registry import load_registry
from ferbatch.pipeline import process_shard

CFG = JobConfig(workers=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Short real clips: 120 frames of WolfgangLanger as MPEG-TS and MP4 with B-frames and a
    24-frame GOP, and 60 frames of the Intel 2-face clip as MP4."""
    d = tmp_path_factory.mktemp("clips")
    w = read_frames(WOLFGANG)[:120]
    opts = {"g": "24", "bf": "2"}
    return {
        "ts": encode(d / "w.ts", w, options=opts),
        "mp4": encode(d / "w.mp4", w, options=opts),
        "intel": encode(d / "intel.mp4", read_frames(INTEL_2FACE)[:60], options=opts),
    }


def _frames(out):
    return open_table(out, "frames").sort_by("frame_idx")


def _videos(out):
    return {r["path"]: r for r in open_table(out, "videos").to_pylist()}


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# 1. shards of MPEG-TS (B-frames) keep every frame; a shard that cannot decode its frames is never ok


def test_ts_shards_keep_every_frame(clips, tmp_path):
    s = run_job(clips["ts"], tmp_path, CFG, use_ray=False, shard_frames=20)
    assert s.ok == 1 and s.frames == 120, s
    assert _frames(tmp_path)["frame_idx"].to_pylist() == list(range(120))
    assert len(open_table(tmp_path, "frames")["shard_idx"].unique()) >= 3


@pytest.mark.parametrize("kind", ["ts", "mp4"])
def test_every_shard_decodes_exactly_its_frames(clips, kind):
    _, index = probe_video(clips[kind])
    starts = np.searchsorted(index.pts, index.keyframes)
    for a, b in zip(starts, [*starts[1:], len(index.pts)], strict=True):
        assert [f.idx for f in iter_frames(clips[kind], index, int(a), int(b))] == list(range(a, b))


def test_a_shard_missing_frames_is_partial_and_an_empty_one_failed(clips, models, tmp_path):
    _, index = probe_video(clips["mp4"])
    # an index that promises 5 frames past the end of the file: the last shard cannot have them
    fake = type(index)(np.r_[index.pts, index.pts[-1] + 512 * np.arange(1, 6)], index.keyframes, index.time_base, index.key_dts)
    res = process_shard(Shard("v", str(clips["mp4"]), 0, 96, None, fake), models).result
    assert res.status == "partial" and res.frames == 24 and "24 of 29 frames decoded" in res.error
    from ferbatch.pipeline import run_shard

    empty = run_shard(Shard("v", str(clips["mp4"]), 1, 120, None, fake), models, str(tmp_path))
    assert empty.status == "failed" and empty.frames == 0 and "no frame" in empty.error


# 2. identity comes from the content, never from the path typed


def test_same_name_in_two_folders_is_two_videos(clips, tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    shutil.copy(clips["mp4"], tmp_path / "A/clip.mp4")
    shutil.copy(clips["intel"], tmp_path / "B/clip.mp4")
    out = tmp_path / "out"
    s = run_job([tmp_path / "A", tmp_path / "B"], out, CFG, use_ray=False)
    n = probe_video(clips["mp4"])[0].packets + probe_video(clips["intel"])[0].packets
    assert s.ok == 2 and s.frames == n
    v = open_table(out, "videos")
    assert v.num_rows == 2 and len(set(v["video_id"].to_pylist())) == 2
    assert open_table(out, "frames").num_rows == n


def test_one_file_reached_by_other_paths_is_one_video(clips, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(clips["mp4"], d / "clip.mp4")
    shutil.copy(clips["mp4"], d / "copy.mp4")  # the same content twice in one run: processed once
    out = tmp_path / "out"
    s = run_job(d, out, CFG, use_ray=False)
    assert s.ok == 1 and s.frames == 120
    monkeypatch.chdir(d)
    again = run_job("clip.mp4", out, CFG, use_ray=False)  # relative path, another cwd
    assert again.skipped == 1 and again.frames == 0
    (row,) = open_table(out, "videos").to_pylist()
    assert sorted(row["paths"]) == sorted([str(d / "clip.mp4"), str(d / "copy.mp4")])
    assert open_table(out, "frames").num_rows == 120


# 3. a refused model leaves OUT byte-identical


def test_refused_model_leaves_out_untouched(clips, tmp_path):
    out = tmp_path / "out"
    run_job(clips["intel"], out, CFG, use_ray=False)
    before = _snapshot(out)
    bad = tmp_path / "rfb.onnx"
    bad.write_bytes(Path(os.environ["FERBATCH_MODEL_MIRROR"], "detectors/version-RFB-320.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        run_job(clips["mp4"], out, JobConfig(workers=1, detector_file=str(bad)), use_ray=False)
    assert _snapshot(out) == before


def test_refused_model_is_one_line_and_exit_2(clips, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "FERBATCH_MODEL_MIRROR": str(tmp_path / "empty")}
    res = subprocess.run(
        [sys.executable, "-m", "ferbatch", "run", str(clips["intel"]), "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 3 and "error:" in lines[0] and load_registry().default_detector in res.stderr, res.stderr
    assert not out.exists()


# 4. other result-changing settings are refused, not silently wiped


def test_other_settings_are_refused_unless_overwrite(clips, tmp_path):
    out = tmp_path / "out"
    run_job([clips["intel"], clips["mp4"]], out, CFG, use_ray=False)
    before = _snapshot(out)
    with pytest.raises(ConfigError, match=r"score_threshold: 0\.7 -> 0\.9"):
        run_job(clips["intel"], out, JobConfig(workers=1, score_threshold=0.9), use_ray=False)
    assert _snapshot(out) == before
    s = run_job(clips["intel"], out, JobConfig(workers=1, score_threshold=0.9), use_ray=False, overwrite=True)
    assert s.ok == 1 and open_table(out, "videos").num_rows == 1


# 5. one run at a time per OUT


def test_a_second_run_is_refused_while_the_first_holds_the_lock(clips, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = f"from ferbatch.dataset.lock import OutputLock\nwith OutputLock({str(out)!r}):\n    print('held', flush=True)\n    import time; time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"another ferbatch run .*pid {holder.pid}"):
            run_job(clips["intel"], out, CFG, use_ray=False)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file stays, and the next run takes it over
    assert (out / ".ferbatch.lock").read_text()
    assert run_job(clips["intel"], out, CFG, use_ray=False).ok == 1


# 6. an input that changes under the job is failed, and a rerun reprocesses it


def test_a_file_growing_during_the_job_is_failed(clips, tmp_path):
    src = tmp_path / "grow.ts"
    shutil.copy(clips["ts"], src)
    extra = clips["ts"].read_bytes()

    def progress(kind, done, total):
        if kind == "probe":  # indexed: now the file grows (a recording still being written)
            with open(src, "ab") as f:
                f.write(extra)

    out = tmp_path / "out"
    s = run_job(src, out, CFG, use_ray=False, shard_frames=30, progress=progress)
    (row,) = open_table(out, "videos").to_pylist()
    assert s.failed == 1 and row["status"] == "failed" and "changed while it was being processed" in row["error"]
    assert open_table(out, "frames").num_rows == 0
    again = run_job(src, out, CFG, use_ray=False, shard_frames=30)
    frames = _frames(out)["frame_idx"].to_pylist()
    assert again.ok == 1 and frames == list(range(240)), again.errors


# 7. timestamps that restart (concatenated MPEG-TS) give unique, dense frame indices


def test_concatenated_ts_keeps_every_frame_once(clips, tmp_path):
    cat = tmp_path / "cat.ts"
    cat.write_bytes(clips["ts"].read_bytes() * 2)
    s = run_job(cat, tmp_path / "out", CFG, use_ray=False, shard_frames=30)
    fr = _frames(tmp_path / "out")
    assert s.ok == 1 and fr["frame_idx"].to_pylist() == list(range(240))
    assert np.all(np.diff(fr["pts_ms"].to_numpy()) > 0)
    (row,) = open_table(tmp_path / "out", "videos").to_pylist()
    assert "restart" in row["notes"]


# 8. corruption mid-stream: undecodable packets are skipped, the message agrees with the rows


def test_corrupt_packets_are_skipped_and_counted(clips, tmp_path):
    data = bytearray(clips["mp4"].read_bytes())
    rng = np.random.default_rng(0)
    mid = len(data) // 2
    data[mid : mid + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    s = run_job(bad, tmp_path / "out", CFG, use_ray=False)
    (row,) = open_table(tmp_path / "out", "videos").to_pylist()
    n = open_table(tmp_path / "out", "frames").num_rows
    assert row["status"] == "partial" and s.partial == 1
    assert n >= 110 and row["frames"] == n  # decoding went on after the damage
    assert f"{n} of 120 frames decoded ({120 - n} missing" in row["error"], row["error"]


# 9. a deleted or damaged part file is noticed and its videos redone; a failed shard of a committed
# video is redone alone (the video's other rows go back to staging, then are committed again)


def _faces_sorted(out):
    return open_table(out, "faces").sort_by([("video_id", "ascending"), ("frame_idx", "ascending"), ("face_idx", "ascending")])


@pytest.fixture(scope="module")
def committed(clips, tmp_path_factory):
    """The MP4 and TS clips run into one OUT in 30-frame shards; each test damages its own copy."""
    out = tmp_path_factory.mktemp("committed") / "out"
    run_job([clips["mp4"], clips["ts"]], out, CFG, use_ray=False, shard_frames=30)
    return out


def test_damaged_parts_are_redone(clips, committed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(committed, out)
    ref = _faces_sorted(out)
    man = read_manifest(out)
    (commit,) = man["commits"].values()  # both videos in one commit: one part per table
    assert len(commit["videos"]) == 2
    faces_part = out / commit["parts"]["faces"]["path"]
    faces_part.write_bytes(faces_part.read_bytes()[:100])
    s = run_job([clips["mp4"], clips["ts"]], out, CFG, use_ray=False, shard_frames=30)
    assert s.frames == 240 and s.skipped == 0  # the damaged commit's two videos, redone whole
    assert _faces_sorted(out).equals(ref)
    assert not faces_part.exists()  # the damaged commit is gone, not read beside the new one
    (commit,) = read_manifest(out)["commits"].values()
    (out / commit["parts"]["frames"]["path"]).unlink()
    s = run_job([clips["mp4"], clips["ts"]], out, CFG, use_ray=False, shard_frames=30)
    assert s.frames == 240 and _frames(out)["frame_idx"].to_pylist() == sorted(list(range(120)) * 2)


def test_a_failed_shard_of_a_committed_video_is_redone_alone(clips, committed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(committed, out)
    ref = _faces_sorted(out)
    man = read_manifest(out)
    vid = next(v for v, r in man["videos"].items() if r["path"].endswith(".mp4"))
    shard = man["videos"][vid]["shards"][1]
    shard["status"], shard["error"] = "failed", "planted"
    write_json_atomic(out / "_manifest.json", man)
    s = run_job([clips["mp4"], clips["ts"]], out, CFG, use_ray=False, shard_frames=30)
    assert s.frames == shard["frames"] and s.skipped == 1  # one shard of one video; the other video untouched
    assert _faces_sorted(out).equals(ref)
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())
    files = [f for d in ("faces", "frames", "tracks") for f in (out / d).iterdir()]
    listed = {p["path"] for c in read_manifest(out)["commits"].values() for p in c["parts"].values()}
    assert {f"{f.parent.name}/{f.name}" for f in files} == listed  # the old commit's parts deleted, none left over


def test_a_lost_staged_shard_is_redone_before_its_video_commits(clips, tmp_path):
    ref_out = tmp_path / "ref"
    run_job(clips["mp4"], ref_out, CFG, use_ray=False, shard_frames=20)
    out = tmp_path / "out"

    def stop(kind, done, total):
        if kind == "frames" and done >= 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(clips["mp4"], out, CFG, use_ray=False, shard_frames=20, progress=stop)
    staged = sorted((out / "_staging").glob("*/faces-*.parquet"))
    assert 3 <= len(staged) < 6  # some shards done, the video not committed
    staged[0].unlink()  # a done shard's rows lost
    man = read_manifest(out)
    (rec,) = man["videos"].values()
    for sh in rec["shards"]:  # the shards the first run never reached failed instead (none is pending now)
        if sh["status"] == "pending":
            sh.update(status="failed", error="planted")
    write_json_atomic(out / "_manifest.json", man)
    kept = sum(sh["end"] - sh["start"] for sh in rec["shards"] if f"faces-{sh['shard_idx']:05d}.parquet" in [p.name for p in staged[1:]])
    s = run_job(clips["mp4"], out, CFG, use_ray=False, shard_frames=20)
    assert s.ok == 1 and s.frames == 120 - kept
    assert _faces_sorted(out).equals(_faces_sorted(ref_out))


# inputs that must not hang or crash the scan


def test_fifo_and_unreadable_inputs_are_reported_not_fatal(clips, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(clips["intel"], d / "good.mp4")
    os.mkfifo(d / "pipe.mp4")
    t = time.monotonic()
    s = run_job(d, tmp_path / "out", CFG, use_ray=False)
    assert time.monotonic() - t < 120
    assert s.ok == 1 and s.failed == 1 and "not a regular file" in s.errors[str(d / "pipe.mp4")]
    rows = _videos(tmp_path / "out")
    assert rows[str(d / "pipe.mp4")]["status"] == "failed"


# errors of the machine stop the job clearly and keep what finished; partial videos have their own exit status


def _run_cli(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "ferbatch", "run", *map(str, args), "-q", "--no-ray"], capture_output=True, text=True, timeout=300, **kw
    )


def test_disk_full_stops_the_job_and_keeps_the_dataset_readable(tmp_path):
    import resource
    import signal

    def small_files():  # writes past 16 KiB fail with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    out = tmp_path / "out"
    res = _run_cli([WOLFGANG, "--out", out], preexec_fn=small_files)
    assert res.returncode == 4, res.stderr
    assert "the job stopped" in res.stderr and "File too large" in res.stderr, res.stderr
    assert (out / "videos.parquet").is_file() and (out / "_manifest.json").is_file()
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name]  # no temp file left behind
    (row,) = open_table(out, "videos").to_pylist()
    assert row["status"] == "incomplete"


def test_partial_videos_exit_3(clips, tmp_path):
    data = bytearray(clips["mp4"].read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    res = _run_cli([bad, "--out", tmp_path / "out"])
    assert res.returncode == 3, res.stdout + res.stderr
    assert "frames decoded" in res.stderr


def test_frame_size_change_is_recorded_and_annotate_copes(clips, tmp_path):
    import av

    small = encode(tmp_path / "small.ts", [f[::2, ::2].copy() for f in read_frames(WOLFGANG)[:48]], options={"g": "24", "bf": "2"})
    both = tmp_path / "both.ts"
    both.write_bytes(clips["ts"].read_bytes() + small.read_bytes())
    out = tmp_path / "out"
    s = run_job(both, out, CFG, use_ray=False)
    (row,) = open_table(out, "videos").to_pylist()
    assert s.ok == 1 and row["frames"] == 168 and (row["width"], row["height"]) == (640, 360)
    assert "640x360 -> 320x180" in row["notes"], row["notes"]
    from ferbatch.dataset.annotate import annotate_video

    assert annotate_video(both, out, tmp_path / "annotated.mp4") == 168
    with av.open(str(tmp_path / "annotated.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (640, 360)
