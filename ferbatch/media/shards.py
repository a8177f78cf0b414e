"""Shards: keyframe-aligned, half-open frame-index ranges of a video, the unit of work of a job.

A shard is planned from the demux-only index (:class:`ferbatch.media.probe.VideoIndex`), so a
worker decodes exactly its frames without probing the file again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferbatch.media.probe import VideoIndex

__all__ = ["Shard", "plan_shards"]


@dataclass(frozen=True)
class Shard:
    """A half-open frame-index range ``[start, end)`` of one video.

    Attributes:
        video_id: path-safe id (the partition key).
        path: the video file.
        shard_idx: position of the shard in the video's plan (names its part files).
        start, end: frame-index range; ``end`` None = to the end.
        index: the video's packet index (so the worker does not re-probe).
    """

    video_id: str
    path: str
    shard_idx: int
    start: int
    end: int | None
    index: VideoIndex

    @property
    def frames(self) -> int:
        """Number of frames the plan assigns to this shard (packets in its range)."""
        return (self.end if self.end is not None else len(self.index.pts)) - self.start


def plan_shards(video_id: str, path: str, index: VideoIndex, target_frames: int, workers: int = 1) -> list[Shard]:
    """Split a video into balanced, keyframe-aligned half-open frame ranges of at most about ``target_frames``.

    The video of ``n`` frames gets ``S = workers * ceil(n / (workers * target_frames))`` equal parts
    (a multiple of the workers, so none of them waits on the others' last shard), and each cut moves
    to the keyframe nearest to it, so no shard decodes a GOP it then throws away and no short tail
    shard is left alone; cuts that land on the same keyframe merge. Every frame falls in exactly one
    shard. A stream whose timestamps restart (concatenated MPEG-TS) is one shard: seeking by
    timestamp is ambiguous there.

    Args:
        video_id, path: the video.
        index: its demux-only index.
        target_frames: most frames per shard (before keyframe alignment); <= 0 gives one shard.
        workers: workers that will share the video (>= 1).

    Returns:
        Shards in frame order, ``shard_idx`` 0..S-1, covering ``[0, len(index.pts))``.

    Example: 4,720 frames, keyframe every 48, target 1,500, 2 workers -> 4 shards of 1,152-1,200
    frames (the previous first-keyframe-after rule gave 1,536 / 1,536 / 1,536 / 112).
    """
    n = len(index.pts)
    workers = max(1, int(workers))
    parts = workers * -(-n // (workers * target_frames)) if target_frames > 0 else 1
    if parts <= 1 or n < 2 or index.restarts:
        return [Shard(video_id, path, 0, 0, None, index)]
    key_idx = np.unique(np.searchsorted(index.pts, index.keyframes))
    key_idx = key_idx[(key_idx > 0) & (key_idx < n)]
    bounds = [0]
    for i in range(1, parts):
        if key_idx.size == 0:
            break
        k = int(key_idx[np.argmin(np.abs(key_idx - i * n / parts))])
        if k > bounds[-1]:
            bounds.append(k)
    return [Shard(video_id, path, i, s, (bounds[i + 1] if i + 1 < len(bounds) else None), index) for i, s in enumerate(bounds)]
