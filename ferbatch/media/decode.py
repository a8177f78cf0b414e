"""Exact frame decoding with PyAV: the frames ``start <= idx < end`` of a video, upright, with their
frame index and pts (see :mod:`ferbatch.media.probe` for how both are defined).

OpenCV's ``CAP_PROP_POS_FRAMES`` seeking is not used: it is inexact on VFR (DESIGN_NOTES 4.1).
This module knows nothing about models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ferbatch.errors import DecodeError
from ferbatch.media.probe import VideoIndex, open_video

__all__ = ["Frame", "iter_frames"]


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        idx: frame index (rank of pts among the video's packets).
        pts_ms: presentation time in milliseconds.
        image: (H, W, 3) uint8 RGB, upright.
    """

    idx: int
    pts_ms: float
    image: np.ndarray


def _upright(img: np.ndarray, rotation: float | int | None) -> np.ndarray:
    if not rotation:
        return img
    k = int(round(float(rotation) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


def iter_frames(
    path: str | os.PathLike[str],
    index: VideoIndex,
    start: int = 0,
    end: int | None = None,
    *,
    threads: int = 0,
) -> Iterator[Frame]:
    """Decode frames ``start <= idx < end`` (half-open, in frame-index space) of a video.

    Seeks to the keyframe at or before ``start`` and drops pre-roll frames, so a shard decodes
    exactly its frames.

    Args:
        path: the video.
        index: its :class:`VideoIndex` from :func:`probe_video`.
        start, end: frame-index range; ``end=None`` means to the end.
        threads: decoder threads (0 = FFmpeg's choice).

    Yields:
        :class:`Frame` in presentation order.

    Raises:
        DecodeError: the file cannot be opened, or decoding fails before any frame of the range
            (a failure after some frames raises too, with ``reason`` starting "truncated").
    """
    import av

    path = str(path)
    n = len(index.pts)
    end = n if end is None else min(end, n)
    if start >= end:
        return
    p0 = int(index.pts[start])
    p1 = int(index.pts[end]) if end < n else None
    c, _ = open_video(path)
    yielded = 0
    with c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = int(threads)
        tb = s.time_base or index.time_base
        if start > 0:
            c.seek(p0, stream=s, backward=True, any_frame=False)
        try:
            for fr in c.decode(s):
                t = fr.pts
                if t is None:
                    t = int(index.pts[min(start + yielded, n - 1)])
                if t < p0:
                    continue
                if p1 is not None and t >= p1:
                    break
                img = _upright(fr.to_ndarray(format="rgb24"), getattr(fr, "rotation", 0))
                yield Frame(index.frame_index(t), float(t * tb) * 1000.0, img)
                yielded += 1
        except av.error.FFmpegError as e:
            what = "truncated or corrupt stream" if yielded else "cannot decode its video stream"
            raise DecodeError(path, f"{what} after {yielded} frames ({e.strerror or type(e).__name__})") from e
