"""``ferbatch watch``: a live source -> rolling Parquet parts in the dataset's schema.

Each watch session is one "video" of the dataset (``video_id`` = ``<name>-<UTC start time>``);
every ``part_seconds`` its rows so far become a commit (one part of ``faces`` and of ``frames``;
``ferbatch compact`` merges a long session's parts), and ``videos.parquet``, ``_manifest.json``
and ``_live.json`` (the counters) are rewritten, so ``ferbatch summary`` and DuckDB read the
dataset while it grows. The session is one :class:`ferbatch.dataset.writer.DatasetWriter`
transaction: it holds the dataset's lock from start to end (a ``run``, ``compact`` or another
``watch`` on the same OUT is refused meanwhile, and a watch is refused while one of them runs),
and a dataset whose rows were made with other result-changing settings, or a folder that is not
a dataset, is refused before the source is opened. ``frame_idx`` counts frames
received since the session started; ``pts_ms`` is the time since then at which the frame arrived
(``_manifest.json`` records the start as a Unix time). A frame dropped because the models were
behind has a ``frames`` row with ``face_count`` NULL and no ``faces`` rows.

The frames go through the batch job's analysis step with the session's settings
(:class:`ferbatch.vision.analysis.FrameAnalyzer`: shot cuts, the tracker, ``--detect-every``'s full
detections and the tracks in between, ``--classify-between``), so the rows mean what a run's rows
mean and the manifest's settings are the ones that made them. What a stream cannot have: frames
are not held back for the next full detection, so rows between full detections are interpolated
only when it falls in the same model call (else they stand at their tracks' constant-velocity
boxes); and the track ids stay provisional (no video end at which to confirm them), so live rows
carry no ``track_id`` and the dataset gets no ``tracks`` rows for a session. A reconnect ends every
track.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from ferbatch import __version__
from ferbatch.config import JobConfig, with_defaults
from ferbatch.dataset.schema import FRAMES_SCHEMA, faces_table, frames_table
from ferbatch.dataset.store import LAYOUT
from ferbatch.dataset.videos import videos_table
from ferbatch.dataset.writer import DatasetWriter
from ferbatch.faces import FaceBatch
from ferbatch.live.source import LiveFrame, LiveSource
from ferbatch.location import open_location
from ferbatch.pipeline import FrameSettings, ShardModels
from ferbatch.vision.analysis import FrameAnalyzer

__all__ = ["WatchStats", "watch"]


@dataclass
class WatchStats:
    """Counters of a watch session (also written to ``OUT/_live.json`` at every part).

    Attributes:
        video_id: the session's id in the dataset; status: "running", "stopped", "ended" (a file source) or "source lost".
        received: frames from the source; analysed: frames through the models; dropped: frames
            skipped because the models were behind (rows with face_count NULL); faces: face rows.
        parts: part files written per table; connections, reconnects: of the source.
        lag_ms: age of the newest analysed frame when its results were ready, in ms.
        last_error: the source's last error ("" = none).
    """

    video_id: str
    source: str
    started_unix: float
    status: str = "running"
    received: int = 0
    analysed: int = 0
    dropped: int = 0
    faces: int = 0
    parts: int = 0
    connections: int = 0
    reconnects: int = 0
    lag_ms: float = 0.0
    last_error: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Stream:
    """The session's analysis state: the analysis step and the source connection its tracks belong to."""

    analyzer: FrameAnalyzer
    connection: int | None = None


class _Part:
    """Rows gathered since the last part was written."""

    def __init__(self) -> None:
        self.f_idx: list[int] = []
        self.f_pts: list[float] = []
        self.f_cnt: list[int | None] = []
        self.faces: list[FaceBatch] = []

    def __len__(self) -> int:
        return len(self.f_idx)


def watch(
    source: str,
    out: str | os.PathLike[str],
    models: ShardModels,
    *,
    cfg: JobConfig | None = None,
    name: str = "live",
    part_seconds: float = 10.0,
    batch: int = 4,
    max_queue: int = 4,
    give_up_s: float = 0.0,
    stop: threading.Event | None = None,
    on_part: Callable[[WatchStats], None] | None = None,
    force: bool = False,
) -> WatchStats:
    """Analyse ``source`` live until ``stop`` is set or the source is lost for ``give_up_s``.

    Args:
        source: URL, V4L2 device or file (see :class:`~ferbatch.live.source.LiveSource`).
        out: the dataset directory or URI (created; a watch adds a new session to an existing one).
        models: loaded detector and classifier.
        cfg: the settings recorded in the manifest (default: JobConfig()).
        name: prefix of the session's video_id (letters, digits, ``_-.``).
        part_seconds: seconds of rows per part file (> 0).
        batch: most frames per model call.
        max_queue: frames waiting for the models at most; older ones are dropped (counted).
        give_up_s: stop after this long without a frame (0 = keep reconnecting).
        stop: set it (from a signal handler or another thread) to flush the last part and return.
        on_part: called after each part with the counters (the session's writer holds the lock then).
        force: write into a non-empty folder that is not a ferbatch dataset.

    Returns:
        The final :class:`WatchStats`.

    Raises:
        ConfigError: bad ``name`` or ``part_seconds``; OUT holds rows made with other
            result-changing settings, or is in layout 1 (the message names OUT and the settings).
        OutputError: OUT cannot be written, is a non-empty folder that is not a dataset (unless
            ``force``), or another writer (run, compact, watch) holds its lock (the message names it).
    """
    import re

    from ferbatch.errors import ConfigError

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise ConfigError(f"--name {name!r} | expected 1-64 letters, digits, '_', '-' or '.'")
    if part_seconds <= 0:
        raise ConfigError(f"--part-seconds | received {part_seconds}; expected > 0")
    stop = stop or threading.Event()
    started = time.time()
    vid = f"{name}-{datetime.fromtimestamp(started, UTC).strftime('%Y%m%dT%H%M%S')}"
    cfg = with_defaults(cfg or JobConfig())
    loc = open_location(out)
    st = WatchStats(vid, source, started)
    with DatasetWriter(loc, command="watch", config=cfg, force=force, videos=videos_table) as writer:
        _begin(writer, cfg, models)
        analyzer = FrameSettings.of(cfg).analyzer(models)
        return _session(writer, source, _Stream(analyzer), st, stop, part_seconds, batch, max_queue, give_up_s, on_part)


def _begin(writer: DatasetWriter, cfg: JobConfig, models: ShardModels) -> None:
    """Record the settings and models of the rows a new dataset gets (an existing one keeps its own:
    they are the same, or the writer refused to open)."""
    man = writer.manifest
    man.setdefault("ferbatch_version", __version__)
    man.setdefault("layout", LAYOUT)
    man.setdefault("config", cfg.to_dict())
    man.setdefault("config_key", cfg.result_key())
    refs = getattr(models, "refs", {})  # the loaded files (ferbatch.models.load.Models)
    if "models" not in man and {"detector", "classifier"} <= set(refs):
        man["models"] = {k: {"name": refs[k].name, "sha256": refs[k].sha256, "file": refs[k].file} for k in ("detector", "classifier")}


def _session(
    writer: DatasetWriter,
    source: str,
    stream: _Stream,
    st: WatchStats,
    stop: threading.Event,
    part_seconds: float,
    batch: int,
    max_queue: int,
    give_up_s: float,
    on_part: Callable[[WatchStats], None] | None,
) -> WatchStats:
    src = LiveSource(source, max_queue=max_queue, give_up_s=give_up_s).start()
    part, shard = _Part(), 0
    next_flush = time.monotonic() + part_seconds
    try:
        while not stop.is_set() and not src.finished:
            frames, skipped = src.take(batch, timeout=0.2)
            for f in skipped:
                part.f_idx.append(f.idx)
                part.f_pts.append(f.t_ms)
                part.f_cnt.append(None)
            if frames:
                _analyse(stream, frames, part, st, src)
            if time.monotonic() >= next_flush:
                shard = _flush(writer, shard, part, st, src, on_part)
                part = _Part()
                next_flush += part_seconds
    finally:
        src.stop()
        # frames already queued or counted as dropped belong to the last part
        while True:
            frames, skipped = src.take(batch, timeout=0.0)
            for f in skipped:
                part.f_idx.append(f.idx)
                part.f_pts.append(f.t_ms)
                part.f_cnt.append(None)
            if not frames:
                break
            _analyse(stream, frames, part, st, src)
        st.status = "stopped" if stop.is_set() else ("ended" if os.path.isfile(source) else "source lost")
        _flush(writer, shard, part, st, src, on_part)
    return st


def _analyse(stream: _Stream, frames: list[LiveFrame], part: _Part, st: WatchStats, src: LiveSource) -> None:
    images = [f.image for f in frames if f.image is not None]
    frames = [f for f in frames if f.image is not None]
    if not frames:
        return
    analyzer = stream.analyzer
    if analyzer.tracker is not None and stream.connection not in (None, frames[0].connection):
        analyzer.tracker.reset()  # a reconnect: no track crosses it
    stream.connection = frames[-1].connection
    idx = np.array([f.idx for f in frames], np.int64)
    pts = np.array([f.t_ms for f in frames], np.float64)
    a = analyzer.analyze(images, pts)
    dets = a.faces
    counts = a.face_count
    # provisional track ids are not written (module docstring)
    part.faces.append(replace(dets.at_frames(idx, pts), track_id=None))
    part.f_idx += idx.tolist()
    part.f_pts += pts.tolist()
    part.f_cnt += counts.tolist()
    st.analysed += len(frames)
    st.faces += len(dets)
    st.lag_ms = src.now_ms() - frames[-1].t_ms


def _flush(writer: DatasetWriter, shard: int, part: _Part, st: WatchStats, src: LiveSource, on_part) -> int:
    """Commit the part (when it has rows) and save the session's records; the next part's number."""
    s = src.stats
    st.received, st.dropped, st.connections, st.reconnects, st.last_error = s.received, s.dropped, s.connections, s.reconnects, s.last_error
    if len(part):
        order = np.argsort(np.asarray(part.f_idx), kind="stable")
        f_idx = np.asarray(part.f_idx, np.int64)[order]
        f_pts = np.asarray(part.f_pts, np.float64)[order]
        cnt = [part.f_cnt[i] for i in order]
        ft = frames_table(f_idx, f_pts, np.array([c or 0 for c in cnt], np.int16), shard)
        ft = ft.set_column(2, FRAMES_SCHEMA.field("face_count"), pa.array(cnt, pa.int16()))
        faces = FaceBatch.merge(part.faces)
        writer.stage(st.video_id, {"faces": faces_table(faces, shard), "frames": ft})
        writer.commit()
        shard += 1
        st.parts = shard
    # _live.json (counters), then the manifest (with the new commit: from then on its rows are in
    # the dataset and its session record) and videos.parquet (its row made from that record)
    writer.loc.write_bytes("_live.json", json.dumps(asdict(st), indent=1).encode())
    writer.manifest.setdefault("live", {})[st.video_id] = {**asdict(st), "duration_s": time.time() - st.started_unix}
    writer.save()
    if on_part is not None:
        on_part(st)
    return shard
