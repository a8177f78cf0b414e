"""Decoder selection (``--decoder auto|pyav|nvdec``) and the parts of the NVDEC path that run
without a GPU: the choice with PyNvVideoCodec absent (the real state of this machine), the choice
with it present (a stand-in module, see ``nvdec_present``), the format fallbacks on real 4:4:4 and
10-bit streams, the NV12 -> RGB conversion against PyAV's own frames, and the per-video fallback
recorded in the videos table by a real job."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import INTEL_2FACE
from typer.testing import CliRunner

from ferbatch.cli import app
from ferbatch.config import RESULT_KEYS, JobConfig
from ferbatch.errors import ConfigError
from ferbatch.media import decoders, nvdec
from ferbatch.media.decoders import StreamFormat, check_decoder, choose_decoder, frame_iterator, nvdec_available, stream_format
from ferbatch.media.nvdec import iter_frames_nvdec, nv12_to_rgb


def _clip(path: Path, codec: str, pix_fmt: str, n: int = 12, size: tuple[int, int] = (96, 64), colorspace: int | None = None) -> Path:
    """A short clip of moving gradients with ``codec`` / ``pix_fmt`` (skipped when this FFmpeg lacks the encoder)."""
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if colorspace is not None:
            s.codec_context.colorspace = colorspace
        if codec == "libx265":
            s.options = {"x265-params": "log-level=error:keyint=12:min-keyint=12:bframes=3"}
        for i in range(n):
            img = np.stack([(xx * 2 + i * 9) % 256, (yy * 3 + i * 5) % 256, ((xx + yy) + i * 17) % 256], -1).astype(np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode())
    return path


@pytest.fixture
def nvdec_present(monkeypatch):
    """STAND-IN for PyNvVideoCodec: an empty module with a version, registered under another name,
    so that only the selection logic's "PyNvVideoCodec imports" branch can be tested on a machine
    where the real package cannot be installed. It decodes nothing; no test decodes with it."""
    standin = types.ModuleType("ferbatch_test_pynvvideocodec_standin")
    standin.__version__ = "stand-in"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, standin.__name__, standin)
    monkeypatch.setattr(nvdec, "NVDEC_MODULE", standin.__name__)
    return standin


H264_420 = StreamFormat("h264", "yuv420p")


def test_pynvvideocodec_is_absent_here():
    ok, why = nvdec_available()
    assert not ok and "PyNvVideoCodec is not installed" in why


def test_choice_without_pynvvideocodec():
    assert choose_decoder("pyav", "tensorrt", H264_420) == ("pyav", "requested")
    # a CPU backend: PyAV, whatever is installed (the stream is not even read)
    assert choose_decoder("auto", "onnxruntime", lambda: pytest.fail("read the stream")) == (
        "pyav",
        "the onnxruntime backend runs on the CPU",
    )
    name, why = choose_decoder("auto", "onnxruntime-cuda", H264_420)
    assert name == "pyav" and "PyNvVideoCodec is not installed" in why
    with pytest.raises(ConfigError, match=r"^--decoder nvdec \| not usable on this machine: PyNvVideoCodec is not installed"):
        choose_decoder("nvdec", "tensorrt", H264_420)
    with pytest.raises(ConfigError, match="--decoder nvdec .*PyNvVideoCodec is not installed"):
        check_decoder("nvdec")
    with pytest.raises(ConfigError, match="--decoder .*'cuvid'"):
        check_decoder("cuvid")


def test_choice_with_pynvvideocodec(nvdec_present, tmp_path):
    assert choose_decoder("auto", "tensorrt", H264_420) == ("nvdec", "PyNvVideoCodec stand-in, h264 yuv420p")
    assert choose_decoder("nvdec", "onnxruntime", H264_420)[0] == "nvdec"  # asked for: decoded on the GPU, inferred on the CPU
    assert choose_decoder("auto", "onnxruntime", H264_420)[0] == "pyav"
    for codec in ("hevc", "av1", "vp9"):
        assert choose_decoder("auto", "onnxruntime-cuda", StreamFormat(codec, "yuvj420p"))[0] == "nvdec"
    name, why = choose_decoder("nvdec", "tensorrt", StreamFormat("mpeg4", "yuv420p"))
    assert (name, why) == ("pyav", "NVDEC fallback to PyAV: codec mpeg4 is not one NVDEC decodes here (av1, h264, hevc, vp9)")
    check_decoder("nvdec")  # no error


def test_444_and_10bit_streams_fall_back_naming_the_format(nvdec_present, tmp_path):
    c444 = _clip(tmp_path / "c444.mp4", "libx264", "yuv444p")
    assert stream_format(str(c444)) == StreamFormat("h264", "yuv444p")
    name, why = choose_decoder("nvdec", "tensorrt", lambda: stream_format(str(c444)))
    assert name == "pyav" and why == (
        "NVDEC fallback to PyAV: pixel format yuv444p (4:4:4 chroma) is not 8-bit 4:2:0, the only format NVDEC decodes here"
    )
    assert choose_decoder("auto", "tensorrt", lambda: stream_format(str(c444)))[1].startswith("pixel format yuv444p (4:4:4 chroma)")
    c10 = _clip(tmp_path / "c10.mkv", "libx265", "yuv420p10le")
    assert stream_format(str(c10)) == StreamFormat("hevc", "yuv420p10le")
    name, why = choose_decoder("nvdec", "onnxruntime-cuda", stream_format(str(c10)))
    assert name == "pyav" and "pixel format yuv420p10le (10-bit) is not 8-bit 4:2:0" in why
    c420 = _clip(tmp_path / "c420.mp4", "libx264", "yuv420p")
    assert choose_decoder("auto", "tensorrt", lambda: stream_format(str(c420)))[0] == "nvdec"


def test_decoder_is_a_speed_knob():
    from ferbatch import config

    assert (decoders.DECODERS, decoders.GPU_BACKENDS) == (config.DECODERS, config.GPU_BACKENDS)  # media/ keeps its own copies
    assert "decoder" not in RESULT_KEYS
    assert JobConfig(decoder="nvdec").result_key() == JobConfig(decoder="pyav").result_key() == JobConfig().result_key()
    with pytest.raises(ConfigError, match="--decoder .*expected one of auto, pyav, nvdec"):
        JobConfig(decoder="gpu")


def test_frame_iterators():
    from ferbatch.media.decode import iter_frames

    assert frame_iterator("pyav") is iter_frames and frame_iterator("nvdec") is iter_frames_nvdec
    from ferbatch.media.probe import probe_video

    _, index = probe_video(INTEL_2FACE)
    with pytest.raises(ImportError, match="PyNvVideoCodec"):  # never chosen here; if called, it says why
        next(iter_frames_nvdec(INTEL_2FACE, index, 0, 4))


def _nv12_matches_pyav(path: Path, limit: int = 60) -> int:
    """Every frame: PyAV's RGB == nv12_to_rgb(the same picture as NV12, the stream's colour space/range)."""
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        for fr in c.decode(s):
            ref = fr.to_ndarray(format="rgb24")
            nv12 = fr.reformat(format="nv12").to_ndarray()  # what NVDEC hands over: Y, then interleaved U/V
            assert nv12.shape == (fr.height * 3 // 2, fr.width)
            got = nv12_to_rgb(nv12, fr.width, fr.height, colorspace=cc.colorspace, color_range=cc.color_range)
            assert got.dtype == np.uint8 and got.shape == ref.shape
            assert np.array_equal(got, ref), f"frame {n}: max diff {np.abs(got.astype(int) - ref).max()}"
            n += 1
            if n >= limit:
                break
    return n


def test_nv12_to_rgb_equals_pyav_frames(tmp_path):
    assert _nv12_matches_pyav(INTEL_2FACE) == 56  # all its frames; colour space unspecified (BT.601 by default)
    # BT.709 tagged, a width that is no multiple of 16 (swscale's SIMD paths), pitch wider than the picture
    bt709 = _clip(tmp_path / "bt709.mp4", "libx264", "yuv420p", size=(202, 114), colorspace=1)
    with av.open(str(bt709)) as c:
        assert c.streams.video[0].codec_context.colorspace == 1
    assert _nv12_matches_pyav(bt709) == 12
    with av.open(str(bt709)) as c:
        fr = next(c.decode(video=0))
        nv12 = fr.reformat(format="nv12").to_ndarray()
        pitched = np.zeros((nv12.shape[0], 256), np.uint8)
        pitched[:, : fr.width] = nv12
        assert np.array_equal(nv12_to_rgb(pitched, fr.width, fr.height, colorspace=1), fr.to_ndarray(format="rgb24"))
    with pytest.raises(ValueError, match="odd"):
        nv12_to_rgb(np.zeros((6, 5), np.uint8), 5, 4)
    with pytest.raises(ValueError, match=r"expected \(6, >=4\) uint8"):
        nv12_to_rgb(np.zeros((5, 4), np.uint8), 4, 4)


def test_cli_decoder_nvdec_refused_clearly_here(tmp_path):
    res = CliRunner().invoke(app, ["run", str(INTEL_2FACE), "--out", str(tmp_path / "o"), "--no-ray", "--decoder", "nvdec"])
    assert res.exit_code == 2, res.output
    assert "--decoder nvdec" in res.output and "PyNvVideoCodec is not installed" in res.output


def test_videos_table_records_the_decoder_and_the_fallback(nvdec_present, tmp_path):
    """A real job (in-process, CPU backend) with NVDEC requested and PyNvVideoCodec "present" (the
    stand-in): the 4:4:4 video falls back to PyAV at the choice; the 4:2:0 one is given to NVDEC,
    whose session cannot start (the stand-in has no decoder), so PyAV decodes it and says why. Both
    record decoder "pyav" and the reason in notes; with auto the column says pyav and no note. The
    ``preprocess`` column says where each video's frames were pre-processed."""
    from ferbatch.api import run as run_job

    vids = tmp_path / "in"
    vids.mkdir()
    _clip(vids / "c444.mp4", "libx264", "yuv444p", n=10, size=(160, 120))
    _clip(vids / "c420.mp4", "libx264", "yuv420p", n=10, size=(160, 120))
    run_job([vids], tmp_path / "nv", use_ray=False, backend="onnxruntime", decoder="nvdec", workers=1)
    t = {r["path"]: r for r in pq.read_table(tmp_path / "nv" / "videos.parquet").to_pylist()}
    assert [(r["status"], r["decoder"], r["frames"]) for r in t.values()] == [("ok", "pyav", 10)] * 2
    assert "NVDEC fallback to PyAV: pixel format yuv444p (4:4:4 chroma)" in t["c444.mp4"]["notes"]
    assert "NVDEC fallback to PyAV: NVDEC cannot decode it (AttributeError" in t["c420.mp4"]["notes"]
    run_job([vids], tmp_path / "auto", use_ray=False, backend="onnxruntime", workers=1)
    t = {r["path"]: r for r in pq.read_table(tmp_path / "auto" / "videos.parquet").to_pylist()}
    assert [(r["status"], r["decoder"], r["notes"]) for r in t.values()] == [("ok", "pyav", None)] * 2
    assert [r["preprocess"] for r in t.values()] == ["host", "host"]
    # --preprocess graph: the 4:2:0 video's frames go through the NV12 graph; the 4:4:4 ones' cannot (host),
    # whether they come before or after it on the worker
    _clip(vids / "b444.mp4", "libx264", "yuv444p", n=12, size=(160, 120))
    run_job([vids], tmp_path / "graph", use_ray=False, backend="onnxruntime", preprocess="graph", workers=1)
    t = {r["path"]: r for r in pq.read_table(tmp_path / "graph" / "videos.parquet").to_pylist()}
    assert {p: (r["status"], r["preprocess"]) for p, r in t.items()} == {
        "b444.mp4": ("ok", "host"),
        "c420.mp4": ("ok", "graph"),
        "c444.mp4": ("ok", "host"),
    }


def _fed_like_nvdec(path: Path, index, start: int, end: int | None):
    """The NVDEC host path with FFmpeg's software decoder where the NVDEC hardware would be: the
    packets of ``annexb_packets`` (PyAV demux, keyframe seek, Annex-B filter) decoded by a decoder
    that gets no extradata (parameter sets in-band only, as NVDEC's parser), each packet with its
    raw pts, the pictures placed by ``Timeline`` and converted from NV12 by ``nv12_to_rgb``. Not
    NVDEC itself: the GPU session checks that (``gpu_check.py --steps nvdec_exact``)."""
    from ferbatch.media.decode import DecodeStats, Frame, Timeline, _upright, frames_in_range
    from ferbatch.media.nvdec import _rotation, annexb_packets
    from ferbatch.media.probe import open_video, video_stream

    st = DecodeStats()

    def decoded(seek_k: int):
        c, _ = open_video(str(path))
        with c:
            s = video_stream(c)
            cc = s.codec_context
            dec = av.CodecContext.create(cc.name, "r")
            tl, rot, tb = Timeline(index, st), _rotation(str(path), s), s.time_base

            def emit(frames):
                for fr in frames:
                    placed = tl.place(fr.pts)
                    if placed is not None:
                        nv12 = fr.reformat(format="nv12").to_ndarray()
                        img = nv12_to_rgb(nv12, fr.width, fr.height, colorspace=cc.colorspace, color_range=cc.color_range)
                        yield Frame(placed[0], float(placed[1] * tb) * 1000.0, _upright(img, rot))

            for data, raw in annexb_packets(c, s, index, seek_k, st):
                pkt = av.Packet(data)
                pkt.pts = raw
                yield from emit(dec.decode(pkt))
            yield from emit(dec.decode(None))

    return frames_in_range(str(path), index, start, end, st, decoded)


@pytest.mark.parametrize("which", ["h264_bframes", "hevc_mov", "hevc_mkv"])
def test_nvdec_packet_feed_gives_pyav_frames_whole_and_per_shard(which, tmp_path):
    from conftest import FACE_NOFACE, WOLFGANG

    from ferbatch.media.decode import iter_frames
    from ferbatch.media.probe import probe_video
    from ferbatch.media.shards import plan_shards

    if which == "h264_bframes":  # the first 288 frames (packets copied): four shards
        from badinputs import cut_mp4

        path = cut_mp4(WOLFGANG, tmp_path / "w.mp4", 288)
    elif which == "hevc_mov":
        path = FACE_NOFACE
    else:
        path = _clip(tmp_path / "h.mkv", "libx265", "yuv420p", n=60, size=(128, 96))
    info, index = probe_video(path)
    assert info.codec in ("h264", "hevc")
    plan = plan_shards("v", str(path), index, 40)
    assert len(plan) >= 2
    for a, b in [(0, None), *((s.start, s.end) for s in plan), (int(plan[-1].start) + 3, None)]:
        ref = list(iter_frames(path, index, a, b))
        got = list(_fed_like_nvdec(path, index, a, b))
        assert [(f.idx, f.pts_ms) for f in got] == [(f.idx, f.pts_ms) for f in ref], (a, b)
        assert all(np.array_equal(g.image, r.image) for g, r in zip(got, ref, strict=True)), (a, b)


def test_nvdec_host_pictures_own_their_pixels():
    """NVDEC's host frames (``usedevicememory=False``) live in a buffer it reuses for the next picture: the picture the
    host path keeps (held in the prefetch queue) must not be a view of it. The frame object stands in for
    PyNvVideoCodec's (``shape``, ``framesize``, ``GetPtrToPlane``), which cannot run here."""
    import ctypes

    h, w = 4, 6
    buf = (ctypes.c_uint8 * (h * 3 // 2 * w))(*range(h * 3 // 2 * w))

    class HostFrame:
        shape = (h * 3 // 2, w)

        def framesize(self):
            return h * 3 // 2 * w

        def GetPtrToPlane(self, i):  # PyNvVideoCodec's name
            return ctypes.addressof(buf)

    for pictures in (True, "nv12"):
        img = nvdec._host_image("clip.mp4", HostFrame(), 6, 1, 0.0, pictures)
        before = np.array(img.i420() if hasattr(img, "i420") else img.nv12, copy=True)
        ctypes.memset(buf, 0, len(buf))  # NVDEC writes the next picture there
        after = img.i420() if hasattr(img, "i420") else img.nv12
        np.testing.assert_array_equal(after, before)
        ctypes.memmove(buf, bytes(range(h * 3 // 2 * w)), len(buf))
