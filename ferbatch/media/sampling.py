"""Which frames a job analyses (``--sample-fps``) and how much video time each one stands for.

Both are functions of the demux-only index (:class:`ferbatch.media.probe.VideoIndex`), never of
the shard plan, so a video gives the same frames and the same weights whatever its sharding, and a
resumed shard picks exactly the frames it picked before. Nothing here decodes.

Sampling rule: frame ``i`` is analysed when its presentation time falls in a later ``1 / fps``
second bin than frame ``i - 1``'s (bins counted from the first frame's time), i.e. the first frame
of every bin. It is exact for variable frame rate (by pts, not by frame count) and analyses about
``fps`` frames per second of video, never more than the video has. Peers: py-feat ``skip_frames``
and fer ``frequency`` count frames; DeepStream ``interval`` counts frames too; counting time is what
a user who asks for "5 frames per second" means on a VFR phone video.
"""

from __future__ import annotations

import numpy as np

from ferbatch.media.probe import VideoIndex

__all__ = ["pts_ms", "sample_mask", "frame_spans_ms"]


def pts_ms(index: VideoIndex) -> np.ndarray:
    """(F,) float64 presentation time of every frame in milliseconds (the index's timeline, the
    ``pts_ms`` that decoded frames carry)."""
    return index.pts.astype(np.float64) * float(index.time_base) * 1000.0


def sample_mask(index: VideoIndex, fps: float | None) -> np.ndarray:
    """The frames to analyse at about ``fps`` frames per second of video.

    Args:
        index: the video's index.
        fps: frames per second to analyse; None or 0 = every frame.

    Returns:
        (F,) bool, True for the frames analysed; frame 0 always is.

    Raises:
        ValueError: ``fps`` is negative.

    Example: a 30 fps video at ``fps=5`` analyses frames 0, 6, 12, ... (bins of 200 ms).
    """
    n = len(index.pts)
    if fps is None or fps == 0:
        return np.ones(n, bool)
    if fps < 0:
        raise ValueError(f"sample_mask | received fps {fps}; expected > 0 (or 0 for every frame)")
    t = pts_ms(index)
    if n == 0:
        return np.zeros(0, bool)
    b = np.floor((t - t[0]) * (fps / 1000.0) + 1e-9).astype(np.int64)
    return np.r_[True, b[1:] != b[:-1]]


def frame_spans_ms(index: VideoIndex, mask: np.ndarray) -> np.ndarray:
    """How much video time each analysed frame stands for: from its pts to the next analysed
    frame's pts; the last analysed frame stands until the end of the last frame (its pts plus the
    median frame duration). Summaries and per-track emotions weight rows by it, so a sampled or
    variable-frame-rate video is weighted by time, not by rows.

    Args:
        index: the video's index.
        mask: (F,) bool from :func:`sample_mask`.

    Returns:
        (F,) float64 milliseconds; 0 for frames not analysed.
    """
    t = pts_ms(index)
    out = np.zeros(len(t), np.float64)
    sel = np.flatnonzero(mask)
    if not len(sel):
        return out
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    end = t[-1] + step
    out[sel] = np.diff(np.r_[t[sel], end])
    return out
