"""Which decoder a video's frames come from: PyAV (FFmpeg on the CPU) or NVDEC (PyNvVideoCodec on
an NVIDIA GPU, :mod:`ferbatch.media.nvdec`). Both yield the same frames (index, pts, pixels), so
the decoder is a speed knob, never a result-changing setting.

The choice is made in one place, :func:`choose_decoder`, per video and in the worker's own
environment (a worker decides what it can run, as for the inference backend).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ferbatch.errors import ConfigError, DecodeError
from ferbatch.media import nvdec
from ferbatch.media.decode import Frame

__all__ = [
    "DECODERS",
    "NVDEC_CODECS",
    "NVDEC_PIX_FMTS",
    "StreamFormat",
    "check_decoder",
    "choose_decoder",
    "frame_iterator",
    "nvdec_available",
    "stream_format",
]

# codecs (FFmpeg names, as the probe reports them) NVDEC decodes on every GPU generation ferbatch targets
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
# 8-bit 4:2:0: NVDEC's NV12 output, converted to RGB on the host by the same swscale path PyAV uses
NVDEC_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "nv12"})

# as ferbatch.config.DECODERS / GPU_BACKENDS (media/ imports nothing above it; a test keeps them equal)
DECODERS = ("auto", "pyav", "nvdec")
GPU_BACKENDS = ("onnxruntime-cuda", "tensorrt")


class HasFormat(Protocol):
    """What the choice reads of a video: its codec and pixel format (FFmpeg names)."""

    codec: str
    pix_fmt: str


@dataclass(frozen=True)
class StreamFormat:
    """A video stream's codec and pixel format, from its header alone (:func:`stream_format`).

    Attributes:
        codec: FFmpeg decoder name ("h264", "hevc", ...).
        pix_fmt: FFmpeg pixel format name ("yuv420p", "yuv420p10le", ...); "" when unknown.
    """

    codec: str
    pix_fmt: str


def stream_format(path: str) -> StreamFormat:
    """The codec and pixel format of ``path``'s video stream (opens the header, reads no packets).

    Raises:
        DecodeError: the file cannot be opened or has no video stream.
    """
    from ferbatch.media.probe import open_video, video_stream

    c, _ = open_video(path)
    with c:
        s = video_stream(c)
        cc = s.codec_context
        if cc is None:
            raise DecodeError(path, "no decoder for its video codec (FFmpeg in this build cannot decode it)")
        fmt = cc.format
        return StreamFormat(cc.name, fmt.name if fmt is not None else "")


def nvdec_available() -> tuple[bool, str]:
    """(True, version) when PyNvVideoCodec imports in this process; else (False, why). Imports it
    (lazily, once: Python caches the module)."""
    try:
        mod = importlib.import_module(nvdec.NVDEC_MODULE)
    except ImportError as e:
        return False, f"PyNvVideoCodec is not installed ({e.msg})"
    except Exception as e:  # the wheel is there but its CUDA/driver libraries are not
        return False, f"PyNvVideoCodec cannot load: {type(e).__name__}: {e}"
    return True, f"PyNvVideoCodec {getattr(mod, '__version__', '?')}"


def _format_problem(info: HasFormat) -> str:
    """Why NVDEC cannot give PyAV's frames for this stream ("" when it can)."""
    if info.codec not in NVDEC_CODECS:
        return f"codec {info.codec} is not one NVDEC decodes here ({', '.join(sorted(NVDEC_CODECS))})"
    if info.pix_fmt not in NVDEC_PIX_FMTS:
        pf = info.pix_fmt or "unknown"
        what = []
        if any(b in pf for b in ("p10", "p12", "p16")):
            what.append(f"{pf.split('p')[-1][:2]}-bit")
        if pf.startswith(("yuv444", "yuvj444", "gbr")):
            what.append("4:4:4 chroma")
        elif pf.startswith(("yuv422", "yuvj422")):
            what.append("4:2:2 chroma")
        detail = f" ({', '.join(what)})" if what else ""
        return f"pixel format {pf}{detail} is not 8-bit 4:2:0, the only format NVDEC decodes here"
    return ""


def check_decoder(requested: str) -> None:
    """Refuse a ``requested`` decoder this machine cannot run at all (before any work starts).

    Raises:
        ConfigError: an unknown name, or ``nvdec`` where PyNvVideoCodec is not installed or cannot load.
    """
    if requested not in DECODERS:
        raise ConfigError(f"--decoder | received {requested!r}; expected one of {', '.join(DECODERS)}")
    if requested == "nvdec":
        ok, why = nvdec_available()
        if not ok:
            raise ConfigError(f"--decoder nvdec | not usable on this machine: {why} (pip install PyNvVideoCodec on a GPU node)")


def choose_decoder(requested: str, backend: str, info: HasFormat | Callable[[], HasFormat]) -> tuple[str, str]:
    """Pick the decoder for one video.

    - ``pyav``: PyAV.
    - ``auto``: NVDEC when ``backend`` is a GPU backend, PyNvVideoCodec imports and the stream is
      one NVDEC decodes (h264, hevc, av1, vp9; 8-bit 4:2:0); else PyAV, with the reason.
    - ``nvdec``: NVDEC where the stream allows it; a stream it cannot decode falls back to PyAV,
      with the reason (the caller records it in the video's notes).

    Args:
        requested: "auto", "pyav" or "nvdec" (``JobConfig.decoder``).
        backend: the resolved inference backend ("onnxruntime", "onnxruntime-cuda", "tensorrt", ...).
        info: the video's codec and pixel format (:func:`stream_format`, or anything with
            ``codec`` and ``pix_fmt``), or a function returning it, called only when the choice
            depends on the stream.

    Returns:
        (name, reason): name is "pyav" or "nvdec"; reason says why (for logs and notes).

    Raises:
        ConfigError: an unknown ``requested``, or ``nvdec`` requested where PyNvVideoCodec is not
            installed (or cannot load).
    """
    check_decoder(requested)
    if requested == "pyav":
        return "pyav", "requested"
    if requested == "auto" and backend not in GPU_BACKENDS:
        return "pyav", f"the {backend} backend runs on the CPU"
    ok, why = nvdec_available()
    if not ok:
        return "pyav", why
    if callable(info):
        info = info()
    problem = _format_problem(info)
    if problem:
        return "pyav", f"NVDEC fallback to PyAV: {problem}" if requested == "nvdec" else problem
    return "nvdec", f"{why}, {info.codec} {info.pix_fmt}"


def frame_iterator(name: str) -> Callable[..., Iterator[Frame]]:
    """The frame iterator of decoder ``name`` ("pyav" or "nvdec"): a function with the signature and
    guarantees of :func:`ferbatch.media.decode.iter_frames`."""
    if name == "nvdec":
        return nvdec.iter_frames_nvdec
    from ferbatch.media.decode import iter_frames

    return iter_frames
