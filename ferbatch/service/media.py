"""An uploaded file -> RGB frames: a still image (OpenCV) or a short clip (PyAV), with limits that
bound the memory a request can take.

Nothing here touches the file system: uploads are decoded from memory (a base64 text, or a
``data:`` URI, is turned into the bytes of an upload by :func:`decode_base64`, its size checked
first). A still image's size is read
from its header (Pillow) before anything is decoded; a clip is decoded frame by frame on demand
(:meth:`Clip.read`), each frame converted straight to an RGB frame no larger than ``max_side`` (no
full-resolution RGB frame is kept), and cut short, saying why, at ``max_frames`` sampled frames or
``max_total_pixels`` decoded pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferbatch.errors import FerbatchError

__all__ = ["BadUpload", "Clip", "Upload", "decode_base64", "decode_upload", "is_url", "open_upload", "short_name"]

# a client-given name is shown in messages up to this many characters
_NAME_CHARS = 80


class BadUpload(FerbatchError):
    """The upload is empty, not an image or video, or over a limit.

    Attributes:
        status: the HTTP status that says so (400 empty or bad argument, 413 too many pixels, 415
            not an image or video).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_URI = re.compile(rb"data:[\w.+-]*(?:/[\w.+-]+)?(?:;[\w.+-]+=[\w.+\-\"]*)*;base64,", re.IGNORECASE)
_SPACE = re.compile(rb"\s+")


def is_url(text: str | bytes) -> bool:
    """Whether ``text`` starts like a URL (``scheme://``, leading white space ignored)."""
    head = text[:64]
    if isinstance(head, bytes):
        head = head.decode("ascii", "replace")
    return _URL.match(head.lstrip()) is not None


def decode_base64(text: str | bytes, max_bytes: int, field: str = "image") -> bytes:
    """The bytes of a base64 text (standard alphabet; white space and missing padding allowed) or
    of a ``data:<type>;base64,<text>`` URI, refused by its length before anything is decoded.

    Memory: a ``str`` is encoded to ASCII bytes first (one copy; pass ``bytes`` to avoid it), then
    only the decoded bytes are made (a copy more where there is white space or missing padding).

    Args:
        text: what the client sent.
        max_bytes: most bytes it may decode to (the upload limit).
        field: the request field named in messages.

    Raises:
        BadUpload: a URL (the service fetches nothing) or a data: URI that is not base64 (400), more
            than ``max_bytes`` once decoded (413), not valid base64 or empty (400).
    """
    bad = f"{field} | not valid base64 (standard alphabet A-Z a-z 0-9 + /)"
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise BadUpload(f"{bad}: a character that is not ASCII", 400) from None
    head = text[:512].lstrip()
    if is_url(head):
        raise BadUpload(
            f"{field} | a URL: the service fetches nothing (it has no network access); send the bytes as base64 "
            "or a multipart file, or a path under the service's data root",
            400,
        )
    if head[:5].lower() == b"data:":
        m = _DATA_URI.match(head)
        if m is None:
            raise BadUpload(f"{field} | a data: URI that is not base64; expected data:image/<type>;base64,<base64>", 400)
        text = text.lstrip()[m.end() :]
    if _SPACE.search(text):
        text = _SPACE.sub(b"", text)
    if not text:
        raise BadUpload(f"{field} | empty; expected the file's bytes in base64", 400)
    n = (len(text) + 3) // 4 * 3  # the most bytes it decodes to, known before decoding
    if n > max_bytes:
        raise BadUpload(f"{field} | {len(text)} base64 characters decode to more than the limit of {max_bytes} bytes", 413)
    if len(text) % 4:
        text += b"=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadUpload(f"{bad}: {short_name(str(e))}", 400) from None
    if not data:
        raise BadUpload(f"{field} | empty; expected the file's bytes in base64", 400)
    return data


def short_name(name: str) -> str:
    """``name`` made safe for a one-line message: control characters escaped, at most 80 characters."""
    r = repr(name)[1:-1]
    return r if len(r) <= _NAME_CHARS else r[: _NAME_CHARS - 3] + "..."


@dataclass
class Upload:
    """Decoded frames of an upload.

    Attributes:
        kind: "image" or "video".
        images: F arrays (H, W, 3) uint8 RGB (F = 1 for an image), upright; a clip's frames are
            downscaled to a longest side <= ``max_side`` (see ``scale``).
        frame_idx: (F,) decoded-frame index of each image in the clip (0 for an image).
        pts_ms: (F,) presentation time in ms (0.0 for an image).
        scale: (F,) pairs (sx, sy): multiply x / y pixel coordinates in ``images[i]`` by them to get
            coordinates in the upload's own frame (1.0 when not downscaled).
        width, height: of the first frame as uploaded (upright), in pixels.
        frames_total: frames decoded from the clip (sampled or not).
        truncated: the clip was cut short (the rest was not analysed); truncated_reason says why.
    """

    kind: str
    images: list[np.ndarray]
    frame_idx: list[int] = field(default_factory=list)
    pts_ms: list[float] = field(default_factory=list)
    scale: list[tuple[float, float]] = field(default_factory=list)
    width: int = 0
    height: int = 0
    frames_total: int = 0
    truncated: bool = False
    truncated_reason: str = ""


def open_upload(
    data: bytes,
    name: str,
    *,
    max_pixels: int = 40_000_000,
    max_clip_pixels: int = 3840 * 2160,
    max_frames: int = 300,
    max_total_pixels: int = 300 * 1920 * 1080,
    max_side: int = 1024,
    every: int = 1,
) -> Upload | Clip:
    """An uploaded image (decoded, after its header passed the pixel limit) or clip (opened, its
    header checked; frames come from :meth:`Clip.read`).

    Args:
        data: the file's bytes.
        name: its name as the client gave it (for messages only).
        max_pixels: most pixels (width x height) of a still image, checked on its header.
        max_clip_pixels: most pixels per clip frame, checked on the stream header and on each frame.
        max_frames: most sampled frames analysed from a clip; the clip is cut there (``truncated``).
        max_total_pixels: most pixels decoded from a clip in all (sampled or not); cut there.
        max_side: a clip frame's longest side after downscaling, in pixels (>= 32).
        every: analyse every ``every``-th decoded frame of a clip (1 = all).

    Raises:
        BadUpload: empty (400), too many pixels (413), neither an image nor a video FFmpeg reads (415).
    """
    shown = short_name(name)
    if not data:
        raise BadUpload(f"{shown} | the upload is empty (0 bytes)", 400)
    if every < 1:
        raise BadUpload(f"every | received {every}; expected >= 1", 400)
    img = _decode_image(data, shown, max_pixels)
    if img is not None:
        h, w = img.shape[:2]
        return Upload("image", [img], [0], [0.0], [(1.0, 1.0)], w, h, 1)
    return Clip(
        data, shown, max_pixels=max_clip_pixels, max_frames=max_frames, max_total_pixels=max_total_pixels, max_side=max_side, every=every
    )


def decode_upload(data: bytes, name: str, *, chunk: int = 16, **limits: Any) -> Upload:
    """Decode an uploaded image or a whole clip (within the limits of :func:`open_upload`).

    Args:
        data, name, limits: as for :func:`open_upload`.
        chunk: frames read from the decoder at a time.

    Raises:
        BadUpload: see :func:`open_upload`.
    """
    up = open_upload(data, name, **limits)
    if isinstance(up, Upload):
        return up
    with up:
        out = Upload("video", [])
        while (part := up.read(chunk)).images:
            out.images += part.images
            out.frame_idx += part.frame_idx
            out.pts_ms += part.pts_ms
            out.scale += part.scale
        out.width, out.height, out.frames_total = up.width, up.height, up.frames_total
        out.truncated, out.truncated_reason = up.truncated, up.truncated_reason
    return out


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (nothing decoded); None: not an image Pillow knows.

    Raises:
        BadUpload: the header declares a decompression bomb (413).
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
        except Image.DecompressionBombError as e:
            raise BadUpload(f"the image header declares more pixels than any limit allows ({e})", 413) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            return None


def _decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray | None:
    import cv2

    size = _image_size(data)
    if size is None:
        return None  # not an image Pillow knows by its header: tried as a clip (PyAV checks its header)
    w, h = size
    if w * h > max_pixels:
        raise BadUpload(f"{name} | {w}x{h} pixels is more than the limit of {max_pixels}", 413)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    if h * w > max_pixels:  # a header that lied
        raise BadUpload(f"{name} | {w}x{h} pixels is more than the limit of {max_pixels}", 413)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled so that the longest side is <= max_side (never up), each side >= 1 and even
    where possible (the scaler's chroma planes)."""
    s = min(1.0, max_side / max(w, h, 1))
    if s >= 1.0:
        return w, h
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


class Clip:
    """A clip in memory, decoded on demand: :meth:`read` gives the next sampled frames.

    Memory: FFmpeg's decoder state (one thread; a few frames at <= ``max_pixels``) and the frames
    of one :meth:`read` (RGB, longest side <= ``max_side``); nothing else grows with the clip.

    Attributes:
        kind: "video".
        width, height: of the first frame (upright) as uploaded; 0 until known.
        frames_total: frames decoded so far (sampled or not).
        truncated, truncated_reason: the clip was cut short and why (one line).

    Raises:
        BadUpload: (constructor) not a video FFmpeg reads (415), frames over ``max_pixels`` (413).
    """

    kind = "video"

    def __init__(self, data: bytes, name: str, *, max_pixels: int, max_frames: int, max_total_pixels: int, max_side: int, every: int):
        import av

        self.name, self.max_pixels, self.max_frames = name, max_pixels, max_frames
        self.max_total_pixels, self.max_side, self.every = max_total_pixels, max(32, int(max_side)), every
        self.width = self.height = self.frames_total = 0
        self.sampled = 0
        self.pixels = 0
        self.truncated, self.truncated_reason = False, ""
        self._done = False
        try:
            # the probe's decoders (FFmpeg may decode a frame to learn a stream's parameters) get the
            # pixel limit and one thread too, so an 8K stream is refused before a frame of it is held
            opts = {"max_pixels": str(int(max_pixels)), "threads": "1"}
            self._c: Any = av.open(io.BytesIO(data), mode="r", options=opts)
        except (av.error.FFmpegError, ValueError) as e:
            raise BadUpload(f"{name} | not an image or a video that OpenCV or FFmpeg can read ({type(e).__name__})", 415) from e
        try:
            if not self._c.streams.video:
                raise BadUpload(f"{name} | not an image or a video: a container without a video stream", 415)
            s = self._c.streams.video[0]
            cc = s.codec_context
            self._check(int(cc.width or 0), int(cc.height or 0))  # the stream header, before any frame is decoded
            cc.thread_count = 1  # one frame in flight: no per-thread frame buffers
            self._tb = float(s.time_base) if s.time_base else 0.0
            self._frames = self._c.decode(s)
        except BaseException:
            self._c.close()
            raise

    def _check(self, w: int, h: int) -> None:
        if w * h > self.max_pixels:
            raise BadUpload(f"{self.name} | {w}x{h} pixels per frame is more than the clip limit of {self.max_pixels}", 413)

    def _cut(self, reason: str) -> None:
        self.truncated, self.truncated_reason, self._done = True, reason, True

    def read(self, n: int) -> Upload:
        """Up to ``n`` more sampled frames (an empty :class:`Upload` at the end of the clip or
        where it was cut).

        Raises:
            BadUpload: a frame over the pixel limit (413); no frame of the clip decodes (415).
        """
        import av

        out = Upload("video", [])
        while not self._done and len(out.images) < n:
            try:
                fr = next(self._frames)
            except StopIteration:
                self._done = True
                break
            except av.error.FFmpegError as e:
                if not self.frames_total:
                    raise BadUpload(f"{self.name} | not an image or a video that can be decoded: no frame decodes ({e})", 415) from e
                self._cut(f"a decoding error after {self.frames_total} frames: {e}")
                break
            i = self.frames_total
            self.frames_total += 1
            self._check(fr.width, fr.height)
            self.pixels += fr.width * fr.height
            if self.pixels > self.max_total_pixels:
                self.frames_total -= 1
                self._cut(f"the clip's decoded pixels reached the limit of {self.max_total_pixels} per request after {i} frames")
                break
            if i % self.every:
                continue
            if self.sampled == self.max_frames:
                self._cut(f"the clip has more than {self.max_frames} sampled frames (max_frames); the rest was not decoded")
                break
            tw, th = _fit(fr.width, fr.height, self.max_side)
            # straight from the decoder's format to a small RGB frame: no full-resolution RGB copy
            img: np.ndarray = fr.to_ndarray(width=tw, height=th, format="rgb24", interpolation="AREA")
            k = int(round(float(getattr(fr, "rotation", 0) or 0) / 90.0)) % 4
            if k:
                img = np.ascontiguousarray(np.rot90(img, k=k))
            full_w, full_h = (fr.height, fr.width) if k % 2 else (fr.width, fr.height)
            if not self.width:
                self.width, self.height = full_w, full_h
            out.images.append(img)
            out.frame_idx.append(i)
            out.pts_ms.append(round(fr.pts * self._tb * 1000.0, 3) if fr.pts is not None else float("nan"))
            out.scale.append((full_w / img.shape[1], full_h / img.shape[0]))
            self.sampled += 1
            del fr
        if self._done and not self.sampled and not out.images and not self.truncated:
            raise BadUpload(f"{self.name} | not an image or a video that can be decoded: no frame decodes", 415)
        out.width, out.height, out.frames_total = self.width, self.height, self.frames_total
        out.truncated, out.truncated_reason = self.truncated, self.truncated_reason
        return out

    def close(self) -> None:
        """Free the decoder."""
        self._done = True
        self._c.close()

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
