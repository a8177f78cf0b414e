"""NVDEC decoding with PyNvVideoCodec: the frames of :func:`ferbatch.media.decode.iter_frames`
(same frame indices, pts, shard exactness and pixels), decoded on an NVIDIA GPU.

How the frames stay PyAV's frames:

- **demuxing is PyAV's**: the same container, the same seek to the keyframe at or before the
  range (by its dts, :func:`ferbatch.media.decode.seek_target`), the same seek-check-reseek loop
  (:func:`ferbatch.media.decode.frames_in_range`) and the same timeline (segment offsets,
  duplicate and unindexed frames: :class:`ferbatch.media.decode.Timeline`). PyNvVideoCodec's own
  demuxer and ``SimpleDecoder`` index frames their own way; they are not used. H.264/HEVC packets
  from MP4/MKV (length-prefixed) go through FFmpeg's ``*_mp4toannexb`` bitstream filter first,
  the form the NVDEC parser reads.
- **decoding is NVDEC's** (``PyNvVideoCodec.CreateDecoder``): each packet is handed over with its
  pts, and NVDEC returns pictures in presentation order with that pts (B-frames reordered by the
  parser), so a frame's index is the rank of its pts, as with PyAV.
- **colour conversion is FFmpeg's**: NVDEC's 8-bit 4:2:0 output (NV12) is split into Y, U, V
  planes and converted to RGB by swscale exactly as PyAV converts its own decoded frames (same
  source format, colour space and range: :func:`nv12_to_rgb`), then rotated upright. H.264/HEVC
  decoding is bit-exact, so the RGB frames equal PyAV's. Converting on the GPU instead (NVDEC's
  RGB output) differs from swscale by a few levels and is not used for rows.

With ``on_device=True`` frames stay in GPU memory: ``Frame.image`` is PyNvVideoCodec's decoded
frame (NV12, ``(H * 3 / 2, W)`` uint8, ``__dlpack__`` / ``__cuda_array_interface__``; not rotated;
valid until the next frame is decoded), for an input bound to the detector on the device
(:meth:`ferbatch.models.runners.onnxruntime.OrtRunner.infer_bound`). With ``pictures="nv12-device"``
(``--preprocess`` graph or auto on onnxruntime-cuda with CuPy: :func:`ferbatch.models.frame_graphs.frame_pictures`)
they reach the pipeline as :class:`ferbatch.picture.Nv12Picture` over a CuPy copy, the input of the
in-graph pre-processing; otherwise the pipeline takes host frames.

Only :func:`nv12_to_rgb` runs without a GPU; the rest is verified on a GPU node
(``scripts/gpu_check.py --steps nvdec_exact``). Choose the decoder with
:func:`ferbatch.media.decoders.choose_decoder`.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
from collections.abc import Iterator

import numpy as np

from ferbatch.errors import DecodeError
from ferbatch.media.decode import NV12_PICTURES, DecodeStats, Frame, Timeline, _decoded_frames, _upright, frames_in_range, seek_target
from ferbatch.media.probe import VideoIndex, open_video, video_stream
from ferbatch.picture import BT601, Image, Nv12Picture, YuvPicture, picture_matrix

__all__ = ["ANNEXB_FILTERS", "annexb_packets", "iter_frames_nvdec", "nv12_image", "nv12_to_rgb"]

log = logging.getLogger(__name__)

# FFmpeg codec name -> PyNvVideoCodec.cudaVideoCodec member
_NVC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}
# codecs whose MP4/MKV packets (length-prefixed NAL units) need Annex-B start codes for NVDEC's parser
ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


# the module name imported as PyNvVideoCodec (tests of the selection point it at a stand-in)
NVDEC_MODULE = "PyNvVideoCodec"


def _nvc():
    """The PyNvVideoCodec module (imported here, never at module import)."""
    return importlib.import_module(NVDEC_MODULE)


def nv12_to_rgb(nv12: np.ndarray, width: int, height: int, *, colorspace: int | None = None, color_range: int | None = None) -> np.ndarray:
    """Convert an NV12 picture to RGB exactly as PyAV converts a decoded yuv420p frame
    (``VideoFrame.to_ndarray(format="rgb24")``: swscale, same colour space and range).

    Args:
        nv12: ``(height * 3 // 2, width)`` uint8: the Y plane, then the interleaved U/V plane
            (``(height // 2, width)``, U at even columns). Rows may be wider than ``width``
            (a pitch): the extra columns are ignored.
        width, height: the picture size (even).
        colorspace, color_range: the stream's ``AVColorSpace`` / ``AVColorRange`` values
            (``codec_context.colorspace`` / ``color_range`` in PyAV); None = unspecified.

    Returns:
        (height, width, 3) uint8 RGB.

    Raises:
        ValueError: an odd size, or ``nv12`` of the wrong shape or dtype.
    """
    import av

    fr = av.VideoFrame.from_ndarray(_nv12_planes(nv12, width, height).i420(), format="yuv420p")
    if colorspace is not None:
        fr.colorspace = colorspace
    if color_range is not None:
        fr.color_range = color_range
    return fr.to_ndarray(format="rgb24")


def nv12_image(nv12: np.ndarray, width: int, height: int, *, colorspace: int | None = None, color_range: int | None = None) -> Image:
    """An NV12 picture as :func:`ferbatch.media.decode.to_image` makes PyAV's frame with
    ``pictures=True``: a :class:`ferbatch.picture.YuvPicture` of its planes (U and V
    de-interleaved) for BT.601 or BT.709 (limited or full range) or untagged streams
    (:func:`ferbatch.picture.picture_matrix`), else :func:`nv12_to_rgb`; so NVDEC and PyAV give the
    analysis step the same images.

    Args, Raises: as :func:`nv12_to_rgb`.
    """
    matrix = picture_matrix(colorspace, color_range)
    if not matrix:
        return nv12_to_rgb(nv12, width, height, colorspace=colorspace, color_range=color_range)
    return _nv12_planes(nv12, width, height, matrix)


def _nv12_planes(nv12: np.ndarray, width: int, height: int, matrix: str = BT601) -> YuvPicture:
    """The planes of an NV12 picture (U and V de-interleaved; the Y plane a view), checked as
    :func:`nv12_to_rgb` documents."""
    if width % 2 or height % 2:
        raise ValueError(f"nv12: {width}x{height} is odd; NV12 needs an even width and height")
    if nv12.dtype != np.uint8 or nv12.ndim != 2 or nv12.shape[0] < height * 3 // 2 or nv12.shape[1] < width:
        raise ValueError(f"nv12: expected ({height * 3 // 2}, >={width}) uint8, got {nv12.shape} {nv12.dtype}")
    uv = nv12[height : height * 3 // 2, :width]
    return YuvPicture(nv12[:height, :width], np.ascontiguousarray(uv[:, 0::2]), np.ascontiguousarray(uv[:, 1::2]), matrix)


def iter_frames_nvdec(
    path: str | os.PathLike[str],
    index: VideoIndex,
    start: int = 0,
    end: int | None = None,
    *,
    threads: int = 0,
    stats: DecodeStats | None = None,
    select: np.ndarray | None = None,
    gpu_id: int = 0,
    on_device: bool = False,
    pictures: bool | str = False,
) -> Iterator[Frame]:
    """Decode frames ``start <= idx < end`` of a video with NVDEC: the frames, indices and pts of
    :func:`ferbatch.media.decode.iter_frames` (see the module docstring for how).

    Args:
        path, index, start, end, stats, select: as :func:`ferbatch.media.decode.iter_frames`.
        threads: unused (NVDEC is one hardware engine); accepted for the same signature.
        gpu_id: the CUDA device.
        on_device: leave frames in GPU memory (``Frame.image`` = PyNvVideoCodec's NV12 frame, not
            rotated, valid until the next one); default host RGB ``(H, W, 3)`` uint8, upright.
        pictures: host frames as :func:`nv12_image` makes them (PyAV's images with the same flag);
            "nv12": host :class:`ferbatch.picture.Nv12Picture` frames; "nv12-device": frames left on
            the device as :class:`ferbatch.picture.Nv12Picture` over a CuPy copy of NVDEC's surface
            (:func:`_device_image`; :func:`ferbatch.models.frame_graphs.frame_pictures` picks it), and a
            file NVDEC cannot decode falls back to PyAV's host NV12 pictures. Rotated streams and
            streams :func:`ferbatch.picture.picture_matrix` has no matrix for give host RGB frames either way.

    Yields:
        :class:`ferbatch.media.decode.Frame` in presentation order, strictly increasing ``idx``.

    Raises:
        DecodeError: the file cannot be opened, or not one frame of the range could be decoded.
        ImportError: PyNvVideoCodec is not installed (:func:`ferbatch.media.decoders.choose_decoder`
            never picks NVDEC then).

    When NVDEC cannot start a session for the file (a profile or size this GPU does not decode),
    the range is decoded with PyAV instead, ``stats.fallback`` says why and a warning is logged.
    """
    path = str(path)
    st = stats if stats is not None else DecodeStats()
    nvc = _nvc()
    on_device = on_device or pictures == "nv12-device"

    def decoded(seek_k: int) -> Iterator[Frame]:
        try:
            yield from _nvdec_frames(nvc, path, index, seek_k, gpu_id, st, select, on_device, pictures)
        except _SessionError as e:
            if on_device and pictures != "nv12-device":
                raise DecodeError(path, f"NVDEC cannot decode it: {e}") from e
            log.warning("%s | NVDEC cannot decode it (%s); decoding with PyAV", path, e)
            st.fallback = f"NVDEC fallback to PyAV: NVDEC cannot decode it ({e})"
            yield from _decoded_frames(path, index, seek_k, threads, st, select, pictures)

    yield from frames_in_range(path, index, start, end, st, decoded)


class _SessionError(Exception):
    """NVDEC could not start decoding the file (before any frame came out)."""


def annexb_packets(container, stream, index: VideoIndex, seek_k: int, st: DecodeStats) -> Iterator[tuple[bytes, int | None]]:
    """The packets NVDEC is fed: the video stream demuxed by PyAV from keyframe ``seek_k`` on (from
    the start when < 0; the seek of :func:`ferbatch.media.decode.iter_frames`), H.264/HEVC turned
    into Annex-B by FFmpeg's ``*_mp4toannexb`` filter (a no-op on streams already in Annex-B).

    Args:
        container, stream: an open PyAV container and its video stream (:func:`open_video`).
        index: the video's index; seek_k: the keyframe to start at.
        st: ``stopped`` is set when demuxing ends early.

    Yields:
        (packet bytes, raw pts in the stream's time base, or the dts when the packet has no pts,
        None when it has neither), in decoding order.
    """
    import av
    from av.bitstream import BitStreamFilterContext

    name = stream.codec_context.name
    bsf = BitStreamFilterContext(ANNEXB_FILTERS[name], stream) if name in ANNEXB_FILTERS else None
    if seek_k >= 0:
        container.seek(seek_target(index, seek_k), stream=stream, backward=True, any_frame=False)
    packets = container.demux(stream)
    while True:
        try:
            pkt = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            st.stopped = f"the stream ends early: {e.strerror or type(e).__name__}"
            break
        if pkt.size == 0:
            continue  # PyAV's flush packet; the decoder is flushed by the caller
        for fp in bsf.filter(pkt) if bsf is not None else (pkt,):
            data = bytes(fp)
            if data:
                raw = fp.pts if fp.pts is not None else fp.dts
                yield data, (int(raw) if raw is not None else None)


def _nvdec_frames(
    nvc,
    path: str,
    index: VideoIndex,
    seek_k: int,
    gpu_id: int,
    st: DecodeStats,
    select: np.ndarray | None,
    on_device: bool,
    pictures: bool | str = False,
) -> Iterator[Frame]:
    """NVDEC's frames from keyframe ``seek_k`` on (from the start when < 0), on the index's timeline."""
    c, _ = open_video(path)
    with c:
        s = video_stream(c)
        cc = s.codec_context
        name = cc.name
        if name not in _NVC_CODECS:
            raise _SessionError(f"codec {name} is not one NVDEC decodes")
        tb = s.time_base or index.time_base
        rotation = _rotation(path, s)
        colorspace, color_range = getattr(cc, "colorspace", None), getattr(cc, "color_range", None)
        if getattr(cc, "pix_fmt", None) == "yuvj420p":  # full range whatever the tag says, as PyAV's frames (decode.to_image)
            color_range = 2
        try:
            dec = nvc.CreateDecoder(
                gpuid=gpu_id,
                codec=getattr(nvc.cudaVideoCodec, _NVC_CODECS[name]),
                cudacontext=0,
                cudastream=0,
                usedevicememory=on_device,
            )
        except Exception as e:  # PyNvVideoCodec's own exception types
            raise _SessionError(f"{type(e).__name__}: {e}") from e
        timeline = Timeline(index, st)
        keep: list = []  # the host buffers of the last packets (NVDEC's parser copies them; kept anyway)

        def emit(frames) -> Iterator[Frame]:
            for f in frames:
                placed = timeline.place(int(f.getPTS()))
                if placed is None:
                    continue
                idx, t = placed
                pts_ms = float(t * tb) * 1000.0
                if select is not None and not select[idx]:
                    yield Frame(idx, pts_ms, None)  # type: ignore[arg-type]
                elif on_device and pictures == "nv12-device":
                    yield Frame(idx, pts_ms, _device_image(path, f, colorspace, color_range, rotation))
                elif on_device:
                    yield Frame(idx, pts_ms, f)
                else:
                    yield Frame(idx, pts_ms, _host_image(path, f, colorspace, color_range, rotation, pictures))

        decoded_any = False
        for data, raw in annexb_packets(c, s, index, seek_k, st):
            buf = ctypes.create_string_buffer(data, len(data))
            keep = [*keep[-3:], buf]
            pd = nvc.PacketData()
            pd.bsl_data = ctypes.addressof(buf)
            pd.bsl = len(data)
            pd.pts = raw if raw is not None else 0
            try:
                frames = dec.Decode(pd)
            except Exception as e:  # a packet NVDEC rejects: skipped, counted (as PyAV's corrupt packets)
                if not decoded_any and not st.corrupt_packets and seek_k < 0:
                    raise _SessionError(f"{type(e).__name__}: {e}") from e
                st.corrupt_packets += 1
                st.first_error = st.first_error or f"NVDEC: {e}"
                continue
            decoded_any = decoded_any or bool(frames)
            yield from emit(frames)
        empty = nvc.PacketData()
        while True:  # end of stream: the pictures NVDEC still holds for reordering
            frames = dec.Decode(empty)
            if not frames:
                break
            yield from emit(frames)


def _rotation(path: str, stream) -> float:
    """Degrees CCW to make frames upright, as PyAV applies them: the stream's display matrix where
    PyAV exposes it, else ``VideoFrame.rotation`` of the file's first frame decoded by PyAV (PyAV 18
    puts it on frames only)."""
    from ferbatch.media.probe import _stream_rotation

    rot = _stream_rotation(stream)
    if rot:
        return rot
    c, _ = open_video(path)
    with c:
        for fr in c.decode(video_stream(c)):
            return float(getattr(fr, "rotation", 0) or 0)
    return 0.0


def _device_image(path: str, frame, colorspace: int | None, color_range: int | None, rotation: float) -> Image:
    """NVDEC's device NV12 picture (``usedevicememory=True``) copied into a CuPy array of its own
    (NVDEC reuses its surfaces): an :class:`ferbatch.picture.Nv12Picture` on the device, of its matrix
    (:func:`ferbatch.picture.picture_matrix`), for streams that are not rotated and have one; else
    copied to the host and made the image PyAV makes (:func:`nv12_to_rgb`, upright). Runs on a GPU
    node only (CuPy).

    Raises:
        DecodeError: NVDEC returned a picture that is not (H * 3 / 2, W) uint8 with H and W even.
    """
    import cupy

    try:
        a = cupy.from_dlpack(frame)  # PyNvVideoCodec's NV12 frame: DLPack (CUDA array interface as the fallback)
    except (TypeError, AttributeError, BufferError):
        a = cupy.asarray(frame)
    a = a.reshape(a.shape[0], -1).copy(order="C")  # (H * 3 / 2, W) uint8, owned
    rows, w = a.shape
    if str(a.dtype) != "uint8" or rows % 3 or (rows * 2 // 3) % 2 or w % 2:
        raise DecodeError(path, f"NVDEC returned a {tuple(a.shape)} {a.dtype} picture; expected NV12 (H * 3 / 2, W) uint8, H and W even")
    if rotation:
        return _upright(nv12_to_rgb(a.get(), w, rows * 2 // 3, colorspace=colorspace, color_range=color_range), rotation)
    matrix = picture_matrix(colorspace, color_range)
    if matrix:
        return Nv12Picture(a, matrix)
    return nv12_to_rgb(a.get(), w, rows * 2 // 3, colorspace=colorspace, color_range=color_range)


def _host_image(path: str, frame, colorspace: int | None, color_range: int | None, rotation: float, pictures: bool | str) -> Image:
    """NVDEC's host NV12 picture (``usedevicememory=False``: a packed ``(H * 3 / 2, W)`` uint8
    buffer, ``frame.shape``) as PyAV's image of the same frame (RGB upright, or a picture)."""
    rows, w = (int(x) for x in tuple(frame.shape)[:2])
    size = int(frame.framesize())
    if size < rows * w:
        raise DecodeError(path, f"NVDEC returned a {size}-byte picture for a {rows}x{w} NV12 shape")
    nv12 = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(int(frame.GetPtrToPlane(0))))[: rows * w].reshape(rows, w)
    matrix = picture_matrix(colorspace, color_range)
    if pictures in NV12_PICTURES and not rotation and matrix and not (rows * 2 // 3) % 2 and not w % 2:
        return Nv12Picture(np.array(nv12, copy=True), matrix)  # NVDEC reuses its host buffer
    if pictures and not rotation:  # a copy: the picture's Y plane would be a view of the buffer NVDEC reuses
        return nv12_image(np.array(nv12, copy=True), w, rows * 2 // 3, colorspace=colorspace, color_range=color_range)
    return _upright(nv12_to_rgb(nv12, w, rows * 2 // 3, colorspace=colorspace, color_range=color_range), rotation)
