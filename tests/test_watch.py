"""``ferbatch watch`` on a live MPEG-TS stream served from a shared clip on 127.0.0.1 (PyAV, real
time): rows arrive while it runs, a killed and restarted server is survived, drops are recorded,
SIGTERM writes the last part."""

from __future__ import annotations

import json
import signal

import pyarrow.compute as pc
import pytest
from conftest import INTEL_2FACE, SINGLE_FACE, WOLFGANG
from servers import free_port, spawn, stop, wait_until

from ferbatch.dataset.store import open_table


def _live(out):
    try:
        return json.loads((out / "_live.json").read_text())
    except (OSError, ValueError):
        return {}


def _parts(out) -> int:
    d = out / "frames"
    return sum(1 for _ in d.glob("part-*.parquet")) if d.is_dir() else 0


def test_watch_survives_a_server_restart_and_flushes_on_sigterm(tmp_path, _cache):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "live"
    server = spawn(["tests/stream_server.py", str(WOLFGANG), url], log=tmp_path / "server1.log")
    watcher = spawn(
        ["-m", "ferbatch", "watch", url, "--out", str(out), "--part-seconds", "1", "--backend", "onnxruntime", "--name", "cam1"],
        log=tmp_path / "watch.log",
    )
    try:
        # rows arrive while the stream runs
        wait_until(lambda: _parts(out) >= 2 and _live(out).get("faces", 0) > 0, 60, "parts with faces", watcher, tmp_path / "watch.log")
        assert len(open_table(out, "frames")) > 0
        # the server dies: the watcher notices, keeps writing its records, and reconnects to the new one
        stop(server, signal.SIGKILL)
        wait_until(
            lambda: _live(out).get("last_error", "") != "", 30, "the watcher to notice the lost stream", watcher, tmp_path / "watch.log"
        )
        before = _live(out)["received"]
        server = spawn(["tests/stream_server.py", str(WOLFGANG), url], log=tmp_path / "server2.log")
        wait_until(
            lambda: _live(out).get("connections", 0) >= 2 and _live(out)["received"] > before + 24,
            60,
            "frames through the second connection",
            watcher,
            tmp_path / "watch.log",
        )
        assert _live(out)["reconnects"] >= 1
    finally:
        rc = stop(watcher, signal.SIGTERM)
        stop(server, signal.SIGKILL)
    log = (tmp_path / "watch.log").read_text()
    assert rc == 0, log[-3000:]
    st = _live(out)
    assert st["status"] == "stopped" and st["received"] == st["analysed"] + st["dropped"]
    frames, faces = open_table(out, "frames"), open_table(out, "faces")
    # every received frame has a row (the last part was flushed on SIGTERM); drops are NULL face_count
    assert len(frames) == st["received"]
    assert sorted(frames["frame_idx"].to_pylist()) == list(range(st["received"]))
    assert frames["face_count"].null_count == st["dropped"]
    assert len(faces) == st["faces"] == pc.sum(frames["face_count"]).as_py()
    assert set(faces["video_id"].to_pylist()) == {st["video_id"]} and st["video_id"].startswith("cam1-")
    assert f"{st['dropped']} dropped" in log  # reported, never silent
    import ferbatch

    (row,) = ferbatch.open(out).summary().to_pylist()
    assert row["status"] == "ok" and row["frames"] == st["received"] and row["faces"] == st["faces"]


def test_watch_a_file_ends_with_every_frame_accounted_for(tmp_path, models):
    """Every frame of a file source has a frames row; the rows come from the job's analysis step with
    the recorded settings (mutation run: ``_analyse`` back to one-image analysis: box_source all
    "frame", fails)."""
    from ferbatch.live.watch import watch

    st = watch(str(INTEL_2FACE), tmp_path / "o", models, part_seconds=0.5, max_queue=1000)
    assert st.status == "ended" and st.dropped == 0 and st.analysed == st.received == 56
    assert len(open_table(tmp_path / "o", "frames")) == 56
    # the batch job's analysis step with the session's settings (the default interval): full detections and
    # tracked rows between them; provisional track ids are not written
    faces = open_table(tmp_path / "o", "faces")
    assert set(faces.column("box_source").to_pylist()) == {"frame", "tracked"}
    assert faces.column("track_id").null_count == len(faces)
    (row,) = open_table(tmp_path / "o", "videos").to_pylist()
    assert (row["detect_every"], row["between"], row["classify_between"]) == (3, "tracked", "changes"), row


def test_watch_refuses_a_bad_name(tmp_path, models):
    from ferbatch.errors import ConfigError
    from ferbatch.live.watch import watch

    with pytest.raises(ConfigError, match="--name"):
        watch(str(INTEL_2FACE), tmp_path / "o", models, name="../x")


# --- a watch writes through the dataset's writer: one lock, one settings check, no lost commit -----


def _files(out) -> dict:
    """Every file of a dataset and its bytes (the lock file aside: a refused writer may rewrite it)."""
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".ferbatch.lock"}


def test_watch_into_a_dataset_made_with_another_classifier_is_refused(tmp_path, models):
    """Mutations run, each failing it: the settings check in ``DatasetWriter.open`` removed (the
    watch then adds rows beside the run's, as in issue #29: DID NOT RAISE); the folder in
    ``check_settings``' message written as the Location object instead of its URI."""
    from ferbatch.config import JobConfig
    from ferbatch.dataset.store import read_manifest
    from ferbatch.errors import ConfigError
    from ferbatch.job import run_job
    from ferbatch.live.watch import watch

    out = tmp_path / "out"
    run_job(INTEL_2FACE, out, JobConfig(workers=1, classifier="ferbatch-ferplus-cnn-v3"), use_ray=False)
    before = _files(out)
    with pytest.raises(ConfigError) as e:
        watch(str(INTEL_2FACE), out, models, part_seconds=0.5, max_queue=1000)  # the default classifier
    msg = str(e.value)
    assert msg.startswith(f"{out} | holds rows made with other result-changing settings"), msg
    assert "classifier: 'ferbatch-ferplus-cnn-v3' -> " in msg and "Location(" not in msg, msg
    assert _files(out) == before  # refused before anything was written
    assert read_manifest(out)["config"]["classifier"] == "ferbatch-ferplus-cnn-v3"


def test_watch_into_a_folder_that_is_not_a_dataset_is_refused(tmp_path, models):
    """Mutation run, failing it: the foreign-folder check in ``DatasetWriter.open`` removed."""
    from ferbatch.errors import OutputError
    from ferbatch.live.watch import watch

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    with pytest.raises(OutputError, match=f"^{out} \\| --out is a non-empty folder that is not a ferbatch dataset \\(notes.txt\\)"):
        watch(str(INTEL_2FACE), out, models)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_watch_run_and_compact_on_one_out_take_turns_and_lose_no_commit(tmp_path, models):
    """While a watch holds OUT, a run, a compact and a second watch are refused (naming the
    watch); while a run holds it, a watch is refused; every commit of both ends up in the
    dataset, counted, before and after a compact.

    Mutations run, each failing it: the lock in ``DatasetWriter.open`` removed (the compact inside
    the watch merges and deletes the session's parts, the watch's next save lists them again:
    reading ``frames`` fails with FileNotFoundError); ``live/watch.py`` as before issue #29 (its own
    read-modify-write of the manifest, no lock: 3152 frames rows counted for 56 + 72); the watch
    not recording its models in a new dataset (the session's row has classifier None)."""
    from ferbatch.config import JobConfig
    from ferbatch.dataset.store import read_manifest
    from ferbatch.errors import FerbatchError
    from ferbatch.job import run_job
    from ferbatch.job.compact import compact
    from ferbatch.live.watch import watch

    out = tmp_path / "out"
    cfg = JobConfig(workers=1)
    refused: dict[str, str] = {}
    inside: list = []  # runs that got in while the watch held OUT (none when the lock works)

    def during_watch(st):
        if st.status != "running" or refused:
            return
        for what, call in (
            ("run", lambda: inside.append(run_job(SINGLE_FACE, out, cfg, use_ray=False))),
            ("compact", lambda: compact(out)),
            ("watch", lambda: watch(str(INTEL_2FACE), out, models, name="cam2")),
        ):
            try:
                call()
            except FerbatchError as e:
                refused[what] = str(e)

    st = watch(str(INTEL_2FACE), out, models, part_seconds=0.1, batch=1, max_queue=1000, on_part=during_watch)
    assert st.status == "ended" and st.received == 56
    # no commit lost: what the watch and anything that got in beside it wrote is all there
    assert len(open_table(out, "frames")) == 56 + sum(s.frames for s in inside)
    assert len(open_table(out, "faces")) == st.faces + sum(s.faces for s in inside)
    assert set(refused) == {"run", "compact", "watch"}, refused
    (row,) = open_table(out, "videos").to_pylist()  # the session's row names the models it ran (issue #29: None)
    assert row["classifier"] == read_manifest(out)["config"]["classifier"] and row["classifier_sha256"], row
    for what, msg in refused.items():
        assert msg.startswith(f"{out} | another ferbatch watch is writing this dataset"), (what, msg)

    # a watch while a run holds OUT is refused; the run's rows join the session's
    during_run: list[str] = []

    def progress(kind, done, total):
        if kind == "probe" and not during_run:
            try:
                watch(str(INTEL_2FACE), out, models, name="cam3")
            except FerbatchError as e:
                during_run.append(str(e))

    s = run_job(SINGLE_FACE, out, cfg, use_ray=False, progress=progress)
    assert s.ok == 1 and s.faces > 0
    assert len(during_run) == 1 and during_run[0].startswith(f"{out} | another ferbatch run is writing"), during_run
    faces, frames = st.faces + s.faces, 56 + s.frames
    assert (len(open_table(out, "faces")), len(open_table(out, "frames"))) == (faces, frames)
    videos = open_table(out, "videos").to_pylist()
    assert sorted(v["video_id"] == st.video_id for v in videos) == [False, True]
    assert all(v["classifier"] for v in videos), videos  # the session's row names its models too
    tokens = set(read_manifest(out)["commits"])
    assert len(tokens) == st.parts + 1  # every part of the session and the run's commit

    # compact merges them all into one commit: the same rows
    res = compact(out)
    assert res.rows > 0 and len(read_manifest(out)["commits"]) == 1
    assert (len(open_table(out, "faces")), len(open_table(out, "frames"))) == (faces, frames)
