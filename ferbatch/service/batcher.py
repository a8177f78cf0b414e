"""One inference thread for the whole process: the frames of concurrent requests go to the models
together (up to ``max_frames`` per call), so N small requests cost about one batched call, and
admission refuses work beyond ``max_pending`` requests instead of queueing without end. A request
is counted once, however many model-call chunks it is split into (:meth:`Batcher.admit`)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ferbatch.errors import FerbatchError
from ferbatch.faces import FaceBatch
from ferbatch.live.infer import infer_images, split_by_frame
from ferbatch.pipeline import ShardModels

__all__ = ["Batcher", "Busy", "BatcherStats"]


class Busy(FerbatchError):
    """More requests are waiting than the batcher accepts (the client should retry later)."""


@dataclass
class BatcherStats:
    """Counters since start: model calls, frames and requests through them."""

    calls: int = 0
    frames: int = 0
    requests: int = 0
    refused: int = 0


@dataclass
class _Item:
    images: Sequence[np.ndarray]
    future: Future


_STOP = object()


class Batcher:
    """Batches frames of concurrent requests into shared model calls on one thread.

    Args:
        models: loaded detector and classifier (used only from the batcher's thread).
        max_frames: most frames in one model call (a request with more is split over calls).
        max_wait_ms: how long the first request of a batch waits for others to join, in ms.
        max_pending: requests admitted at most (waiting or being served; a request counts once
            however many chunks it submits); :meth:`admit` / :meth:`submit` raise :class:`Busy`
            beyond it.
    """

    def __init__(self, models: ShardModels, *, max_frames: int = 16, max_wait_ms: float = 5.0, max_pending: int = 64):
        self.models = models
        self.max_frames = max(1, int(max_frames))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.stats = BatcherStats()
        self.max_pending = max(1, int(max_pending))
        self._pending = 0
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()  # bounded by admission: at most max_pending requests put chunks here
        self._t = threading.Thread(target=self._loop, name="ferbatch-batcher", daemon=True)
        self._t.start()

    def _take(self) -> None:
        with self._lock:
            if self._pending >= self.max_pending:
                self.stats.refused += 1
                raise Busy(f"busy | {self.max_pending} requests are already waiting; retry later")
            self._pending += 1

    def _release(self, *_: object) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def pending(self) -> int:
        """Requests admitted and not yet finished."""
        return self._pending

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count one request for its whole duration (its chunks go in with ``submit(...,
        admitted=True)``).

        Raises:
            Busy: ``max_pending`` requests are already admitted.
        """
        self._take()
        try:
            yield
        finally:
            self._release()

    def submit(self, images: Sequence[np.ndarray], *, admitted: bool = False) -> Future:
        """Queue ``images`` (F arrays (H, W, 3) uint8 RGB); the future gives a list of F
        :class:`~ferbatch.faces.FaceBatch`.

        Args:
            images: the frames.
            admitted: part of a request inside :meth:`admit` (not counted again); False = a
                request of its own, counted until its future is done.

        Raises:
            Busy: (not ``admitted``) ``max_pending`` requests are already admitted.
        """
        fut: Future = Future()
        if not admitted:
            self._take()
            fut.add_done_callback(self._release)
        self._q.put(_Item(list(images), fut))
        return fut

    def close(self) -> None:
        """Stop the thread after the requests already queued."""
        self._q.put(_STOP)
        self._t.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            batch = [first]
            n = len(first.images)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while n < self.max_frames:
                left = deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item.images)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Item]) -> None:
        images = [im for it in batch for im in it.images]
        try:
            results: list[FaceBatch] = []
            for i in range(0, len(images), self.max_frames):
                chunk = images[i : i + self.max_frames]
                results += split_by_frame(infer_images(self.models, chunk), len(chunk))
                self.stats.calls += 1
        except BaseException as e:  # handed to every waiting request
            for it in batch:
                it.future.set_exception(e)
            return
        self.stats.frames += len(images)
        self.stats.requests += len(batch)
        k = 0
        for it in batch:
            it.future.set_result(results[k : k + len(it.images)])
            k += len(it.images)
