"""Shard -> rows: decode, batched detection, crops, batched classification, Arrow tables, part files.

Plain Python with no Ray inside: tests and the benchmark run a shard in-process; the Ray job
(:mod:`ferbatch.job.workers`) calls :func:`run_shard` inside its worker actors.

Decoding runs in a background thread that keeps up to ``prefetch`` frame batches ready
(FFmpeg and ONNX Runtime both release the GIL), so decode overlaps inference.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ferbatch.dataset.schema import FaceRows, faces_table, frames_table
from ferbatch.dataset.store import write_staging
from ferbatch.errors import DecodeError
from ferbatch.location import open_location
from ferbatch.media.decode import DecodeStats, Frame, iter_frames
from ferbatch.media.shards import Shard
from ferbatch.vision.classify import Classifier, extract_crops
from ferbatch.vision.detect import Detector, preprocess_frames
from ferbatch.vision.tiling import AnyDetector

__all__ = ["ShardModels", "ShardResult", "ShardRows", "process_shard", "run_shard", "iter_batches"]


class ShardModels(Protocol):
    """What a shard needs of a worker's models (:class:`ferbatch.models.load.Models` is one)."""

    detector: AnyDetector
    classifier: Classifier


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
            prefetching), decode_wait (inference waiting for frames), resize (detector input),
            detect, crop, classify, write.
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


@dataclass
class ShardRows:
    """Everything a shard produced, before it is written.

    Attributes:
        frame_idx: (F,) int64 frame index of each decoded frame.
        pts_ms: (F,) float64 presentation time in milliseconds.
        face_count: (F,) int16 faces found in each frame.
        faces: per-face rows (M faces).
        result: counts, status and stage timings.
    """

    frame_idx: np.ndarray
    pts_ms: np.ndarray
    face_count: np.ndarray
    faces: FaceRows
    result: ShardResult


_END = object()


def iter_batches(frames: Iterator[Frame], size: int, prefetch: int) -> Iterator[list[Frame]]:
    """Group frames into lists of ``size``, decoding ahead in a thread when ``prefetch`` > 0.

    An exception raised by the decoder is re-raised here, after the batches decoded before it.
    """

    def batches():
        batch = []
        for f in frames:
            batch.append(f)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    if prefetch <= 0:
        yield from batches()
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for b in batches():
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)

    t = threading.Thread(target=produce, name="ferbatch-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _timed(frames: Iterator[Frame], acc: dict[str, float]) -> Iterator[Frame]:
    """Adds the time spent producing each frame (decoding and converting) to ``acc["decode"]``."""
    while True:
        t = time.perf_counter()
        f = next(frames, None)
        acc["decode"] += time.perf_counter() - t
        if f is None:
            return
        yield f


def _detect(models: ShardModels, batch: list[Frame], st: dict[str, float]):
    det = models.detector
    if not isinstance(det, Detector) or det.spec.letterbox:  # letterboxed, frame-sized or tiled: full frames
        t = time.perf_counter()
        dets = det.detect([f.image for f in batch])
        st["detect"] += time.perf_counter() - t
        return dets
    t = time.perf_counter()
    x, _ = preprocess_frames([f.image for f in batch], det.spec.input)
    sizes = np.array([(f.image.shape[1], f.image.shape[0]) for f in batch], np.float32)
    st["resize"] += time.perf_counter() - t
    t = time.perf_counter()
    dets = det.detect_resized(x, sizes)
    st["detect"] += time.perf_counter() - t
    return dets


def process_shard(shard: Shard, models: ShardModels, *, detect_batch: int = 8, prefetch: int = 2, decode_threads: int = 1) -> ShardRows:
    """Run the models over every frame of a shard.

    Args:
        shard: what to process.
        models: the worker's loaded detector and classifier.
        detect_batch: frames per detector call (crops of those frames go to the classifier together).
        prefetch: decoded batches buffered ahead.
        decode_threads: FFmpeg threads.

    Returns:
        :class:`ShardRows`; its result is "ok" only when every frame the plan assigns to the shard
        was decoded (frame indices ``start, start+1, ..., end-1``), "partial" with the counts and
        causes otherwise.

    Raises:
        DecodeError: the video cannot be decoded at all (no frame of the shard came out).
    """
    t0 = time.perf_counter()
    res = ShardResult(shard.video_id, shard.shard_idx)
    st = {"decode": 0.0, "decode_wait": 0.0, "resize": 0.0, "detect": 0.0, "crop": 0.0, "classify": 0.0}
    f_idx, f_pts, f_cnt = [], [], []
    parts: list[FaceRows] = []
    dstats = DecodeStats()
    last_size = (0, 0)
    frames = _timed(iter_frames(shard.path, shard.index, shard.start, shard.end, threads=decode_threads, stats=dstats), st)
    it = iter_batches(frames, detect_batch, prefetch)
    try:
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            st["decode_wait"] += time.perf_counter() - t
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
            dets = _detect(models, batch, st)
            t = time.perf_counter()
            crops = extract_crops(images, dets, models.classifier.spec)
            st["crop"] += time.perf_counter() - t
            t = time.perf_counter()
            probs = models.classifier.classify(crops)
            st["classify"] += time.perf_counter() - t
            idx = np.array([f.idx for f in batch], np.int64)
            pts = np.array([f.pts_ms for f in batch], np.float64)
            counts = np.bincount(dets.frame_pos, minlength=len(batch)).astype(np.int16)
            f_idx.append(idx)
            f_pts.append(pts)
            f_cnt.append(counts)
            # face_idx: rank within its frame; detections come sorted by frame, then score
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            face_idx = (np.arange(len(dets)) - starts[dets.frame_pos]).astype(np.int16)
            parts.append(FaceRows(idx[dets.frame_pos], pts[dets.frame_pos], face_idx, dets.boxes, dets.scores, probs))
    except DecodeError as e:
        if not f_idx:
            raise
        res.status, res.error = "partial", e.reason
    frame_idx = np.concatenate(f_idx) if f_idx else np.empty(0, np.int64)
    pts_ms = np.concatenate(f_pts) if f_pts else np.empty(0, np.float64)
    face_count = np.concatenate(f_cnt) if f_cnt else np.empty(0, np.int16)
    if parts:
        rows = FaceRows(
            *(np.concatenate([getattr(p, k) for p in parts]) for k in ("frame_idx", "pts_ms", "face_idx", "boxes", "det_score", "probs"))
        )
    else:
        rows = FaceRows(
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int16),
            np.empty((0, 4), np.float32),
            np.empty(0, np.float32),
            np.empty((0, 8), np.float32),
        )
    res.frames, res.faces = len(frame_idx), len(rows.frame_idx)
    _verify(shard, res, frame_idx, dstats)
    res.stage_seconds = st
    res.seconds = time.perf_counter() - t0
    return ShardRows(frame_idx, pts_ms, face_count, rows, res)


def run_shard(
    shard: Shard, models: ShardModels, out_dir: str, *, detect_batch: int = 8, prefetch: int = 2, decode_threads: int = 1
) -> ShardResult:
    """Process a shard and write its ``frames`` and ``faces`` rows to the dataset's staging
    (:func:`ferbatch.dataset.store.write_staging`: deterministic names, one piece each), where
    the driver gathers them into a commit once the whole video is done.

    Args:
        out_dir: the dataset, a local path or an object-storage URI.

    Errors that concern only this video (it cannot be decoded) are returned as a failed
    :class:`ShardResult`; errors of the machine (disk full, model broken) propagate.
    """
    try:
        out = process_shard(shard, models, detect_batch=detect_batch, prefetch=prefetch, decode_threads=decode_threads)
    except DecodeError as e:
        return ShardResult(shard.video_id, shard.shard_idx, status="failed", error=e.reason)
    res = out.result
    t = time.perf_counter()
    loc = _location(out_dir)
    write_staging(loc, "faces", shard.video_id, shard.shard_idx, faces_table(out.faces, shard.shard_idx))
    write_staging(loc, "frames", shard.video_id, shard.shard_idx, frames_table(out.frame_idx, out.pts_ms, out.face_count, shard.shard_idx))
    res.stage_seconds["write"] = time.perf_counter() - t
    return res


_location = functools.lru_cache(maxsize=8)(open_location)  # one filesystem object per dataset and worker


def _verify(shard: Shard, res: ShardResult, frame_idx: np.ndarray, stats: DecodeStats) -> None:
    """Check the decoded frames against the plan: a shard is "ok" only with exactly its frames.

    Raises:
        DecodeError: no frame of the shard was decoded (a 0-frame shard is never "ok").
    """
    expected = shard.frames
    problems = stats.problems()
    if len(frame_idx) == 0:
        end = shard.start + expected
        raise DecodeError(
            shard.path, f"no frame of frames {shard.start}-{end - 1} could be decoded" + (f": {'; '.join(problems)}" if problems else "")
        )
    if len(frame_idx) == expected and frame_idx[0] == shard.start:
        return  # iter_frames yields strictly increasing indices inside the range: all of them
    missing = expected - len(frame_idx)
    what = f"{len(frame_idx)} of {expected} frames decoded ({missing} missing" + (f": {'; '.join(problems)})" if problems else ")")
    res.status = "partial" if res.status != "failed" else res.status
    res.error = "; ".join(x for x in (res.error, what) if x)
