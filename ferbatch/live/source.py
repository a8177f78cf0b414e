"""A live video source read with PyAV on a background thread: reconnects with exponential
back-off, and keeps only the newest ``max_queue`` frames so a slow consumer drops frames
instead of falling behind (every dropped frame is counted and handed on as a skipped frame).

Sources: any URL FFmpeg reads (``rtsp://``, ``http://``, ``udp://``, ``tcp://``, ``srt://``, HLS),
a V4L2 device (``/dev/video0``), or a file (read at decode speed; for tests and replays).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["LiveFrame", "LiveSource", "SourceStats"]

log = logging.getLogger(__name__)


@dataclass
class LiveFrame:
    """One frame from the source.

    Attributes:
        idx: frames received since the watch started (0, 1, ...; across reconnections).
        t_ms: milliseconds since the watch started when the frame was received (monotonic clock).
        image: (H, W, 3) uint8 RGB, upright; None for a frame dropped because the consumer was behind.
        connection: which connection (0 = the first, +1 per reconnection) it came through.
    """

    idx: int
    t_ms: float
    image: np.ndarray | None
    connection: int


@dataclass
class SourceStats:
    """Counters of a :class:`LiveSource` (read them any time; the thread updates them)."""

    received: int = 0
    dropped: int = 0
    connections: int = 0
    reconnects: int = 0
    last_error: str = ""
    connected: bool = False


class LiveSource:
    """Reads ``source`` on a thread until :meth:`stop`.

    Args:
        source: URL, V4L2 device path or file.
        max_queue: frames kept for the consumer; when full, the oldest is dropped (counted).
        backoff: first wait before reconnecting, in s (doubles per failure in a row, up to ``max_backoff``).
        max_backoff: longest wait between attempts, in s.
        give_up_s: stop reconnecting after this long without a frame, in s (0 = never).
        timeout_s: open and read timeout for network sources, in s.
    """

    def __init__(
        self,
        source: str,
        *,
        max_queue: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        give_up_s: float = 0.0,
        timeout_s: float = 5.0,
    ):
        self.source = source
        self.stats = SourceStats()
        self.backoff, self.max_backoff, self.give_up_s, self.timeout_s = backoff, max_backoff, give_up_s, timeout_s
        self._q: collections.deque[LiveFrame] = collections.deque()
        self._max_queue = max(1, int(max_queue))
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._skipped: list[LiveFrame] = []
        self._t0 = time.monotonic()
        self._t = threading.Thread(target=self._run, name="ferbatch-live", daemon=True)

    def start(self) -> LiveSource:
        """Start reading; returns self."""
        self._t0 = time.monotonic()
        self._t.start()
        return self

    def stop(self) -> None:
        """Stop reading (the thread ends at its next frame or timeout)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    def now_ms(self) -> float:
        """Milliseconds since :meth:`start`, on the clock of :attr:`LiveFrame.t_ms`."""
        return (time.monotonic() - self._t0) * 1000.0

    @property
    def finished(self) -> bool:
        """True once the thread ended (stopped, or gave up reconnecting) and every frame was taken."""
        with self._cv:
            return self._done.is_set() and not self._q and not self._skipped

    def take(self, max_frames: int, timeout: float) -> tuple[list[LiveFrame], list[LiveFrame]]:
        """Wait up to ``timeout`` s for frames; returns (frames to analyse, oldest first, at most
        ``max_frames``; frames dropped since the last call, ``image`` None)."""
        with self._cv:
            if not self._q and not self._skipped and not self._done.is_set():
                self._cv.wait(timeout)
            n = min(max_frames, len(self._q))
            frames = [self._q.popleft() for _ in range(n)]
            skipped, self._skipped = self._skipped, []
        return frames, skipped

    def _put(self, f: LiveFrame) -> None:
        with self._cv:
            if len(self._q) >= self._max_queue:
                old = self._q.popleft()
                self._skipped.append(LiveFrame(old.idx, old.t_ms, None, old.connection))
                self.stats.dropped += 1
            self._q.append(f)
            self._cv.notify_all()

    def _open(self):
        import av

        opts = {}
        fmt = None
        if self.source.startswith("/dev/video"):
            fmt = "v4l2"
        elif self.source.startswith("rtsp://"):
            opts["rtsp_transport"] = "tcp"
        return av.open(self.source, mode="r", format=fmt, options=opts, timeout=(self.timeout_s, self.timeout_s))

    def _run(self) -> None:
        import av

        idx, delay, last_frame = 0, self.backoff, time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    with self._open() as c:
                        s = c.streams.video[0]
                        s.thread_type = "AUTO"
                        conn = self.stats.connections
                        self.stats.connections += 1
                        self.stats.connected = True
                        for fr in c.decode(s):
                            now = time.monotonic()
                            img = fr.to_ndarray(format="rgb24")
                            k = int(round(float(getattr(fr, "rotation", 0) or 0) / 90.0)) % 4
                            self._put(LiveFrame(idx, (now - self._t0) * 1000.0, np.ascontiguousarray(np.rot90(img, k)) if k else img, conn))
                            self.stats.received += 1
                            idx += 1
                            last_frame, delay = now, self.backoff
                            if self._stop.is_set():
                                return
                    self.stats.last_error = "the stream ended"
                    if os.path.isfile(self.source):
                        return  # a file ends; only live sources come back
                except (av.error.FFmpegError, OSError) as e:
                    self.stats.last_error = f"{type(e).__name__}: {e}"
                self.stats.connected = False
                if self.give_up_s and time.monotonic() - last_frame > self.give_up_s:
                    log.warning("%s | no frame for %.0f s; giving up (%s)", self.source, self.give_up_s, self.stats.last_error)
                    return
                log.warning("%s | %s; reconnecting in %.1f s", self.source, self.stats.last_error, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.max_backoff)
                self.stats.reconnects += 1
        finally:
            self.stats.connected = False
            with self._cv:
                self._done.set()
                self._cv.notify_all()
