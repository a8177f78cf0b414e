"""Shard -> rows: decode, batched detection, crops, batched classification, Arrow tables, part files.

Plain Python with no Ray inside: tests and the benchmark run a shard in-process; the Ray job
(:mod:`ferbatch.job.workers`) calls :func:`run_shard` inside its worker actors.

Decoding runs in a background thread that keeps up to ``prefetch`` frame batches ready
(FFmpeg and ONNX Runtime both release the GIL), so decode overlaps inference.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ferbatch.config import JobConfig
from ferbatch.dataset.schema import faces_table, frames_table
from ferbatch.dataset.store import write_staging
from ferbatch.errors import DecodeError
from ferbatch.faces import FaceBatch
from ferbatch.location import open_location
from ferbatch.media.batches import iter_batches, timed_frames
from ferbatch.media.decode import DecodeStats
from ferbatch.media.decoders import frame_iterator
from ferbatch.media.sampling import frame_spans_ms, sample_mask
from ferbatch.media.shards import Shard
from ferbatch.vision.analysis import AnalysisModels, FrameAnalyzer
from ferbatch.vision.track import TrackerConfig

__all__ = ["FrameSettings", "ShardModels", "ShardResult", "ShardRows", "process_shard", "run_shard", "iter_batches"]


ShardModels = AnalysisModels  # what a shard needs of a worker's models (:class:`ferbatch.models.load.Models` is one)


@dataclass
class ShardResult:
    """What processing a shard produced (small: it travels back to the driver).

    Attributes:
        status: "ok", "partial" (decoding stopped early; the frames before are kept) or "failed".
        error: a user-facing message when status is not "ok".
        frames, faces: rows written.
        seconds: wall time of the shard.
        frame_size: (width, height) of the shard's first decoded, upright frame; (0, 0) when none.
        notes: unusual things that are not errors (e.g. the frame size changes mid-stream).
        stage_seconds: time per stage: decode (decoding + conversions, in the decode thread when
            prefetching), decode_wait (inference waiting for frames), analyze (the whole analysis
            step) and within it shots, detect (full frames and windows), track, crop, classify; write.
        decoder: the decoder that produced the frames ("pyav" or "nvdec"; set by the worker).
        preprocess: where the detector's inputs were pre-processed (letterbox, colour conversion):
            "host", "graph" (inside the NV12 graph, ``--preprocess``) or "graph,host" (both: windows,
            tiles, frames the graph cannot take); "" when no frame was detected.
        handoff: what the driver joins shards with (:mod:`ferbatch.job.tracking`): ``head``, the
            tracked boxes ``[[track_id, x1, y1, x2, y2], ...]`` of the shard's first frame; ``tail``,
            those of the next shard's first frame as this shard saw it, and ``tail_cut``, whether
            that frame starts a new shot; ``last_shot``, the shard's last shot number.
    """

    video_id: str
    shard_idx: int
    status: str = "ok"
    error: str = ""
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    frame_size: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    handoff: dict = field(default_factory=dict)
    decoder: str = ""
    preprocess: str = ""


@dataclass
class ShardRows:
    """Everything a shard produced, before it is written.

    Attributes:
        frame_idx: (F,) int64 frame index of each decoded frame.
        pts_ms: (F,) float64 presentation time in milliseconds.
        face_count: (F,) int16 faces found in each frame.
        faces: per-face rows (M faces).
        result: counts, status and stage timings.
        shot_idx: (F,) int32 shot number within the shard (0 at its first frame).
        span_ms: (F,) float64 video time each frame stands for.
    """

    frame_idx: np.ndarray
    pts_ms: np.ndarray
    face_count: np.ndarray
    faces: FaceBatch
    result: ShardResult
    shot_idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    span_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))


@dataclass(frozen=True)
class FrameSettings:
    """How a shard's frames are analysed (the job's result-changing time settings).

    Attributes:
        detect_every: full-frame detection every N analysed frames (:mod:`ferbatch.vision.analysis`).
        sample_fps: frames analysed per second of video (None = all; :mod:`ferbatch.media.sampling`).
        track: run the tracker in the frame loop (provisional ids per shard, joined by the driver).
        row_threshold: the detector's row threshold (the tracker's thresholds follow it); None = the detector's.
        between: what finds the faces between full detections when ``detect_every`` > 1: "tracked"
            (the tracks' predicted boxes) or "window" (the detector on windows around them).
        classify_between: "changes" (tracked rows between two full detections of a track whose
            classifications agree take interpolated probabilities) or "every" (every row classified).
    """

    detect_every: int = 1
    sample_fps: float | None = None
    track: bool = True
    row_threshold: float | None = None
    between: str = "tracked"
    classify_between: str = "changes"

    @classmethod
    def of(cls, cfg: JobConfig) -> FrameSettings:
        """The frame settings of a job's config (``detect_every`` None counts as 1)."""
        return cls(
            detect_every=cfg.detect_every or 1,
            sample_fps=cfg.sample_fps,
            track=cfg.track,
            row_threshold=cfg.score_threshold,
            between=cfg.between,
            classify_between=cfg.classify_between,
        )

    def analyzer(self, models: ShardModels, first_rank: int = 0) -> FrameAnalyzer:
        """The analysis step for one stream with these settings (``first_rank``: :class:`FrameAnalyzer`)."""
        return FrameAnalyzer(
            models,
            detect_every=self.detect_every,
            tracker=self.tracker(models),
            use_windows=self.between == "window",
            interpolate_probs=self.classify_between == "changes",
            first_rank=first_rank,
        )

    def tracker(self, models: ShardModels) -> TrackerConfig | None:
        """The tracker settings for these models (None without tracking)."""
        if not self.track:
            return None
        thr = self.row_threshold if self.row_threshold is not None else float(models.detector.score_threshold)
        return TrackerConfig.for_rows(thr)


def process_shard(
    shard: Shard,
    models: ShardModels,
    *,
    detect_batch: int = 8,
    prefetch: int = 2,
    decode_threads: int = 1,
    settings: FrameSettings = FrameSettings(),
    decoder: str = "pyav",
    batch_pixels: int | None = None,
    pictures: bool | str = True,
) -> ShardRows:
    """Run the analysis step (:class:`ferbatch.vision.analysis.FrameAnalyzer`) over a shard's frames.

    The shard's frames are ``start <= idx < end``, those :func:`ferbatch.media.sampling.sample_mask`
    selects; the first selected frame after the shard (the next shard's first) is decoded and
    analysed too, with a full-frame detection, and never becomes a row: its shot cut and tracked
    boxes are the hand-off the driver joins the next shard's tracks with (``result.handoff``).

    Args:
        shard: what to process.
        models: the worker's loaded detector and classifier.
        detect_batch: frames per analysis call (crops of those frames go to the classifier together).
        batch_pixels: fewer frames per call when they reach this many pixels (bounds the frames in
            flight and the detector's activations for large frames; None = ``detect_batch`` always).
        pictures: decode to :class:`ferbatch.picture.YuvPicture` where the stream allows (the
            frame path); "nv12": to :class:`ferbatch.picture.Nv12Picture` (host with PyAV, GPU
            memory with NVDEC), for models with the in-graph pre-processing
            (:attr:`ferbatch.models.load.Models.takes_nv12`); False = full-size RGB for every frame
            (the reference path of the tests and ``scripts/bench_frame_path.py``).
        prefetch: decoded batches buffered ahead.
        decode_threads: FFmpeg threads.
        settings: detection interval, sampling, tracking.
        decoder: "pyav" or "nvdec" (:func:`ferbatch.media.decoders.choose_decoder`; same frames).

    Returns:
        :class:`ShardRows`; its result is "ok" only when every frame the plan assigns to the shard
        was decoded, "partial" with the counts and causes otherwise.

    Raises:
        DecodeError: the video cannot be decoded at all (no frame of the shard came out).
    """
    t0 = time.perf_counter()
    res = ShardResult(shard.video_id, shard.shard_idx)
    st = {"decode": 0.0, "decode_wait": 0.0, "analyze": 0.0}
    index = shard.index
    n_all = len(index.pts)
    end = shard.end if shard.end is not None else n_all
    select = sample_mask(index, settings.sample_fps)
    spans = frame_spans_ms(index, select)
    after = np.flatnonzero(select[end:])
    handoff_idx = end + int(after[0]) if end < n_all and len(after) else -1  # the next shard's first frame
    analyzer = settings.analyzer(models, first_rank=int(select[: shard.start].sum()))  # analysed frames before the shard
    graph0, host0 = models.detector.thread_frames()
    f_idx: list[np.ndarray] = []
    f_pts: list[np.ndarray] = []
    f_cnt: list[np.ndarray] = []
    f_shot: list[np.ndarray] = []
    parts: list[FaceBatch] = []
    dstats = DecodeStats()
    last_size = (0, 0)
    first = True
    stop = handoff_idx + 1 if handoff_idx >= 0 else end
    sel = select if settings.sample_fps else None
    frames = timed_frames(
        frame_iterator(decoder)(shard.path, index, shard.start, stop, threads=decode_threads, stats=dstats, select=sel, pictures=pictures),
        st,
    )
    it = iter_batches(frames, detect_batch, prefetch, batch_pixels)
    pending: list = []  # decoded frames held back until a scheduled full detection closes their gap (FrameAnalyzer.ready)
    try:
        ended = False
        while not ended:
            t = time.perf_counter()
            try:
                pending += next(it)
            except StopIteration:
                ended = True
            except DecodeError as e:  # the frames decoded before the error still become rows
                if not f_idx and not pending:
                    raise
                res.status, res.error, ended = "partial", e.reason, True
            st["decode_wait"] += time.perf_counter() - t
            n_now = len(pending) if ended else analyzer.ready(len(pending))
            if n_now == 0:
                continue
            batch, pending = pending[:n_now], pending[n_now:]
            images = [f.image for f in batch]
            for img, fr in zip(images, batch, strict=True):
                size = (img.shape[1], img.shape[0])
                if res.frame_size == (0, 0):
                    res.frame_size = size
                elif size != last_size:
                    res.notes.append(
                        f"the frame size changes mid-stream at frame {fr.idx}: {last_size[0]}x{last_size[1]} -> {size[0]}x{size[1]}"
                    )
                last_size = size
            idx = np.array([f.idx for f in batch], np.int64)
            pts = np.array([f.pts_ms for f in batch], np.float64)
            tail = np.flatnonzero(idx == handoff_idx)
            keep = [0] if first else []
            keep += tail.tolist()
            # the stream's last frame gets a full detection: the frames before it are interpolated too
            forced = tail.tolist() if len(tail) or not ended else [len(batch) - 1]
            t = time.perf_counter()
            a = analyzer.analyze(images, pts, force_full=forced, keep_tracks=keep)
            st["analyze"] += time.perf_counter() - t
            if first:
                res.handoff["head"] = a.handoff.get(0, [])
                first = False
            rows = idx != handoff_idx  # the hand-off frame is the next shard's row
            if len(tail):
                k = int(tail[0])
                res.handoff.update(tail=a.handoff.get(k, []), tail_cut=bool(a.cut[k]))
            counts = a.face_count
            f_idx.append(idx[rows])
            f_pts.append(pts[rows])
            f_cnt.append(counts[rows])
            f_shot.append(a.shot[rows])
            d = a.faces.at_frames(idx, pts)  # frame indices, times, face_idx (rank within its frame)
            parts.append(replace(d, track_id=d.track_id if settings.track else None)[rows[a.faces.frame_pos]])
    except DecodeError as e:
        if not f_idx:
            raise
        res.status, res.error = "partial", e.reason
    frame_idx = np.concatenate(f_idx) if f_idx else np.empty(0, np.int64)
    pts_ms = np.concatenate(f_pts) if f_pts else np.empty(0, np.float64)
    face_count = np.concatenate(f_cnt) if f_cnt else np.empty(0, np.int16)
    shot = np.concatenate(f_shot) if f_shot else np.empty(0, np.int32)
    rows_all = FaceBatch.merge(parts)
    res.frames, res.faces = len(frame_idx), len(rows_all)
    res.handoff["last_shot"] = int(shot[-1]) if len(shot) else 0
    graph1, host1 = models.detector.thread_frames()
    res.preprocess = ",".join(name for name, n in (("graph", graph1 - graph0), ("host", host1 - host0)) if n)
    _verify(shard, res, frame_idx, dstats, int(select[shard.start : end].sum()))
    st.update(analyzer.stage_seconds)
    res.stage_seconds = st
    res.seconds = time.perf_counter() - t0
    return ShardRows(frame_idx, pts_ms, face_count, rows_all, res, shot, spans[frame_idx] if len(frame_idx) else np.empty(0))


def run_shard(
    shard: Shard,
    models: ShardModels,
    out_dir: str,
    *,
    detect_batch: int = 8,
    prefetch: int = 2,
    decode_threads: int = 1,
    settings: FrameSettings = FrameSettings(),
    decoder: str = "pyav",
    batch_pixels: int | None = None,
    pictures: bool | str = True,
) -> ShardResult:
    """Process a shard and write its ``frames`` and ``faces`` rows to the dataset's staging
    (:func:`ferbatch.dataset.store.write_staging`: deterministic names, one piece each), where
    the driver gathers them into a commit once the whole video is done.

    Args:
        out_dir: the dataset, a local path or an object-storage URI.
        decoder, batch_pixels, pictures: as :func:`process_shard`.

    Errors that concern only this video (it cannot be decoded) are returned as a failed
    :class:`ShardResult`; errors of the machine (disk full, model broken) propagate.
    """
    try:
        out = process_shard(
            shard,
            models,
            detect_batch=detect_batch,
            prefetch=prefetch,
            decode_threads=decode_threads,
            settings=settings,
            decoder=decoder,
            batch_pixels=batch_pixels,
            pictures=pictures,
        )
    except DecodeError as e:
        return ShardResult(shard.video_id, shard.shard_idx, status="failed", error=e.reason)
    res = out.result
    t = time.perf_counter()
    loc = _location(out_dir)
    write_staging(loc, "faces", shard.video_id, shard.shard_idx, faces_table(out.faces, shard.shard_idx))
    frames = frames_table(out.frame_idx, out.pts_ms, out.face_count, shard.shard_idx, out.shot_idx, out.span_ms)
    write_staging(loc, "frames", shard.video_id, shard.shard_idx, frames)
    res.stage_seconds["write"] = time.perf_counter() - t
    return res


_location = functools.lru_cache(maxsize=8)(open_location)  # one filesystem object per dataset and worker


def _verify(shard: Shard, res: ShardResult, frame_idx: np.ndarray, stats: DecodeStats, expected: int) -> None:
    """Check the decoded frames against the plan: a shard is "ok" only with exactly its
    ``expected`` frames (the selected frames of its range).

    Raises:
        DecodeError: no frame of the shard was decoded (a 0-frame shard is never "ok").
    """
    if stats.fallback:  # NVDEC could not decode the file: PyAV did (same frames)
        res.decoder, res.notes = "pyav", [*res.notes, stats.fallback]
    problems = stats.problems()
    if len(frame_idx) == 0:
        end = shard.start + expected
        raise DecodeError(
            shard.path, f"no frame of frames {shard.start}-{end - 1} could be decoded" + (f": {'; '.join(problems)}" if problems else "")
        )
    if len(frame_idx) == expected:
        return  # iter_frames yields strictly increasing, selected indices inside the range: all of them
    missing = expected - len(frame_idx)
    what = f"{len(frame_idx)} of {expected} frames decoded ({missing} missing" + (f": {'; '.join(problems)})" if problems else ")")
    res.status = "partial" if res.status != "failed" else res.status
    res.error = "; ".join(x for x in (res.error, what) if x)
