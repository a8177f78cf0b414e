"""Annotated video: the source re-encoded (H.264, PyAV) with each face's box, emotion and
probability drawn from the Parquet rows. No model runs; frame count, size and timestamps (pts,
time base) are the source's, so the annotated frames line up with the rows. The first audio track
is copied as it is (remuxed, not re-encoded) when MP4 can hold its codec."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ferbatch.atomic import atomic_target
from ferbatch.dataset.api import Dataset
from ferbatch.errors import ConfigError
from ferbatch.labels import EMOTION_COLORS as COLORS
from ferbatch.media.decode import iter_frames
from ferbatch.media.probe import probe_video
from ferbatch.picture import as_rgb

__all__ = ["annotate_video", "draw_faces"]

# audio codecs an MP4 file can carry as they are (others are left out, with a warning)
MP4_AUDIO = frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "opus", "alac", "flac"})


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16)


def draw_faces(
    img: np.ndarray, boxes: np.ndarray, labels: list[str], probs: np.ndarray, track_ids: list[int | None] | None = None
) -> np.ndarray:
    """Draw boxes and "#track emotion 0.87" labels on an RGB frame (in place; returned for chaining).

    Args:
        img: (H, W, 3) uint8 RGB.
        boxes: (F, 4) float32 x1 y1 x2 y2 in pixels.
        labels: F emotion names; probs: (F,) float32; track_ids: F ids or None (no track).
    """
    h, w = img.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    tids = track_ids if track_ids is not None else [None] * len(labels)
    for (x1, y1, x2, y2), lab, p, tid in zip(boxes.round().astype(int), labels, probs, tids, strict=True):
        color = _rgb(COLORS.get(lab, "#ffffff"))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        text = (f"#{tid} " if tid is not None else "") + f"{lab} {p:.2f}"
        scale = max(0.4, min(h, w) / 720)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 4 if y1 - th - 6 >= 0 else min(h - 1, y2 + th + 4)
        cv2.rectangle(img, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def annotate_video(video: str | os.PathLike[str], results: str | os.PathLike[str], dst: str | os.PathLike[str], *, crf: int = 18) -> int:
    """Write ``dst`` (mp4, H.264) with the faces of ``video`` from the dataset ``results`` drawn in.

    Returns:
        Number of frames written. The first audio track of ``video`` is remuxed alongside, its packets
        interleaved with the video frames by time.

    Raises:
        OutputError: the video is not in the dataset; DecodeError: it cannot be decoded.
    """
    import av

    video = Path(video)
    if Path(dst).resolve() == video.resolve():
        raise ConfigError(f"-o {dst} | is the source video itself: annotating would replace it; choose another output file")
    with Dataset(results) as ds:
        vid = ds.video_id(str(video))
        faces = ds.con.execute(
            "SELECT frame_idx, x1, y1, x2, y2, emotion, emotion_prob, track_id FROM faces WHERE video_id = ? ORDER BY frame_idx, face_idx",
            [vid],
        ).fetchnumpy()
    by_frame: dict[int, np.ndarray] = {}
    if len(faces["frame_idx"]):
        fi = np.asarray(faces["frame_idx"])
        starts = np.flatnonzero(np.r_[True, fi[1:] != fi[:-1]])
        for first, stop in zip(starts, np.r_[starts[1:], len(fi)], strict=True):
            by_frame[int(fi[first])] = np.arange(first, stop)
    boxes = np.stack([np.asarray(faces[c], np.float32) for c in ("x1", "y1", "x2", "y2")], 1) if len(faces["frame_idx"]) else None
    info, index = probe_video(video)
    with av.open(str(video)) as src:
        s_in = src.streams.video[0]
        rate, tb = s_in.average_rate, s_in.time_base or index.time_base
    dst = Path(dst)
    n = 0
    with (
        atomic_target(dst, suffix=dst.suffix or ".mp4") as tmp,
        av.open(str(tmp), "w") as out,
        av.open(str(video)) as audio_src,
    ):
        s = out.add_stream("libx264", rate=rate)
        audio = _audio_packets(audio_src, out)
        s.width, s.height, s.pix_fmt = info.width + info.width % 2, info.height + info.height % 2, "yuv420p"
        s.time_base = tb
        s.codec_context.time_base = tb
        s.options = {"crf": str(crf), "preset": "veryfast"}
        for f in iter_frames(video, index):
            img = as_rgb(f.image)
            rows = by_frame.get(f.idx)
            if rows is not None and boxes is not None:  # boxes are in this frame's own pixels: draw first
                tids = [None if np.ma.is_masked(t) else int(t) for t in faces["track_id"][rows]]
                img = draw_faces(
                    img.copy(), boxes[rows], [str(x) for x in faces["emotion"][rows]], np.asarray(faces["emotion_prob"])[rows], tids
                )
            if img.shape[1] != s.width or img.shape[0] != s.height:
                if 0 <= s.width - img.shape[1] <= 1 and 0 <= s.height - img.shape[0] <= 1:  # odd sizes: pad one pixel for yuv420p
                    img = np.pad(img, ((0, s.height - img.shape[0]), (0, s.width - img.shape[1]), (0, 0)))
                else:  # the frame size changes mid-stream: scale to the output's size
                    img = cv2.resize(img, (s.width, s.height), interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = int(index.pts[f.idx])
            vf.time_base = tb
            if audio is not None:  # audio up to this frame's time first, so the file stays interleaved
                audio.mux_until(float(vf.pts * tb))
            out.mux(s.encode(vf))
            n += 1
        out.mux(s.encode())
        if audio is not None:
            audio.mux_until(float("inf"))
    return n


class _AudioRemux:
    """Copies one input audio stream's packets into ``out`` in time order, as far as asked."""

    def __init__(self, src, stream, out):
        self.out = out
        self.ostream = out.add_stream_from_template(stream)
        self.packets = (p for p in src.demux(stream) if p.dts is not None)
        self.pending = None

    def mux_until(self, t: float) -> None:
        while True:
            p = self.pending or next(self.packets, None)
            if p is None:
                return
            if p.pts is not None and float(p.pts * p.time_base) > t:
                self.pending = p
                return
            self.pending = None
            p.stream = self.ostream
            self.out.mux(p)


def _audio_packets(src, out) -> _AudioRemux | None:
    """A remuxer for the first audio stream of ``src`` (None: no audio, or a codec MP4 cannot hold)."""
    import logging

    if not src.streams.audio:
        return None
    stream = src.streams.audio[0]
    name = stream.codec_context.name if stream.codec_context is not None else "unknown"
    if name not in MP4_AUDIO:
        logging.getLogger(__name__).warning("annotate: audio codec %s cannot go into MP4 as it is; the audio is left out", name)
        return None
    return _AudioRemux(src, stream, out)
