"""Exact frame decoding with PyAV: the frames ``start <= idx < end`` of a video, upright, with their
frame index and pts (see :mod:`ferbatch.media.probe` for how both are defined).

OpenCV's ``CAP_PROP_POS_FRAMES`` seeking is not used: it is inexact on VFR (DESIGN_NOTES 4.1).
This module knows nothing about models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ferbatch.errors import DecodeError
from ferbatch.media.probe import VideoIndex, open_video, video_stream
from ferbatch.picture import YUV420, Image, Nv12Picture, YuvPicture, picture_matrix

__all__ = ["DecodeStats", "Frame", "NV12_PICTURES", "Timeline", "frames_in_range", "iter_frames", "seek_target"]

NV12_PICTURES = ("nv12", "nv12-device")  # ``pictures`` values that make NV12 pictures (host; NVDEC keeps "nv12-device" on the GPU)


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        idx: frame index (rank of pts among the video's packets).
        pts_ms: presentation time in milliseconds.
        image: (H, W, 3) uint8 RGB, upright; with ``pictures=True`` a
            :class:`ferbatch.picture.YuvPicture` where the stream allows (:func:`to_image`).
    """

    idx: int
    pts_ms: float
    image: Image


def to_image(frame, pictures: bool | str) -> Image:
    """A decoded ``av.VideoFrame`` as the analysis step takes it, upright: a
    :class:`ferbatch.picture.YuvPicture` of its planes (no RGB conversion) when ``pictures`` is set
    (an :class:`ferbatch.picture.Nv12Picture` of them in host memory, U and V interleaved, when it is
    "nv12" or "nv12-device": the input of the in-graph pre-processing; only NVDEC keeps frames on a GPU) and
    the frame is yuv420p (or yuvj420p) of even size, BT.601 or BT.709, limited or full range (or untagged:
    :func:`ferbatch.picture.picture_matrix`), not rotated; else (H, W, 3) uint8 RGB converted by swscale
    (``to_ndarray(format="rgb24")``)."""
    rotation = getattr(frame, "rotation", 0)
    full = frame.format.name == "yuvj420p"  # full range whatever the tag says (as swscale reads it)
    matrix = picture_matrix(frame.colorspace, 2 if full else frame.color_range)
    if pictures and matrix and not rotation and frame.format.name in YUV420 and not (frame.width % 2 or frame.height % 2):
        yuv = YuvPicture.from_frame(frame, matrix)
        return Nv12Picture.from_planes(yuv) if pictures in NV12_PICTURES else yuv
    return _upright(frame.to_ndarray(format="rgb24"), rotation)


def _upright(img: np.ndarray, rotation: float | int | None) -> np.ndarray:
    if not rotation:
        return img
    k = int(round(float(rotation) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


@dataclass
class DecodeStats:
    """What decoding a frame range met besides good frames (filled in by :func:`iter_frames`).

    Attributes:
        corrupt_packets: packets the decoder rejected (skipped; decoding went on).
        first_error: FFmpeg's message for the first rejected packet or demux failure.
        duplicates: decoded frames whose timestamp another frame of the range already had (dropped).
        unindexed: decoded frames whose timestamp is not in the index (the file changed since it
            was indexed; dropped).
        stopped: why demuxing ended before the end of the range ("" = it did not).
        reseeks: times the seek landed after the range's first frame and was redone from an
            earlier keyframe.
        fallback: why the range was decoded by PyAV instead of the decoder asked for ("" = it was
            not; :func:`ferbatch.media.nvdec.iter_frames_nvdec`).
    """

    corrupt_packets: int = 0
    first_error: str = ""
    duplicates: int = 0
    unindexed: int = 0
    stopped: str = ""
    reseeks: int = 0
    fallback: str = ""

    def problems(self) -> list[str]:
        """Human-readable list of what went wrong (empty when nothing did)."""
        out = []
        if self.corrupt_packets:
            out.append(f"{self.corrupt_packets} corrupt packets skipped ({self.first_error})")
        if self.duplicates:
            out.append(f"{self.duplicates} frames with a duplicate timestamp dropped")
        if self.unindexed:
            out.append(f"{self.unindexed} frames not in the index dropped (the file changed since it was indexed?)")
        if self.stopped:
            out.append(self.stopped)
        return out


MAX_RESEEKS = 2  # earlier keyframes tried when a seek lands after the range's first frame


def iter_frames(
    path: str | os.PathLike[str],
    index: VideoIndex,
    start: int = 0,
    end: int | None = None,
    *,
    threads: int = 0,
    stats: DecodeStats | None = None,
    select: np.ndarray | None = None,
    pictures: bool | str = False,
) -> Iterator[Frame]:
    """Decode frames ``start <= idx < end`` (half-open, in frame-index space) of a video.

    Seeks to the keyframe at or before ``start`` by its decoding timestamp (MPEG-TS/PS demuxers
    seek by dts; a keyframe's pts can lie after its dts when B-frames follow), drops pre-roll
    frames, and checks where it landed: if the first frame at or after ``start`` is not frame
    ``start``, the seek overshot and decoding restarts from an earlier keyframe (at most
    :data:`MAX_RESEEKS` times). Streams whose timestamps restart are decoded from the beginning,
    with the index's segment offsets applied. Packets the decoder rejects are skipped and counted
    in ``stats``, decoding goes on.

    Args:
        path: the video.
        index: its :class:`VideoIndex` from :func:`ferbatch.media.probe.probe_video`.
        start, end: frame-index range; ``end=None`` means to the end.
        threads: decoder threads (0 = FFmpeg's choice).
        stats: filled with what went wrong (corrupt packets, dropped frames, early stop).
        select: (F,) bool over the whole index, the frames to yield (``--sample-fps``,
            :func:`ferbatch.media.sampling.sample_mask`); the others are decoded (the codec needs
            them as references) but never converted to RGB. None = every frame.
        pictures: yield :class:`ferbatch.picture.YuvPicture` images where the stream allows
            (:func:`to_image`): the analysis step converts only what it needs; "nv12" (or
            "nv12-device", NVDEC's GPU frames where PyAV stands in): host :class:`ferbatch.picture.Nv12Picture`
            images (``--preprocess``, :func:`ferbatch.models.frame_graphs.frame_pictures`).

    Yields:
        :class:`Frame` in presentation order, strictly increasing ``idx``.

    Raises:
        DecodeError: the file cannot be opened, or not one frame of the range could be decoded
            because every packet was rejected.
    """
    path = str(path)
    st = stats if stats is not None else DecodeStats()
    yield from frames_in_range(
        path, index, start, end, st, lambda seek_k: _decoded_frames(path, index, seek_k, threads, st, select, pictures)
    )


def frames_in_range(
    path: str, index: VideoIndex, start: int, end: int | None, st: DecodeStats, decoded: Callable[[int], Iterator[Frame]]
) -> Iterator[Frame]:
    """The seek-check-reseek loop of :func:`iter_frames`, for any decoder.

    Args:
        path: the video (for error messages).
        index, start, end, st: as :func:`iter_frames` (``st`` is filled).
        decoded: ``decoded(seek_k)`` yields the frames from keyframe ``seek_k`` on (from the start
            when ``seek_k`` < 0), placed on the index's timeline (:class:`Timeline`), strictly
            increasing ``idx``; frames not selected come with ``image`` None.

    Raises:
        DecodeError: not one frame of the range could be decoded because every packet was rejected.
    """
    n = len(index.pts)
    end = n if end is None else min(end, n)
    if start >= end:
        return
    k = int(np.searchsorted(index.keyframes, index.pts[start], side="right")) - 1  # the keyframe at or before frame `start`
    yielded = 0
    in_range = 0  # frames of the range decoded (selected or not)
    for attempt in range(MAX_RESEEKS + 1):
        seek_k = k - attempt if start > 0 and not index.restarts else -1  # -1: decode from the start
        overshot = False
        for fr in decoded(seek_k):
            if fr.idx < start:
                continue
            if in_range == 0 and fr.idx > start and seek_k >= 0 and attempt < MAX_RESEEKS:
                overshot = True  # the seek skipped the range's first frames: go back one keyframe
                break
            if fr.idx >= end:
                break
            in_range += 1
            if fr.image is None:  # not selected: decoded, not converted, not yielded
                continue
            yield fr
            yielded += 1
        if in_range == 0 and seek_k >= 0 and attempt < MAX_RESEEKS:
            overshot = True  # the seek landed past the whole range (e.g. at the end of the file)
        if not overshot:
            break
        st.reseeks += 1
    if in_range == 0 and st.corrupt_packets and not st.duplicates:
        raise DecodeError(path, f"cannot decode its video stream ({st.corrupt_packets} packets rejected: {st.first_error})")


def seek_target(index: VideoIndex, seek_k: int) -> int:
    """The timestamp to seek to for keyframe ``seek_k``: its dts as stored in the file when the index
    has it (MPEG-TS/PS demuxers seek by dts), else its pts."""
    return int(index.key_dts[seek_k]) if len(index.key_dts) == len(index.keyframes) else int(index.keyframes[seek_k])


class Timeline:
    """Places decoded frames on the index's timeline: raw pts -> frame index, following timestamp
    restarts (segment offsets) and counting duplicate and unindexed frames in ``st``.

    Args:
        index: the video's index.
        st: where duplicates and unindexed frames are counted.
    """

    def __init__(self, index: VideoIndex, st: DecodeStats):
        self.index, self.st = index, st
        self.offsets = index.segment_offsets
        self.seg, self.last_idx = 0, -1
        self.prev_raw: int | None = None

    def place(self, raw: int | None) -> tuple[int, int] | None:
        """(frame index, timeline pts) of a decoded frame with raw timestamp ``raw`` (None = the
        frame has none: the next one in the index); None when the frame is dropped (a duplicate
        or not in the index, counted in ``st``)."""
        index = self.index
        if raw is None:
            t = int(index.pts[min(self.last_idx + 1, len(index.pts) - 1)])
        else:
            if self.prev_raw is not None and raw < self.prev_raw and self.seg + 1 < len(self.offsets):
                self.seg += 1  # the timestamps restarted: next segment of the timeline
            self.prev_raw = raw
            t = int(raw) + int(self.offsets[self.seg])
        idx = index.frame_index(t)
        if idx >= len(index.pts) or int(index.pts[idx]) != t:
            self.st.unindexed += 1
            return None
        if idx <= self.last_idx:
            self.st.duplicates += 1
            return None
        self.last_idx = idx
        return idx, t


def _decoded_frames(
    path: str, index: VideoIndex, seek_k: int, threads: int, st: DecodeStats, select: np.ndarray | None = None, pictures: bool | str = False
) -> Iterator[Frame]:
    """Frames from keyframe ``seek_k`` on (from the start when < 0), placed on the index's
    timeline; corrupt packets, duplicate and unindexed frames are counted in ``st`` and skipped.
    Frames that ``select`` leaves out come with ``image`` None (no RGB conversion)."""
    import av

    c, _ = open_video(path)
    with c:
        s = video_stream(c)
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = int(threads)
        tb = s.time_base or index.time_base
        if seek_k >= 0:
            c.seek(seek_target(index, seek_k), stream=s, backward=True, any_frame=False)
        timeline = Timeline(index, st)
        packets = c.demux(s)
        while True:
            try:
                pkt = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                st.stopped = f"the stream ends early: {e.strerror or type(e).__name__}"
                break
            try:
                frames = pkt.decode()
            except av.error.FFmpegError as e:
                st.corrupt_packets += 1
                st.first_error = st.first_error or (e.strerror or type(e).__name__)
                continue
            for fr in frames:
                placed = timeline.place(fr.pts)
                if placed is None:
                    continue
                idx, t = placed
                if select is not None and not select[idx]:
                    yield Frame(idx, float(t * tb) * 1000.0, None)  # type: ignore[arg-type]
                    continue
                yield Frame(idx, float(t * tb) * 1000.0, to_image(fr, pictures))
