"""Generators of bad and unusual inputs, made from the real sample clips with PyAV (for test_bad_inputs)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import av
import cv2
import numpy as np
from conftest import DATA, WOLFGANG, read_frames


def encode(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 24,
    options: dict | None = None,
    pts: list[int] | None = None,
    colorspace: int | None = None,
) -> Path:
    """Write RGB frames as a video; ``pts`` (in 1/rate/100 units) gives variable timing; ``colorspace``
    (FFmpeg's AVColorSpace, 1 = BT.709) tags the stream, limited range."""
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if options:
            s.options = options
        if colorspace is not None:
            s.codec_context.colorspace, s.codec_context.color_range = colorspace, 1
        if pts is not None:
            from fractions import Fraction

            s.codec_context.time_base = Fraction(1, rate * 100)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                f.pts = pts[i]
                f.time_base = s.codec_context.time_base
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def cut_mp4(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` (an MP4 whose frame ``frames`` is a keyframe), its
    packets copied: the same pictures as the source's, no re-encoding."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        pts = sorted(p.pts for p in i.demux(si) if p.pts is not None)
        cut = pts[frames]
        i.seek(0, stream=si)
        for pkt in i.demux(si):
            if pkt.pts is not None and pkt.pts < cut:
                pkt.stream = so
                o.mux(pkt)
    return dst


def rotate_mp4(src: Path, dst: Path) -> Path:
    """Copy an mp4 and set a 90-degree display matrix in its video track header (tkhd)."""
    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8  # to layer
    m = off + 8  # skip layer, alternate group, volume, reserved
    # [a b u; c d v; x y w] = [0 1 0; -1 0 0; 0 0 1] in 16.16 / 2.30 fixed point: 90 degrees
    data[m : m + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def unknown_codec_avi(dst: Path, frames: list[np.ndarray]) -> Path:
    """An AVI whose video codec tag no decoder knows (mpeg4 data relabelled 'ZZZZ')."""
    tmp = dst.with_suffix(".src.avi")
    encode(tmp, frames, codec="mpeg4", options={"g": "12"})
    data = tmp.read_bytes()
    tag = data[data.find(b"strf") + 8 + 16 : data.find(b"strf") + 8 + 20]  # BITMAPINFOHEADER biCompression
    dst.write_bytes(data.replace(tag, b"ZZZZ"))
    tmp.unlink()
    return dst


def audio_only(dst: Path) -> Path:
    with av.open(str(dst), "w") as out:
        s = out.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        samples = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)[None]
        f = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        f.sample_rate = 16000
        for p in s.encode(f):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    return dst


def audio_with_cover(dst: Path) -> Path:
    """An MP4 audio file whose only video stream is a cover picture (attached_pic disposition)."""
    with av.open(str(dst), "w") as out:
        a = out.add_stream("aac", rate=16000)
        v = out.add_stream("mjpeg", rate=1)
        v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
        v.disposition = av.stream.Disposition.attached_pic
        f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
        out.mux([*v.encode(f), *v.encode()])
        samples = np.zeros((1, 1024), np.float32)
        for i in range(20):
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, i * 1024
            out.mux(a.encode(af))
        out.mux(a.encode())
    return dst


def animated_gif(dst: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(dst), "w") as out:
        s = out.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 160, 90, "rgb8"
        for img in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(cv2.resize(img, (160, 90)), format="rgb24")))
        out.mux(s.encode())
    return dst


def build(root: Path) -> dict[str, Path]:
    """Make every case under ``root``; returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    frames = read_frames(WOLFGANG)[:24]
    cases: dict[str, Path] = {}
    (root / "zero.mp4").write_bytes(b"")
    cases["zero-byte"] = root / "zero.mp4"
    data = WOLFGANG.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    cases["truncated"] = root / "truncated.mp4"
    (root / "notes.mp4").write_text("a text file, not a video\n" * 40)
    cases["text"] = root / "notes.mp4"
    shutil.copy(DATA / "face_detection_images/pyfeat/single_face.jpg", root / "photo.mp4")
    cases["jpeg renamed"] = root / "photo.mp4"
    cases["audio only"] = audio_only(root / "audio.mp4")
    cases["unknown codec"] = unknown_codec_avi(root / "unknown.avi", frames[:6])
    # stored sideways (rotated 90 degrees counter-clockwise) with a display matrix that turns it back upright
    src = encode(root / ".rot_src.mp4", [np.ascontiguousarray(np.rot90(f, 1)) for f in frames])
    cases["rotated 90"] = rotate_mp4(src, root / "rotated.mp4")
    src.unlink()
    vfr_pts = np.cumsum([0] + [100 if i % 3 else 250 for i in range(len(frames) - 1)]).tolist()
    cases["variable frame rate"] = encode(root / "vfr.mp4", frames, pts=vfr_pts)
    cases["single frame"] = encode(root / "one.mp4", frames[:1])
    big = [cv2.resize(f, (3840, 2160), interpolation=cv2.INTER_LINEAR) for f in frames[:3]]
    cases["4K"] = encode(root / "uhd.mp4", big, options={"preset": "ultrafast"})
    cases["grayscale"] = encode(root / "gray.mkv", frames[:6], codec="ffv1", pix_fmt="gray")
    cases["10-bit yuv444"] = encode(root / "yuv444p10.mkv", frames[:6], codec="ffv1", pix_fmt="yuv444p10le")
    tiny = [cv2.resize(f, (17, 9), interpolation=cv2.INTER_AREA) for f in frames[:4]]
    cases["17x9"] = encode(root / "tiny.mkv", tiny, codec="ffv1", pix_fmt="yuv444p")
    odd = root / "we ird=..名前"
    odd.mkdir()
    shutil.copy(DATA / "videos_faces/pyfeat/single_face.mp4", odd / "a b=c..ü.mp4")
    cases["odd path"] = odd / "a b=c..ü.mp4"
    cases["cover art only"] = audio_with_cover(root / "song.mp4")
    moov_last = encode(root / ".moov_last.mp4", frames)  # PyAV writes the moov atom at the end
    (root / "recording.mp4").write_bytes(moov_last.read_bytes()[: moov_last.stat().st_size // 2])
    moov_last.unlink()
    cases["moov missing"] = root / "recording.mp4"
    (root / "app.ts").write_text("export function f(x: number): number {\n  return x * 2;\n}\n" * 20)
    cases["typescript"] = root / "app.ts"
    cases["animated gif"] = animated_gif(root / "anim.gif", frames[:8])
    os.symlink(root, root / "loop")  # a symlink loop in the input directory
    return cases
