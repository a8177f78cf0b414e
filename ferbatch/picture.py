"""A decoded picture kept in its YUV 4:2:0 planes until a consumer needs RGB.

Why: at 30 frames/s most frames never need a full-size RGB picture. With ``--detect-every N`` the
detector sees one frame in N, at its own input size (512 px wide for 720p and 1080p); the FER+
classifiers take grey crops; the shot detector a 96-px thumbnail. Converting every decoded frame to
full-size RGB (swscale, as ``VideoFrame.to_ndarray(format="rgb24")`` does) cost 0.6 ms per 720p and
1.3 ms per 1080p frame on one core of this machine, a fifth of the decoder's own work
(docs/performance.md). A :class:`YuvPicture` gives each consumer what it needs from the planes:

- :meth:`YuvPicture.resized_rgb`: the planes resized first, then converted (the detector's input);
- :meth:`YuvPicture.gray`: a region of the luma plane in full range (a grey classifier crop);
- :meth:`YuvPicture.rgb`: the whole picture in RGB, converted once and cached (windows, tiles,
  colour crops, aligned crops).

Colour: BT.601 limited range, what swscale assumes for untagged streams and what OpenCV's
``COLOR_YUV2RGB_I420`` implements (ITU-R BT.601: R = 1.164 (Y - 16) + 1.596 (V - 128), ...); BT.709
limited range (most HD video) and either matrix in full range convert with :mod:`ferbatch.colour`.
Decoders make a picture only for streams tagged so or untagged (:func:`picture_matrix`); BT.2020 and
others keep swscale's conversion. OpenCV's conversion differs from swscale's by about one level
(rounding, chroma siting). The grey level of RGB converted from BT.601 is the luma itself:
0.299 R + 0.587 G + 0.114 B = 1.164 (Y - 16) (the chroma terms cancel to 1e-3), so a grey crop is
the luma plane mapped to full range (:data:`LUMA_TO_GRAY`, truncated as swscale does); a BT.709
picture's grey, and any other matrix's, goes through its RGB (:mod:`ferbatch.colour`).

An :class:`Nv12Picture` is the same picture as one NV12 array, in host memory or a GPU's (CuPy), for
the graphs that pre-process frames where the decoder left them (``--preprocess graph``, issue 33);
:func:`resize_plane` is OpenCV's ``INTER_LINEAR`` resize bit for bit in either memory, so a device
picture's thumbnail equals the host path's.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ferbatch.colour import BT601, BT601_FULL, BT709, BT709_FULL, MATRICES, rgb_of

__all__ = [
    "Image",
    "Nv12Picture",
    "YuvPicture",
    "BT601",
    "BT601_FULL",
    "BT709",
    "BT709_FULL",
    "as_rgb",
    "picture_matrix",
    "region_rgb",
    "host_picture",
    "linear_taps",
    "resize_plane",
    "stack_nv12",
    "LUMA_TO_GRAY",
    "YUV420",
]

# limited-range luma (16..235) -> full-range grey (0..255), ITU-R BT.601: g = 255 (Y - 16) / 219, truncated
# and clipped as swscale's conversion does: the grey of its RGB (OpenCV's RGB2GRAY) equals this table on all
# 256 luma levels of a grey picture, so grey crops are the ones the RGB frame path gave (rounding instead of
# truncating moved 108 of 256 levels by one and cost 0.2 point of FER+ acc@1 through the crop path)
LUMA_TO_GRAY = np.clip(np.floor((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
# FFmpeg's AVColorSpace values converted as BT.601: 2 unspecified (swscale's default is BT.601),
# 5 BT470BG, 6 SMPTE170M; as BT.709: 1; AVColorRange 0 unspecified and 1 MPEG (limited)
YUV420 = ("yuv420p", "yuvj420p")  # FFmpeg's 4:2:0 planar formats (yuvj420p: the deprecated full-range name)
_MATRIX = {2: (BT601, BT601_FULL), 5: (BT601, BT601_FULL), 6: (BT601, BT601_FULL), 1: (BT709, BT709_FULL)}


def picture_matrix(colorspace: int | None, color_range: int | None) -> str | None:
    """The matrix a 4:2:0 picture tagged with these FFmpeg values converts with: :data:`BT601` (BT.601
    limited range or untagged: None counts as unspecified), :data:`BT709` (BT.709 limited range), their
    full-range twins :data:`BT601_FULL` and :data:`BT709_FULL` (``color_range`` 2, JPEG), or None
    (BT.2020 and others, or another range: the decoder's swscale conversion)."""
    both = _MATRIX.get(int(colorspace if colorspace is not None else 2))
    rng = int(color_range or 0)  # AVColorRange: 0 unspecified, 1 MPEG (limited), 2 JPEG (full)
    return None if both is None or rng > 2 else both[rng == 2]


# OpenCV's INTER_LINEAR on uint8 (imgproc/src/resize.cpp): weights in 11-bit fixed point
# (INTER_RESIZE_COEF_BITS), the vertical pass as its vector kernel rounds it (VResizeLinearVec_32s8u)
RESIZE_COEF_SCALE = 2048


@functools.lru_cache(maxsize=64)
def linear_taps(src: int, dst: int, rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The two source indices and fixed-point weights of each output pixel of OpenCV's
    ``cv2.resize(INTER_LINEAR)`` of uint8 along one axis, ``src`` -> ``dst`` pixels
    (imgproc/src/resize.cpp): ``f = (x + 0.5) src / dst - 0.5`` in float32, weights
    ``round((1 - frac(f)) 2048)`` and ``round(frac(f) 2048)``. At the borders columns take the
    edge pixel with weight 2048; rows keep their weights and clamp both indices (``rows=True``),
    as OpenCV does. :func:`resize_plane` applies them; the NV12 detector graph takes them as inputs
    (:func:`ferbatch.vision.detect.nv12_letterbox_inputs`).

    Returns:
        (dst, 2) int64 source indices and (dst, 2) int32 weights summing to 2048; cached per
        (src, dst, rows) and read-only (a device frame's thumbnail asks for the same taps every frame).
    """
    f = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s).astype(np.float32)
    if rows:
        idx = np.stack([np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1)], 1)
    else:
        edge = (s < 0) | (s >= src - 1)
        f[edge] = 0
        s = np.clip(s, 0, src - 1)
        idx = np.stack([s, np.minimum(s + 1, src - 1)], 1)
    w = np.stack([np.rint((np.float32(1) - f) * np.float32(RESIZE_COEF_SCALE)), np.rint(f * np.float32(RESIZE_COEF_SCALE))], 1)
    w = w.astype(np.int32)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


def resize_plane(plane, width: int, height: int):
    """``cv2.resize(plane, (width, height), interpolation=INTER_LINEAR)`` of a uint8 plane (H, W) or
    (H, W, C), bit for bit, in the array's own module (NumPy, or CuPy on a GPU): the taps of
    :func:`linear_taps`, then OpenCV's vertical vector kernel,
    ``(((b0 (S0 >> 4)) >> 16) + ((b1 (S1 >> 4)) >> 16) + 2) >> 2`` (only the rows the output reads).

    Returns:
        (height, width[, C]) uint8 in the input's memory.
    """
    xp = np if isinstance(plane, np.ndarray) else _array_module(plane)
    ci, cw = (xp.asarray(a) for a in linear_taps(plane.shape[1], width))
    ri, rw = (xp.asarray(a) for a in linear_taps(plane.shape[0], height, rows=True))
    tail = (1,) * (plane.ndim - 2)
    out = 2
    for j in (0, 1):
        src = plane[ri[:, j]].astype(xp.int32)  # (height, W[, C])
        h = src[:, ci[:, 0]] * cw[:, 0].reshape(-1, *tail) + src[:, ci[:, 1]] * cw[:, 1].reshape(-1, *tail)
        out = out + ((rw[:, j].reshape(-1, 1, *tail) * (h >> 4)) >> 16)
    return xp.clip(out >> 2, 0, 255).astype(xp.uint8)


def _array_module(a):
    """The array library of a device array (CuPy: the NVDEC path's frames)."""
    import cupy

    return cupy


class YuvPicture:
    """A picture of H x W pixels (both even) in three 4:2:0 planes, of one of :data:`ferbatch.colour.MATRICES`.

    Args:
        y: (H, W) uint8 luma; rows may be strided (a view of the decoder's buffer: no copy).
        u, v: (H/2, W/2) uint8 chroma planes, likewise.
        matrix: :data:`BT601` (OpenCV's conversion), or :data:`BT709`, :data:`BT601_FULL`, :data:`BT709_FULL`
            (:mod:`ferbatch.colour`).

    Raises:
        ValueError: planes that are not uint8 of those shapes with even H and W, or another matrix.
    """

    __slots__ = ("y", "u", "v", "height", "width", "matrix", "_rgb")

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = BT601):
        h, w = y.shape if y.ndim == 2 else (0, 0)
        if not h or h % 2 or w % 2 or any(p.dtype != np.uint8 for p in (y, u, v)) or u.shape != (h // 2, w // 2) or v.shape != u.shape:
            raise ValueError(
                f"YuvPicture | expected uint8 planes (H, W) and 2 x (H/2, W/2), H and W even; got {y.shape}, {u.shape}, {v.shape}"
            )
        if matrix not in MATRICES:
            raise ValueError(f"YuvPicture | matrix {matrix!r}; expected one of {sorted(MATRICES)}")
        self.y, self.u, self.v = y, u, v
        self.height, self.width, self.matrix = h, w, matrix
        self._rgb: np.ndarray | None = None

    @classmethod
    def from_i420(cls, i420: np.ndarray, matrix: str = BT601) -> YuvPicture:
        """A picture of an (H * 3 / 2, W) uint8 array: the Y plane's H rows, then the U and V planes
        flattened behind it (``VideoFrame.to_ndarray()`` of a yuv420p frame).

        Raises:
            ValueError: another shape or dtype, or an odd H or W.
        """
        rows, w = i420.shape if i420.ndim == 2 else (0, 0)
        h = rows * 2 // 3
        if i420.dtype != np.uint8 or h % 2 or w % 2 or h * 3 // 2 != rows or not h:
            raise ValueError(f"YuvPicture | expected (H * 3 / 2, W) uint8 with H, W even; got {i420.shape} {i420.dtype}")
        flat = np.ascontiguousarray(i420).reshape(-1)
        q = h * w // 4
        return cls(
            flat[: h * w].reshape(h, w), flat[h * w : h * w + q].reshape(h // 2, w // 2), flat[h * w + q :].reshape(h // 2, w // 2), matrix
        )

    @classmethod
    def from_frame(cls, frame, matrix: str = BT601) -> YuvPicture:
        """Views of a decoded yuv420p ``av.VideoFrame``'s planes (no copy; the views keep the
        frame's buffers alive).

        Raises:
            ValueError: the frame is not yuv420p of even size.
        """
        if frame.format.name not in YUV420:
            raise ValueError(f"YuvPicture | expected a yuv420p frame, got {frame.format.name}")
        y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes)
        return cls(y, u, v, matrix)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3), the shape of :meth:`rgb` (so size checks read a picture like an array)."""
        return self.height, self.width, 3

    def i420(self) -> np.ndarray:
        """(H * 3 / 2, W) uint8 contiguous I420 (a copy of the planes)."""
        return np.concatenate([self.y.reshape(-1), self.u.reshape(-1), self.v.reshape(-1)]).reshape(self.height * 3 // 2, self.width)

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, converted on the first call and cached."""
        if self._rgb is None:
            self._rgb = (
                cv2.cvtColor(self.i420(), cv2.COLOR_YUV2RGB_I420) if self.matrix == BT601 else rgb_of(self.y, self.u, self.v, self.matrix)
            )
        return self._rgb

    def resized_rgb(self, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB of the picture resized (``INTER_LINEAR``) to that size: the
        planes are resized, then converted (a fraction of a full-size conversion); from the cached
        RGB when it exists or a side is odd."""
        if self._rgb is not None or width % 2 or height % 2:
            return cv2.resize(self.rgb(), (width, height), interpolation=cv2.INTER_LINEAR)
        y, u, v = self.y, self.u, self.v
        out = np.empty((height * 3 // 2, width), np.uint8)
        flat = out.reshape(-1)
        q = height * width // 4
        cv2.resize(y, (width, height), dst=out[:height], interpolation=cv2.INTER_LINEAR)
        flat[height * width : height * width + q] = cv2.resize(u, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR).reshape(-1)
        flat[height * width + q :] = cv2.resize(v, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR).reshape(-1)
        if self.matrix != BT601:
            return YuvPicture.from_i420(out, self.matrix).rgb()
        return cv2.cvtColor(out, cv2.COLOR_YUV2RGB_I420)

    def gray(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """(y2 - y1, x2 - x1) uint8 full-range grey of the region (pixels, half-open, inside the picture)."""
        if self.matrix == BT601:
            return cv2.LUT(self.y[y1:y2, x1:x2], LUMA_TO_GRAY)
        return cv2.cvtColor(self.rgb_region(x1, y1, x2, y2), cv2.COLOR_RGB2GRAY)  # others' grey takes the chroma too

    def rgb_region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """(y2 - y1, x2 - x1, 3) uint8 RGB of the region (pixels, half-open, inside the picture): a slice of
        :meth:`rgb` when it is cached, else the planes of the 2 x 2 chroma blocks around the region converted
        (a window around a face converts a fraction of the frame)."""
        if self._rgb is not None:
            return self._rgb[y1:y2, x1:x2]
        ex1, ey1, ex2, ey2 = x1 & ~1, y1 & ~1, x2 + (x2 & 1), y2 + (y2 & 1)
        c = (slice(ey1 // 2, ey2 // 2), slice(ex1 // 2, ex2 // 2))
        part = YuvPicture(self.y[ey1:ey2, ex1:ex2], self.u[c], self.v[c], self.matrix).rgb()
        return part[y1 - ey1 : y2 - ey1, x1 - ex1 : x2 - ex1]


class Nv12Picture:
    """A picture of H x W pixels as one NV12 array, in host memory (NumPy) or in a GPU's (CuPy), for
    the graphs that take frames where the decoder left them (issue 33): the NV12 detector
    (:mod:`ferbatch.models.graph_nv12`) and the crop classifier (:mod:`ferbatch.models.graph_crop`),
    fed by :meth:`ferbatch.vision.detect.Detector.detect` and
    :meth:`ferbatch.vision.classify.Classifier.classify_frames`. Any matrix :class:`YuvPicture` takes
    (both graphs take its coefficients as an input).

    Every other consumer reads :meth:`host`, the same picture as a :class:`YuvPicture` (copied to
    the host once and cached), so a frame on the device still works everywhere, at the cost of that
    copy; the shot detector's thumbnail (:meth:`resized_rgb`) is resized on the device first and
    only its small planes are copied (:meth:`resized_planes`).

    Args:
        nv12: (H * 3 / 2, W) uint8, C-contiguous: H luma rows, then H / 2 rows of interleaved U, V
            (U at even columns). A ``numpy.ndarray`` or a ``cupy.ndarray`` (anything with ``shape``,
            ``dtype`` and ``get()``, read through DLPack by ONNX Runtime).
        matrix: one of :data:`ferbatch.colour.MATRICES`, as :class:`YuvPicture`.

    Raises:
        ValueError: another shape or dtype, an odd H or W, or an unknown matrix.
    """

    __slots__ = ("nv12", "height", "width", "matrix", "_host")

    def __init__(self, nv12, matrix: str = BT601):
        rows, w = tuple(nv12.shape) if len(nv12.shape) == 2 else (0, 0)
        h = rows * 2 // 3
        if str(nv12.dtype) != "uint8" or not h or h % 2 or w % 2 or h * 3 // 2 != rows:
            raise ValueError(f"Nv12Picture | expected (H * 3 / 2, W) uint8 with H, W even; got {tuple(nv12.shape)} {nv12.dtype}")
        if matrix not in MATRICES:
            raise ValueError(f"Nv12Picture | matrix {matrix!r}; expected one of {sorted(MATRICES)}")
        self.nv12 = nv12
        self.height, self.width, self.matrix = h, w, matrix
        self._host: YuvPicture | None = None

    @classmethod
    def from_planes(cls, picture: YuvPicture) -> Nv12Picture:
        """The NV12 array of a host :class:`YuvPicture` (its U and V interleaved: one copy), of its matrix."""
        h, w = picture.height, picture.width
        out = np.empty((h * 3 // 2, w), np.uint8)
        out[:h] = picture.y
        uv = out[h:].reshape(h // 2, w // 2, 2)
        uv[..., 0] = picture.u
        uv[..., 1] = picture.v
        nv = cls(out, picture.matrix)
        nv._host = picture
        return nv

    @property
    def on_device(self) -> bool:
        """True when the array is not a NumPy array (GPU memory)."""
        return not isinstance(self.nv12, np.ndarray)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3), the shape of :meth:`rgb`."""
        return self.height, self.width, 3

    def host(self) -> YuvPicture:
        """The picture as a host :class:`YuvPicture` (copied from the device once; cached)."""
        if self._host is None:
            a = self.nv12 if isinstance(self.nv12, np.ndarray) else self.nv12.get()
            h = self.height
            uv = a[h:]
            self._host = YuvPicture(a[:h], np.ascontiguousarray(uv[:, 0::2]), np.ascontiguousarray(uv[:, 1::2]), self.matrix)
        return self._host

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB (:meth:`YuvPicture.rgb` of :meth:`host`)."""
        return self.host().rgb()

    def gray(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """As :meth:`YuvPicture.gray` (of :meth:`host`)."""
        return self.host().gray(x1, y1, x2, y2)

    def resized_rgb(self, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB of the picture resized, :meth:`YuvPicture.resized_rgb` bit for
        bit: for a host picture (or one already copied) that method of :meth:`host`; a picture on
        the device is resized there (:func:`resize_plane`, OpenCV's arithmetic) and only the small
        planes are copied (a 96-px shot thumbnail of a 720p frame copies 1/170 of the frame)."""
        if not self.on_device or self._host is not None or width % 2 or height % 2:
            return self.host().resized_rgb(width, height)
        return self.resized_planes(width, height).rgb()

    def resized_planes(self, width: int, height: int) -> YuvPicture:
        """The host :class:`YuvPicture` of the planes resized to ``width`` x ``height`` (even) where
        the array lies (:func:`resize_plane`; chroma to half the size, U and V together), then
        copied: what :meth:`YuvPicture.resized_rgb` converts."""
        h = self.height
        y = resize_plane(self.nv12[:h], width, height)
        uv = resize_plane(self.nv12[h:].reshape(h // 2, self.width // 2, 2), width // 2, height // 2)
        get = (lambda a: a) if isinstance(self.nv12, np.ndarray) else (lambda a: a.get())
        y, uv = get(y), get(uv)
        return YuvPicture(y, np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1]), self.matrix)


def stack_nv12(pictures: list[Nv12Picture]):
    """(F, H * 3 / 2, W) uint8 batch of the pictures' NV12 arrays, in the memory they lie in
    (``numpy.stack``, or ``cupy.stack`` for device pictures: a copy on the device, finished before
    this returns, so a consumer on another CUDA stream reads it whole).

    Raises:
        ValueError: no pictures, sizes that differ, or host and device pictures mixed.
    """
    if not pictures or len({(p.height, p.width) for p in pictures}) != 1:
        raise ValueError(f"stack_nv12 | expected pictures of one size; got {sorted({(p.width, p.height) for p in pictures})}")
    device = {p.on_device for p in pictures}
    if device == {False}:
        return np.stack([p.nv12 for p in pictures])
    if len(device) != 1:
        raise ValueError("stack_nv12 | host and device pictures in one batch")
    import cupy  # a device picture is a CuPy array (the NVDEC path's frames)

    batch = cupy.stack([p.nv12 for p in pictures])
    # ONNX Runtime reads the batch through DLPack on its own CUDA stream: the copies above must be done
    cupy.cuda.get_current_stream().synchronize()
    return batch


Image = np.ndarray | YuvPicture | Nv12Picture
"""A frame as the analysis step takes it: (H, W, 3) uint8 RGB, a :class:`YuvPicture`, or an
:class:`Nv12Picture` (host or device memory)."""


def as_rgb(image: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an RGB array (returned as is) or of a picture."""
    return image if isinstance(image, np.ndarray) else image.rgb()


def region_rgb(image: Image, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """(y2 - y1, x2 - x1, 3) uint8 RGB of a region of an image (pixels, half-open, inside it): a slice of an
    RGB array, else :meth:`YuvPicture.rgb_region` (of an :class:`Nv12Picture`'s host planes)."""
    pic = host_picture(image)
    return pic[y1:y2, x1:x2] if isinstance(pic, np.ndarray) else pic.rgb_region(x1, y1, x2, y2)


def host_picture(image: Image) -> np.ndarray | YuvPicture:
    """The image as the host paths take it: an :class:`Nv12Picture` as its :meth:`Nv12Picture.host`
    :class:`YuvPicture`, anything else as is."""
    return image.host() if isinstance(image, Nv12Picture) else image
