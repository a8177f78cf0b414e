"""An uploaded file -> RGB frames: a still image (OpenCV) or a short clip (PyAV), with limits.

Nothing here touches the file system: uploads are decoded from memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from ferbatch.errors import FerbatchError

__all__ = ["BadUpload", "Upload", "decode_upload"]


class BadUpload(FerbatchError):
    """The upload is empty, not an image or video, or over a limit.

    Attributes:
        status: the HTTP status that says so (400 empty or over a frame limit, 413 too many
            pixels, 415 not an image or video).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """Decoded frames of an upload.

    Attributes:
        kind: "image" or "video".
        images: F arrays (H, W, 3) uint8 RGB (F = 1 for an image), upright.
        frame_idx: (F,) decoded-frame index of each image in the clip (0 for an image).
        pts_ms: (F,) presentation time in ms (0.0 for an image).
        width, height: of the first frame, in pixels.
        frames_total: frames decoded from the clip (sampled or not); truncated: the clip had more
            than ``max_frames`` sampled frames and the rest was not decoded.
    """

    kind: str
    images: list[np.ndarray]
    frame_idx: list[int] = field(default_factory=list)
    pts_ms: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0
    frames_total: int = 0
    truncated: bool = False


def decode_upload(data: bytes, name: str, *, max_pixels: int = 40_000_000, max_frames: int = 300, every: int = 1) -> Upload:
    """Decode an uploaded image or clip.

    Args:
        data: the file's bytes.
        name: its name as the client gave it (for messages only).
        max_pixels: most pixels per frame (width x height).
        max_frames: most frames analysed from a clip; the clip is cut there (``truncated``).
        every: analyse every ``every``-th decoded frame of a clip (1 = all).

    Raises:
        BadUpload: empty (400), too many pixels (413), neither an image nor a video FFmpeg reads (415).
    """
    if not data:
        raise BadUpload(f"{name} | the upload is empty (0 bytes)", 400)
    if every < 1:
        raise BadUpload(f"every | received {every}; expected >= 1", 400)
    img = _decode_image(data, name, max_pixels)
    if img is not None:
        h, w = img.shape[:2]
        return Upload("image", [img], [0], [0.0], w, h, 1)
    return _decode_clip(data, name, max_pixels, max_frames, every)


def _decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray | None:
    import cv2

    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    if h * w > max_pixels:
        raise BadUpload(f"{name} | {w}x{h} pixels is more than the limit of {max_pixels}", 413)
    return np.ascontiguousarray(img[:, :, ::-1])


def _decode_clip(data: bytes, name: str, max_pixels: int, max_frames: int, every: int) -> Upload:
    import av

    try:
        c = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as e:
        raise BadUpload(f"{name} | not an image or a video that OpenCV or FFmpeg can read ({type(e).__name__})", 415) from e
    up = Upload("video", [])
    try:
        if not c.streams.video:
            raise BadUpload(f"{name} | not an image or a video: a container without a video stream", 415)
        s = c.streams.video[0]
        tb = float(s.time_base) if s.time_base else 0.0
        try:
            for i, fr in enumerate(c.decode(s)):
                up.frames_total = i + 1
                if fr.width * fr.height > max_pixels:
                    raise BadUpload(f"{name} | {fr.width}x{fr.height} pixels is more than the limit of {max_pixels}", 413)
                if i % every:
                    continue
                if len(up.images) == max_frames:
                    up.truncated = True
                    break
                img = fr.to_ndarray(format="rgb24")
                k = int(round(float(getattr(fr, "rotation", 0) or 0) / 90.0)) % 4
                up.images.append(np.ascontiguousarray(np.rot90(img, k=k)) if k else img)
                up.frame_idx.append(i)
                up.pts_ms.append(round(fr.pts * tb * 1000.0, 3) if fr.pts is not None else float("nan"))
        except av.error.FFmpegError as e:
            if not up.images:
                raise BadUpload(f"{name} | not an image or a video that can be decoded: no frame decodes ({e})", 415) from e
    finally:
        c.close()
    if not up.images:
        raise BadUpload(f"{name} | not an image or a video that can be decoded: no frame decodes", 415)
    up.height, up.width = up.images[0].shape[:2]
    return up
