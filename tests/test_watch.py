"""``ferbatch watch`` on a live MPEG-TS stream served from a shared clip on 127.0.0.1 (PyAV, real
time): rows arrive while it runs, a killed and restarted server is survived, drops are recorded,
SIGTERM writes the last part."""

from __future__ import annotations

import json
import signal

import pyarrow.compute as pc
import pytest
from conftest import INTEL_2FACE, WOLFGANG
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
    from ferbatch.live.watch import watch

    st = watch(str(INTEL_2FACE), tmp_path / "o", models, part_seconds=0.5, max_queue=1000)
    assert st.status == "ended" and st.dropped == 0 and st.analysed == st.received == 56
    assert len(open_table(tmp_path / "o", "frames")) == 56


def test_watch_refuses_a_bad_name(tmp_path, models):
    from ferbatch.errors import ConfigError
    from ferbatch.live.watch import watch

    with pytest.raises(ConfigError, match="--name"):
        watch(str(INTEL_2FACE), tmp_path / "o", models, name="../x")
