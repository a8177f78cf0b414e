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


def plan_shards(video_id: str, path: str, index: VideoIndex, target_frames: int) -> list[Shard]:
    """Split a video into keyframe-aligned half-open frame ranges of about ``target_frames``.

    A shard ends at the first keyframe at or after ``start + target_frames``, so no shard decodes
    a GOP it then throws away, and every frame falls in exactly one shard. A stream whose
    timestamps restart (concatenated MPEG-TS) is one shard: seeking by timestamp is ambiguous there.

    Args:
        video_id, path: the video.
        index: its demux-only index.
        target_frames: frames per shard; <= 0 gives one shard for the whole video.

    Returns:
        Shards in frame order, ``shard_idx`` 0..S-1, covering ``[0, len(index.pts))``.
    """
    n = len(index.pts)
    if target_frames <= 0 or n <= target_frames or index.restarts:
        return [Shard(video_id, path, 0, 0, None, index)]
    key_idx = np.searchsorted(index.pts, index.keyframes)
    bounds = [0]
    while True:
        nxt = key_idx[key_idx >= bounds[-1] + target_frames]
        if nxt.size == 0 or nxt[0] >= n:
            break
        bounds.append(int(nxt[0]))
    return [Shard(video_id, path, i, s, (bounds[i + 1] if i + 1 < len(bounds) else None), index) for i, s in enumerate(bounds)]
