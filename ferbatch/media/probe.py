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
import stat
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ferbatch.errors import DecodeError
from ferbatch.location import is_uri, open_input, stat_input

# bytes per read from object storage (one ranged GET each)
OBJECT_READ_BYTES = 1 << 20

__all__ = ["VideoInfo", "VideoIndex", "probe_video", "open_video", "video_stream", "estimate_frames", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".3gp", ".ogv", ".gif"}
)


@dataclass(frozen=True)
class VideoIndex:
    """The demux-only index of a video stream.

    Timestamps are on one monotonic timeline: where the stream's timestamps restart (concatenated
    MPEG-TS, ``cat a.ts b.ts``), every later packet is shifted by an offset so it continues after
    the previous segment (``segment_offsets``); :func:`ferbatch.media.decode.iter_frames` applies
    the same offsets to decoded frames.

    Attributes:
        pts: (F,) int64 sorted, unique presentation timestamps of the stream's packets on that
            timeline, in ``time_base`` units; a frame's index is the rank of its pts here.
        keyframes: (K,) int64 sorted pts of keyframe packets (same timeline).
        time_base: seconds per pts unit.
        key_dts: (K,) int64 decoding timestamps of those keyframe packets as stored in the file
            (what MPEG-TS/PS demuxers seek by); empty when unknown (an index stored by an older
            version).
        segment_offsets: (S,) int64 offset added to the timestamps of each segment, ``[0]`` when
            the timestamps never restart.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    time_base: Fraction
    key_dts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    segment_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))

    def frame_index(self, pts: int) -> int:
        """Rank of ``pts`` among the packets (the frame's index); nearest rank if not exact."""
        return int(np.searchsorted(self.pts, pts, side="left"))

    @property
    def restarts(self) -> int:
        """How many times the stream's timestamps restart (0 for an ordinary file)."""
        return len(self.segment_offsets) - 1


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
        stream_index: index of the chosen video stream among all the container's streams.
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
    stream_index: int = 0

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

    if is_uri(path):
        return _open_object(path)
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DecodeError(str(path), f"cannot read the file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(str(path), "not a regular file")
    if st.st_size == 0:
        raise DecodeError(str(path), "the file is empty (0 bytes)")
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except PermissionError as e:
        raise DecodeError(str(path), f"permission denied: cannot read the file ({e.strerror})") from e
    except OSError as e:
        raise DecodeError(str(path), f"cannot read the file: {e.strerror or e}") from e
    try:
        c = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        raise DecodeError(str(path), _unreadable_reason(head, e)) from e
    return _with_video(c, path), st


def _open_object(uri: str):
    """:func:`open_video` for an object in object storage: PyAV reads a seekable pyarrow file,
    1 MiB per ranged GET (PyAV's default 32 KiB buffer would make a request per 32 KiB)."""
    import av

    try:
        size, mtime_ns = stat_input(uri)
        f = open_input(uri)
        head = f.read(64)
        f.seek(0)
    except OSError as e:
        raise DecodeError(uri, f"cannot read the object: {e}") from e
    if size == 0:
        raise DecodeError(uri, "the file is empty (0 bytes)")
    try:
        c = av.open(f, mode="r", buffer_size=OBJECT_READ_BYTES)
    except av.error.FFmpegError as e:
        raise DecodeError(uri, _unreadable_reason(head, e)) from e
    return _with_video(c, uri), ObjectStat(size, mtime_ns)


@dataclass(frozen=True)
class ObjectStat:
    """The two fields of ``os.stat_result`` ferbatch reads, for an object in object storage."""

    st_size: int
    st_mtime_ns: int


def _with_video(c, path: str):
    if not c.streams.video:
        kinds = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
        c.close()
        raise DecodeError(str(path), f"has no video stream ({kinds})")
    return c


def video_stream(container):
    """The container's real video stream: the first one that is not a cover picture
    (``attached_pic`` disposition, as in audio files with cover art or MKV posters).

    Raises:
        DecodeError: every video stream is a cover picture.
    """
    import av

    for s in container.streams.video:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    raise DecodeError(str(container.name), "has only a cover picture (attached_pic), no video stream")


def _unreadable_reason(head: bytes, e: Exception) -> str:
    """Why FFmpeg cannot open a file, from its first bytes (magic numbers of the ISO BMFF, text)."""
    cause = getattr(e, "strerror", None) or type(e).__name__
    if head[4:8] in (b"ftyp", b"mdat", b"free", b"wide", b"moov"):
        return f"an MP4/MOV file without its index (moov atom): truncated or still being written ({cause})"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"a text file, not a video ({cause})"
    return f"not a video file FFmpeg can read ({cause})"


def estimate_frames(path: str | os.PathLike[str]) -> int:
    """Frames of a video from its container header alone (no packet scan): the stream's frame count,
    else duration x average rate; 0 when the file cannot be opened or says nothing."""
    try:
        c, _ = open_video(str(path))
    except DecodeError:
        return 0
    with c:
        try:
            s = video_stream(c)
        except DecodeError:
            return 0
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
        if fmt.endswith("_pipe") or fmt == "image2":
            raise DecodeError(path, f"is a still image ({fmt.removesuffix('_pipe')}), not a video")
        s = video_stream(c)
        if s.codec_context is None:
            raise DecodeError(path, "no decoder for its video codec (FFmpeg in this build cannot decode it)")
        codec = s.codec_context.name
        tb = s.time_base or Fraction(1, 90000)
        pts: list[int] = []
        keys: list[int] = []
        key_dts: list[int] = []
        offsets = [0]
        last_dur, prev_dts, discarded = 0, None, 0
        try:
            for pkt in c.demux(s):
                if pkt.size == 0:
                    continue
                if pkt.is_discard:  # pre-roll an edit list cuts: decoded, never shown, not a frame
                    discarded += 1
                    continue
                if pkt.dts is not None:
                    if prev_dts is not None and pkt.dts < prev_dts:  # timestamps restart: continue the timeline
                        offsets.append(offsets[-1] + prev_dts + max(last_dur, 1) - pkt.dts)
                    prev_dts = int(pkt.dts)
                t = pkt.pts if pkt.pts is not None else pkt.dts
                t = (pts[-1] + max(last_dur, 1)) if t is None and pts else (int(t) + offsets[-1] if t is not None else 0)
                pts.append(int(t))
                last_dur = int(pkt.duration or 0)
                if pkt.is_keyframe:
                    keys.append(int(t))
                    key_dts.append(int(pkt.dts) if pkt.dts is not None else int(t) - offsets[-1])
        except av.error.FFmpegError as e:
            if not pts:
                raise DecodeError(path, f"cannot read its packets ({e.strerror or type(e).__name__})") from e
        if not pts:
            raise DecodeError(path, "has a video stream but no video packets")
        pts_arr = np.unique(np.asarray(pts, np.int64))
        order = np.argsort(np.asarray(keys, np.int64), kind="stable")
        keys_arr, key_dts_arr = np.asarray(keys, np.int64)[order], np.asarray(key_dts, np.int64)[order]
        first = np.unique(keys_arr, return_index=True)[1]
        keys_arr, key_dts_arr = keys_arr[first], key_dts_arr[first]
        rotation = _stream_rotation(s)
        w, h = s.codec_context.width, s.codec_context.height
        if rotation % 180:
            w, h = h, w
        fps = float(s.average_rate) if s.average_rate else 0.0
        duration = float((pts_arr[-1] - pts_arr[0] + max(last_dur, 0)) * tb)
        declared = max(0, int(s.frames or 0) - discarded)
        stream_index = int(s.index)
    info = VideoInfo(path, st.st_size, st.st_mtime_ns, int(w), int(h), fps, duration, len(pts_arr), codec, rotation, declared, stream_index)
    index = VideoIndex(pts_arr, keys_arr, Fraction(tb), key_dts_arr, np.asarray(offsets, np.int64))
    return info, index


def _stream_rotation(stream) -> int:
    """Rotation from the stream's display-matrix side data, degrees CCW, a multiple of 90; 0 when
    the stream exposes none (PyAV 18 puts it on each frame: ``VideoFrame.rotation``, applied in
    :func:`iter_frames`; the job then takes width/height from the decoded, upright frames)."""
    try:
        items = dict(getattr(stream, "side_data", None) or {}).items()
        return next((int(round(float(v) / 90.0)) * 90 % 360 for k, v in items if "DISPLAYMATRIX" in str(k).upper()), 0)
    except (TypeError, ValueError):
        return 0
