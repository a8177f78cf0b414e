"""Decoded frames -> batches for the analysis step: grouped by count and pixels, decoded ahead in
a thread (FFmpeg and ONNX Runtime both release the GIL, so decoding overlaps inference)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

from ferbatch.media.decode import Frame

__all__ = ["iter_batches", "timed_frames"]

_END = object()


def iter_batches(frames: Iterator[Frame], size: int, prefetch: int, max_pixels: int | None = None) -> Iterator[list[Frame]]:
    """Group frames into lists of ``size`` (fewer when ``max_pixels`` is set and the batch's frames
    reach that many pixels: large frames come in smaller batches), decoding ahead in a thread when
    ``prefetch`` > 0.

    An exception raised by the decoder is re-raised here, after the batches decoded before it.
    """

    def batches():
        batch: list[Frame] = []
        pixels = 0
        for f in frames:
            batch.append(f)
            pixels += f.image.shape[0] * f.image.shape[1]
            if len(batch) == size or (max_pixels is not None and pixels >= max_pixels):
                yield batch
                batch, pixels = [], 0
        if batch:
            yield batch

    if prefetch <= 0:
        yield from batches()
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for b in batches():
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)

    t = threading.Thread(target=produce, name="ferbatch-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def timed_frames(frames: Iterator[Frame], acc: dict[str, float]) -> Iterator[Frame]:
    """Adds the time spent producing each frame (decoding and converting) to ``acc["decode"]``."""
    while True:
        t = time.perf_counter()
        f = next(frames, None)
        acc["decode"] += time.perf_counter() - t
        if f is None:
            return
        yield f
