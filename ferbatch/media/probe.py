"""Video probing and the demux-only index pass with PyAV (:mod:`ferbatch.media.decode` decodes).

Every decoded frame gets:
- ``frame_idx``: the rank of its presentation timestamp among all video packets of the file
  (from :func:`index_video`), so the same frame has the same index whether the video is
  decoded whole or in shards, and variable frame rate needs no fps guess;
- ``pts_ms``: ``pts * time_base * 1000`` from the stream, never ``idx / fps``.
Rotation metadata (the display matrix, exposed as ``VideoFrame.rotation`` in degrees
counter-clockwise, as ffmpeg's ``av_display_rotation_get``) is applied with ``np.rot90`` so the
frame is upright, like ffmpeg's autorotate.

OpenCV's ``CAP_PROP_POS_FRAMES`` seeking is not used: it is inexact on VFR (DESIGN_NOTES 4.1).
This module knows nothing about models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ferbatch.errors import DecodeError

__all__ = ["VideoInfo", "VideoIndex", "probe_video", "open_video", "estimate_frames", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".3gp", ".ogv"}
)


@dataclass(frozen=True)
class VideoIndex:
    """The demux-only index of a video stream.

    Attributes:
        pts: (F,) int64 sorted presentation timestamps of the stream's packets, in ``time_base`` units.
        keyframes: (K,) int64 sorted pts of keyframe packets.
        time_base: seconds per pts unit.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    time_base: Fraction

    def frame_index(self, pts: int) -> int:
        """Rank of ``pts`` among the packets (the frame's index); nearest rank if not exact."""
        return int(np.searchsorted(self.pts, pts, side="left"))


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video found.

    Attributes:
        path: the file.
        size_bytes, mtime_ns: the file's size and modification time (for resume checks).
        width, height: upright frame size in pixels (after rotation).
        fps: average frame rate (frames/s) from the container; 0 when unknown.
        duration_s: from the first to past the last packet pts, seconds.
        packets: number of video packets (an upper bound of decodable frames).
        codec: decoder name ("h264", "hevc", ...).
        rotation: degrees counter-clockwise applied to frames to make them upright.
        declared_frames: frame count the container states (0 when it states none); more than
            ``packets`` means the file is truncated.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    width: int
    height: int
    fps: float
    duration_s: float
    packets: int
    codec: str
    rotation: int
    declared_frames: int = 0

    @property
    def truncated(self) -> bool:
        """True when the container lists more frames than could be read from the file."""
        return self.declared_frames > self.packets


def open_video(path: str):
    """Open ``path`` with PyAV after checking it is a non-empty regular file with a video stream.

    Returns:
        (container, os.stat_result); the caller closes the container.

    Raises:
        DecodeError: unreadable, not a regular file, empty, not a container FFmpeg reads, or no
            video stream.
    """
    import av

    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DecodeError(str(path), f"cannot read the file: {e.strerror or e}") from e
    if not p.is_file():
        raise DecodeError(str(path), "not a regular file")
    if st.st_size == 0:
        raise DecodeError(str(path), "the file is empty (0 bytes)")
    try:
        c = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        raise DecodeError(str(path), f"not a video file FFmpeg can read ({e.strerror or type(e).__name__})") from e
    if not c.streams.video:
        kinds = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
        c.close()
        raise DecodeError(str(path), f"has no video stream ({kinds})")
    return c, st


def estimate_frames(path: str | os.PathLike[str]) -> int:
    """Frames of a video from its container header alone (no packet scan): the stream's frame count,
    else duration x average rate; 0 when the file cannot be opened or says nothing."""
    try:
        c, _ = open_video(str(path))
    except DecodeError:
        return 0
    with c:
        s = c.streams.video[0]
        if s.frames:
            return int(s.frames)
        dur = float(s.duration * s.time_base) if s.duration and s.time_base else (c.duration or 0) / 1e6
        return int(dur * float(s.average_rate or 0))


def probe_video(path: str | os.PathLike[str]) -> tuple[VideoInfo, VideoIndex]:
    """Open a video, read its stream metadata and index its packets (no decoding).

    Raises:
        DecodeError: empty, unreadable, not a video, no video stream, no decoder for its codec,
            or no video packets.
    """
    import av

    path = str(path)
    c, st = open_video(path)
    with c:
        fmt = c.format.name if c.format is not None else ""
        if fmt.endswith("_pipe") or fmt in ("image2", "gif"):
            raise DecodeError(path, f"is a still image ({fmt.removesuffix('_pipe')}), not a video")
        s = c.streams.video[0]
        if s.codec_context is None:
            raise DecodeError(path, "no decoder for its video codec (FFmpeg in this build cannot decode it)")
        codec = s.codec_context.name
        tb = s.time_base or Fraction(1, 90000)
        pts: list[int] = []
        keys: list[int] = []
        last_dur = 0
        try:
            for pkt in c.demux(s):
                if pkt.size == 0:
                    continue
                t = pkt.pts if pkt.pts is not None else pkt.dts
                if t is None:
                    t = (pts[-1] + max(last_dur, 1)) if pts else 0
                pts.append(int(t))
                last_dur = int(pkt.duration or 0)
                if pkt.is_keyframe:
                    keys.append(int(t))
        except av.error.FFmpegError as e:
            if not pts:
                raise DecodeError(path, f"cannot read its packets ({e.strerror or type(e).__name__})") from e
        if not pts:
            raise DecodeError(path, "has a video stream but no video packets")
        pts_arr = np.unique(np.asarray(pts, np.int64))
        rotation = _stream_rotation(s)
        w, h = s.codec_context.width, s.codec_context.height
        if rotation % 180:
            w, h = h, w
        fps = float(s.average_rate) if s.average_rate else 0.0
        duration = float((pts_arr[-1] - pts_arr[0] + max(last_dur, 0)) * tb)
        declared = int(s.frames or 0)
    info = VideoInfo(path, st.st_size, st.st_mtime_ns, int(w), int(h), fps, duration, len(pts_arr), codec, rotation, declared)
    return info, VideoIndex(pts_arr, np.unique(np.asarray(keys, np.int64)), Fraction(tb))


def _stream_rotation(stream) -> int:
    """Rotation from the stream's display-matrix side data, degrees CCW, a multiple of 90; 0 when
    the stream exposes none (PyAV 18 puts it on each frame: ``VideoFrame.rotation``, applied in
    :func:`iter_frames`; the job then takes width/height from the decoded, upright frames)."""
    try:
        items = dict(getattr(stream, "side_data", None) or {}).items()
        return next((int(round(float(v) / 90.0)) * 90 % 360 for k, v in items if "DISPLAYMATRIX" in str(k).upper()), 0)
    except (TypeError, ValueError):
        return 0
